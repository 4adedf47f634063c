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
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local retry = require("temporal.retry")
local interceptor = require("temporal.interceptor")
local metrics = require("temporal.metrics")

local M = {}

local SERVICES = {
  workflow_service = "temporal.api.workflowservice.v1.WorkflowService",
  operator_service = "temporal.api.operatorservice.v1.OperatorService",
  health_service = "grpc.health.v1.Health",
  -- the time-skipping test server's; other servers answer UNIMPLEMENTED
  test_service = "temporal.api.testservice.v1.TestService",
}
M.SERVICES = SERVICES

-- Methods whose server side waits (long polls) get the longer default deadline; so does
-- any request with wait_new_event = true (see _rpc).
local LONG_POLL = {
  PollWorkflowExecutionUpdate = true, UpdateWorkflowExecution = true,
  ExecuteMultiOperation = true,
}
M.DEFAULT_RPC_TIMEOUT = 30
M.LONG_POLL_RPC_TIMEOUT = 70

local state = core.handle_state

-- Option names the Python SDK uses where the Lua name differs (or that Lua has no use
-- for), by call ("*": every call): an unknown-option error names the Lua way instead.
-- A string value is the Lua option to use; a table { reason } says why there is none.
local PYTHON_NAMES = {
  ["*"] = {
    result_type = { "results are decoded to Lua values; there is no type to give" },
    stack_level = { "no deprecation warnings are issued" },
  },
  connect = {
    target_host = { "the target is connect's first argument" },
    keep_alive_config = "keep_alive",
    http_connect_proxy_config = "http_connect_proxy",
    plugins = { "there are no plugins; pass interceptors and data_converter" },
    runtime = { "the runtime (completion queue and poller thread) is made on first use; its "
      .. "telemetry is the 'metrics' option (temporal.metrics.new{...})" },
    dns_load_balancing_config = { "the gRPC C core resolves and balances by itself" },
    grpc_compression = { "calls are sent uncompressed" },
    payload_limits = { "payload sizes are not checked on the client" },
    header_codec_behavior = { "headers are sent as the interceptors set them, without the codec" },
  },
  keep_alive = { interval_millis = "interval (seconds)", timeout_millis = "timeout (seconds)" },
  http_connect_proxy = { target_host = "target" },
  get_worker_task_reachability = { reachability_type = "reachability" },
  -- a schedule's action (ScheduleActionStartWorkflow)
  action = { typed_search_attributes = "search_attributes", untyped_search_attributes = "search_attributes" },
}
M.PYTHON_NAMES = PYTHON_NAMES

--- The error message for unknown option `name` of call `what`: names the Lua option
-- when `name` is the Python SDK's spelling.
function M.unknown_option_message(what, name)
  name = tostring(name)
  local hint = (PYTHON_NAMES[what] or {})[name] or PYTHON_NAMES["*"][name]
  if type(hint) == "string" then
    return ("%s: unknown option '%s' (the Python SDK's name; use '%s')"):format(what, name, hint)
  elseif hint then
    return ("%s: unknown option '%s' (a Python SDK option with no Lua counterpart: %s)"):format(what, name, hint[1])
  end
  return ("%s: unknown option '%s'"):format(what, name)
end

local function check_options(opts, known, what, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(what, type(opts)), level + 1)
  end
  for k in pairs(opts) do
    if not known[k] then
      error(M.unknown_option_message(what, k), level + 1)
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
M.check_type = check_type

--- A timeout option: nil, or seconds >= 0; math.huge (or any value too large for a
-- deadline, 1e300) means none. NaN, negative values and other types are errors.
local function check_timeout(value, name, level)
  if value ~= nil and (type(value) ~= "number" or not (value >= 0)) then  -- luacheck: ignore 581
    error(("%s: expected a non-negative number of seconds (math.huge: none), got %s"):format(name,
      type(value) == "number" and tostring(value) or type(value)), level + 1)
  end
  return value
end
M.check_timeout = check_timeout

--- Checks opts against `known` (a set, changed in place) plus rpc_timeout (seconds) and
-- rpc_metadata (table); returns opts ({} when nil).
function M.check_rpc_options(opts, known, what, level)
  known = known or {}
  known.rpc_timeout, known.rpc_metadata = true, true
  opts = check_options(opts, known, what, level + 1)
  check_timeout(opts.rpc_timeout, "rpc_timeout", level + 1)
  check_type(opts.rpc_metadata, "table", "rpc_metadata", level + 1)
  return opts
