--- Temporal failures (temporal.api.failure.v1.Failure) <-> error objects, in the
-- Python SDK's format (temporalio.converter.DefaultFailureConverter).
--
-- A failure is the Lua table of the protobuf message (see src/pb.c): message,
-- source, stack_trace, encoded_attributes, cause and one *_failure_info.
--
--   local err = temporal.errors.application_error("card declined",
--     { type = "PaymentError", non_retryable = true, details = { { code = 51 } } })
--   error(err)   -- or hand it to an update/activity failure, terminate details...
--
-- Decoding maps the failure_info to the error classes of temporal.errors:
--   application_failure_info  -> ApplicationError  message, type, non_retryable,
--                                details (values, with .n), next_retry_delay (seconds),
--                                category ("BENIGN" or nil)
--   timeout_failure_info      -> TimeoutError      type ("START_TO_CLOSE", ...),
--                                last_heartbeat_details (values, with .n)
--   canceled_failure_info     -> CancelledError    details (values, with .n), identity
--   terminated_failure_info   -> TerminatedError   identity
--   server_failure_info       -> ServerError       non_retryable
--   activity_failure_info     -> ActivityError     activity_type, activity_id, identity,
--                                retry_state, scheduled_event_id, started_event_id
--   child_workflow_execution_failure_info -> ChildWorkflowError namespace, workflow_id,
--                                run_id, workflow_type, initiated_event_id,
--                                started_event_id, retry_state
--   anything else (reset, nexus, none) -> FailureError
-- Every decoded error also has `stack_trace` (string or nil), `cause` (decoded the
-- same way) and `failure` (the failure table it came from, payloads already through the
-- codec). Empty messages get Python's defaults ("Application error", "Timeout", ...).
-- Enum values use the short names Python's enums use (retry_state = "TIMEOUT").
--
-- Encoding is the reverse. An error that still carries its `failure` (one decoded
-- earlier) is sent unchanged, as Python does. Errors that are not FailureErrors become
-- ApplicationErrors: a string error is the message (type left empty); a temporal error
-- of another class (say RPCError) keeps its message and gets its class name as type;
-- any other value is converted with tostring. `source` is "LuaSDK" (Python leaves it
-- empty). With encode_common_attributes the message and stack trace move into
-- encoded_attributes ({"message":..,"stack_trace":..} as json/plain) and the message
-- becomes "Encoded failure", so a codec can encrypt them; decoding reads them back.
local errors = require("temporal.errors")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT

local M = {}

M.SOURCE = "LuaSDK"
local MAX_CAUSE_DEPTH = 100

-- ------------------------------------------------------------------ helpers

-- At most this many values in one list of arguments or details: one value cannot ask for
-- unbounded work (`{ n = 10^12 }`).
M.MAX_VALUES = 100000

--- The number of values in a list of arguments: `list.n` (table.pack) or #list. Raises,
-- naming `what`, when n is not an integer in 0..MAX_VALUES or a key other than n lies
-- outside 1..n (a value that would be silently dropped).
local tointeger, math_type = compat.tointeger, compat.math_type

function M.count_values(list, what, level)
  level = (level or 1) + 1
  if type(list) ~= "table" then error(("%s: expected a list of values, got %s"):format(what, type(list)), level) end
  local n = list.n
  if n == nil then
    n = #list
  elseif tointeger(n) == nil or n < 0 or n > M.MAX_VALUES then
    error(("%s.n: expected an integer count in 0..%d, got %s"):format(what, M.MAX_VALUES, tostring(n)), level)
  else
    n = tointeger(n)
  end
  if n > M.MAX_VALUES then error(("%s: more than %d values"):format(what, M.MAX_VALUES), level) end
  for k in pairs(list) do
    if k ~= "n" and (math_type(k) ~= "integer" or k < 1 or k > n) then
      error(("%s: expected a list of values (keys 1..n), found key %s"):format(what, tostring(k)), level)
    end
  end
  return n
end

-- Values of a list honouring .n (table.pack), as a packed table.
local function packed(list, what)
  if list == nil then return { n = 0 } end
  local n = M.count_values(list, what or "details", 3)
  local out = { n = n }
  for i = 1, n do out[i] = list[i] end
  return out
end

