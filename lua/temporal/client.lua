--- temporal.Client: a connection to a Temporal frontend, in one namespace.
--
--   local client = temporal.connect("127.0.0.1:7233", { namespace = "default" })
--   client.workflow_service:get_system_info{}        -- raw RPC, every method
--
-- Every RPC goes through one path (Client:_rpc): metadata merge, deadline, the
-- runtime call, and RPCError on failure.
local core = require("temporal.core")
local scheduler = require("temporal.scheduler")
local errors = require("temporal.errors")

local M = {}

local SERVICES = {
  workflow_service = "temporal.api.workflowservice.v1.WorkflowService",
  operator_service = "temporal.api.operatorservice.v1.OperatorService",
  health_service = "grpc.health.v1.Health",
}
M.SERVICES = SERVICES

-- Methods whose server side waits (long polls) get the longer default deadline.
local LONG_POLL = {
  PollWorkflowExecutionUpdate = true, UpdateWorkflowExecution = true,
  ExecuteMultiOperation = true,
}
M.DEFAULT_RPC_TIMEOUT = 30
M.LONG_POLL_RPC_TIMEOUT = 70

local state = core.handle_state

local function check_options(opts, known, what, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(what, type(opts)), level + 1)
  end
  for k in pairs(opts) do
    if not known[k] then
      error(("%s: unknown option '%s'"):format(what, tostring(k)), level + 1)
    end
  end
  return opts
end
M.check_options = check_options

local function check_type(value, expected, name, level)
  if value ~= nil and type(value) ~= expected then
    error(("%s: expected a %s, got %s"):format(name, expected, type(value)), level + 1)
  end
  return value
end

local function check_metadata(md, name, level)
  check_type(md, "table", name, level + 1)
  for k, v in pairs(md or {}) do
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "table") then
      error(("%s: expected string keys and string values, got %s = %s"):format(name, type(k), type(v)), level + 1)
    end
  end
  return md
end

-- snake_case <-> the proto method names, built once from the service descriptors.
local method_tables = {}
local function methods_of(service)
  local t = method_tables[service]
  if t then return t end
  t = {}
  local all = core.services()[service] or error("unknown service " .. service)
  for name in pairs(all) do
    local snake = name:gsub("(%l)(%u)", "%1_%2"):gsub("(%u)(%u%l)", "%1_%2"):lower()
    t[snake] = name
    t[name] = name
  end
  method_tables[service] = t
  return t
end
M.methods_of = methods_of

local Client = { __name = "temporal.Client" }
local methods = {}
M.methods = methods

Client.__index = function(self, k)
  local m = methods[k]
  if m ~= nil then return m end
  return state(self)[k]
end

-- Settable after connect: replaced as a whole, effective on the next call.
local settable = {
  rpc_metadata = function(v) return check_metadata(v, "rpc_metadata", 3) or {} end,
}
Client.__newindex = function(self, k, v)
  local set = settable[k]
  if not set then error(("temporal.Client: field '%s' cannot be set"):format(tostring(k)), 2) end
  state(self)[k] = set(v)
end

Client.__tostring = function(self)
  local s = state(self)
  return ("temporal.Client(%s, namespace=%s)"):format(s.target, s.namespace)
end

Client.__close = function(self) self:close() end

--- Closes the connection; calls in flight still complete (with CANCELLED if need be).
function methods:close()
  local s = state(self)
  if s.channel then s.channel:close() end
end

--- The one RPC path: returns the response table or raises RPCError.
-- opts: rpc_timeout (seconds; default 30, 70 for long polls), rpc_metadata (table).
function methods:_rpc(service, method, request, opts)
  local s = state(self)
  local timeout = opts and opts.rpc_timeout
  if timeout == nil then
    timeout = LONG_POLL[method] and M.LONG_POLL_RPC_TIMEOUT or M.DEFAULT_RPC_TIMEOUT
  end
  local md = s.base_metadata
  local user_md, call_md = s.rpc_metadata, opts and opts.rpc_metadata
  if next(user_md) or call_md then
    md = {}
    for k, v in pairs(s.base_metadata) do md[k] = v end
    for k, v in pairs(user_md) do md[k] = v end
    for k, v in pairs(call_md or {}) do md[k] = v end
  end
  local call = core.unary(s.channel, service, method, request, timeout, md)
  local resp, failure = scheduler.await(call)
  if resp then return resp end
  error(errors.from_rpc(failure, method), 0)
