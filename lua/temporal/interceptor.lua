--- Client interceptors: an outbound chain around every client operation.
--
-- An interceptor is a table whose entries wrap client operations by name. Each entry is
-- `function(next, input) ... return next(input) end`: it may read or change `input`
-- (the operation's arguments as named fields, plus `header`, the Temporal headers - a
-- map of name -> payload - and `rpc_metadata`, the gRPC metadata of the call), call
-- `next(input)` zero or more times, and change or replace what it returns.
--
--   local function auth_header(next, input)
--     input.rpc_metadata["x-tenant"] = "blue"
--     input.header["trace-id"] = { metadata = { encoding = "json/plain" }, data = '"abc"' }
--     return next(input)
--   end
--   local client = temporal.connect(target, { interceptors = {
--     { start_workflow = auth_header, signal_workflow = auth_header },
--     { ["*"] = function(next, input, name) print("calling " .. name); return next(input) end },
--   } })
--
-- The first interceptor of the list is the outermost: it sees the input first and the
-- result last. The key "*" wraps every operation and receives the operation's name as a
-- third argument. Operations (as in the Python SDK's OutboundInterceptor):
-- start_workflow, signal_workflow, query_workflow,
-- start_workflow_update, start_update_with_start_workflow, describe_workflow,
-- cancel_workflow, terminate_workflow, fetch_workflow_history_events, list_workflows,
-- count_workflows, create_schedule, list_schedules, update_schedule, delete_schedule,
-- describe_schedule, pause_schedule, unpause_schedule, trigger_schedule,
-- backfill_schedule, heartbeat_async_activity, complete_async_activity,
-- fail_async_activity, report_cancellation_async_activity.
--
-- The workflow operations' inputs hold the call's options under their own names plus:
--   start_workflow                    workflow (signal-with-start too: start_signal is set)
--   signal_workflow                   id, run_id, signal, args
--   query_workflow                    id, run_id, query, args, reject_condition
--   start_workflow_update             id, run_id, first_execution_run_id, update, update_id,
--                                     args, wait_for_stage (execute_update: "COMPLETED")
--   start_update_with_start_workflow  update, update_id, args, wait_for_stage,
--                                     start_workflow_operation; header goes on both the
--                                     start and the update
--   describe_workflow                 id, run_id
--   cancel_workflow, terminate_workflow  id, run_id, first_execution_run_id, reason (details)
--   fetch_workflow_history_events     id, run_id (also for h:result(), once per run)
--   list_workflows, count_workflows   query (list: page_size, limit, next_page_token)
-- `header` reaches the server with start, signal, query and update requests (the others
-- have no header). In these operations `id` is the workflow id.
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local M = {}

--- Checks the `interceptors` connect option; returns the list (possibly empty).
function M.check(list, level)
  level = (level or 1) + 1
  if list == nil then return {} end
  if type(list) ~= "table" then
    error("interceptors: expected a list of tables, got " .. type(list), level)
  end
  local out = {}
  for i, icpt in ipairs(list) do
    if type(icpt) ~= "table" then
      error(("interceptors[%d]: expected a table of functions, got %s"):format(i, type(icpt)), level)
    end
    for name, fn in pairs(icpt) do
      if type(name) ~= "string" or (type(fn) ~= "function" and not (getmetatable(fn) or {}).__call) then
        error(("interceptors[%d]: entries must map operation names to functions (%s = %s)")
          :format(i, tostring(name), type(fn)), level)
      end
    end
    out[i] = icpt
  end
  for k in pairs(list) do
    if compat.math_type(k) ~= "integer" or k < 1 or k > #out then
      error("interceptors: expected a list (array) of tables, got key " .. tostring(k), level)
    end
  end
  return out
end

--- Runs operation `name` through the chain: returns what the outermost interceptor
-- returns; `fn(input)` is the operation itself, called with the final input.
function M.run(list, name, input, fn)
  local call = fn
  for i = #list, 1, -1 do
    local wrap = list[i][name]
    local inner = call
    if wrap then
      call = function(inp) return wrap(inner, inp) end
    end
    local any = list[i]["*"]
    if any then
      local inner2 = call
      call = function(inp) return any(inner2, inp, name) end
    end
  end
  return call(input)
end

return M
