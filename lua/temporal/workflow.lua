--- Workflows: the Client's workflow methods, WorkflowHandle and WorkflowUpdateHandle.
--
-- The behaviour follows the Python SDK's temporalio.client (names, defaults, request
-- fields, error classes); the shapes are Lua's: one options table per call, durations in
-- seconds, enums by the short upper-case names Python uses.
--
--   local h = client:start_workflow("Greet", { id = "order-1", task_queue = "tq", args = { "World" } })
--   print(h:result())                                  --> Hello, World!
--   h = client:get_workflow_handle("order-1")
--   h:signal("approve", 1, 2)                          -- varargs are the arguments
--   h:signal_with_options("approve", { args = { 1, 2 }, rpc_timeout = 5 })
--   print(h:describe().status)                         --> COMPLETED
--
-- Calls that take varargs (signal, query) have a `*_with_options(name, opts)` twin
-- taking `args` plus `rpc_timeout` / `rpc_metadata`; every other call takes them in its
-- options table. `rpc_timeout` is seconds per RPC (default 30, 70 for long polls);
-- `rpc_metadata` is a table of headers that override the client's.
--
-- Each call runs through the client's interceptors (see temporal.interceptor) as the
-- operation the Python SDK names it after (start_workflow, signal_workflow, ...).
--
-- Transient RPC failures are retried as the client's retry_config says (see
-- temporal.retry); a request id made for a call is the same on every attempt, so the
-- server deduplicates.
local client_mod = require("temporal.client")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local core = require("temporal.core")
local errors = require("temporal.errors")

local M = {}

local methods = client_mod.methods
local state = core.handle_state
local WS = client_mod.SERVICES.workflow_service

-- ------------------------------------------------------------------ helpers

local uuid4 = client_mod.uuid4
local converter_of = client_mod.data_converter

-- Option checking: every message names the call and the option.
local function fail(what, fmt, ...)
  error(what .. ": " .. fmt:format(...), 0)
end