local function encode_values(payload_converter, list, what)
  local values = packed(list, what)
  if values.n == 0 then return nil end
  local payloads = {}
  for i = 1, values.n do
    local p = payload_converter.to_payload(values[i], ("%s[%d]"):format(what, i))
    if p == nil then
      error(("%s[%d]: no payload converter accepts a %s"):format(what, i, type(values[i])), 0)
    end
    payloads[i] = p
  end
  return { payloads = payloads }
end

local function decode_values(payload_converter, payloads_msg)
  local list = payloads_msg and payloads_msg.payloads or {}
  local out = { n = #list }
  for i = 1, #list do out[i] = payload_converter.from_payload(list[i]) end
  return out
end

local function check_options(opts, known, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(what, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not known[k] then error(("%s: unknown option '%s'"):format(what, tostring(k)), 3) end
  end
  return opts
end

local function check_type(value, expected, name)
  if value ~= nil and type(value) ~= expected then
    error(("%s: expected a %s, got %s"):format(name, expected, type(value)), 3)
  end
end

local function nonempty(s)
  if s == nil or s == "" then return nil end
  return s
end

local function copy_deep(v, depth)
  if type(v) ~= "table" then return v end
  depth = (depth or 0) + 1
  if depth > 2 * MAX_CAUSE_DEPTH + 20 then error("failure nested too deeply", 0) end
  local out = {}
  for k, x in pairs(v) do out[k] = copy_deep(x, depth) end
  return setmetatable(out, getmetatable(v))
end
M.copy = copy_deep

-- ------------------------------------------------------------------ constructors

local APPLICATION_OPTIONS = {
  type = true, non_retryable = true, details = true, next_retry_delay = true,
  category = true, cause = true, stack_trace = true,
}

--- An ApplicationError to raise or send (Python's temporalio.exceptions.ApplicationError).
-- opts: type (string), non_retryable (boolean, default false), details (list of values;
-- .n honoured), next_retry_delay (seconds), category ("BENIGN"), cause (an error),
-- stack_trace (string).
--   error(temporal.errors.application_error("out of stock", { type = "Stock", details = { sku } }))
function M.application_error(message, opts)
  if type(message) ~= "string" then
    error("application_error: message must be a string, got " .. type(message), 2)
  end
  opts = check_options(opts, APPLICATION_OPTIONS, "application_error")
  check_type(opts.type, "string", "type")
  check_type(opts.non_retryable, "boolean", "non_retryable")
  check_type(opts.details, "table", "details")
  check_type(opts.next_retry_delay, "number", "next_retry_delay")
  check_type(opts.category, "string", "category")
  check_type(opts.stack_trace, "string", "stack_trace")
  return errors.new("ApplicationError", {
    message = message,
    type = opts.type,
    non_retryable = opts.non_retryable or false,
    details = packed(opts.details),
    next_retry_delay = opts.next_retry_delay,
    category = opts.category,
    cause = opts.cause,
    stack_trace = opts.stack_trace,
  })
end

-- ------------------------------------------------------------------ encode

local encode_error

-- The failure_info for a FailureError subclass, or nil when the class has none.
local function failure_info(err, class, pc, f)
  if class == "ApplicationError" then
    f.application_failure_info = {
      type = nonempty(err.type),
      non_retryable = err.non_retryable and true or nil,
      details = encode_values(pc, err.details, "details"),
      next_retry_delay = (err.next_retry_delay and err.next_retry_delay ~= 0) and err.next_retry_delay or nil,
      category = (err.category and err.category ~= "UNSPECIFIED") and err.category or nil,
    }
  elseif class == "TimeoutError" then
    f.timeout_failure_info = {
      timeout_type = err.type,
      last_heartbeat_details = encode_values(pc, err.last_heartbeat_details, "last_heartbeat_details"),
    }
  elseif class == "CancelledError" then
    f.canceled_failure_info = { details = encode_values(pc, err.details, "details") }
  elseif class == "TerminatedError" then
    f.terminated_failure_info = {}
  elseif class == "ServerError" then
    f.server_failure_info = { non_retryable = err.non_retryable and true or nil }
  elseif class == "ActivityError" then
    f.activity_failure_info = {
      scheduled_event_id = err.scheduled_event_id,
      started_event_id = err.started_event_id,
      identity = nonempty(err.identity),
      activity_type = err.activity_type and { name = err.activity_type } or nil,
      activity_id = nonempty(err.activity_id),
      retry_state = err.retry_state,
    }
  elseif class == "ChildWorkflowError" then
    f.child_workflow_execution_failure_info = {
      namespace = nonempty(err.namespace),
      workflow_execution = (err.workflow_id or err.run_id)
        and { workflow_id = err.workflow_id, run_id = err.run_id } or nil,
      workflow_type = err.workflow_type and { name = err.workflow_type } or nil,
      initiated_event_id = err.initiated_event_id,
      started_event_id = err.started_event_id,
      retry_state = err.retry_state,
    }
  end
end

local FAILURE_CLASSES = {
  ApplicationError = true, TimeoutError = true, CancelledError = true, TerminatedError = true,
  ServerError = true, ActivityError = true, ChildWorkflowError = true, FailureError = true,
}

-- err: any Lua error value. Returns the failure table (payloads not through a codec).
function encode_error(err, pc, opts, depth)
  if depth > MAX_CAUSE_DEPTH then
    error("failure cause chain deeper than " .. MAX_CAUSE_DEPTH .. " (a cycle?)", 0)
  end
  local class = errors.class(err)
  local f
  if class and type(err.failure) == "table" and errors.is(err, "FailureError") then
    f = copy_deep(err.failure)   -- decoded earlier: send it as it came (Python does too)
  elseif class and FAILURE_CLASSES[class] then
    f = { message = tostring(err.message or ""), source = M.SOURCE,
          stack_trace = type(err.stack_trace) == "string" and nonempty(err.stack_trace) or nil }
    failure_info(err, class, pc, f)  -- FailureError, the base class, carries no info (as in Python)
    if err.cause ~= nil then f.cause = encode_error(err.cause, pc, opts, depth + 1) end
  else
    local message, type_name, cause, stack
    if class then
      message, type_name, cause = tostring(err.message or class), class, err.cause
      stack = type(err.stack_trace) == "string" and err.stack_trace or nil
    elseif type(err) == "string" then
      message = err
    elseif type(err) == "table" and getmetatable(err) == nil and type(err.message) == "string" then
      message, cause = err.message, err.cause
    else
      message = tostring(err)
    end
    f = { message = message, source = M.SOURCE, stack_trace = nonempty(stack),
          application_failure_info = { type = type_name } }
    if cause ~= nil then f.cause = encode_error(cause, pc, opts, depth + 1) end
  end
  if opts.encode_common_attributes then
    f.encoded_attributes = pc.to_payload(
      { message = f.message or "", stack_trace = f.stack_trace or "" }, "encoded_attributes")
    f.message = "Encoded failure"
    f.stack_trace = nil
  end
  return f
end

-- ------------------------------------------------------------------ decode

local decode_failure

local function decode_failure_info(f, pc)
  local info = f.application_failure_info
  if info then
    return "ApplicationError", {
      message = nonempty(f.message) or "Application error",
      type = nonempty(info.type),
      non_retryable = info.non_retryable or false,
      details = decode_values(pc, info.details),
      next_retry_delay = info.next_retry_delay,
      category = info.category,
    }
  end
  info = f.timeout_failure_info
  if info then
    return "TimeoutError", {
      message = nonempty(f.message) or "Timeout",
      type = info.timeout_type,
      last_heartbeat_details = decode_values(pc, info.last_heartbeat_details),
    }
  end
  info = f.canceled_failure_info
  if info then
    return "CancelledError", {
      message = nonempty(f.message) or "Cancelled",
      details = decode_values(pc, info.details),
      identity = info.identity,
    }
  end
  if f.terminated_failure_info then
    return "TerminatedError", {
      message = nonempty(f.message) or "Terminated",
      identity = f.terminated_failure_info.identity,
    }
  end
  info = f.server_failure_info
  if info then
    return "ServerError", {
      message = nonempty(f.message) or "Server error",
      non_retryable = info.non_retryable or false,
    }
  end
  info = f.activity_failure_info
  if info then
    return "ActivityError", {
      message = nonempty(f.message) or "Activity error",
      scheduled_event_id = info.scheduled_event_id or 0,
      started_event_id = info.started_event_id or 0,
      identity = info.identity or "",
      activity_type = info.activity_type and info.activity_type.name or "",
      activity_id = info.activity_id or "",
      retry_state = info.retry_state,
    }
  end
  info = f.child_workflow_execution_failure_info
  if info then
    local we = info.workflow_execution or {}
    return "ChildWorkflowError", {
      message = nonempty(f.message) or "Child workflow error",
      namespace = info.namespace or "",
      workflow_id = we.workflow_id or "",
      run_id = we.run_id or "",
      workflow_type = info.workflow_type and info.workflow_type.name or "",
      initiated_event_id = info.initiated_event_id or 0,
      started_event_id = info.started_event_id or 0,
      retry_state = info.retry_state,
    }
  end
  info = f.nexus_operation_execution_failure_info
  if info then
    return "FailureError", {
      message = nonempty(f.message) or "Nexus operation error",
      scheduled_event_id = info.scheduled_event_id or 0,
      endpoint = info.endpoint or "", service = info.service or "",
      operation = info.operation or "", operation_token = info.operation_token or "",
    }
  end
  info = f.nexus_handler_failure_info
  if info then
    return "FailureError", {
      message = nonempty(f.message) or "Nexus handler error",
      type = info.type, retry_behavior = info.retry_behavior,
    }
  end
  return "FailureError", { message = nonempty(f.message) or "Failure error" }
end

function decode_failure(f, pc, depth)
  if type(f) ~= "table" then
    error("decode_failure: expected a failure table, got " .. type(f), 0)
  end
  if depth > MAX_CAUSE_DEPTH then
    error("failure cause chain deeper than " .. MAX_CAUSE_DEPTH, 0)
  end
  if f.encoded_attributes then
    -- Python ignores encoded attributes it cannot read; so do we.
    local ok, attrs = pcall(pc.from_payload, f.encoded_attributes)
    if ok and type(attrs) == "table" then
      local copy = {}
      for k, v in pairs(f) do copy[k] = v end
      if type(attrs.message) == "string" then copy.message = attrs.message end
      if type(attrs.stack_trace) == "string" then copy.stack_trace = attrs.stack_trace end
      f = copy
    end
  end
  local class, fields = decode_failure_info(f, pc)
  fields.stack_trace = nonempty(f.stack_trace)
  fields.failure = f
  if f.cause then fields.cause = decode_failure(f.cause, pc, depth + 1) end
  return errors.new(class, fields)
end

-- ------------------------------------------------------------------ converters

--- A failure converter: `to_failure(err, payload_converter) -> failure` and
-- `from_failure(failure, payload_converter) -> error object` (plain functions).
-- opts.encode_common_attributes (default false): move message and stack trace into
-- encoded_attributes (Python's DefaultFailureConverterWithEncodedAttributes).
function M.new(opts)
  opts = check_options(opts, { encode_common_attributes = true }, "failure.new")
  check_type(opts.encode_common_attributes, "boolean", "encode_common_attributes")
  local o = { encode_common_attributes = opts.encode_common_attributes or false }
  return {
    encode_common_attributes = o.encode_common_attributes,
    to_failure = function(err, payload_converter)
      return encode_error(err, payload_converter, o, 1)
    end,
    from_failure = function(f, payload_converter)
      return decode_failure(f, payload_converter, 1)
    end,
  }
end

M.default = M.new()

-- temporal.errors.application_error(...) is the documented spelling.
errors.application_error = M.application_error

--- Applies fn(payload_list) -> payload_list to every payload list of a failure, in
-- place, as Python's codec does: encoded_attributes, the details of the application,
-- timeout, cancelled or reset info, then the cause chain.
function M.map_payloads(f, fn)
  local depth = 0
  while type(f) == "table" do
    depth = depth + 1
    if depth > MAX_CAUSE_DEPTH + 1 then error("failure cause chain too deep", 0) end
    if f.encoded_attributes then f.encoded_attributes = fn({ f.encoded_attributes })[1] end
    local holder, key
    if f.application_failure_info then holder, key = f.application_failure_info, "details"
    elseif f.timeout_failure_info then holder, key = f.timeout_failure_info, "last_heartbeat_details"
    elseif f.canceled_failure_info then holder, key = f.canceled_failure_info, "details"
    elseif f.reset_workflow_failure_info then holder, key = f.reset_workflow_failure_info, "last_heartbeat_details"
    end
    if holder and holder[key] then
      holder[key] = { payloads = fn(holder[key].payloads or {}) }
    end
    f = f.cause
  end
end

return M
