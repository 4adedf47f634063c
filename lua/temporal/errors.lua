--- Error objects: a class, a message, a cause chain and a readable tostring.
--
-- Every error temporal raises for an RPC or a workflow outcome is a table made by
-- `errors.new(class, fields)`. The class lives in the metatable, never in a field, so
-- it cannot collide with fields such as ApplicationError's own `type`.
--   local ok, err = pcall(client.start_workflow, client, ...)
--   if temporal.errors.is(err, "WorkflowAlreadyStartedError") then ... end
local M = {}

local classes = {}   -- name -> metatable

local function describe(err)
  local mt = getmetatable(err)
  local s = mt.__class .. ": " .. tostring(err.message)
  if err.cause ~= nil then
    s = s .. "\ncaused by: " .. tostring(err.cause)
  end
  return s
end

--- Declares a class with an optional parent class name.
function M.define(name, parent)
  if classes[name] then return classes[name] end
  local mt = {
    __class = name,
    __parent = parent and assert(classes[parent], "unknown parent class " .. tostring(parent)),
    __tostring = describe,
    __name = "temporal." .. name,
  }
  mt.__index = function(_, k)
    if k == "class" then return name end
    return nil
  end
  classes[name] = mt
  return mt
end

--- A new error object of `class` with the given fields (message, cause, ...).
function M.new(class, fields)
  local mt = classes[class] or error("unknown error class " .. tostring(class), 2)
  local err = fields or {}
  if err.message == nil then err.message = class end
  return setmetatable(err, mt)
end

--- The class name of an error object, or nil for anything else.
function M.class(err)
  local mt = type(err) == "table" and getmetatable(err)
  return type(mt) == "table" and mt.__class or nil
end

--- true when err is of class `name` or a subclass of it.
function M.is(err, name)
  local mt = type(err) == "table" and getmetatable(err)
  while type(mt) == "table" and mt.__class do
    if mt.__class == name then return true end
    mt = mt.__parent
  end
  return false
end

--- Raises a new error object (level as for error()).
function M.raise(class, fields, level)
  error(M.new(class, fields), (level or 1) + 1)
end

-- The hierarchy mirrors temporalio.exceptions / temporalio.client.
M.define("TemporalError")
M.define("RPCError", "TemporalError")               -- status, code, message, details
M.define("FailureError", "TemporalError")
M.define("ApplicationError", "FailureError")        -- type, non_retryable, details
M.define("CancelledError", "FailureError")
M.define("TerminatedError", "FailureError")
M.define("TimeoutError", "FailureError")
M.define("ServerError", "FailureError")
M.define("ActivityError", "FailureError")
M.define("ChildWorkflowError", "FailureError")
M.define("WorkflowAlreadyStartedError", "FailureError")
M.define("WorkflowFailureError", "TemporalError")
M.define("WorkflowContinuedAsNewError", "TemporalError")
M.define("WorkflowQueryFailedError", "TemporalError")
M.define("WorkflowQueryRejectedError", "TemporalError")
M.define("WorkflowUpdateFailedError", "TemporalError")
M.define("RPCTimeoutOrCancelledError", "TemporalError")
M.define("WorkflowUpdateRPCTimeoutOrCancelledError", "RPCTimeoutOrCancelledError")
M.define("ScheduleAlreadyRunningError", "TemporalError")
M.define("AsyncActivityCancelledError", "TemporalError")

--- The RPCError for a failed call, from the table call:result() returns.
function M.from_rpc(failure, context)
  local msg = failure.status .. ": " .. failure.message
  if context then msg = context .. ": " .. msg end
  return M.new("RPCError", {
    message = msg,
    status = failure.status,
    code = failure.code,
    grpc_message = failure.message,
    details = failure.details,
    -- why grpc-status-details-bin was left out (bytes that do not decode), else nil
    details_error = failure.details_error,
    method = failure.method,
    metadata = failure.metadata,
  })
end

--- The first decoded detail of an RPCError whose ["@type"] ends with `suffix`.
function M.detail(err, suffix)
  for _, d in ipairs(type(err) == "table" and err.details or {}) do
    local t = d["@type"]
    if t and (t == suffix or t:sub(-#suffix - 1) == "." .. suffix) then return d end
  end
  return nil
end

return M