end

--- A random (version 4) UUID string: request ids, update ids. In C (src/core.c): from a
-- per-thread getrandom pool tagged with the process id, so a forked child never repeats its
-- parent's ids (a buffered /dev/urandom handle opened before a fork would).
M.uuid4 = core.uuid4

--- The client's data converter (temporal.converter's default, loaded on first use, until
-- one is given at connect).
function M.data_converter(client)
  local s = state(client)
  local dc = s.data_converter
  if dc == nil then
    dc = require("temporal.converter").default
    s.data_converter = dc
  end
  return dc
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

-- Public methods check their self first, so `client.close(nil)` or
-- `client.start_workflow(io.stdout, ...)` name the mistake instead of failing inside: every
-- public function stored into a method table (by this module or by workflow.lua,
-- schedule.lua, ...) is kept wrapped in that check. (The wrapper tail-calls the method, so
-- error levels inside it still point at the caller; help() finds the wrapper itself.)
local function check_self_on_insert(method_table, mt, class, var)
  return setmetatable(method_table, { __newindex = function(t, k, f)
    if type(f) == "function" and type(k) == "string" and k:sub(1, 1) ~= "_" then
      local m = f
      f = function(self, ...)
        if getmetatable(self) ~= mt then
          error(("%s: call it with ':' on a %s (%s:%s(...)), got %s"):format(k, class, var, k, type(self)), 2)
        end
        return m(self, ...)
      end
    end
    rawset(t, k, f)
  end })
end
check_self_on_insert(methods, Client, "temporal.Client", "client")

Client.__index = function(self, k)
  local m = methods[k]
  if m ~= nil then return m end
  return state(self)[k]
end

-- Settable after connect: replaced as a whole, effective on the next call.
local settable = {
  rpc_metadata = function(v) return check_metadata(v, "rpc_metadata", 3) or {} end,
  -- The key itself never goes into an error message.
  api_key = function(v) return check_type(v, "string", "api_key", 3) end,
}
-- rpc_metadata and api_key belong to the connection (as in Python, where they live on the
-- service client): setting them on one client changes them for every client sharing it.
Client.__newindex = function(self, k, v)
  local set = settable[k]
  if not set then error(("temporal.Client: field '%s' cannot be set"):format(tostring(k)), 2) end
  local s = state(self)
  rawget(s, "_conn")[k] = set(v)
end

Client.__tostring = function(self)
  local s = state(self)
  return ("temporal.Client(%s, namespace=%s)"):format(s.target, s.namespace)
end

Client.__close = function(self) self:close() end

