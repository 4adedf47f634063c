--- Async activity completion: client:get_async_activity_handle and temporal.AsyncActivityHandle.
--
-- An activity that completes asynchronously (Python: activity.raise_complete_async()) hands
-- its task token, or its workflow id / run id / activity id, to some other process; that
-- process finishes the activity through this handle.
--
--   local ah = client:get_async_activity_handle({ task_token = token })
--   local ah = client:get_async_activity_handle({ workflow_id = w, run_id = r, activity_id = a })
--   ah:heartbeat("50%")          -- raises AsyncActivityCancelledError once cancel is requested
--   ah:complete({ ok = true })   -- or ah:fail(err, opts) or ah:report_cancellation(...)
--
-- heartbeat and report_cancellation take the details as varargs; their `*_with_options`
-- twins take { details = { ... }, rpc_timeout =, rpc_metadata = }. complete(result, opts)
-- and fail(err, opts) take opts last. Values go through the client's data converter.
-- run_id may be omitted (the current run). Calls are retried on transient failures.
local core = require("temporal.core")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local client_mod = require("temporal.client")
local errors = require("temporal.errors")

local M = {}

local methods = client_mod.methods
local check_options = client_mod.check_options
local WORKFLOW_SERVICE = client_mod.SERVICES.workflow_service
local state = core.handle_state

local data_converter = client_mod.data_converter
local check_type = client_mod.check_type

local check_rpc_options = client_mod.check_rpc_options

local function check_details(details, name, level)
  if details == nil then return { n = 0 } end
  if type(details) ~= "table" then
    error(("%s: expected a list of values, got %s"):format(name, type(details)), level + 1)
  end
  return details
end

local AsyncActivityHandle = { __name = "temporal.AsyncActivityHandle" }
local handle_methods = {}
M.AsyncActivityHandle = AsyncActivityHandle
M.handle_methods = handle_methods

local FIELDS = { task_token = true, workflow_id = true, run_id = true, activity_id = true, client = true }
AsyncActivityHandle.__index = function(self, k)
  local m = handle_methods[k]
  if m ~= nil then return m end
  if FIELDS[k] then return state(self)[k] end
  return nil
end
AsyncActivityHandle.__newindex = function(_, k)
  error(("temporal.AsyncActivityHandle: field '%s' cannot be set"):format(tostring(k)), 2)
