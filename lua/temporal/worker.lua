--- temporal.Worker: a Lua program serves activities to workflows written in any SDK.
--
--   local worker = client:new_worker{
--     task_queue = "game",
--     activities = {
--       grant_item = function(ctx, player, item)
--         ctx:heartbeat("granting")
--         return inventory.grant(player, item)
--       end,
--     },
--   }
--   worker:run()          -- until worker:shutdown(); or worker:start() in a host loop
--
-- Built only on the public primitives (temporal.spawn, task:wait, temporal.sleep, the
-- client's raw WorkflowService and its data converter), so it works wherever those work:
-- temporal-lua, a plain lua5.4 script, a host loop driving temporal.step.
--
-- Shape (the Python SDK's activity worker, sdk-core's rules for heartbeats, timeouts and
-- shutdown):
--  - One task per slot (max_concurrent_activities): a slot long-polls
--    PollActivityTaskQueue, runs the task it gets as an activity in a task of its own,
--    waits for it, polls again. So there are exactly as many polls in flight as free slots.
--  - The activity function is called as fn(ctx, args...) with the arguments decoded by the
--    client's data converter (codec included). Its one return value is the result.
--  - Results and failures go out as the Python SDK sends them (see temporal.failure);
--    an error that is not an error object becomes an ApplicationError with the message and
--    the Lua traceback as stack trace.
--  - Cancellation: once the server asks for it (seen in a heartbeat response), the deadline
--    passes or the worker shuts down past its grace period, ctx:is_cancelled() is true,
--    ctx:heartbeat() / ctx:sleep() raise a CancelledError and the activity is woken at that
--    moment wherever it waits for the worker or the client: ctx:sleep and
--    ctx:wait_for_cancel return at once (scheduler events, no polling), a client call it
--    waits in is cancelled (it raises RPCError CANCELLED). An activity that lets either
--    propagate is reported as cancelled. Code that does not wait is not interrupted.
local core = require("temporal.core")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local client_mod = require("temporal.client")
local errors = require("temporal.errors")
local failure = require("temporal.failure")
local interceptor = require("temporal.interceptor")

local M = {}

local WORKFLOW_SERVICE = client_mod.SERVICES.workflow_service
local data_converter = client_mod.data_converter
local now = core.now

-- temporal.spawn and temporal.sleep, looked up when called: the worker uses exactly what the
-- temporal module offers (whatever host adapter it is built on), nothing below it.
local function spawn(...) return require("temporal").spawn(...) end
-- Waits that are not calls, timers or tasks (a cancellation, the end of an activity, a
-- change of the worker's state) are the scheduler's events: whoever waits is resumed when
-- the thing happens, never polls.
local scheduler = require("temporal.scheduler")
local new_event = scheduler.event

M.DEFAULT_MAX_CONCURRENT_ACTIVITIES = 100
M.DEFAULT_HEARTBEAT_THROTTLE_INTERVAL = 30
M.MAX_HEARTBEAT_THROTTLE_INTERVAL = 60
M.POLL_RPC_TIMEOUT = 70
-- Poll failures that are worth polling again (after a backoff): the server or the path to
-- it; everything else (a namespace that does not exist, no permission...) stops the worker.
local POLL_RETRYABLE = {
  UNAVAILABLE = true, RESOURCE_EXHAUSTED = true, DEADLINE_EXCEEDED = true, INTERNAL = true,
  UNKNOWN = true, ABORTED = true, DATA_LOSS = true, CANCELLED = true, OUT_OF_RANGE = true,
}

local Worker = { __name = "temporal.Worker" }
Worker.__index = Worker
M.Worker = Worker

local Context = { __name = "temporal.ActivityContext" }
Context.__index = Context
M.Context = Context

-- The value ctx:raise_complete_async() raises: the activity completes later, elsewhere.
local COMPLETE_ASYNC = setmetatable({}, {
  __name = "temporal.CompleteAsync",
  __tostring = function() return "temporal: activity will complete asynchronously (raise_complete_async)" end,
})

-- ------------------------------------------------------------------ helpers

local function warn(w, message)
  local log = w.log
  local ok = pcall(log, "warn", ("temporal worker (task queue %s): %s"):format(w.task_queue, message))
  if not ok then io.stderr:write("temporal worker: logger failed: ", message, "\n") end
end

local function default_log(level, message)
  io.stderr:write(level, ": ", message, "\n")
end

-- Something about the worker changed (its state, its running activities, its polls):
-- wakes whoever waits in wait_until.
local function notify(w)
  local ev = w.changed
  if ev then
    w.changed = nil
    ev:set()
  end
end

-- Waits until cond() is true (returns true) or `seconds` pass (returns false; nil: no
-- limit), looking again at each notify(w).
local function wait_until(w, cond, seconds)
  local deadline = seconds and now() + seconds
  while not cond() do
    local left = deadline and deadline - now()
    if left and left <= 0 then return false end
    local ev = w.changed
    if not ev then
      ev = new_event()
      w.changed = ev
    end
    ev:wait(left)
  end
  return true
end

local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

local function check_number(v, name, min, integer, level)
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v or v == math.huge then
    error(("new_worker: %s: expected a number, got %s"):format(name,
      type(v) == "number" and tostring(v) or type(v)), level + 1)
  end
  if integer and compat.math_type(v) ~= "integer" and v ~= math.floor(v) then
    error(("new_worker: %s: expected an integer, got %s"):format(name, tostring(v)), level + 1)
  end
  if v < min or (min == 0 and v == 0 and name:find("per_second")) then
    error(("new_worker: %s: must be %s %s, got %s"):format(name,
      name:find("per_second") and ">" or ">=", tostring(min), tostring(v)), level + 1)
  end
  return integer and compat.tointeger(v) or v
end

local function check_string(v, name, level)
  if v ~= nil and (type(v) ~= "string" or v == "") then
    error(("new_worker: %s: expected a non-empty string, got %s"):format(name,
      type(v) == "string" and "an empty string" or type(v)), level + 1)
  end
  return v
end

local function check_boolean(v, name, level)
  if v ~= nil and type(v) ~= "boolean" then
    error(("new_worker: %s: expected a boolean, got %s"):format(name, type(v)), level + 1)
  end
  return v
end

-- ------------------------------------------------------------------ options

local OPTIONS = {
  task_queue = true, activities = true, dynamic_activity = true,
  max_concurrent_activities = true, identity = true, graceful_shutdown_timeout = true,
  max_activities_per_second = true, max_task_queue_activities_per_second = true,
  max_heartbeat_throttle_interval = true, default_heartbeat_throttle_interval = true,
  build_id = true, use_worker_versioning = true, deployment_options = true, log = true,
  interceptors = true,
}
-- What activity interceptors wrap (the Python SDK's ActivityInboundInterceptor
-- execute_activity and ActivityOutboundInterceptor info / heartbeat).
M.ACTIVITY_OPERATIONS = { execute_activity = true, heartbeat = true, info = true }
local DEPLOYMENT_OPTIONS = { deployment_name = true, build_id = true, use_worker_versioning = true }

local function check_activities(acts, level)
  if acts == nil then return {} end
  if type(acts) ~= "table" then
    error("new_worker: activities: expected a table of name = function, got " .. type(acts), level + 1)
  end
  local out = {}
  for name, fn in pairs(acts) do
    if type(name) ~= "string" or name == "" then
      error(("new_worker: activities: names must be non-empty strings, got %s %s"):format(
        type(name), tostring(name)), level + 1)
    end
    if not is_callable(fn) then
      error(("new_worker: activities.%s: expected a function, got %s"):format(name, type(fn)), level + 1)
    end
    out[name] = fn
  end
  return out
end

-- The worker's interceptor chain: the entries of the client's interceptors that name an
-- activity operation (as Python prepends the client's worker interceptors), then the
-- worker's own (`interceptors` option), whose names must all be activity operations or "*".
local function check_interceptors(list, client_list, level)
  local out = {}
  for _, icpt in ipairs(client_list or {}) do
    local own
    for op in pairs(M.ACTIVITY_OPERATIONS) do
      if icpt[op] ~= nil then
        own = own or {}
        own[op] = icpt[op]
      end
    end
    if own then out[#out + 1] = own end
  end
  if list == nil then return out end
  if type(list) ~= "table" then
    error("new_worker: interceptors: expected a list of tables, got " .. type(list), level + 1)
  end
  local n = #list
  for k in pairs(list) do
    if compat.math_type(k) ~= "integer" or k < 1 or k > n then
      error("new_worker: interceptors: expected a list (array) of tables, got key " .. tostring(k), level + 1)
    end
  end
  for i = 1, n do
    local icpt = list[i]
    if type(icpt) ~= "table" then
      error(("new_worker: interceptors[%d]: expected a table of functions, got %s"):format(i, type(icpt)), level + 1)
    end
    for name, fn in pairs(icpt) do
      if not (M.ACTIVITY_OPERATIONS[name] or name == "*") then
        error(("new_worker: interceptors[%d]: unknown operation '%s' (execute_activity, heartbeat, info or *)")
          :format(i, tostring(name)), level + 1)
      end
      if not is_callable(fn) then
        error(("new_worker: interceptors[%d].%s: expected a function, got %s"):format(i, name, type(fn)), level + 1)
      end
    end
    out[#out + 1] = icpt
  end
  return out
end

local function check_deployment(d, opts, level)
  if d == nil then return nil end
  if type(d) ~= "table" then
    error("new_worker: deployment_options: expected a table, got " .. type(d), level + 1)
  end
  for k in pairs(d) do
    if not DEPLOYMENT_OPTIONS[k] then
      error(("new_worker: deployment_options: unknown option '%s'"):format(tostring(k)), level + 1)
    end
  end
  check_string(d.deployment_name, "deployment_options.deployment_name", level + 1)
  check_string(d.build_id, "deployment_options.build_id", level + 1)
  check_boolean(d.use_worker_versioning, "deployment_options.use_worker_versioning", level + 1)
  if not d.deployment_name or not d.build_id then
    error("new_worker: deployment_options: deployment_name and build_id are required", level + 1)
  end
  if opts.build_id or opts.use_worker_versioning ~= nil then
    error("new_worker: give deployment_options or build_id/use_worker_versioning, not both", level + 1)
  end
  return {
    deployment_name = d.deployment_name,
    build_id = d.build_id,
    worker_versioning_mode = d.use_worker_versioning and "VERSIONED" or "UNVERSIONED",
  }
end

--- client:new_worker(opts) -> Worker (makes no call; worker:run() or worker:start() starts it).
-- See docs/reference.md for the options.
function M.new(client, opts)
  if type(opts) ~= "table" then
    error("new_worker: expected an options table { task_queue =, activities = { name = fn } }, got " .. type(opts), 3)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(("new_worker: unknown option '%s'"):format(tostring(k)), 3) end
  end
  if type(opts.task_queue) ~= "string" or opts.task_queue == "" then
    error("new_worker: task_queue: expected a non-empty string, got "
      .. (opts.task_queue == "" and "an empty string" or type(opts.task_queue)), 3)
  end
  local activities = check_activities(opts.activities, 3)
  if opts.dynamic_activity ~= nil and not is_callable(opts.dynamic_activity) then
    error("new_worker: dynamic_activity: expected a function, got " .. type(opts.dynamic_activity), 3)
  end
  if next(activities) == nil and opts.dynamic_activity == nil then
    error("new_worker: activities: at least one activity (or a dynamic_activity) is required", 3)
  end
  check_string(opts.identity, "identity", 3)
  check_string(opts.build_id, "build_id", 3)
  check_boolean(opts.use_worker_versioning, "use_worker_versioning", 3)
  if opts.use_worker_versioning and not opts.build_id then
    error("new_worker: use_worker_versioning: needs build_id", 3)
  end
  if opts.log ~= nil and not is_callable(opts.log) then
    error("new_worker: log: expected a function(level, message), got " .. type(opts.log), 3)
  end
  local w = setmetatable({
    client = client,
    task_queue = opts.task_queue,
    activities = activities,
    dynamic_activity = opts.dynamic_activity,
    identity = opts.identity or client.identity,
    max_concurrent_activities = check_number(opts.max_concurrent_activities,
      "max_concurrent_activities", 1, true, 3) or M.DEFAULT_MAX_CONCURRENT_ACTIVITIES,
    graceful_shutdown_timeout = check_number(opts.graceful_shutdown_timeout,
      "graceful_shutdown_timeout", 0, false, 3) or 0,
    max_activities_per_second = check_number(opts.max_activities_per_second,
      "max_activities_per_second", 0, false, 3),
    max_task_queue_activities_per_second = check_number(opts.max_task_queue_activities_per_second,
      "max_task_queue_activities_per_second", 0, false, 3),
    max_heartbeat_throttle_interval = check_number(opts.max_heartbeat_throttle_interval,
      "max_heartbeat_throttle_interval", 0, false, 3) or M.MAX_HEARTBEAT_THROTTLE_INTERVAL,
    default_heartbeat_throttle_interval = check_number(opts.default_heartbeat_throttle_interval,
      "default_heartbeat_throttle_interval", 0, false, 3) or M.DEFAULT_HEARTBEAT_THROTTLE_INTERVAL,
    deployment_options = check_deployment(opts.deployment_options, opts, 3),
    build_id = opts.build_id,
    use_worker_versioning = opts.use_worker_versioning or false,
    log = opts.log or default_log,
    interceptors = check_interceptors(opts.interceptors, client.interceptors, 3),
    state = "new",           -- new -> running -> stopping -> stopped
    running = {},            -- task token -> running activity
    running_count = 0,
    polls_in_flight = 0,
    polls = {},              -- track table of each polling slot -> true (track.call: its poll)
    completed = 0,           -- activities whose outcome this worker reported or handed off
    worker_instance_key = client_mod.uuid4(),
    next_poll_at = 0,
  }, Worker)
  return w
end

function Worker:__tostring()
  return ("temporal.Worker(task_queue=%s, %s, %d running)"):format(self.task_queue, self.state, self.running_count)
end

-- ------------------------------------------------------------------ RPC helpers

local function rpc(w, method, request, opts)
  return w.client:_rpc(WORKFLOW_SERVICE, method, request, opts)
end

-- Fields every respond/poll request carries.
local function stamp(w, request)
  request.namespace = w.client.namespace
  request.identity = w.identity
  if w.deployment_options then request.deployment_options = w.deployment_options end
  return request
end

-- Sends one of RespondActivityTask{Completed,Failed,Canceled}; a NOT_FOUND (the server no
-- longer waits for this attempt: timed out, cancelled and reported elsewhere...) is not
-- an error for the worker, anything else is logged.
local function respond(w, act, method, request)
  request.task_token = act.token
  local ok, err = pcall(rpc, w, method, stamp(w, request), { retry = true })
  if ok then return true end
  if errors.is(err, "RPCError") and err.status == "NOT_FOUND" then
    return false
  end
  local info = act.info or {}
  warn(w, ("%s for activity %s (id %s, workflow %s) failed: %s"):format(method,
    tostring(info.activity_type), tostring(info.activity_id), tostring(info.workflow_id), tostring(err)))
  return false
end

local function payloads(dc, values)
  local n = values and (values.n or #values) or 0
  if n == 0 then return nil end
  return { payloads = dc:to_payloads(values) }
end

local function worker_shutdown_failure(w)
  return w.dc:encode_failure(failure.application_error(
    "Worker is shutting down and this activity did not complete in time",
    { type = "WorkerShutdown" }))
end

-- ------------------------------------------------------------------ heartbeats

-- Records why the activity is cancelled; the first reason stays, except that a cancel
-- requested by the workflow wins over a pause or reset (sdk-core's order).
-- Whatever the activity waits for is cut short: ctx:sleep and ctx:wait_for_cancel return
-- (raise) at once, a client call it waits in ends with CANCELLED.
local function cancel(act, reason)
  local current = act.cancel_reason
  if current and not (reason == "cancel_requested" and (current == "paused" or current == "reset")) then
    return
  end
  act.cancel_reason = reason
  if current == nil and not act.finished then
    act.cancelled:set()
    if act.co and act.co ~= coroutine.running() then scheduler.cancel_calls_of(act.co) end
  end
end

-- Throttle interval for one activity (sdk-core): 80 % of the heartbeat timeout, or the
-- default when there is none, at most the maximum.
local function throttle_interval(w, heartbeat_timeout)
  local t
  if heartbeat_timeout and heartbeat_timeout > 0 then t = heartbeat_timeout * 0.8
  else t = w.default_heartbeat_throttle_interval end
  return math.min(t, w.max_heartbeat_throttle_interval)
end

-- The task that sends an activity's heartbeats: the first at once, later ones at most once
-- per throttle interval, always the latest details; it stops when nothing is pending at
-- the end of an interval or when the activity is over.
local function heartbeat_sender(w, act, first)
  local hb = act.hb
  local details = first or nil   -- false: a heartbeat without details
  while true do
    hb.last_sent = now()
    local ok, resp = pcall(rpc, w, "RecordActivityTaskHeartbeat",
      { task_token = act.token, details = details, namespace = w.client.namespace, identity = w.identity },
      { retry = true })
    if ok then
      hb.sent = hb.sent + 1
      if resp.cancel_requested then cancel(act, "cancel_requested")
      elseif resp.activity_reset then cancel(act, "reset")
      elseif resp.activity_paused then cancel(act, "paused") end
    elseif errors.is(resp, "RPCError") and resp.status == "NOT_FOUND" then
      -- The server no longer knows this attempt (timed out, or its workflow is gone).
      cancel(act, "not_found")
    else
      warn(w, "heartbeat failed: " .. tostring(resp))
    end
    if act.finished then break end
    act.ended:wait(math.max(0, hb.interval - (now() - hb.last_sent)))
    if act.finished or hb.pending == nil then break end
    details = hb.pending or nil
    hb.pending = nil
  end
  hb.sender = nil
end

-- ------------------------------------------------------------------ context

local function cancelled_error(act)
  return errors.new("CancelledError", {
    message = "Cancelled", details = { n = 0 }, reason = act.cancel_reason,
  })
end

local function deadline_passed(act)
  return act.local_deadline ~= nil and now() >= act.local_deadline
end

-- The cancellation state, with the deadline checked lazily (no timer per activity).
local function cancel_reason(act)
  if not act.cancel_reason and deadline_passed(act) then cancel(act, "timed_out") end
  return act.cancel_reason
end

local function check_ctx(ctx, name)
  if getmetatable(ctx) ~= Context then
    error(("%s: call it with ':' (ctx:%s(...))"):format(name, name), 3)
  end
  return rawget(ctx, "_act")
end

-- Records a heartbeat (the end of the interceptors' heartbeat chain).
local function record_heartbeat(act, values, level)
  if cancel_reason(act) then error(cancelled_error(act), level + 1) end
  if act.finished then return end
  local w = act.worker
  local ok, p = pcall(payloads, w.dc, values)
  if not ok then error("heartbeat: " .. tostring(p), level + 1) end
  local hb = act.hb
  hb.recorded = hb.recorded + 1
  if hb.sender then
    hb.pending = p or false   -- false: a heartbeat without details; the latest wins
  else
    -- The first heartbeat (or the first after a quiet interval) goes out at once.
    hb.sender = spawn(heartbeat_sender, w, act, p or false)
  end
end

local function heartbeat_op(input)
  return record_heartbeat(rawget(input.ctx, "_act"), input.details, 3)
end

--- ctx:heartbeat(...): records a heartbeat with these details (converted now, sent
-- throttled: the first at once, then at most once per 80 % of the heartbeat timeout, the
-- latest details winning). Raises a CancelledError once the activity is cancelled.
-- Goes through the worker's heartbeat interceptors.
function Context:heartbeat(...)
  local act = check_ctx(self, "heartbeat")
  local list = act.worker.interceptors
  if #list == 0 then return record_heartbeat(act, compat.pack(...), 2) end
  -- input: ctx, details (packed: n is the count)
  interceptor.run(list, "heartbeat", { ctx = self, details = compat.pack(...) }, heartbeat_op)
end

--- ctx:is_cancelled() -> boolean: the server asked to cancel, the deadline passed, the
-- worker is shutting down past its grace period, or the server no longer knows the attempt.
function Context:is_cancelled()
  local act = check_ctx(self, "is_cancelled")
  return cancel_reason(act) ~= nil
end

--- ctx:cancellation_details() -> nil, or { cancel_requested, paused, reset, timed_out,
-- not_found, worker_shutdown } (booleans) naming why the activity was cancelled.
function Context:cancellation_details()
  local act = check_ctx(self, "cancellation_details")
  local reason = cancel_reason(act)
  if not reason then return nil end
  return {
    cancel_requested = reason == "cancel_requested", paused = reason == "paused",
    reset = reason == "reset", timed_out = reason == "timed_out",
    not_found = reason == "not_found", worker_shutdown = reason == "worker_shutdown",
  }
end

--- ctx:sleep(seconds): like temporal.sleep, but raises a CancelledError as soon as the
-- activity is cancelled (it is woken at that moment).
function Context:sleep(seconds)
  local act = check_ctx(self, "sleep")
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
    error("sleep: seconds must be a non-negative number", 2)
  end
  local deadline = now() + seconds
  while not cancel_reason(act) do
    local left = deadline - now()
    if left <= 0 then return end
    act.cancelled:wait(left)
  end
  error(cancelled_error(act), 2)
end

--- ctx:wait_for_cancel([timeout]) -> boolean: waits until the activity is cancelled (true)
-- or `timeout` seconds pass (false; nil: no limit). Python's wait_for_cancelled.
function Context:wait_for_cancel(timeout)
  local act = check_ctx(self, "wait_for_cancel")
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("wait_for_cancel: timeout must be a non-negative number or nil", 2)
  end
  local deadline = timeout and now() + timeout
  while not cancel_reason(act) do
    local left = deadline and deadline - now()
    if left and left <= 0 then return false end
    act.cancelled:wait(left)
  end
  return true
end

--- ctx:is_worker_shutdown() -> boolean: the worker has begun shutting down.
function Context:is_worker_shutdown()
  local act = check_ctx(self, "is_worker_shutdown")
  return act.worker.state ~= "running"
end

--- ctx:raise_complete_async(): ends the activity function without completing the activity;
-- whoever holds ctx.info.task_token completes it later through
-- client:get_async_activity_handle{ task_token = ... } (Python's activity.raise_complete_async()).
function Context:raise_complete_async()
  check_ctx(self, "raise_complete_async")
  error(COMPLETE_ASYNC, 0)
end

-- ------------------------------------------------------------------ running one activity

-- The attempt's deadline (server time): the earlier of start-to-close and schedule-to-close.
local function deadline_of(resp)
  local started = resp.started_time
  local deadline
  if resp.start_to_close_timeout and resp.start_to_close_timeout > 0 and started then
    deadline = started + resp.start_to_close_timeout
  end
  if resp.schedule_to_close_timeout and resp.schedule_to_close_timeout > 0 and resp.scheduled_time then
    local d = resp.scheduled_time + resp.schedule_to_close_timeout
    if not deadline or d < deadline then deadline = d end
  end
  return deadline
end

local function decode_info(w, resp, heartbeat_details)
  local we = resp.workflow_execution or {}
  local started = resp.started_time
  local deadline = deadline_of(resp)
  return {
    activity_id = resp.activity_id or "",
    activity_type = resp.activity_type and resp.activity_type.name or "",
    attempt = resp.attempt or 1,
    task_token = resp.task_token,
    task_queue = w.task_queue,
    workflow_id = we.workflow_id or "",
    workflow_run_id = we.run_id or "",
    workflow_type = resp.workflow_type and resp.workflow_type.name or "",
    workflow_namespace = resp.workflow_namespace or w.client.namespace,
    scheduled_time = resp.scheduled_time,
    current_attempt_scheduled_time = resp.current_attempt_scheduled_time,
    started_time = started,
    schedule_to_close_timeout = resp.schedule_to_close_timeout,
    start_to_close_timeout = resp.start_to_close_timeout,
    heartbeat_timeout = resp.heartbeat_timeout,
    deadline = deadline,
    heartbeat_details = heartbeat_details,
    retry_policy = resp.retry_policy,
    priority = resp.priority,
    header = resp.header,
  }
end

local function info_op(input) return input.info end
local function execute_op(input)
  return input.fn(input.ctx, compat.unpack(input.args, 1, input.args.n))
end

-- fn wrapped in the worker's interceptors: info once, then execute_activity.
local function intercepted(w, fn, name, header)
  return function(ctx, ...)
    local list = w.interceptors
    rawset(ctx, "info", interceptor.run(list, "info", { ctx = ctx, info = ctx.info }, info_op))
    local fields = {}
    for k, v in pairs(header or {}) do fields[k] = v end
    -- input: ctx, activity (the type name), fn, args (packed), header (name -> payload)
    return interceptor.run(list, "execute_activity", {
      ctx = ctx, activity = name, fn = fn, args = compat.pack(...), header = fields,
    }, execute_op)
  end
end

-- Calls fn(ctx, args...) and returns ok, results (packed) or false, error, traceback.
local function call_activity(fn, ctx, args)
  local trace
  local function handler(e)
    -- The activity's frames only: cut at the worker's own xpcall.
    -- ("" rather than nil: LuaJIT's traceback returns a nil message as it is)
    trace = debug.traceback("", 2):gsub("^\n", ""):gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
    return e
  end
  local r = compat.pack(xpcall(fn, handler, ctx, compat.unpack(args, 1, args.n)))
  if r[1] then return true, compat.pack(compat.unpack(r, 2, r.n)) end
  return false, r[2], trace
end

-- The failure to send for an error the activity raised.
local function failure_of(w, err, trace)
  if type(err) == "string" then
    -- A plain Lua error: message and traceback (Python sends the exception's traceback).
    err = failure.application_error(err, { stack_trace = trace })
  elseif errors.is(err, "FailureError") and err.failure == nil and err.stack_trace == nil and trace then
    local copy = {}
    for k, v in pairs(err) do copy[k] = v end
    copy.stack_trace = trace
    err = setmetatable(copy, getmetatable(err))
  end
  return w.dc:encode_failure(err)
end

-- The activity function is over (or the worker gave up on it).
local function finish(act)
  act.finished = true
  act.ended:set()
end

-- Its outcome is reported (or handed off): it no longer counts as running, so a shutdown
-- that waits for the running activities also waits for their reports.
local function release(w, act)
  if w.running[act.token] == act then
    w.running[act.token] = nil
    w.running_count = w.running_count - 1
    notify(w)
  end
end

-- A task the poll brought, counted as running from the moment it arrives (so a shutdown
-- never misses one that has not started yet).
local function receive(w, resp)
  local act = {
    worker = w, token = resp.task_token, finished = false,
    hb = { recorded = 0, sent = 0 }, received = now(),
    cancelled = new_event(),   -- set when cancelled (while running)
    ended = new_event(),       -- set when the activity function has returned
  }
  local deadline = deadline_of(resp)
  if deadline and resp.started_time then
    -- on this machine's clock: the server's deadline measured from when the task came
    act.local_deadline = act.received + (deadline - resp.started_time)
  end
  w.running[act.token] = act
  w.running_count = w.running_count + 1
  return act
end

-- Runs one activity task to its reported outcome (in its own task).
local function execute(w, resp, act)
  if act.detached then return end   -- handed back by the shutdown before it could start
  act.co = coroutine.running()       -- what a cancellation wakes
  local dc = w.dc
  local ok, outcome, trace
  local name = resp.activity_type and resp.activity_type.name or ""
  local fn = w.activities[name] or w.dynamic_activity
  local args_ok, args = pcall(dc.from_payloads, dc, resp.input)
  local hb_ok, hb_details = pcall(dc.from_payloads, dc, resp.heartbeat_details)
  local info = decode_info(w, resp, hb_ok and hb_details or { n = 0 })
  act.info = info
  act.hb.interval = throttle_interval(w, resp.heartbeat_timeout)
  if not fn then
    local names = {}
    for k in pairs(w.activities) do names[#names + 1] = k end
    table.sort(names)
    ok, outcome = false, failure.application_error(
      ("Activity function %s for workflow %s is not registered on this worker, available activities: %s")
        :format(name, info.workflow_id, table.concat(names, ", ")), { type = "NotFoundError" })
  elseif not args_ok then
    ok, outcome = false, failure.application_error("Failed decoding arguments", { cause = args })
  elseif not hb_ok then
    ok, outcome = false, failure.application_error("Failed decoding heartbeat details",
      { non_retryable = true, cause = hb_details })
  elseif w.state == "stopped" or w.handing_back
      or (w.state == "stopping" and now() >= w.stop_requested_at + w.graceful_shutdown_timeout) then
    -- Received once the grace period is over (a poll answered as the shutdown cancelled
    -- it): hand it back at once, unstarted.
    ok, outcome = false, "shutdown"
  else
    local ctx = setmetatable({ _act = act, info = info, client = w.client, worker = w }, Context)
    local results
    if #w.interceptors > 0 then
      fn = intercepted(w, fn, name, resp.header and resp.header.fields)
    end
    ok, results, trace = call_activity(fn, ctx, args)
    if ok then
      if results.n > 1 then
        ok, outcome = false, failure.application_error(
          ("activity %s returned %d values; an activity has one result (return a table for several)")
            :format(name, results.n))
      else
        outcome = results[1]
      end
    else
      outcome = results
    end
  end
  finish(act)
  if act.detached then return end   -- the worker already reported it (shutdown)
  if ok then
    local enc_ok, p = pcall(dc.to_payloads, dc, compat.pack(outcome))
    if enc_ok then
      respond(w, act, "RespondActivityTaskCompleted", { result = { payloads = p } })
    else
      respond(w, act, "RespondActivityTaskFailed", {
        failure = failure_of(w, "activity result: " .. tostring(p)) })
    end
  elseif outcome == COMPLETE_ASYNC then
    act.async = true   -- completed later through an AsyncActivityHandle
  elseif outcome == "shutdown" then
    respond(w, act, "RespondActivityTaskFailed", { failure = worker_shutdown_failure(w) })
  elseif act.cancel_reason and (errors.is(outcome, "CancelledError")
      or (errors.is(outcome, "RPCError") and outcome.status == "CANCELLED")) then
    local reason = act.cancel_reason
    -- timed_out / not_found: the server has timed this attempt out already, nothing to
    -- report (sdk-core does the same). The server takes a cancellation only when the
    -- workflow asked for it: a pause or reset is reported as a failure (as Python does).
    if reason == "worker_shutdown" then
      respond(w, act, "RespondActivityTaskFailed", { failure = worker_shutdown_failure(w) })
    elseif reason == "paused" or reason == "reset" then
      local what = reason == "paused" and "pause" or "reset"
      respond(w, act, "RespondActivityTaskFailed", { failure = dc:encode_failure(failure.application_error(
        "Unhandled activity cancel error produced by activity " .. what,
        { type = reason == "paused" and "ActivityPause" or "ActivityReset" })) })
    elseif reason == "cancel_requested" then
      local det_ok, det = pcall(payloads, dc, errors.is(outcome, "CancelledError") and outcome.details or nil)
      respond(w, act, "RespondActivityTaskCanceled", { details = det_ok and det or nil })
    end
  else
    local f_ok, f = pcall(failure_of, w, outcome, trace)
    if not f_ok then
      f = { message = "Failed building the failure: " .. tostring(f), source = failure.SOURCE,
            application_failure_info = {} }
    end
    -- Heartbeat details still waiting for the throttle go with the failure, so the next
    -- attempt sees the latest ones.
    local pending = act.hb.pending
    act.hb.pending = nil
    respond(w, act, "RespondActivityTaskFailed", { failure = f,
        last_heartbeat_details = pending or nil })
  end
  w.completed = w.completed + 1
  release(w, act)
end

-- ------------------------------------------------------------------ polling

-- Waits for the worker's rate limit (max_activities_per_second) before a poll.
local function rate_wait(w)
  local rate = w.max_activities_per_second
  if not rate then return end
  local t = now()
  local at = math.max(t, w.next_poll_at)
  w.next_poll_at = at + 1 / rate
  if at > t then wait_until(w, function() return w.state ~= "running" end, at - t) end
end

local function poll_request(w)
  local req = stamp(w, {
    task_queue = { name = w.task_queue, kind = "NORMAL" },
    worker_instance_key = w.worker_instance_key,
  })
  if w.max_task_queue_activities_per_second then
    req.task_queue_metadata = { max_tasks_per_second = w.max_task_queue_activities_per_second }
  end
  if w.build_id then
    req.worker_version_capabilities = { build_id = w.build_id, use_versioning = w.use_worker_versioning }
  end
  return req
end

local function fail_worker(w, err)
  if w.fatal == nil then w.fatal = err end
  w:initiate_shutdown()
end

-- One slot: poll, run what comes, poll again, until the worker stops.
local function slot_loop(w)
  local request = poll_request(w)
  -- the poll in flight (track.call), so that the shutdown can cancel it
  local track = {}
  local poll_opts = { rpc_timeout = M.POLL_RPC_TIMEOUT, track = track }
  w.polls[track] = true
  local backoff = 0
  while w.state == "running" do
    rate_wait(w)
    if w.state ~= "running" then break end
    w.polls_in_flight = w.polls_in_flight + 1
    local ok, resp = pcall(rpc, w, "PollActivityTaskQueue", request, poll_opts)
    track.call = nil
    -- A task that came back (even from a poll the shutdown cancelled: the server may have
    -- handed it out just before) is counted as running before the poll counts as ended.
    local act = ok and resp.task_token and resp.task_token ~= "" and receive(w, resp)
    w.polls_in_flight = w.polls_in_flight - 1
    notify(w)
    if ok then
      backoff = 0
      if act then
        local t = spawn(execute, w, resp, act)
        -- the slot cancels the activity at its deadline (the server times it out then)
        if act.local_deadline and not act.ended:wait(math.max(0, act.local_deadline - now())) then
          cancel(act, "timed_out")
        end
        local done, err = pcall(t.wait, t)
        if not done then warn(w, "activity task failed inside the worker: " .. tostring(err)) end
      end
    elseif errors.is(resp, "RPCError") and POLL_RETRYABLE[resp.status] then
      if resp.status ~= "DEADLINE_EXCEEDED" and w.state == "running" then
        backoff = math.min(math.max(backoff * 2, 0.2), 10)
        warn(w, ("poll failed, polling again in %.1f s: %s"):format(backoff, tostring(resp)))
        wait_until(w, function() return w.state ~= "running" end, backoff)
      end
    else
      if errors.is(resp, "RPCError") then
        resp.message = ("activity worker on task queue %s: %s"):format(w.task_queue, resp.message)
      end
      fail_worker(w, resp)
    end
  end
  w.polls[track] = nil
end

-- Cancels the polls in flight: each ends at once with CANCELLED. A task the server handed
-- to one of them just before still arrives (the call completed first) and is run or handed
-- back; one handed out while the cancellation travels is never received and the server
-- retries it once its start-to-close timeout passes, as for a worker that crashed.
local function cancel_polls(w)
  for track in pairs(w.polls) do
    local call = track.call
    if call then call:cancel() end
  end
end

-- ------------------------------------------------------------------ lifecycle

-- Shutdown after stop was asked: tell the server, wait for the running activities up to
-- the grace period, then cancel the rest and hand them back.
local function drain(w)
  pcall(rpc, w, "ShutdownWorker", {
    namespace = w.client.namespace, identity = w.identity, reason = "graceful shutdown",
    worker_instance_key = w.worker_instance_key, task_queue = w.task_queue,
    task_queue_types = { "ACTIVITY" },
  }, { rpc_timeout = 10 })
  local grace_end = w.stop_requested_at + w.graceful_shutdown_timeout
  -- The polls end: cancelled by initiate_shutdown, or completed by the server on
  -- ShutdownWorker (a task one of them still brings is run within the grace period).
  local function idle() return w.running_count == 0 and w.polls_in_flight == 0 end
  wait_until(w, idle, grace_end - now())
  -- Past the grace period: a poll the server has not completed yet is cancelled; every
  -- poll has ended before the rest is handed back, so no task it brings is missed.
  if w.polls_in_flight > 0 then
    cancel_polls(w)
    wait_until(w, function() return w.polls_in_flight == 0 end)
  end
  w.handing_back = true
  local left = {}
  -- (one whose function has returned is only waiting for its report to go out)
  for _, act in pairs(w.running) do
    if not act.finished then left[#left + 1] = act end
  end
  if #left > 0 then
    for _, act in ipairs(left) do
      cancel(act, "worker_shutdown")
      act.detached = true
      finish(act)
      release(w, act)
    end
    -- Hand them back now (sdk-core reports them as WorkerShutdown failures): the server
    -- retries them elsewhere instead of waiting for their timeouts.
    local reports = {}
    for i, act in ipairs(left) do
      reports[i] = spawn(respond, w, act, "RespondActivityTaskFailed",
        { failure = worker_shutdown_failure(w) })
    end
    for _, t in ipairs(reports) do pcall(t.wait, t) end
    w.completed = w.completed + #left
  end
  wait_until(w, function() return w.running_count == 0 end)   -- the reports in flight
end

-- Startup: check the namespace as Python's Worker does (and learn whether the server ends
-- outstanding polls on ShutdownWorker), then one polling task per slot.
local function startup(w)
  local ok, ns = pcall(rpc, w, "DescribeNamespace", { namespace = w.client.namespace }, { retry = true })
  if not ok then
    if errors.is(ns, "RPCError") then
      ns.message = ("activity worker on task queue %s: %s"):format(w.task_queue, ns.message)
    end
    w.fatal = ns
    w.state = "stopped"
    notify(w)
    return
  end
  local caps = ns.namespace_info and ns.namespace_info.capabilities or {}
  w.polls_complete_on_shutdown = caps.worker_poll_complete_on_shutdown or false
  if w.state == "running" then
    for _ = 1, w.max_concurrent_activities do spawn(slot_loop, w) end
  end
end

local function stop(w)
  if w.starter then w.starter:wait() end
  if w.state == "stopping" then drain(w) end
  w.state = "stopped"
  notify(w)
end

--- worker:start() -> worker: starts polling without waiting (for host loops and other
-- tasks); the worker runs as tasks the scheduler drives. Starting twice is an error.
function Worker:start()
  if getmetatable(self) ~= Worker then error("start: call it with ':' (worker:start())", 2) end
  if self.state ~= "new" then error(("start: the worker is already %s"):format(self.state), 2) end
  self.dc = data_converter(self.client)
  self.state = "running"
  self.starter = spawn(startup, self)
  return self
end

--- worker:run(): starts the worker (unless started) and waits until it has stopped (after
-- worker:shutdown() or a fatal poll error, which it raises). Inside a task it yields;
-- elsewhere it blocks and drives the scheduler.
function Worker:run()
  if getmetatable(self) ~= Worker then error("run: call it with ':' (worker:run())", 2) end
  if self.state == "new" then self:start() end
  wait_until(self, function() return self.state == "stopped" end)
  if self.fatal ~= nil then error(self.fatal, 0) end
end

--- worker:initiate_shutdown(): stops polling and begins the graceful shutdown without
-- waiting for it (safe from inside an activity). Idempotent.
function Worker:initiate_shutdown()
  if getmetatable(self) ~= Worker then error("initiate_shutdown: call it with ':'", 2) end
  if self.state == "new" then self.state = "stopped" return end
  if self.state == "running" then
    self.state = "stopping"
    self.stop_requested_at = now()
    -- A server that cannot complete polls on ShutdownWorker would hold them open up to a
    -- minute: cancel them now (no poll is started after this point).
    if not self.polls_complete_on_shutdown then cancel_polls(self) end
    self.stopper = spawn(stop, self)
    notify(self)
  end
end

--- worker:shutdown(): initiate_shutdown, then waits until the worker has stopped: running
-- activities get graceful_shutdown_timeout seconds to finish, then they are cancelled and
-- reported failed (ApplicationError type "WorkerShutdown", retryable) so the server retries
-- them elsewhere. Must not be called from one of the worker's own activities (use
-- initiate_shutdown there).
function Worker:shutdown()
  if getmetatable(self) ~= Worker then error("shutdown: call it with ':' (worker:shutdown())", 2) end
  self:initiate_shutdown()
  wait_until(self, function() return self.state == "stopped" end)
end

--- worker:is_running() -> boolean: started and not yet stopped (true while shutting down).
function Worker:is_running()
  return self.state == "running" or self.state == "stopping"
end

return M