local function check_opts(opts, known, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    fail(what, "options must be a table, got %s", type(opts))
  end
  for k in pairs(opts) do
    if not known[k] then error(client_mod.unknown_option_message(what, k), 0) end
  end
  return opts
end

local function opt_type(what, opts, name, expected, required)
  local v = opts[name]
  if v == nil then
    if required then fail(what, "option '%s' is required", name) end
    return nil
  end
  if type(v) ~= expected then
    fail(what, "option '%s' must be a %s, got %s", name, expected, type(v))
  end
  return v
end

local function opt_string(what, opts, name, required)
  local v = opt_type(what, opts, name, "string", required)
  if required and v == "" then fail(what, "option '%s' must not be empty", name) end
  return v
end

local function opt_duration(what, opts, name)
  local v = opt_type(what, opts, name, "number")
  if v ~= nil and (v ~= v or v < 0 or v == math.huge) then
    fail(what, "option '%s' must be a non-negative number of seconds, got %s", name, tostring(v))
  end
  return v
end

local function opt_enum(what, opts, name, allowed)
  local v = opts[name]
  if v == nil then return nil end
  if type(v) ~= "string" then
    fail(what, "option '%s' must be a string, got %s", name, type(v))
  end
  local up = v:upper()
  if not allowed[up] then
    local names = {}
    for k in pairs(allowed) do names[#names + 1] = k end
    table.sort(names)
    fail(what, "option '%s' must be one of %s, got '%s'", name, table.concat(names, ", "), v)
  end
  return up
end

local function set_of(...)
  local t = {}
  for _, v in ipairs({ ... }) do t[v] = true end
  return t
end

local RPC_OPTIONS = { "rpc_timeout", "rpc_metadata" }
local function known_with_rpc(...)
  local t = set_of(...)
  for _, k in ipairs(RPC_OPTIONS) do t[k] = true end
  return t
end

-- Checks rpc_timeout and rpc_metadata (no table made: most calls only check).
local function check_rpc(what, opts)
  opt_duration(what, opts, "rpc_timeout")
  local md = opt_type(what, opts, "rpc_metadata", "table")
  if md then
    for k, v in pairs(md) do
      if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "table") then
        fail(what, "option 'rpc_metadata' must map strings to strings, got %s = %s", type(k), type(v))
      end
    end
  end
end

-- args: a sequence; `.n` (as table.pack sets) counts trailing nils.
local function check_args(what, name, args)
  if args == nil then return nil end
  if type(args) ~= "table" then
    fail(what, "option '%s' must be a sequence (table), got %s", name, type(args))
  end
  local n = args.n
  if n ~= nil and (compat.math_type(n) ~= "integer" or n < 0) then
    fail(what, "option '%s': field n must be a non-negative integer", name)
  end
  return args
end

-- Python's `arg` (one argument) beside `args`: a copy of opts with `arg` turned into
-- `args = { arg, n = 1 }`, so interceptors and the request see only `args`.
local function fold_arg(what, opts)
  if opts.arg == nil then return opts end
  if opts.args ~= nil then fail(what, "give option 'arg' (one argument) or 'args' (a list), not both") end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.args, o.arg = { opts.arg, n = 1 }, nil
  return o
end

local function arg_count(args)
  if args == nil then return 0 end
  return args.n or #args
end

-- Payloads message (or nil when there are no values), through the data converter.
local function encode_payloads(dc, args)
  if arg_count(args) == 0 then return nil end
  return { payloads = dc:to_payloads(args) }
end

local function decode_payloads(dc, payloads_msg)
  local list = payloads_msg and payloads_msg.payloads
  if list == nil or #list == 0 then return { n = 0 } end
  return dc:from_payloads(list)
end

local function first_value(dc, payloads_msg)
  local values = decode_payloads(dc, payloads_msg)
  if values.n == 0 then return nil end
  return values[1]
end

-- ------------------------------------------------------------------ the RPC path with retries

-- Every workflow RPC asks the client's path to retry transient failures (retry = true);
-- a request id made for a call stays the same on every attempt.
-- Without a per-call rpc_timeout or rpc_metadata (most calls) the options are one shared
-- table (_rpc only reads them; an empty rpc_metadata is no metadata there either).
-- (methods._rpc is looked up per call, not through the client's __index function.)
local RETRY_ONLY = { retry = true }
local function rpc(client, method, request, rpc_opts)
  local timeout = rpc_opts and rpc_opts.rpc_timeout
  local md = rpc_opts and rpc_opts.rpc_metadata
  if timeout == nil and (md == nil or next(md) == nil) then
    return methods._rpc(client, WS, method, request, RETRY_ONLY)
  end
  return methods._rpc(client, WS, method, request, { rpc_timeout = timeout, rpc_metadata = md, retry = true })
end
M._rpc = rpc

-- ------------------------------------------------------------------ interceptors

-- Runs operation `name` through the client's interceptors (see temporal.interceptor):
-- the input is a copy of the call's (checked) options with `fields` on top - the
-- operation's other arguments - plus header and rpc_metadata. `fn(input)` builds the
-- request from the input it is handed; the input also serves as rpc()'s options.
local function intercept(client, name, fields, opts, fn)
  local input = {}
  for k, v in pairs(opts) do input[k] = v end
  for k, v in pairs(fields) do input[k] = v end
  return client:_intercept(name, input, fn)
end

-- The request's Temporal header from the input's: nil when there is none.
local function header_proto(header)
  if header == nil or next(header) == nil then return nil end
  return { fields = header }
end

-- ------------------------------------------------------------------ start options

local ID_REUSE = set_of("UNSPECIFIED", "ALLOW_DUPLICATE", "ALLOW_DUPLICATE_FAILED_ONLY", "REJECT_DUPLICATE",
  "TERMINATE_IF_RUNNING")
local ID_CONFLICT = set_of("UNSPECIFIED", "FAIL", "USE_EXISTING", "TERMINATE_EXISTING")

local START_COMMON = {
  "args", "arg", "id", "task_queue", "execution_timeout", "run_timeout", "task_timeout",
  "id_reuse_policy", "id_conflict_policy", "retry_policy", "cron_schedule", "memo",
  "search_attributes", "static_summary", "static_details", "start_delay", "priority",
  "versioning_override",
}
local START_OPTIONS = known_with_rpc("start_signal", "start_signal_args", "request_eager_start",
  compat.unpack(START_COMMON))
local WITH_START_OPTIONS = set_of(compat.unpack(START_COMMON))

local function retry_policy_proto(what, rp)
  if rp == nil then return nil end
  if type(rp) ~= "table" then fail(what, "option 'retry_policy' must be a table, got %s", type(rp)) end
  local w = what .. ": retry_policy"
  check_opts(rp, set_of("initial_interval", "backoff_coefficient", "maximum_interval",
    "maximum_attempts", "non_retryable_error_types"), w)
  local initial = opt_duration(w, rp, "initial_interval") or 1
  local coeff = opt_type(w, rp, "backoff_coefficient", "number") or 2.0
  local max_interval = opt_duration(w, rp, "maximum_interval")
  local attempts = opt_type(w, rp, "maximum_attempts", "number") or 0
  local nret = opt_type(w, rp, "non_retryable_error_types", "table")
  if not (coeff >= 1 and coeff < math.huge) then
    fail(w, "option 'backoff_coefficient' must be at least 1 (and finite), got %s", coeff)
  end
  if max_interval and max_interval < initial then
    fail(w, "option 'maximum_interval' must not be less than initial_interval")
  end
  if compat.math_type(attempts) ~= "integer" or attempts < 0 then
    fail(w, "option 'maximum_attempts' must be a non-negative integer, got %s", tostring(attempts))
  end
  for i, v in ipairs(nret or {}) do
    if type(v) ~= "string" then fail(w, "option 'non_retryable_error_types'[%d] must be a string", i) end
  end
  return {
    initial_interval = initial,
    backoff_coefficient = coeff + 0.0,
    maximum_interval = max_interval,
    maximum_attempts = attempts,
    non_retryable_error_types = nret,
  }
end
M.retry_policy_proto = retry_policy_proto

local function priority_proto(what, p)
  if p == nil then return nil end
  if type(p) ~= "table" then fail(what, "option 'priority' must be a table, got %s", type(p)) end
  local w = what .. ": priority"
  check_opts(p, set_of("priority_key", "fairness_key", "fairness_weight"), w)
  local key = opt_type(w, p, "priority_key", "number")
  if key ~= nil and (compat.math_type(key) ~= "integer" or key < 0) then
    fail(w, "option 'priority_key' must be a non-negative integer, got %s", tostring(key))
  end
  opt_string(w, p, "fairness_key")
  local weight = opt_type(w, p, "fairness_weight", "number")
  return { priority_key = key, fairness_key = p.fairness_key, fairness_weight = weight and weight + 0.0 }
end
M.priority_proto = priority_proto

local function user_metadata(dc, what, opts, summary_name, details_name)
  local summary = opt_string(what, opts, summary_name)
  local details = opt_string(what, opts, details_name)
  if summary == nil and details == nil then return nil end
  return {
    summary = summary ~= nil and dc:to_payloads({ summary, n = 1 })[1] or nil,
    details = details ~= nil and dc:to_payloads({ details, n = 1 })[1] or nil,
  }
end
M.user_metadata = user_metadata

-- The search_attributes option as a SearchAttributes message; a plain (untyped) value
-- is an error naming the call and the attribute.
local function search_attributes_proto(dc, what, sa)
  local ok, msg = pcall(dc.to_search_attributes, dc, sa)
  if not ok then fail(what, "option 'search_attributes': %s", tostring(msg)) end
  return msg
end
M.search_attributes_proto = search_attributes_proto

-- The fields StartWorkflowExecution, SignalWithStart and multi-op start share.
local function start_request(client, what, workflow, opts)
  if type(workflow) ~= "string" or workflow == "" then
    fail(what, "workflow must be a workflow type name (non-empty string), got %s", type(workflow))
  end
  local s = state(client)
  local dc = converter_of(client)
  local id = opt_string(what, opts, "id", true)
  local task_queue = opt_string(what, opts, "task_queue", true)
  local args = check_args(what, "args", opts.args)
  local memo = opt_type(what, opts, "memo", "table")
  local sa = opt_type(what, opts, "search_attributes", "table")
  local cron = opt_string(what, opts, "cron_schedule")
  local versioning = opt_type(what, opts, "versioning_override", "table")
  return {
    namespace = s.namespace,
    workflow_id = id,
    workflow_type = { name = workflow },
    task_queue = { name = task_queue },
    input = encode_payloads(dc, args),
    workflow_execution_timeout = opt_duration(what, opts, "execution_timeout"),
    workflow_run_timeout = opt_duration(what, opts, "run_timeout"),
    workflow_task_timeout = opt_duration(what, opts, "task_timeout"),
    identity = s.identity,
    request_id = uuid4(),
    workflow_id_reuse_policy = opt_enum(what, opts, "id_reuse_policy", ID_REUSE) or "ALLOW_DUPLICATE",
    workflow_id_conflict_policy = opt_enum(what, opts, "id_conflict_policy", ID_CONFLICT),
    retry_policy = retry_policy_proto(what, opts.retry_policy),
    cron_schedule = cron ~= "" and cron or nil,
    memo = memo and dc:to_memo(memo) or nil,
    search_attributes = sa and search_attributes_proto(dc, what, sa) or nil,
    user_metadata = user_metadata(dc, what, opts, "static_summary", "static_details"),
    workflow_start_delay = opt_duration(what, opts, "start_delay"),
    priority = priority_proto(what, opts.priority),
    versioning_override = versioning,
  }
end

-- run_id: the running (or closed) execution's; first_run_id: the first run of its chain,
-- when the server says (as Python 1.35).
local function already_started(err, workflow_id, workflow_type)
  local d = errors.detail(err, "WorkflowExecutionAlreadyStartedFailure")
  if d == nil then return nil end
  return errors.new("WorkflowAlreadyStartedError", {
    message = "Workflow execution already started",
    workflow_id = workflow_id,
    workflow_type = workflow_type,
    run_id = d.run_id,
    first_run_id = (d.first_execution_run_id ~= "" and d.first_execution_run_id) or nil,
    start_request_id = d.start_request_id,
    cause = err,
  })
end

-- ------------------------------------------------------------------ WorkflowHandle

-- Handles are userdata (type() and __name tell them apart, fields cannot be assigned by
-- mistake); their fields live in the state table behind core.handle.

local function handle_class(name, class_methods, tostring_fn)
  return {
    __name = name,
    __index = function(self, k)
      local m = class_methods[k]
      if m ~= nil then return m end
      return state(self)[k]
    end,
    __newindex = function(_, k)
      error(("%s: field '%s' cannot be set"):format(name, tostring(k)), 2)
    end,
    __tostring = tostring_fn,
  }
end

local handle_methods = {}
-- A WorkflowHandle never changes after it is made: its fields are the userdata's own user
-- values (core.fields_handle), in this order, no state table. One from
-- get_workflow_handle(id, { run_id = ... }) is one userdata of three slots (88 bytes)
-- besides its id and run id strings.
-- result_run_id is stored only when it differs from run_id (a handle from
-- get_workflow_handle has both equal, a started one only result_run_id).
local HANDLE_FIELDS = { "_client", "id", "run_id", "result_run_id", "first_execution_run_id", "start_response" }
local HANDLE_FALLBACKS = { result_run_id = "run_id" }
local WorkflowHandle = {
  __name = "temporal.WorkflowHandle",
  __index = core.fields_index(handle_methods, HANDLE_FIELDS, HANDLE_FALLBACKS),
  __fields = HANDLE_FIELDS,
  __field_fallbacks = HANDLE_FALLBACKS,
  __newindex = function(_, k)
    error(("temporal.WorkflowHandle: field '%s' cannot be set"):format(tostring(k)), 2)
  end,
  __tostring = function(h)
    return ("temporal.WorkflowHandle(id=%s, run_id=%s)"):format(h.id, tostring(h.run_id or h.result_run_id))
  end,
}
M.WorkflowHandle = WorkflowHandle
M.WorkflowHandle_methods = handle_methods

local function new_handle(client, id, run_id, result_run_id, first_execution_run_id, start_response)
  if result_run_id == run_id then result_run_id = nil end
  return core.fields_handle(WorkflowHandle, client, id, run_id, result_run_id, first_execution_run_id,
    start_response)
end

-- The input fields naming the handle's run (chain): id, run_id, first_execution_run_id.
local function execution_fields(h)
  return { id = h.id, run_id = h.run_id, first_execution_run_id = h.first_execution_run_id }
end

local function check_self(h, what)
  if getmetatable(h) ~= WorkflowHandle then
    error(what .. ": call it with ':' on a WorkflowHandle (h:" .. what .. "(...))", 3)
  end
end

--- client:start_workflow(workflow, opts) -> WorkflowHandle
-- workflow: the workflow type name. opts (id and task_queue required):
--   args (sequence; `.n` honoured so nils survive) or arg (one argument, Python's `arg`;
--   not both), id, task_queue,
--   execution_timeout, run_timeout, task_timeout (seconds),
--   id_reuse_policy ("ALLOW_DUPLICATE" (default), "ALLOW_DUPLICATE_FAILED_ONLY",
--   "REJECT_DUPLICATE", "TERMINATE_IF_RUNNING"), id_conflict_policy ("UNSPECIFIED"
--   (default: fail), "FAIL", "USE_EXISTING", "TERMINATE_EXISTING"),
--   retry_policy { initial_interval = 1, backoff_coefficient = 2.0, maximum_interval,
--   maximum_attempts = 0 (unlimited), non_retryable_error_types },
--   cron_schedule, memo (table of values), search_attributes (typed, see
--   temporal.converter), static_summary, static_details (strings), start_delay (seconds),
--   start_signal + start_signal_args (signal-with-start), priority { priority_key,
--   fairness_key, fairness_weight }, request_eager_start (false; only for a worker in
--   this process), versioning_override (the proto table, e.g. { auto_upgrade = true }),
--   rpc_timeout, rpc_metadata.
-- The handle's first_execution_run_id is the run chain's first run when the call started
-- the workflow (signal-with-start: only when it started one, as Python 1.35).
-- Raises WorkflowAlreadyStartedError (workflow_id, workflow_type, run_id, first_run_id) when a
-- workflow with that id is running (or closed, per id_reuse_policy); RPCError otherwise.
--   local h = client:start_workflow("Greet", { id = "order-1", task_queue = "tq", args = { "World" } })
local send_start
-- rpc_opts: the options rpc() takes (default: inp).
local function do_start(self, what, workflow, inp, rpc_opts)
  local req = start_request(self, what, workflow, inp)
  req.header = header_proto(inp.header)
  local eager = opt_type(what, inp, "request_eager_start", "boolean")
  local signal = opt_string(what, inp, "start_signal")
  local signal_args = check_args(what, "start_signal_args", inp.start_signal_args)
  if signal_args ~= nil and signal == nil then
    fail(what, "option 'start_signal_args' needs option 'start_signal'")
  end
  local method = "StartWorkflowExecution"
  if signal ~= nil then
    method = "SignalWithStartWorkflowExecution"
    req.signal_name = signal
    req.signal_input = encode_payloads(converter_of(self), signal_args)
    if eager then fail(what, "option 'request_eager_start' cannot be used with 'start_signal'") end
  else
    req.request_eager_execution = eager or nil
  end
  return send_start(self, method, req, rpc_opts or inp, workflow, signal)
end

-- Sends a start request (StartWorkflowExecution or SignalWithStart): the new handle, or
-- WorkflowAlreadyStartedError / RPCError.
send_start = function(self, method, req, rpc_opts, workflow, signal)
  local ok, resp = pcall(rpc, self, method, req, rpc_opts)
  if not ok then
    if errors.is(resp, "RPCError") and resp.status == "ALREADY_EXISTS" then
      error(already_started(resp, req.workflow_id, workflow) or resp, 0)
    end
    error(resp, 0)
  end
  -- As Python 1.35: the first run of the chain the server reports, else this run when
  -- the call started it (always for a start; signal-with-start says `started`).
  local first = resp.first_execution_run_id
  if first == nil or first == "" then
    first = (signal == nil or resp.started) and resp.run_id or nil
  end
  return new_handle(self, req.workflow_id, nil, resp.run_id, first, resp)
end

-- The rpc() options of a call made without interceptors: the call's options themselves,
-- unless they carry rpc_metadata, which is copied as the interceptor input's would be (the
-- call uses the metadata as it was when it was made, also on a retry).
local function rpc_options(opts)
  local md = opts.rpc_metadata
  if md == nil or next(md) == nil then return opts end
  local c = {}
  for k, v in pairs(md) do c[k] = v end
  return { rpc_timeout = opts.rpc_timeout, rpc_metadata = c }
end

-- The fast path of the common start: when every option given is one of FAST_START and
-- its checker accepts it (id and task_queue given, no interceptors), the request is built
-- straight from the options. Anything else - another option, a value a checker refuses -
-- takes the full path below, which raises the same errors in the same order as always.
local function is_name(v) return type(v) == "string" and v ~= "" end
local function is_duration(v) return type(v) == "number" and v >= 0 and v ~= math.huge end  -- NaN: false
local function is_args(v)
  if type(v) ~= "table" then return false end
  local n = v.n
  return n == nil or (compat.math_type(n) == "integer" and n >= 0)
end
local FAST_START = {
  id = is_name,
  task_queue = is_name,
  args = is_args,
  execution_timeout = is_duration, run_timeout = is_duration, task_timeout = is_duration,
  start_delay = is_duration, rpc_timeout = is_duration,
  cron_schedule = function(v) return type(v) == "string" end,
  id_reuse_policy = function(v) return type(v) == "string" and ID_REUSE[v:upper()] ~= nil end,
  id_conflict_policy = function(v) return type(v) == "string" and ID_CONFLICT[v:upper()] ~= nil end,
  request_eager_start = function(v) return type(v) == "boolean" end,
  rpc_metadata = function(md)
    if type(md) ~= "table" then return false end
    for k, v in pairs(md) do
      if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "table") then return false end
    end
    return true
  end,
}