end
AsyncActivityHandle.__tostring = function(self)
  local s = state(self)
  if s.task_token then
    return ("temporal.AsyncActivityHandle(task_token=<%d bytes>)"):format(#s.task_token)
  end
  return ("temporal.AsyncActivityHandle(workflow_id=%s, run_id=%s, activity_id=%s)")
    :format(s.workflow_id, s.run_id or "", s.activity_id)
end

--- client:get_async_activity_handle({ task_token = t }) or
-- client:get_async_activity_handle({ workflow_id = w, run_id = r, activity_id = a })
-- -> AsyncActivityHandle (makes no call). Give the token or the ids, not both; run_id is
-- optional (nil: the workflow's current run).
function methods:get_async_activity_handle(ref)
  if type(ref) ~= "table" then
    error("get_async_activity_handle: expected { task_token = } or { workflow_id =, run_id =, activity_id = }, got "
      .. type(ref), 2)
  end
  check_options(ref, { task_token = true, workflow_id = true, run_id = true, activity_id = true },
    "get_async_activity_handle", 2)
  for _, k in ipairs({ "task_token", "workflow_id", "run_id", "activity_id" }) do
    check_type(ref[k], "string", k, 2)
  end
  local s = { client = self }
  if ref.task_token ~= nil then
    if ref.workflow_id or ref.run_id or ref.activity_id then
      error("get_async_activity_handle: give task_token or workflow_id/run_id/activity_id, not both", 2)
    end
    if ref.task_token == "" then error("task_token: must not be empty", 2) end
    s.task_token = ref.task_token
  else
    if not ref.workflow_id or ref.workflow_id == "" then
      error("workflow_id: required when no task_token is given", 2)
    end
    if not ref.activity_id or ref.activity_id == "" then
      error("activity_id: required when no task_token is given", 2)
    end
    s.workflow_id, s.run_id, s.activity_id = ref.workflow_id, ref.run_id, ref.activity_id
  end
  return core.handle(AsyncActivityHandle, s)
end

local function check_self(self, name)
  if getmetatable(self) ~= AsyncActivityHandle then
    error(("%s: call it with ':' (activity_handle:%s(...))"):format(name, name), 3)
  end
end

-- Runs one operation: the input carries the reference plus the call's own fields, goes
-- through the client's interceptors, then `fn(input, by_id)` builds the request.
local function run(self, name, fields, opts, fn)
  local s = state(self)
  local client = s.client
  local input = {
    task_token = s.task_token, workflow_id = s.workflow_id, run_id = s.run_id,
    activity_id = s.activity_id, rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata,
  }
  for k, v in pairs(fields) do input[k] = v end
  local function call(inp)
    local dc = data_converter(client)
    local by_id = inp.task_token == nil
    local method, request = fn(inp, dc, by_id)
    request.namespace = client.namespace
    request.identity = client.identity
    if by_id then
      request.workflow_id, request.run_id, request.activity_id = inp.workflow_id, inp.run_id, inp.activity_id
      method = method .. "ById"
    else
      request.task_token = inp.task_token
    end
    return client:_rpc(WORKFLOW_SERVICE, method, request,
      { rpc_timeout = inp.rpc_timeout, rpc_metadata = inp.rpc_metadata, retry = true })
  end
  return client:_intercept(name, input, call)
end

local function payloads(dc, values)
  local n = values.n or #values
  if n == 0 then return nil end
  return { payloads = dc:to_payloads(values) }
end

local function heartbeat(self, details, opts)
  local resp = run(self, "heartbeat_async_activity", { details = details }, opts, function(inp, dc)
    return "RecordActivityTaskHeartbeat", { details = payloads(dc, inp.details) }
  end)
  if resp.cancel_requested or resp.activity_paused or resp.activity_reset then
    local reason = resp.cancel_requested and "cancel requested"
      or resp.activity_paused and "activity paused" or "activity reset"
    errors.raise("AsyncActivityCancelledError", {
      message = "activity cancelled (" .. reason .. ")",
      details = {
        cancel_requested = resp.cancel_requested or false,
        paused = resp.activity_paused or false,
        reset = resp.activity_reset or false,
      },
    }, 3)
  end
end

--- Records a heartbeat with the given details (varargs). Raises AsyncActivityCancelledError
-- (err.details = { cancel_requested, paused, reset }) when the server asks the activity to
-- stop: report_cancellation is then the usual answer.
function handle_methods:heartbeat(...)
  check_self(self, "heartbeat")
  heartbeat(self, compat.pack(...), {})
end

--- heartbeat with options: { details = { ... }, rpc_timeout =, rpc_metadata = }.
function handle_methods:heartbeat_with_options(opts)
  check_self(self, "heartbeat_with_options")
  opts = check_rpc_options(opts, { details = true }, "heartbeat_with_options", 2)
  heartbeat(self, check_details(opts.details, "details", 2), opts)
end

--- Completes the activity with `result` (ah:complete() without arguments: no result,
-- which the workflow reads as None/nil). opts: rpc_timeout, rpc_metadata.
function handle_methods:complete(...)
  check_self(self, "complete")
  local n = select("#", ...)
  local result, opts = ...
  opts = check_rpc_options(opts, nil, "complete", 2)
  run(self, "complete_async_activity", { result = result, has_result = n > 0 }, opts, function(inp, dc)
    return "RespondActivityTaskCompleted", {
      result = inp.has_result and { payloads = dc:to_payloads(compat.pack(inp.result)) } or nil,
    }
  end)
end

--- Fails the activity with `err`: a message string or an error object (an ApplicationError
-- from temporal.errors keeps its type, non_retryable and details), encoded as the Python
-- SDK encodes failures. opts: last_heartbeat_details (a list), rpc_timeout, rpc_metadata.
-- Whether the activity is retried is up to its retry policy, as for any failure.
function handle_methods:fail(err, opts)
  check_self(self, "fail")
  if err == nil then error("fail: an error (a message or an error object) is required", 2) end
  opts = check_rpc_options(opts, { last_heartbeat_details = true }, "fail", 2)
  local details = check_details(opts.last_heartbeat_details, "last_heartbeat_details", 2)
  run(self, "fail_async_activity", { error = err, last_heartbeat_details = details }, opts, function(inp, dc)
    return "RespondActivityTaskFailed", {
      failure = dc:encode_failure(inp.error),
      last_heartbeat_details = payloads(dc, inp.last_heartbeat_details),
    }
  end)
end

local function report_cancellation(self, details, opts)
  run(self, "report_cancellation_async_activity", { details = details }, opts, function(inp, dc)
    return "RespondActivityTaskCanceled", { details = payloads(dc, inp.details) }
  end)
end

--- Reports the activity as cancelled, with details (varargs); the workflow sees an
-- ActivityError caused by a CancelledError carrying them.
function handle_methods:report_cancellation(...)
  check_self(self, "report_cancellation")
  report_cancellation(self, compat.pack(...), {})
end

--- report_cancellation with options: { details = { ... }, rpc_timeout =, rpc_metadata = }.
function handle_methods:report_cancellation_with_options(opts)
  check_self(self, "report_cancellation_with_options")
  opts = check_rpc_options(opts, { details = true }, "report_cancellation_with_options", 2)
  report_cancellation(self, check_details(opts.details, "details", 2), opts)
end

return M