--- Closes the connection; calls in flight fail at once with CANCELLED ("the client was
-- closed while the call was in flight"); later calls raise "channel to <target> is closed".
function methods:close()
  local s = state(self)
  if s.channel then s.channel:close() end
end

-- The metadata of one attempt: namespace, then the client's rpc_metadata, then the
-- call's; `authorization: Bearer <api_key>` unless one of those set authorization.
local function call_metadata(s, conn, call_md)
  local md = s.base_metadata
  local user_md, key = conn.rpc_metadata, conn.api_key
  if next(user_md) or (call_md and next(call_md)) or key then
    md = {}
    for k, v in pairs(s.base_metadata) do md[k] = v end
    for k, v in pairs(user_md) do md[k] = v end
    for k, v in pairs(call_md or {}) do md[k] = v end
    if key and md.authorization == nil then md.authorization = "Bearer " .. key end
  end
  return md
end

--- The one RPC path: returns the response table or raises RPCError.
-- opts: rpc_timeout (seconds per attempt; default 30, 70 for long polls), rpc_metadata
-- (table), retry (boolean: retry retryable failures under the client's retry_config; the
-- request is re-sent as is, so its request_id stays the same), track (a table: the call in
-- flight is stored in track.call, so its owner can cancel it with track.call:cancel(); the
-- activity worker cancels its open polls at shutdown this way).
function methods:_rpc(service, method, request, opts)
  local s = state(self)
  -- the connection's fields (channel, metrics, rpc_metadata, api_key) read from it
  -- directly, not through the client state's __index
  local conn = s._conn or s
  local timeout = opts and opts.rpc_timeout
  if timeout ~= nil then
    check_timeout(timeout, "rpc_timeout", 2)
  else
    -- a history read that waits for new events is a long poll too
    local long = LONG_POLL[method] or (type(request) == "table" and request.wait_new_event == true)
    timeout = long and M.LONG_POLL_RPC_TIMEOUT or M.DEFAULT_RPC_TIMEOUT
    if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then  -- the module's defaults, set wrong
      error(("rpc_timeout: expected a non-negative number of seconds (math.huge: none), got %s")
        :format(tostring(timeout)), 0)
    end
  end
  -- metrics: every attempt counts, as in sdk-core (see temporal.metrics)
  local recorder = conn.metrics and conn.metrics:recorder(method, request, LONG_POLL)
  local policy  -- the retry policy, made at the first failure (none on the success path)
  -- how this caller waits, checked before anything is sent: nothing left half-sent
  local mode, waiter = scheduler.wait_mode(method)
  -- the start time only matters to retries (their deadline, the error's "gave up after")
  local attempt, started = 0, opts and opts.retry and core.now()
  while true do
    attempt = attempt + 1
    local sent = recorder and recorder:begin()
    local md = call_metadata(s, conn, opts and opts.rpc_metadata)
    local call = core.unary(conn.channel, service, method, request, timeout, md, opts and opts.raw)
    if opts and opts.track then opts.track.call = call end
    local resp, failure = scheduler.await(call, mode, waiter)
    if recorder then recorder:finish(sent, failure) end
    if resp then return resp end
    if policy == nil then
      policy = opts and opts.retry and s.retry_config and retry.policy(s.retry_config, started) or false
    end
    local wait = policy and policy(failure, attempt)
    if not wait then
      local err = errors.from_rpc(failure, method)
      err.attempts = attempt
      if attempt > 1 then
        err.message = ("%s (gave up after %d attempts in %.1f s)"):format(err.message, attempt, core.now() - started)
      end
      error(err, 0)
    end
    scheduler.sleep(wait)
  end
end

--- The paging loop of the list iterators (workflows, schedules): the next entry of
-- st.current_page, fetching pages with it:fetch_next_page() as needed; nil when the pages or
-- st._limit run out. st holds current_page, current_page_index, next_page_token, _limit
-- (nil: none) and _yielded.
function M.next_paged(it, st)
  if st._limit and st._yielded >= st._limit then return nil end
  while true do
    if st.current_page == nil then
      it:fetch_next_page()
    elseif st.current_page_index > #st.current_page then
      if st.next_page_token == nil then return nil end
      it:fetch_next_page()
    else
      local entry = st.current_page[st.current_page_index]
      st.current_page_index = st.current_page_index + 1
      st._yielded = st._yielded + 1
      return entry
    end
  end
end

-- A shallow copy of t (nil: an empty table).
local function copy(t)
  local c = {}
  if t then
    for k, v in pairs(t) do c[k] = v end
  end
  return c
end

--- Runs the client operation `name` (e.g. "start_workflow") through the `interceptors`
-- given at connect (see temporal.interceptor): returns what the chain returns. `input`
-- holds the operation's arguments as named fields; `header` (Temporal headers: name ->
-- payload) and `rpc_metadata` become fresh tables (copies of what the input had), so the
-- interceptors may edit them without touching the caller's. `fn(input)` performs the
-- operation from the input the chain hands it - it must build its request from that
-- input, including `input.header` where the request has a header, and pass
-- `input.rpc_metadata` to _rpc.
function methods:_intercept(name, input, fn)
  local list = state(self).interceptors
  input.header = copy(input.header)
  input.rpc_metadata = copy(input.rpc_metadata)
  if #list == 0 then return fn(input) end
  return interceptor.run(list, name, input, fn)
end

--- client:new_worker(opts) -> temporal.Worker: serves Lua activities on a task queue (see
-- temporal.worker; loaded on first use).
function methods:new_worker(opts)
  local worker = require("temporal.worker").new(self, opts)
  return worker
end

-- Raw service objects: client.workflow_service:start_workflow_execution{...}
local Service = { __name = "temporal.Service" }
local RAW_CALL = { raw = true }
Service.__index = function(svc, k)
  local name = methods_of(svc._service)[k]
  if not name then return nil end
  local known = { rpc_timeout = true, rpc_metadata = true, retry = true }
  local fn = function(self, request, opts)
    if self ~= svc then
      error(("%s: call it with ':' (service:%s{...})"):format(k, k), 2)
    end
    if request ~= nil and type(request) ~= "table" then
      error(("%s: request must be a table, got %s"):format(k, type(request)), 2)
    end
    -- raw: Timestamps/Durations decode losslessly, so a response re-encodes unchanged
    local call_opts = RAW_CALL  -- only read by _rpc: shared while there are no options
    if opts ~= nil then
      check_options(opts, known, k, 2)
      check_timeout(opts.rpc_timeout, "rpc_timeout", 2)
      check_type(opts.retry, "boolean", "retry", 2)
      check_metadata(opts.rpc_metadata, "rpc_metadata", 2)
      call_opts = { raw = true }
      for o, v in pairs(opts) do call_opts[o] = v end
    end
    return methods._rpc(svc._client, svc._service, name, request or {}, call_opts)
  end
  rawset(svc, k, fn)
  return fn
end
Service.__tostring = function(svc) return "temporal.Service(" .. svc._service .. ")" end

-- ------------------------------------------------------------------ ServiceClient

--- temporal.ServiceClient: the connection (channel, target, identity, rpc_metadata,
-- api_key, retry_config) that one or more Clients share, as Python's ServiceClient.
-- client.service_client is it; temporal.Client.new(service_client, opts) makes another
-- client on it. Fields: target, identity, rpc_metadata and api_key (settable: every
-- client on the connection sees the change), retry_config, system_info, and the raw
-- services workflow_service, operator_service, health_service (calls carry the namespace
-- of the client connect made).
local ServiceClient = { __name = "temporal.ServiceClient" }
local service_client_methods = {}
local SERVICE_CLIENT_FIELDS = {
  target = true, identity = true, rpc_metadata = true, api_key = true, retry_config = true,
  system_info = true,
}
check_self_on_insert(service_client_methods, ServiceClient, "temporal.ServiceClient", "service_client")
ServiceClient.__index = function(self, k)
  local m = service_client_methods[k]
  if m ~= nil then return m end
  local conn = state(self)
  if SERVICES[k] then return state(conn._root)[k] end
  if SERVICE_CLIENT_FIELDS[k] then return conn[k] end
  return nil
end
ServiceClient.__newindex = function(self, k, v)
  local set = settable[k]
  if not set then error(("temporal.ServiceClient: field '%s' cannot be set"):format(tostring(k)), 2) end
  state(self)[k] = set(v)
end
ServiceClient.__tostring = function(self)
  return ("temporal.ServiceClient(%s)"):format(state(self).target)
end
ServiceClient.__close = function(self) self:close() end
M.ServiceClient = ServiceClient

--- service_client:close(): closes the connection of every client made on it.
function service_client_methods:close()
  local conn = state(self)
  if conn.channel then conn.channel:close() end
end

--- service_client:check_health(opts) -> as client:check_health.
function service_client_methods:check_health(opts)
  return state(self)._root:check_health(opts)
end

local REDACTED = "<redacted>"
M.REDACTED = REDACTED

local function copy_table(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The connection's settings as connect took them (defaults filled in), secrets replaced
-- by "<redacted>": api_key, the authorization metadata, the TLS private key, the proxy
-- password.
local function connection_config(conn)
  local st = conn._settings
  local md = copy_table(conn.rpc_metadata)
  for k in pairs(md) do
    if k:lower() == "authorization" then md[k] = REDACTED end
  end
  local tls = copy_table(st.tls)
  if type(tls) == "table" and tls.client_private_key ~= nil then tls.client_private_key = REDACTED end
  local proxy = st.http_connect_proxy
  if type(proxy) == "table" then
    proxy = { target = proxy.target, basic_auth = proxy.basic_auth and {
      proxy.basic_auth[1] or proxy.basic_auth.user, REDACTED } or nil }
  end
  local retry_config = conn.retry_config
  if type(retry_config) == "table" then retry_config = copy_table(retry_config) end
  return {
    target = conn.target,
    identity = conn.identity,
    rpc_metadata = md,
    api_key = conn.api_key and REDACTED or nil,
    tls = tls or false,
    retry_config = retry_config,
    keep_alive = copy_table(st.keep_alive),
    http_connect_proxy = proxy,
    use_proxy_env = st.use_proxy_env or false,
    max_receive_message_length = st.max_receive_message_length or 128 * 1024 * 1024,
    connect_timeout = st.connect_timeout or 10,
    lazy = st.lazy or false,
  }
end

--- service_client:config() -> the connection's settings (see client:config()).
function service_client_methods:config()
  return connection_config(state(self))
end

-- ------------------------------------------------------------------ Client construction

local REJECT_CONDITIONS = { NONE = true, NOT_OPEN = true, NOT_COMPLETED_CLEANLY = true }

local function check_reject_condition(v, level)
  if v == nil then return nil end
  local up = type(v) == "string" and v:upper()
  if not REJECT_CONDITIONS[up] then
    error(("default_workflow_query_reject_condition: expected NONE, NOT_OPEN or NOT_COMPLETED_CLEANLY, got %s")
      :format(type(v) == "string" and ("'" .. v .. "'") or type(v)), level + 1)
  end
  return up
end

-- A Client on connection `conn` with the client-level options (namespace, data_converter,
-- interceptors, default_workflow_query_reject_condition), checked.
local function new_client(conn, opts, level)
  check_type(opts.namespace, "string", "namespace", level + 1)
  check_type(opts.data_converter, "table", "data_converter", level + 1)
  if opts.data_converter ~= nil
    and getmetatable(opts.data_converter) ~= require("temporal.converter").DataConverter then
    error("data_converter: expected a temporal.DataConverter (temporal.DataConverter.new{...})", level + 1)
  end
  local interceptors = interceptor.check(opts.interceptors, level + 1)
  local namespace = opts.namespace or "default"
  local s = setmetatable({
    namespace = namespace,
    data_converter = opts.data_converter,
    base_metadata = { ["temporal-namespace"] = namespace },
    interceptors = interceptors,
    default_workflow_query_reject_condition =
      check_reject_condition(opts.default_workflow_query_reject_condition, level + 1),
    service_client = conn.service_client,
    _conn = conn,
  }, { __index = conn })
  local client = core.handle(Client, s)
  for field, service in pairs(SERVICES) do
    s[field] = setmetatable({ _client = client, _service = service }, Service)
  end
  return client
end

local CLIENT_OPTIONS = {
  namespace = true, data_converter = true, interceptors = true,
  default_workflow_query_reject_condition = true,
}

--- temporal.Client.new(service_client, opts) -> Client on an existing connection
-- (Python's Client(service_client, ...)): no new channel; retries, credentials,
-- rpc_metadata and identity are the connection's. opts: namespace ("default"),
-- data_converter (the default converter), interceptors ({}),
-- default_workflow_query_reject_condition (nil). service_client: a
-- temporal.ServiceClient (client.service_client) or a Client (its connection).
--   local other = temporal.Client.new(client.service_client, { namespace = "team-b" })
function Client.new(service_client, opts)
  if getmetatable(service_client) == Client then service_client = state(service_client).service_client end
  if getmetatable(service_client) ~= ServiceClient then
    error("Client.new: expected a temporal.ServiceClient (client.service_client), got "
      .. type(service_client), 2)
  end
  opts = check_options(opts, CLIENT_OPTIONS, "Client.new", 2)
  return new_client(state(service_client), opts, 2)
end
M.new = Client.new

--- client:with(opts) -> Client on the same connection, with this client's namespace,
-- data_converter, interceptors and default_workflow_query_reject_condition unless opts
-- (the options of temporal.Client.new) say otherwise.
--   local team_b = client:with{ namespace = "team-b" }
function methods:with(opts)
  opts = check_options(opts, CLIENT_OPTIONS, "with", 2)
  local s = state(self)
  local merged = {
    namespace = s.namespace,
    data_converter = rawget(s, "data_converter"),
    interceptors = s.interceptors,
    default_workflow_query_reject_condition = s.default_workflow_query_reject_condition,
  }
  for k, v in pairs(opts) do merged[k] = v end
  return new_client(s._conn, merged, 2)
end

--- client:config() -> the client's settings: namespace, data_converter, interceptors (a
-- copy of the list), default_workflow_query_reject_condition, service_client, and the
-- connection's (service_client:config()): target, identity, rpc_metadata, api_key, tls,
-- retry_config, keep_alive, http_connect_proxy, use_proxy_env,
-- max_receive_message_length, connect_timeout, lazy. Secrets read "<redacted>": api_key,
-- an authorization metadata value, tls.client_private_key, the proxy password.
function methods:config()
  local s = state(self)
  local cfg = connection_config(s._conn)
  cfg.namespace = s.namespace
  cfg.data_converter = M.data_converter(self)
  cfg.interceptors = copy_table(s.interceptors)
  cfg.default_workflow_query_reject_condition = s.default_workflow_query_reject_condition
  cfg.service_client = s.service_client
  return cfg
end

local CONNECT_OPTIONS = {
  namespace = true, identity = true, rpc_metadata = true, lazy = true, tls = true,
  keep_alive = true, http_connect_proxy = true, max_receive_message_length = true,
  connect_timeout = true, use_proxy_env = true, data_converter = true, api_key = true,
  metrics = true,
  retry_config = true,
  interceptors = true,
  default_workflow_query_reject_condition = true,
}

-- http_connect_proxy: "host:port" or { target = "host:port", basic_auth = { user, password } }.
local function proxy_options(p, level)
  if p == nil or type(p) == "string" then return p end
  if type(p) ~= "table" then
    error("http_connect_proxy: expected a 'host:port' string or a table, got " .. type(p), level + 1)
  end
  check_options(p, { target = true, basic_auth = true }, "http_connect_proxy", level + 1)
  if type(p.target) ~= "string" then error("http_connect_proxy.target: expected a 'host:port' string", level + 1) end
  local auth = p.basic_auth
  if auth == nil then return p.target end
  if type(auth) ~= "table" then error("http_connect_proxy.basic_auth: expected { user, password }", level + 1) end
  local user, password = auth[1] or auth.user, auth[2] or auth.password
  if type(user) ~= "string" or type(password) ~= "string" then
    error("http_connect_proxy.basic_auth: expected { user, password } (two strings)", level + 1)
  end
  return p.target, user, password
end

--- temporal.connect(target, opts) -> Client
-- opts: namespace ("default"), identity ("<pid>@<hostname>"), rpc_metadata ({}),
-- lazy (false: the connect checks the server with GetSystemInfo), tls (false | true |
-- { server_root_ca_cert, domain, client_cert, client_private_key }), api_key (sent as
-- `authorization: Bearer <key>` unless rpc_metadata has authorization; turns tls on
-- unless tls = false; `client.api_key = k` replaces it for the next call), keep_alive
-- ({ interval = 30, timeout = 15 } or false), http_connect_proxy ("host:port" or
-- { target = "host:port", basic_auth = { user, password } }), use_proxy_env (false: the
-- http_proxy/https_proxy/grpc_proxy variables are ignored), max_receive_message_length
-- (128 MiB), connect_timeout (10 s), retry_config (see temporal.retry; nil or true gives
-- the defaults, false disables retries), interceptors (see temporal.interceptor), metrics (a
-- temporal.metrics registry; default temporal.metrics.default(), none unless set; false:
-- none), data_converter
-- (temporal.converter.default, loaded on first use): converts workflow arguments,
-- results, memos, search attributes and failures; default_workflow_query_reject_condition
-- ("NONE" | "NOT_OPEN" | "NOT_COMPLETED_CLEANLY"; nil: the server's) for every query that
-- sets no reject_condition of its own. Options under their Python SDK names
-- (keep_alive_config, ...) are refused with the Lua name to use.
-- Without a target (`temporal.connect()` or `temporal.connect(nil, opts)`) the address
-- and options come from the environment and the TOML profile (see temporal.envconfig);
-- explicit options win over them.
--   local client = temporal.connect("my-ns.a1b2c.tmprl.cloud:7233",
--     { namespace = "my-ns.a1b2c", api_key = os.getenv("MY_KEY") })
function M.connect(target, opts)
  if target == nil then
    local env_target, env_opts = require("temporal.envconfig").load_connect_config()
    target = env_target
    if opts ~= nil and type(opts) ~= "table" then
      error("connect: options must be a table, got " .. type(opts), 2)
    end
    local merged = {}
    for k, v in pairs(env_opts) do merged[k] = v end
    for k, v in pairs(opts or {}) do merged[k] = v end
    opts = merged
  end
  if type(target) ~= "string" or target == "" then
    error("connect: target must be a 'host:port' string, got " .. type(target), 2)
  end
  if target:find("\0", 1, true) then error("connect: target contains a NUL byte", 2) end
  opts = check_options(opts, CONNECT_OPTIONS, "connect", 2)
  check_type(opts.namespace, "string", "namespace", 2)
  check_type(opts.identity, "string", "identity", 2)
  check_type(opts.lazy, "boolean", "lazy", 2)
  check_timeout(opts.connect_timeout, "connect_timeout", 2)
  check_type(opts.data_converter, "table", "data_converter", 2)
  local max_recv = opts.max_receive_message_length
  if max_recv ~= nil and (compat.tointeger(max_recv) == nil or max_recv < 1 or max_recv > 0x7fffffff) then
    error(("max_receive_message_length: expected an integer number of bytes in 1..2147483647, got %s")
      :format(type(max_recv) == "number" and tostring(max_recv) or type(max_recv)), 2)
  end
  check_metadata(opts.rpc_metadata, "rpc_metadata", 2)
  check_type(opts.api_key, "string", "api_key", 2)
  local registry = metrics._check_option(opts.metrics, 2)
  local retry_config = retry.check_config(opts.retry_config, 2)
  interceptor.check(opts.interceptors, 2)
  check_reject_condition(opts.default_workflow_query_reject_condition, 2)
  local proxy, proxy_user, proxy_password = proxy_options(opts.http_connect_proxy, 2)
  local tls = opts.tls
  if tls == nil and opts.api_key then tls = true end
  local keep_alive = opts.keep_alive
  if keep_alive == nil then keep_alive = { interval = 30, timeout = 15 } end
  if keep_alive ~= false then
    check_type(keep_alive, "table", "keep_alive", 2)
    check_options(keep_alive, { interval = true, timeout = true }, "keep_alive", 2)
    check_type(keep_alive.interval, "number", "keep_alive.interval", 2)
    check_type(keep_alive.timeout, "number", "keep_alive.timeout", 2)
    for _, name in ipairs({ "interval", "timeout" }) do
      local v = keep_alive[name]
      -- gRPC takes int milliseconds; keep_alive = false turns pings off
      if v ~= nil and (type(v) ~= "number" or not (v > 0) or v > 2147483) then  -- luacheck: ignore 581
        error(("keep_alive.%s: expected seconds in (0, 2147483] (keep_alive = false turns pings off), got %s")
          :format(name, tostring(v)), 2)
      end
    end
  end
  local channel = core.channel(target, {
    tls = tls,
    max_receive_message_length = opts.max_receive_message_length,
    keep_alive_time = keep_alive and (keep_alive.interval or 30) or 0,
    keep_alive_timeout = keep_alive and (keep_alive.timeout or 15) or nil,
    http_proxy = proxy,
    http_proxy_user = proxy_user,
    http_proxy_password = proxy_password,
    use_proxy_env = opts.use_proxy_env,
  })
  -- The connection (Python's ServiceClient), shared by every Client made on it.
  local conn = {
    target = target,
    identity = opts.identity or (core.pid() .. "@" .. core.hostname()),
    channel = channel,
    rpc_metadata = opts.rpc_metadata or {},
    api_key = opts.api_key,
    metrics = registry,
    retry_config = retry_config,
    _settings = {
      tls = tls, keep_alive = keep_alive, http_connect_proxy = opts.http_connect_proxy,
      use_proxy_env = opts.use_proxy_env, max_receive_message_length = opts.max_receive_message_length,
      connect_timeout = opts.connect_timeout, lazy = opts.lazy,
    },
  }
  conn.service_client = core.handle(ServiceClient, conn)
  local client = new_client(conn, {
    namespace = opts.namespace, data_converter = opts.data_converter, interceptors = opts.interceptors,
    default_workflow_query_reject_condition = opts.default_workflow_query_reject_condition,
  }, 2)
  conn._root = client
  local s = conn
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
