--- A small HTTP API over Temporal inside nginx (examples/openresty/nginx.conf).
--
--   POST /workflows                      {"workflow": "Greet", "args": [...], "id": "...", "task_queue": "..."}
--                                        -> 201 {"id": ..., "run_id": ...}
--   GET  /workflows/{id}                 -> 200 describe: {"id", "run_id", "type", "status", "task_queue", ...}
--   POST /workflows/{id}/signals/{name}  [args...] -> 202 {}
--   GET  /workflows/{id}/result          -> 200 {"result": ...} once the workflow closes; the request
--                                           waits without blocking the worker
--   GET  /namespace                      -> 200 {"name", "id", "state"}: the client's namespace (a
--                                           cheap server call)
--
-- Errors are JSON {"error": {"type", "message", "status"}} with an HTTP status: 400 bad
-- request, 404 no such workflow, 409 already started, 422 the workflow failed, 503/504 the
-- server is unavailable / too slow, 502 other server errors. JSON numbers are exact both
-- ways (temporal.core's codec: integers beyond 2^53 are int64_t cdata in between).
local temporal = require("temporal")
local errors = temporal.errors
local json_encode, json_decode = temporal.core.json_encode, temporal.core.json_decode

local M = {}

local client   -- this worker's client (made in init_worker)
local adapter  -- this worker's nginx host adapter

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

--- init_by_lua (the master): the host adapter, which the workers inherit. Loading temporal
-- here starts nothing: the runtime is made per worker by its first connect or call.
function M.init()
  adapter = require("temporal.host.nginx").new()
  temporal.set_host(adapter)
end

--- init_worker_by_lua: this worker's client (after nginx forked it; never in the master).
-- `lazy`: connecting waits for the first call.
function M.init_worker()
  if not adapter then M.init() end  -- a config without init_by_lua
  client = temporal.connect(env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), {
    namespace = env("TEMPORAL_NAMESPACE", "default"), lazy = true, identity = "openresty-example",
  })
end

--- exit_worker_by_lua: calls still in flight fail with CANCELLED, the relay stops.
function M.exit_worker()
  if client then client:close() end
  if adapter then adapter.close() end
end

function M.client() return client end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json_encode(body))
  return ngx.exit(status)
end

local HTTP_OF_GRPC = {
  INVALID_ARGUMENT = 400, NOT_FOUND = 404, ALREADY_EXISTS = 409, FAILED_PRECONDITION = 409,
  UNAVAILABLE = 503, DEADLINE_EXCEEDED = 504, PERMISSION_DENIED = 403, UNAUTHENTICATED = 401,
}

local function fail(err)
  if type(err) ~= "table" then  -- an argument error raised by the client: the request's fault
    return reply(400, { error = { type = "BadRequest", message = tostring(err) } })
  end
  local status, kind = 502, errors.class(err) or "Error"
  if errors.is(err, "WorkflowAlreadyStartedError") then status = 409
  elseif errors.is(err, "WorkflowFailureError") then status = 422
  elseif errors.is(err, "RPCError") then status = HTTP_OF_GRPC[err.status] or 502 end
  local message = err.message
  if errors.is(err, "WorkflowFailureError") and err.cause then message = message .. ": " .. tostring(err.cause.message) end
  return reply(status, { error = { type = kind, message = message, status = err.status } })
end

local function body_json()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body or body == "" then return nil end
  local ok, v = pcall(json_decode, body)
  if not ok then return reply(400, { error = { type = "BadRequest", message = "body: " .. tostring(v) } }) end
  return v
end

local function start(req)
  if type(req) ~= "table" or type(req.workflow) ~= "string" then
    return reply(400, { error = { type = "BadRequest", message = 'body must be {"workflow": name, ...}' } })
  end
  local args = req.args or {}
  if type(args) ~= "table" then return reply(400, { error = { type = "BadRequest", message = "args must be a list" } }) end
  local id = req.id or ("openresty-" .. temporal.core.now() .. "-" .. math.random(1, 1e9))
  local h = client:start_workflow(req.workflow, {
    id = id, task_queue = req.task_queue or env("TEMPORAL_TASK_QUEUE", "openresty"), args = args,
  })
  return reply(201, { id = h.id, run_id = h.result_run_id })
end

local function describe(id)
  local d = client:get_workflow_handle(id):describe()
  return reply(200, {
    id = d.id, run_id = d.run_id, type = d.workflow_type, status = d.status, task_queue = d.task_queue,
    start_time = d.start_time, close_time = d.close_time or temporal.null, history_length = d.history_length,
  })
end

local function signal(id, name)
  local args = body_json() or {}
  if type(args) ~= "table" then return reply(400, { error = { type = "BadRequest", message = "body must be a JSON list of arguments" } }) end
  client:get_workflow_handle(id):signal_with_options(name, { args = args })
  return reply(202, temporal.object({}))
end

local function result(id)
  local r = client:get_workflow_handle(id):result()
  if r == nil then r = temporal.null end
  return reply(200, { result = r })
end

--- content_by_lua for location = /namespace: describes the client's namespace.
function M.namespace()
  if ngx.req.get_method() ~= "GET" then
    return reply(405, { error = { type = "MethodNotAllowed", message = ngx.req.get_method() } })
  end
  local ok, err = pcall(function()
    local ns = client:describe_namespace()
    return reply(200, { name = ns.name, id = ns.id, state = ns.state })
  end)
  if not ok then return fail(err) end
end

--- content_by_lua for location /workflows: routes the four endpoints.
function M.workflows()
  local method, uri = ngx.req.get_method(), ngx.var.uri
  local ok, err = pcall(function()
    if uri == "/workflows" or uri == "/workflows/" then
      if method ~= "POST" then return reply(405, { error = { type = "MethodNotAllowed", message = method } }) end
      return start(body_json())
    end
    local id, rest = uri:match("^/workflows/([^/]+)(.*)$")
    if not id then return reply(404, { error = { type = "NotFound", message = uri } }) end
    id = ngx.unescape_uri(id)
    if rest == "" and method == "GET" then return describe(id) end
    if rest == "/result" and method == "GET" then return result(id) end
    local name = rest:match("^/signals/([^/]+)$")
    if name and method == "POST" then return signal(id, ngx.unescape_uri(name)) end
    return reply(404, { error = { type = "NotFound", message = method .. " " .. uri } })
  end)
  if not ok then return fail(err) end
end

return M