end

-- Raw service objects: client.workflow_service:start_workflow_execution{...}
local Service = { __name = "temporal.Service" }
Service.__index = function(svc, k)
  local name = methods_of(svc._service)[k]
  if not name then return nil end
  local known = { rpc_timeout = true, rpc_metadata = true }
  local fn = function(self, request, opts)
    if self ~= svc then
      error(("%s: call it with ':' (service:%s{...})"):format(k, k), 2)
    end
    if request ~= nil and type(request) ~= "table" then
      error(("%s: request must be a table, got %s"):format(k, type(request)), 2)
    end
    check_options(opts, known, k, 2)
    check_type(opts and opts.rpc_timeout, "number", "rpc_timeout", 2)
    check_metadata(opts and opts.rpc_metadata, "rpc_metadata", 2)
    return svc._client:_rpc(svc._service, name, request or {}, opts)
  end
  rawset(svc, k, fn)
  return fn
end
Service.__tostring = function(svc) return "temporal.Service(" .. svc._service .. ")" end

local CONNECT_OPTIONS = {
  namespace = true, identity = true, rpc_metadata = true, lazy = true, tls = true,
  keep_alive = true, http_connect_proxy = true, max_receive_message_length = true,
  connect_timeout = true, use_proxy_env = true, data_converter = true,
}

--- temporal.connect(target, opts) -> Client
-- opts: namespace ("default"), identity ("<pid>@<hostname>"), rpc_metadata ({}),
-- lazy (false: the connect checks the server with GetSystemInfo), tls (false | true |
-- { server_root_ca_cert, domain, client_cert, client_private_key }), keep_alive
-- ({ interval = 30, timeout = 15 } or false), http_connect_proxy ("host:port"),
-- use_proxy_env (false), max_receive_message_length (128 MiB), connect_timeout (10 s),
-- data_converter (temporal.converter.default, loaded on first use): converts workflow
-- arguments, results, memos, search attributes and failures.
function M.connect(target, opts)
  if type(target) ~= "string" or target == "" then
    error("connect: target must be a 'host:port' string, got " .. type(target), 2)
  end
  opts = check_options(opts, CONNECT_OPTIONS, "connect", 2)
  check_type(opts.namespace, "string", "namespace", 2)
  check_type(opts.identity, "string", "identity", 2)
  check_type(opts.lazy, "boolean", "lazy", 2)
  check_type(opts.connect_timeout, "number", "connect_timeout", 2)
  check_type(opts.data_converter, "table", "data_converter", 2)
  check_metadata(opts.rpc_metadata, "rpc_metadata", 2)
  local keep_alive = opts.keep_alive
  if keep_alive == nil then keep_alive = { interval = 30, timeout = 15 } end
  if keep_alive ~= false then
    check_type(keep_alive, "table", "keep_alive", 2)
    check_options(keep_alive, { interval = true, timeout = true }, "keep_alive", 2)
  end
  local channel = core.channel(target, {
    tls = opts.tls,
    max_receive_message_length = opts.max_receive_message_length,
    keep_alive_time = keep_alive and (keep_alive.interval or 30) or 0,
    keep_alive_timeout = keep_alive and (keep_alive.timeout or 15) or nil,
    http_proxy = opts.http_connect_proxy,
    use_proxy_env = opts.use_proxy_env,
  })
  local namespace = opts.namespace or "default"
  local s = {
    target = target,
    namespace = namespace,
    identity = opts.identity or (core.pid() .. "@" .. core.hostname()),
    channel = channel,
    rpc_metadata = opts.rpc_metadata or {},
    data_converter = opts.data_converter,
    base_metadata = { ["temporal-namespace"] = namespace },
  }
  local client = core.handle(Client, s)
  for field, service in pairs(SERVICES) do
    s[field] = setmetatable({ _client = client, _service = service }, Service)
  end
  if not opts.lazy then
    local ok, err = pcall(methods._rpc, client, SERVICES.workflow_service, "GetSystemInfo", {},
      { rpc_timeout = opts.connect_timeout or 10 })
    if not ok then
      channel:close()
      if errors.is(err, "RPCError") then
        err.message = ("cannot connect to %s: %s"):format(target, err.message)
      end
      error(err, 2)
    end
    s.system_info = err
  end
  return client
end

M.Client = Client
return M