-- Nearly every start gives id, task_queue and args only: one C call checks that shape
-- (no metatable, no other key, those types), the rest of their checks follow inline.
local SIMPLE_START = { id = "string", task_queue = "string", args = "table" }
local keys_within = core.keys_within
local function fast_start_ok(opts)
  if keys_within(opts, SIMPLE_START) then
    local id, task_queue, args = opts.id, opts.task_queue, opts.args
    if id == nil or id == "" or task_queue == nil or task_queue == "" then return false end
    return args == nil or is_args(args)
  end
  if type(opts) ~= "table" or getmetatable(opts) ~= nil then return false end
  local id, task_queue = opts.id, opts.task_queue
  if type(id) ~= "string" or id == "" or type(task_queue) ~= "string" or task_queue == "" then return false end
  for k, v in next, opts do  -- no metatable: next is what pairs would call
    if k ~= "id" and k ~= "task_queue" then
      local ok = FAST_START[k]
      if ok == nil or not ok(v) then return false end
    end
  end
  return true
end

-- The request start_request makes from options fast_start_ok accepted (same fields, same
-- values; the converter is called before the request id is made, as there).
local function fast_start_request(s, dc, workflow, opts)
  local args = opts.args
  local input = nil
  if args ~= nil and (args.n or #args) ~= 0 then input = { payloads = dc:to_payloads(args) } end
  local req = {
    namespace = s.namespace,
    workflow_id = opts.id,
    workflow_type = { name = workflow },
    task_queue = { name = opts.task_queue },
    input = input,
    identity = s.identity,
    request_id = uuid4(),
    workflow_id_reuse_policy = "ALLOW_DUPLICATE",
  }
  local v = opts.id_reuse_policy
  if v ~= nil then req.workflow_id_reuse_policy = v:upper() end
  v = opts.id_conflict_policy
  if v ~= nil then req.workflow_id_conflict_policy = v:upper() end
  v = opts.execution_timeout
  if v ~= nil then req.workflow_execution_timeout = v end
  v = opts.run_timeout
  if v ~= nil then req.workflow_run_timeout = v end
  v = opts.task_timeout
  if v ~= nil then req.workflow_task_timeout = v end
  v = opts.start_delay
  if v ~= nil then req.workflow_start_delay = v end
  v = opts.cron_schedule
  if v ~= nil and v ~= "" then req.cron_schedule = v end
  if opts.request_eager_start then req.request_eager_execution = true end
  return req
end

function methods:start_workflow(workflow, opts)
  local what = "start_workflow"
  local s = state(self)
  if #s.interceptors == 0 and type(workflow) == "string" and workflow ~= "" and fast_start_ok(opts) then
    local rpc_opts = opts.rpc_metadata == nil and opts or rpc_options(opts)
    local req = fast_start_request(s, s.data_converter or converter_of(self), workflow, opts)
    return send_start(self, "StartWorkflowExecution", req, rpc_opts, workflow, nil)
  end
  opts = fold_arg(what, check_opts(opts, START_OPTIONS, what))
  check_rpc(what, opts)
  -- No interceptors: nothing can see or change the input, so the call's checked options
  -- serve as it (no copy; start_workflow has no header option, so the input's would be
  -- empty, and an empty rpc_metadata is none).
  if #s.interceptors == 0 then return do_start(self, what, workflow, opts, rpc_options(opts)) end
  return intercept(self, what, { workflow = workflow }, opts, function(inp)
    return do_start(self, what, inp.workflow, inp)
  end)
end

--- client:execute_workflow(workflow, opts) -> the workflow's result
-- start_workflow (same options) then handle:result(); rpc_timeout applies to the start,
-- rpc_metadata to every call.
function methods:execute_workflow(workflow, opts)
  local h = self:start_workflow(workflow, opts)
  return h:result({ rpc_metadata = opts and opts.rpc_metadata })
end

--- client:get_workflow_handle(workflow_id, { run_id, first_execution_run_id }) -> WorkflowHandle
-- No RPC. run_id pins every call to that run (and result_run_id = run_id);
-- first_execution_run_id makes cancel/terminate/update apply only to that run chain.
local HANDLE_OPTIONS = set_of("run_id", "first_execution_run_id")

function methods:get_workflow_handle(workflow_id, opts)
  local what = "get_workflow_handle"
  if type(workflow_id) ~= "string" or workflow_id == "" then
    fail(what, "workflow_id must be a non-empty string, got %s", type(workflow_id))
  end
  opts = check_opts(opts, HANDLE_OPTIONS, what)
  local run_id = opt_string(what, opts, "run_id")
  return new_handle(self, workflow_id, run_id, run_id, opt_string(what, opts, "first_execution_run_id"))
end

-- ------------------------------------------------------------------ history

local FILTER = set_of("ALL_EVENT", "CLOSE_EVENT")
local HISTORY_OPTIONS = known_with_rpc("wait_new_event", "event_filter_type", "skip_archival",
  "page_size", "next_page_token")

-- An iterator over the events of one run (nil: the latest run); the operation
-- fetch_workflow_history_events, intercepted once per iterator.
local function history_options(what, opts)
  check_rpc(what, opts)
  opt_type(what, opts, "wait_new_event", "boolean")
  opt_type(what, opts, "skip_archival", "boolean")
  local page_size = opt_type(what, opts, "page_size", "number")
  if page_size ~= nil and (compat.math_type(page_size) ~= "integer" or page_size <= 0 or page_size > 0x7fffffff) then
    fail(what, "option 'page_size' must be a positive integer, got %s", tostring(page_size))
  end
  opt_string(what, opts, "next_page_token")
  return opt_enum(what, opts, "event_filter_type", FILTER) or "ALL_EVENT"
end

local function history_iterator(h, run_id, what, opts)
  opts = check_opts(opts, HISTORY_OPTIONS, what)
  history_options(what, opts)
  local client = h._client
  return intercept(client, "fetch_workflow_history_events", { id = h.id, run_id = run_id }, opts, function(inp)
    local filter = history_options(what, inp)
    local token = inp.next_page_token
    local page, index, done = nil, 1, false
    return function()
      while true do
        if page and index <= #page then
          index = index + 1
          return page[index - 1]
        end
        if done then return nil end
        local resp = rpc(client, "GetWorkflowExecutionHistory", {
          namespace = state(client).namespace,
          execution = { workflow_id = inp.id, run_id = inp.run_id },
          maximum_page_size = inp.page_size,
          next_page_token = token,
          wait_new_event = inp.wait_new_event,
          history_event_filter_type = filter,
          skip_archival = inp.skip_archival,
        }, inp)
        page = resp.history and resp.history.events or {}
        index = 1
        token = resp.next_page_token
        if token == nil or token == "" then done = true end
      end
    end
  end)
end

--- h:history_events(opts) -> iterator over history events (tables, as HistoryEvent protos)
-- opts: wait_new_event (false; true keeps long-polling until the workflow closes),
-- event_filter_type ("ALL_EVENT" | "CLOSE_EVENT"), skip_archival (false), page_size,
-- next_page_token, rpc_timeout (per page), rpc_metadata. Uses h.run_id (nil: latest run).
--   for ev in h:history_events{ wait_new_event = true } do print(ev.event_type) end
function handle_methods:history_events(opts)
  check_self(self, "history_events")
  return history_iterator(self, self.run_id, "history_events", opts)
end

--- h:fetch_history(opts) -> list of all history events (same options as history_events,
-- without wait_new_event).
function handle_methods:fetch_history(opts)
  check_self(self, "fetch_history")
  if opts ~= nil and type(opts) == "table" and opts.wait_new_event ~= nil then
    fail("fetch_history", "unknown option 'wait_new_event' (use history_events)")
  end
  local list = {}
  for ev in history_iterator(self, self.run_id, "fetch_history", opts) do list[#list + 1] = ev end
  return list
end

-- ------------------------------------------------------------------ result

local RESULT_OPTIONS = known_with_rpc("follow_runs")

local function failure_error(cause)
  return errors.new("WorkflowFailureError", { message = "Workflow execution failed", cause = cause })
end

--- h:result(opts) -> the workflow's result (decoded), or raises
-- opts: follow_runs (true: follow continue-as-new, retry and cron runs to the last one),
-- rpc_timeout (per long-poll; default 70), rpc_metadata. Waits from h.result_run_id.
-- Raises WorkflowFailureError whose cause is the decoded failure (ApplicationError, ...),
-- CancelledError (details), TerminatedError (message = reason, details) or TimeoutError;
-- WorkflowContinuedAsNewError (new_execution_run_id) when not following runs.
function handle_methods:result(opts)
  check_self(self, "result")
  local what = "result"
  opts = check_opts(opts, RESULT_OPTIONS, what)
  local follow = opt_type(what, opts, "follow_runs", "boolean")
  if follow == nil then follow = true end
  local rpc_opts = { rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata }
  check_rpc(what, opts)
  local dc = converter_of(self._client)
  local run_id = self.result_run_id
  while true do
    local next_run
    for ev in history_iterator(self, run_id, what, {
      wait_new_event = true, event_filter_type = "CLOSE_EVENT", skip_archival = true,
      rpc_timeout = rpc_opts.rpc_timeout, rpc_metadata = rpc_opts.rpc_metadata,
    }) do
      local t = ev.event_type
      if t == "WORKFLOW_EXECUTION_COMPLETED" then
        local a = ev.workflow_execution_completed_event_attributes or {}
        if follow and a.new_execution_run_id then next_run = a.new_execution_run_id; break end
        return first_value(dc, a.result)
      elseif t == "WORKFLOW_EXECUTION_FAILED" then
        local a = ev.workflow_execution_failed_event_attributes or {}
        if follow and a.new_execution_run_id then next_run = a.new_execution_run_id; break end
        error(failure_error(a.failure and dc:decode_failure(a.failure)
          or errors.new("ApplicationError", { message = "Workflow failed without a failure" })), 0)
      elseif t == "WORKFLOW_EXECUTION_CANCELED" then
        local a = ev.workflow_execution_canceled_event_attributes or {}
        error(failure_error(errors.new("CancelledError", {
          message = "Workflow cancelled", details = decode_payloads(dc, a.details),
        })), 0)
      elseif t == "WORKFLOW_EXECUTION_TERMINATED" then
        local a = ev.workflow_execution_terminated_event_attributes or {}
        error(failure_error(errors.new("TerminatedError", {
          message = (a.reason and a.reason ~= "") and a.reason or "Workflow terminated",
          reason = a.reason, identity = a.identity, details = decode_payloads(dc, a.details),
        })), 0)
      elseif t == "WORKFLOW_EXECUTION_TIMED_OUT" then
        local a = ev.workflow_execution_timed_out_event_attributes or {}
        if follow and a.new_execution_run_id then next_run = a.new_execution_run_id; break end
        error(failure_error(errors.new("TimeoutError", {
          message = "Workflow timed out", type = "START_TO_CLOSE", last_heartbeat_details = { n = 0 },
        })), 0)
      elseif t == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW" then
        local a = ev.workflow_execution_continued_as_new_event_attributes or {}
        if not a.new_execution_run_id then
          error(errors.new("TemporalError", { message = "continue-as-new event without a new run id" }), 0)
        end
        if follow then next_run = a.new_execution_run_id; break end
        error(errors.new("WorkflowContinuedAsNewError", {
          message = "Workflow continued as new", new_execution_run_id = a.new_execution_run_id,
        }), 0)
      end
    end
    if next_run == nil then
      error(errors.new("TemporalError", { message = "no close event found in the workflow's history" }), 0)
    end
    run_id = next_run
  end
end

-- ------------------------------------------------------------------ describe / list / count

local function execution_entry(dc, info, namespace)
  info = info or {}
  local exec = info.execution or {}
  local parent, root = info.parent_execution, info.root_execution
  return {
    id = exec.workflow_id,
    run_id = exec.run_id,
    namespace = namespace,
    workflow_type = info.type and info.type.name,
    task_queue = info.task_queue,
    status = info.status ~= "UNSPECIFIED" and info.status or nil,
    start_time = info.start_time,
    close_time = info.close_time,
    execution_time = info.execution_time,
    history_length = info.history_length or 0,
    history_size_bytes = info.history_size_bytes or 0,
    parent_id = parent and parent.workflow_id,
    parent_run_id = parent and parent.run_id,
    root_id = root and root.workflow_id,
    root_run_id = root and root.run_id,
    memo = info.memo and dc:from_memo(info.memo) or {},
    search_attributes = info.search_attributes and dc:from_search_attributes(info.search_attributes) or {},
    typed_search_attributes = info.search_attributes and dc:from_typed_search_attributes(info.search_attributes) or {},
    raw_info = info,
  }
end
M.execution_entry = execution_entry

--- h:describe(opts) -> table describing the run (h.run_id, or the latest run)
-- Fields: id, run_id, namespace, workflow_type, task_queue, status ("RUNNING",
-- "COMPLETED", "FAILED", "CANCELED", "TERMINATED", "CONTINUED_AS_NEW", "TIMED_OUT"),
-- start_time, close_time, execution_time (epoch seconds), history_length,
-- history_size_bytes, parent_id, parent_run_id, root_id, root_run_id, memo and
-- search_attributes (decoded: plain values), typed_search_attributes (typed values,
-- temporal.search_attributes.keyword(v) and friends, the type from the server's metadata;
-- as Python's typed_search_attributes), static_summary, static_details, raw_info (the
-- WorkflowExecutionInfo) and raw (the whole DescribeWorkflowExecution response).
-- opts: rpc_timeout, rpc_metadata.
function handle_methods:describe(opts)
  check_self(self, "describe")
  local what = "describe"
  opts = check_opts(opts, known_with_rpc(), what)
  check_rpc(what, opts)
  local client = self._client
  local s = state(client)
  return intercept(client, "describe_workflow", { id = self.id, run_id = self.run_id }, opts, function(inp)
    local resp = rpc(client, "DescribeWorkflowExecution", {
      namespace = s.namespace,
      execution = { workflow_id = inp.id, run_id = inp.run_id },
    }, inp)
    local dc = converter_of(client)
    local d = execution_entry(dc, resp.workflow_execution_info, s.namespace)
    local um = resp.execution_config and resp.execution_config.user_metadata
    if um then
      if um.summary then d.static_summary = dc:from_payloads({ um.summary })[1] end
      if um.details then d.static_details = dc:from_payloads({ um.details })[1] end
    end
    d.raw = resp
    return d
  end)
end

local function check_query(what, query)
  if query ~= nil and type(query) ~= "string" then fail(what, "query must be a string, got %s", type(query)) end
  return query
end

local function list_options(what, opts)
  check_rpc(what, opts)
  local limit = opt_type(what, opts, "limit", "number")
  local page_size = opt_type(what, opts, "page_size", "number") or 1000
  if limit ~= nil and (compat.math_type(limit) ~= "integer" or limit < 0) then
    fail(what, "option 'limit' must be a non-negative integer")
  end
  if compat.math_type(page_size) ~= "integer" or page_size <= 0 then
    fail(what, "option 'page_size' must be a positive integer")
  end
  opt_string(what, opts, "next_page_token")
  return limit, page_size
end

-- ------------------------------------------------------------------ WorkflowExecutionIterator

local iterator_methods = {}
local WorkflowExecutionIterator = handle_class("temporal.WorkflowExecutionIterator", iterator_methods,
  function(it)
    return ("temporal.WorkflowExecutionIterator(query=%s)"):format(tostring(state(it)._input.query))
  end)
M.WorkflowExecutionIterator = WorkflowExecutionIterator

-- One more execution (nil when done), fetching pages as needed; a generic `for` calls it.
WorkflowExecutionIterator.__call = function(it) return client_mod.next_paged(it, state(it)) end

local function check_iterator(it, what)
  if getmetatable(it) ~= WorkflowExecutionIterator then
    error(what .. ": call it with ':' on the iterator list_workflows returned (it:" .. what .. "(...))", 3)
  end
end

--- it:fetch_next_page{ page_size } -- one ListWorkflowExecutions call from
-- it.next_page_token: it.current_page becomes that page (a list of entries), it.current_page_index 1
-- and it.next_page_token the token after it (nil on the last page). page_size overrides
-- the iterator's (capped by what is left of limit).
function iterator_methods:fetch_next_page(opts)
  check_iterator(self, "fetch_next_page")
  local what = "fetch_next_page"
  opts = check_opts(opts, set_of("page_size"), what)
  local page_size = opt_type(what, opts, "page_size", "number")
  if page_size ~= nil and (compat.math_type(page_size) ~= "integer" or page_size <= 0) then
    fail(what, "option 'page_size' must be a positive integer")
  end
  local st = state(self)
  local inp = st._input
  local size = page_size or inp.page_size
  if st._limit and st._limit - st._yielded < size then size = st._limit - st._yielded end
  local client = st._client
  local s = state(client)
  local resp = rpc(client, "ListWorkflowExecutions", {
    namespace = s.namespace, page_size = size, next_page_token = st.next_page_token,
    query = inp.query,
  }, inp)
  local dc = converter_of(client)
  local page = {}
  for i, info in ipairs(resp.executions or {}) do page[i] = execution_entry(dc, info, s.namespace) end
  st.current_page, st.current_page_index = page, 1
  local token = resp.next_page_token
  st.next_page_token = (token ~= nil and token ~= "") and token or nil
end

local MAP_HISTORIES_OPTIONS = known_with_rpc("event_filter_type", "skip_archival", "concurrency")

--- it:map_histories{ concurrency = 1, event_filter_type, skip_archival, rpc_timeout,
-- rpc_metadata } -> iterator of { workflow_id, run_id, events } for each workflow the
-- listing yields (from where the iterator stands), in listing order: the history of each
-- (h:fetch_history with these options). Up to `concurrency` histories are fetched at once
-- (in tasks: temporal.spawn); the Python SDK fetches one at a time.
--   for hist in client:list_workflows("WorkflowType = 'Greet'"):map_histories{ concurrency = 4 } do
--     print(hist.workflow_id, #hist.events)
--   end
function iterator_methods:map_histories(opts)
  check_iterator(self, "map_histories")
  local what = "map_histories"
  opts = check_opts(opts, MAP_HISTORIES_OPTIONS, what)
  check_rpc(what, opts)
  local concurrency = opt_type(what, opts, "concurrency", "number") or 1
  if compat.math_type(concurrency) ~= "integer" or concurrency < 1 then
    fail(what, "option 'concurrency' must be a positive integer, got %s", tostring(concurrency))
  end
  local history_opts = {
    event_filter_type = opts.event_filter_type, skip_archival = opts.skip_archival,
    rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata,
  }
  history_options(what, history_opts)
  local scheduler = require("temporal.scheduler")
  local client = state(self)._client
  local listing, window, exhausted = self, {}, false
  local function fetch(entry)
    local h = client:get_workflow_handle(entry.id, { run_id = entry.run_id })
    return { workflow_id = entry.id, run_id = entry.run_id, events = h:fetch_history(history_opts) }
  end
  return function()
    while not exhausted and #window < concurrency do
      local entry = listing()
      if entry == nil then exhausted = true break end
      window[#window + 1] = scheduler.spawn(fetch, entry)
    end
    local task = table.remove(window, 1)
    if task == nil then return nil end
    return task:wait()
  end
end

--- client:list_workflows(query, opts) -> WorkflowExecutionIterator
-- Call it in a generic for (`for wf in client:list_workflows(q) do`): each entry is the
-- table describe() returns, without static_summary/static_details/raw. query: a
-- visibility query (nil or "" lists all). opts: limit (stop after that many), page_size
-- (1000), next_page_token (resume a listing where an earlier one stopped), rpc_timeout
-- (per page), rpc_metadata. No call is made until the first entry or page is asked for.
-- The iterator also pages by hand (Python's WorkflowExecutionAsyncIterator):
-- it:fetch_next_page{ page_size }, it.current_page (nil before the first fetch),
-- it.current_page_index (the index in current_page of the entry the loop returns next),
-- it.next_page_token (nil once the last page is fetched), and it:map_histories(opts).
-- Visibility is eventually consistent: a workflow just started may not be listed yet.
--   for wf in client:list_workflows("WorkflowType = 'Greet'", { limit = 10 }) do print(wf.id) end
--   local it = client:list_workflows(q, { page_size = 20, next_page_token = token_from_request })
--   it:fetch_next_page()
--   render(it.current_page, it.next_page_token)
function methods:list_workflows(query, opts)
  local what = "list_workflows"
  check_query(what, query)
  opts = check_opts(opts, known_with_rpc("limit", "page_size", "next_page_token"), what)
  local _, size = list_options(what, opts)
  local client = self
  return intercept(client, what, { query = query, page_size = size }, opts, function(inp)
    check_query(what, inp.query)
    local limit, page_size = list_options(what, inp)
    inp.page_size = page_size
    local token = inp.next_page_token
    return core.handle(WorkflowExecutionIterator, {
      _client = client, _input = inp, _limit = limit, _yielded = 0,
      current_page = nil, current_page_index = 1,
      next_page_token = (token ~= nil and token ~= "") and token or nil,
    })
  end)
end

--- client:count_workflows(query, opts) -> { count = n, groups = { { count = n, group_values = {...} }, ... } }
-- groups only with a GROUP BY query (e.g. "GROUP BY ExecutionStatus"). opts: rpc_timeout, rpc_metadata.
function methods:count_workflows(query, opts)
  local what = "count_workflows"
  check_query(what, query)
  opts = check_opts(opts, known_with_rpc(), what)
  check_rpc(what, opts)
  return intercept(self, what, { query = query }, opts, function(inp)
    local resp = rpc(self, "CountWorkflowExecutions",
      { namespace = state(self).namespace, query = check_query(what, inp.query) }, inp)
    local dc = converter_of(self)
    local groups = {}
    for i, g in ipairs(resp.groups or {}) do
      local values = {}
      for j, p in ipairs(g.group_values or {}) do values[j] = dc:from_payload(p) end
      groups[i] = { count = g.count or 0, group_values = values }
    end
    return { count = resp.count or 0, groups = groups }
  end)
end

-- ------------------------------------------------------------------ signal / query / cancel / terminate

local SIGNAL_OPTIONS = known_with_rpc("args", "arg")

--- h:signal_with_options(name, { args = {...} or arg = v, rpc_timeout, rpc_metadata })
-- Sends signal `name` to h.run_id (nil: the latest run). arg is one argument (Python's
-- `arg`), args a list of them; not both.
function handle_methods:signal_with_options(name, opts)
  check_self(self, "signal_with_options")
  local what = "signal"
  if type(name) ~= "string" or name == "" then fail(what, "signal name must be a non-empty string, got %s", type(name)) end
  opts = fold_arg(what, check_opts(opts, SIGNAL_OPTIONS, what))
  check_args(what, "args", opts.args)
  check_rpc(what, opts)
  local client = self._client
  local s = state(client)
  intercept(client, "signal_workflow", { id = self.id, run_id = self.run_id, signal = name }, opts, function(inp)
    rpc(client, "SignalWorkflowExecution", {
      namespace = s.namespace,
      workflow_execution = { workflow_id = inp.id, run_id = inp.run_id },
      signal_name = inp.signal,
      input = encode_payloads(converter_of(client), check_args(what, "args", inp.args)),
      identity = s.identity,
      request_id = uuid4(),
      header = header_proto(inp.header),
    }, inp)
  end)
end

--- h:signal(name, ...) -- the varargs are the signal's arguments (nils kept).
--   h:signal("approve", "yes", 2)
function handle_methods:signal(name, ...)
  check_self(self, "signal")
  return self:signal_with_options(name, { args = compat.pack(...) })
end

local REJECT = set_of("NONE", "NOT_OPEN", "NOT_COMPLETED_CLEANLY")

--- h:query_with_options(name, { args or arg, reject_condition, rpc_timeout, rpc_metadata }) -> result
-- reject_condition: "NONE", "NOT_OPEN", "NOT_COMPLETED_CLEANLY" (default: the client's
-- default_workflow_query_reject_condition, else the server's: none).
-- Raises WorkflowQueryFailedError (message; the handler raised, or no such query),
-- WorkflowQueryRejectedError (status: the workflow's status) or RPCError.
function handle_methods:query_with_options(name, opts)
  check_self(self, "query_with_options")
  local what = "query"
  if type(name) ~= "string" or name == "" then fail(what, "query name must be a non-empty string, got %s", type(name)) end
  opts = fold_arg(what, check_opts(opts, known_with_rpc("args", "arg", "reject_condition"), what))
  check_args(what, "args", opts.args)
  opt_enum(what, opts, "reject_condition", REJECT)
  check_rpc(what, opts)
  local client = self._client
  if opts.reject_condition == nil and client.default_workflow_query_reject_condition then
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.reject_condition = client.default_workflow_query_reject_condition
    opts = o
  end
  local dc = converter_of(client)
  return intercept(client, "query_workflow", { id = self.id, run_id = self.run_id, query = name }, opts, function(inp)
    local ok, resp = pcall(rpc, client, "QueryWorkflow", {
      namespace = state(client).namespace,
      execution = { workflow_id = inp.id, run_id = inp.run_id },
      query = {
        query_type = inp.query,
        query_args = encode_payloads(dc, check_args(what, "args", inp.args)),
        header = header_proto(inp.header),
      },
      query_reject_condition = opt_enum(what, inp, "reject_condition", REJECT),
    }, inp)
    if not ok then
      if errors.is(resp, "RPCError") and resp.status == "INVALID_ARGUMENT" then
        error(errors.new("WorkflowQueryFailedError", { message = resp.grpc_message, cause = resp }), 0)
      end
      error(resp, 0)
    end
    if resp.query_rejected then
      local status = resp.query_rejected.status
      if status == "UNSPECIFIED" then status = nil end
      error(errors.new("WorkflowQueryRejectedError", {
        message = "Query rejected, status: " .. tostring(status), status = status,
      }), 0)
    end
    return first_value(dc, resp.query_result)
  end)
end

--- h:query(name, ...) -> the query's result; the varargs are the query's arguments.
--   local status = h:query("status")
function handle_methods:query(name, ...)
  check_self(self, "query")
  return self:query_with_options(name, { args = compat.pack(...) })
end

--- h:cancel{ reason = "...", rpc_timeout, rpc_metadata }
-- Requests cancellation of h.run_id (nil: latest), within the chain of
-- h.first_execution_run_id when set.
function handle_methods:cancel(opts)
  check_self(self, "cancel")
  local what = "cancel"
  opts = check_opts(opts, known_with_rpc("reason"), what)
  opt_string(what, opts, "reason")
  check_rpc(what, opts)
  local client = self._client
  local s = state(client)
  intercept(client, "cancel_workflow", execution_fields(self), opts, function(inp)
    rpc(client, "RequestCancelWorkflowExecution", {
      namespace = s.namespace,
      workflow_execution = { workflow_id = inp.id, run_id = inp.run_id },
      identity = s.identity,
      request_id = uuid4(),
      first_execution_run_id = inp.first_execution_run_id,
      reason = opt_string(what, inp, "reason"),
    }, inp)
  end)
end

--- h:terminate{ reason = "...", details = { ... }, rpc_timeout, rpc_metadata }
-- details: a sequence of values (`.n` honoured) recorded with the termination; result()
-- raises WorkflowFailureError with a TerminatedError cause carrying them.
function handle_methods:terminate(opts)
  check_self(self, "terminate")
  local what = "terminate"
  opts = check_opts(opts, known_with_rpc("reason", "details"), what)
  opt_string(what, opts, "reason")
  check_args(what, "details", opts.details)
  check_rpc(what, opts)
  local client = self._client
  local s = state(client)
  intercept(client, "terminate_workflow", execution_fields(self), opts, function(inp)
    rpc(client, "TerminateWorkflowExecution", {
      namespace = s.namespace,
      workflow_execution = { workflow_id = inp.id, run_id = inp.run_id },
      reason = opt_string(what, inp, "reason"),
      details = encode_payloads(converter_of(client), check_args(what, "details", inp.details)),
      identity = s.identity,
      first_execution_run_id = inp.first_execution_run_id,
    }, inp)
  end)
end

-- ------------------------------------------------------------------ updates

local STAGE_ORDER = { UNSPECIFIED = 0, ADMITTED = 1, ACCEPTED = 2, COMPLETED = 3 }
local WAIT_STAGES = set_of("ADMITTED", "ACCEPTED", "COMPLETED")

local update_methods = {}
local WorkflowUpdateHandle = handle_class("temporal.WorkflowUpdateHandle", update_methods, function(u)
  return ("temporal.WorkflowUpdateHandle(id=%s, workflow_id=%s)"):format(u.id, u.workflow_id)
end)
M.WorkflowUpdateHandle = WorkflowUpdateHandle

local function new_update_handle(client, id, workflow_id, workflow_run_id, outcome)
  return core.handle(WorkflowUpdateHandle, {
    _client = client, id = id, workflow_id = workflow_id, workflow_run_id = workflow_run_id,
    _outcome = outcome,
  })
end

local function update_rpc_error(err)
  if errors.is(err, "RPCError") and (err.status == "DEADLINE_EXCEEDED" or err.status == "CANCELLED") then
    return errors.new("WorkflowUpdateRPCTimeoutOrCancelledError", {
      message = "Timeout or cancellation waiting for update", cause = err,
    })
  end
  return err
end

local function poll_outcome(u, rpc_opts)
  if u._outcome then return u._outcome end
  local client = u._client
  local s = state(client)
  local req = {
    namespace = s.namespace,
    update_ref = { workflow_execution = { workflow_id = u.workflow_id, run_id = u.workflow_run_id }, update_id = u.id },
    identity = s.identity,
    wait_policy = { lifecycle_stage = "COMPLETED" },
  }
  while true do
    local ok, resp = pcall(rpc, client, "PollWorkflowExecutionUpdate", req, rpc_opts)
    if not ok then error(update_rpc_error(resp), 0) end
    if resp.outcome then
      state(u)._outcome = resp.outcome
      return resp.outcome
    end
  end
end

--- u:result{ rpc_timeout, rpc_metadata } -> the update's result
-- Polls PollWorkflowExecutionUpdate until the update completes (no call when the outcome
-- is already known). Raises WorkflowUpdateFailedError (cause: the decoded failure, e.g.
-- the validator's or handler's ApplicationError) or WorkflowUpdateRPCTimeoutOrCancelledError
-- when an RPC deadline passes (rpc_timeout is per poll; default 70).
function update_methods:result(opts)
  if getmetatable(self) ~= WorkflowUpdateHandle then
    error("result: call it with ':' on a WorkflowUpdateHandle", 2)
  end
  local what = "update result"
  opts = check_opts(opts, known_with_rpc(), what)
  check_rpc(what, opts)
  local outcome = poll_outcome(self, { rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata })
  local dc = converter_of(self._client)
  if outcome.failure then
    error(errors.new("WorkflowUpdateFailedError", {
      message = "Workflow update failed", cause = dc:decode_failure(outcome.failure),
    }), 0)
  end
  return first_value(dc, outcome.success)
end

local UPDATE_OPTIONS = known_with_rpc("args", "arg", "id", "wait_for_stage")

-- Checks an update's name and options (args, id, wait_for_stage); returns the update id
-- (the given one or a new UUID) and the stage to wait for.
local function check_update(what, name, opts)
  if type(name) ~= "string" or name == "" then
    fail(what, "update name must be a non-empty string, got %s", type(name))
  end
  check_args(what, "args", opts.args)
  local id = opt_string(what, opts, "id")
  local stage = opt_enum(what, opts, "wait_for_stage", WAIT_STAGES) or "ACCEPTED"
  if stage == "ADMITTED" then fail(what, "option 'wait_for_stage': ADMITTED is not supported") end
  return (id ~= nil and id ~= "") and id or uuid4(), stage
end

-- The UpdateWorkflowExecution request of an operation's input (update, args, update_id,
-- wait_for_stage, run_id, first_execution_run_id, header) for workflow `workflow_id`.
local function update_request(client, what, inp, workflow_id)
  local update_id, stage = check_update(what, inp.update,
    { args = inp.args, id = inp.update_id, wait_for_stage = inp.wait_for_stage })
  local s = state(client)
  return {
    namespace = s.namespace,
    workflow_execution = { workflow_id = workflow_id, run_id = inp.run_id },
    first_execution_run_id = inp.first_execution_run_id,
    request = {
      meta = { update_id = update_id, identity = s.identity },
      input = {
        header = header_proto(inp.header),
        name = inp.update,
        args = encode_payloads(converter_of(client), inp.args),
      },
    },
    wait_policy = { lifecycle_stage = stage },
  }, stage
end

--- h:start_update(name, { args or arg, id, wait_for_stage = "ACCEPTED", rpc_timeout, rpc_metadata })
--   -> WorkflowUpdateHandle (.id, .workflow_id, .workflow_run_id, :result())
-- wait_for_stage: "ACCEPTED" (default; returns once the workflow accepted the update) or
-- "COMPLETED" (also waits for the result); case-insensitive. id: the update id (default:
-- a new UUID; the same id on the same workflow returns the same update).
-- Raises WorkflowUpdateRPCTimeoutOrCancelledError when the RPC deadline passes, RPCError
-- (e.g. NOT_FOUND) otherwise. A rejected update (validator) shows in u:result().
-- Interceptors see it as start_workflow_update: id is the workflow's, update_id the update's.
function handle_methods:start_update(name, opts)
  check_self(self, "start_update")
  local what = "start_update"
  opts = fold_arg(what, check_opts(opts, UPDATE_OPTIONS, what))
  check_rpc(what, opts)
  local update_id, stage = check_update(what, name, opts)
  local client = self._client
  local fields = execution_fields(self)
  fields.update, fields.update_id, fields.wait_for_stage = name, update_id, stage
  return intercept(client, "start_workflow_update", fields, opts, function(inp)
    local req
    req, stage = update_request(client, what, inp, inp.id)
    local resp
    repeat
      local ok, r = pcall(rpc, client, "UpdateWorkflowExecution", req, inp)
      if not ok then error(update_rpc_error(r), 0) end
      resp = r
    until STAGE_ORDER[resp.stage or "UNSPECIFIED"] >= STAGE_ORDER.ACCEPTED
    local ref = resp.update_ref or {}
    local u = new_update_handle(client, req.request.meta.update_id, inp.id,
      ref.workflow_execution and ref.workflow_execution.run_id, resp.outcome)
    if stage == "COMPLETED" then poll_outcome(u, inp) end
    return u
  end)
end

--- h:execute_update(name, { args, id, rpc_timeout, rpc_metadata }) -> the update's result
-- start_update with wait_for_stage = "COMPLETED", then u:result().
function handle_methods:execute_update(name, opts)
  check_self(self, "execute_update")
  opts = check_opts(opts, known_with_rpc("args", "arg", "id"), "execute_update")
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.wait_for_stage = "COMPLETED"
  local u = self:start_update(name, o)
  return u:result({ rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata })
end

--- h:get_update_handle(update_id, { workflow_run_id }) -> WorkflowUpdateHandle (no RPC)
function handle_methods:get_update_handle(update_id, opts)
  check_self(self, "get_update_handle")
  local what = "get_update_handle"
  if type(update_id) ~= "string" or update_id == "" then
    fail(what, "update id must be a non-empty string, got %s", type(update_id))
  end
  opts = check_opts(opts, set_of("workflow_run_id"), what)
  return new_update_handle(self._client, update_id, self.id,
    opt_string(what, opts, "workflow_run_id") or self.run_id)
end

-- ------------------------------------------------------------------ update-with-start

local WithStartWorkflowOperation = { __name = "temporal.WithStartWorkflowOperation" }
local with_start_methods = {}
WithStartWorkflowOperation.__index = with_start_methods
WithStartWorkflowOperation.__tostring = function(op)
  return ("temporal.WithStartWorkflowOperation(%s, id=%s)"):format(op.workflow, op.options.id)
end
M.WithStartWorkflowOperation_mt = WithStartWorkflowOperation

--- temporal.WithStartWorkflowOperation(workflow, opts) -> operation for update-with-start
-- opts: the start_workflow options without start_signal, start_signal_args,
-- request_eager_start, rpc_timeout and rpc_metadata; id_conflict_policy is required
-- ("FAIL", "USE_EXISTING" or "TERMINATE_EXISTING"). Use it once.
--   local op = temporal.WithStartWorkflowOperation("Cart", { id = "cart-1", task_queue = "tq",
--     id_conflict_policy = "USE_EXISTING" })
--   local total = client:execute_update_with_start_workflow("add", { args = { 5 }, start_workflow_operation = op })
--   local h = op:workflow_handle()
function M.WithStartWorkflowOperation(workflow, opts)
  local what = "WithStartWorkflowOperation"
  if type(workflow) ~= "string" or workflow == "" then
    fail(what, "workflow must be a workflow type name (non-empty string), got %s", type(workflow))
  end
  opts = fold_arg(what, check_opts(opts, WITH_START_OPTIONS, what))
  opt_string(what, opts, "id", true)
  opt_string(what, opts, "task_queue", true)
  local policy = opt_enum(what, opts, "id_conflict_policy", ID_CONFLICT)
  if policy == nil or policy == "UNSPECIFIED" then
    fail(what, "option 'id_conflict_policy' is required (FAIL, USE_EXISTING or TERMINATE_EXISTING)")
  end
  local copy = {}
  for k, v in pairs(opts) do copy[k] = v end
  return setmetatable({ workflow = workflow, options = copy, used = false }, WithStartWorkflowOperation)
end

--- op:workflow_handle() -> WorkflowHandle of the started (or existing) workflow
-- Raises the start's error when the update-with-start call failed before the start.
function with_start_methods:workflow_handle()
  if self._handle then return self._handle end
  if self._error then error(self._error, 0) end
  error("workflow_handle: the operation has not been used in an update-with-start call yet", 2)
end

local UWS_OPTIONS = known_with_rpc("args", "arg", "id", "wait_for_stage", "start_workflow_operation")

local MULTI_OP_CODES = {
  [0] = "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

-- The error for a failed ExecuteMultiOperation: the first failed operation that was not
-- merely aborted because of another, as Python does.
local function multi_op_error(err, op)
  local f = errors.detail(err, "MultiOperationExecutionFailure")
  if not f then return err end
  for _, st in ipairs(f.statuses or {}) do
    local code = st.code or 0
    local aborted = st.details and st.details[1] and
      tostring(st.details[1]["@type"]):match("MultiOperationExecutionAborted$")
    if code ~= 0 and not aborted then
      local name = MULTI_OP_CODES[code] or "UNKNOWN"
      if name == "ALREADY_EXISTS" then
        local e = already_started({ details = st.details }, op.options.id, op.workflow)
        if e then e.cause = err; return e end
      end
      return errors.new("RPCError", {
        message = "ExecuteMultiOperation: " .. name .. ": " .. tostring(st.message),
        status = name, code = code, grpc_message = st.message, details = st.details, cause = err,
      })
    end
  end
  return err
end

--- client:start_update_with_start_workflow(update, opts) -> WorkflowUpdateHandle
-- Sends update `update` to the workflow the operation names, starting it first if need be
-- (one ExecuteMultiOperation call). opts: start_workflow_operation (required, a
-- temporal.WithStartWorkflowOperation), args, id, wait_for_stage ("ACCEPTED" default, or
-- "COMPLETED"), rpc_timeout, rpc_metadata. Afterwards op:workflow_handle() is the handle.
-- Raises WorkflowAlreadyStartedError (id_conflict_policy FAIL and running),
-- WorkflowUpdateRPCTimeoutOrCancelledError or RPCError of the failing operation.
function methods:start_update_with_start_workflow(update, opts)
  local what = "start_update_with_start_workflow"
  opts = fold_arg(what, check_opts(opts, UWS_OPTIONS, what))
  local op = opts.start_workflow_operation
  if getmetatable(op) ~= WithStartWorkflowOperation then
    fail(what, "option 'start_workflow_operation' must be a temporal.WithStartWorkflowOperation, got %s", type(op))
  end
  if op.used then fail(what, "the WithStartWorkflowOperation has already been used") end
  op.used = true
  check_rpc(what, opts)
  local ok, result = pcall(function()
    local update_id, stage = check_update(what, update, opts)
    -- the input's update_id is the update's id (opts.id); the workflow's is the operation's
    local o = {}
    for k, v in pairs(opts) do if k ~= "id" then o[k] = v end end
    local fields = { update = update, update_id = update_id, wait_for_stage = stage }
    return intercept(self, what, fields, o, function(inp)
      local start_op = inp.start_workflow_operation
      local start_req = start_request(self, what, start_op.workflow, start_op.options)
      start_req.header = header_proto(inp.header)
      local update_req
      update_req, stage = update_request(self, what, inp, start_req.workflow_id)
      local req = {
        namespace = state(self).namespace,
        operations = { { start_workflow = start_req }, { update_workflow = update_req } },
      }
      local start_resp, update_resp
      repeat
        local okc, resp = pcall(rpc, self, "ExecuteMultiOperation", req, inp)
        if not okc then
          local e = update_rpc_error(resp)
          if e == resp and errors.is(resp, "RPCError") then e = multi_op_error(resp, start_op) end
          error(e, 0)
        end
        local rs = resp.responses or {}
        start_resp = rs[1] and rs[1].start_workflow or {}
        update_resp = rs[2] and rs[2].update_workflow or {}
        if not start_op._handle then
          start_op._handle = new_handle(self, start_req.workflow_id, nil, start_resp.run_id,
            start_resp.run_id, start_resp)
        end
      until STAGE_ORDER[update_resp.stage or "UNSPECIFIED"] >= STAGE_ORDER.ACCEPTED
      local u = new_update_handle(self, update_req.request.meta.update_id, start_req.workflow_id,
        start_resp.run_id, update_resp.outcome)
      if stage == "COMPLETED" then poll_outcome(u, inp) end
      return u
    end)
  end)
  if not ok then
    if not op._handle then op._error = result end
    error(result, 0)
  end
  return result
end

--- client:execute_update_with_start_workflow(update, opts) -> the update's result
-- start_update_with_start_workflow with wait_for_stage = "COMPLETED", then the result.
function methods:execute_update_with_start_workflow(update, opts)
  local what = "execute_update_with_start_workflow"
  opts = check_opts(opts, known_with_rpc("args", "arg", "id", "start_workflow_operation"), what)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.wait_for_stage = "COMPLETED"
  local u = self:start_update_with_start_workflow(update, o)
  return u:result({ rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata })
end

return M
