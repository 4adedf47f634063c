-- The Lua activity worker against the real test bed: Python workflows (spec/worker/worker.py,
-- "CallLuaActivity" and "FanOutLuaActivities", run by the Python worker) call activities by
-- name on a task queue that only this Lua worker polls, and report from the Python side what
-- came back: values, ActivityError causes, attempts, heartbeat details, cancellations.
-- The spec and the worker share one Lua state: while the spec waits (wait_for, a workflow
-- result) the scheduler runs the worker's tasks.
local helper = require("support.helper")
local temporal = require("temporal")

local errors = temporal.errors
local compat = require("temporal.compat")

-- Waits (driving the scheduler, so the worker runs) until fn() is truthy; returns its value.
local function wait_for(fn, timeout, what)
  local deadline = temporal.core.now() + (timeout or 30)
  while true do
    local v = fn()
    if v then return v end
    if temporal.core.now() > deadline then error("timed out waiting for " .. (what or "a condition"), 2) end
    temporal.sleep(0.02)
  end
end

describe("Lua activity worker", function()
  local client, worker, tq
  local seen = {}        -- what the activities saw, by test
  local flags = {}       -- released by the tests

  local function call(spec, opts)
    spec.task_queue = spec.task_queue or tq
    local id = helper.unique_id("lua-act")
    local h = client:start_workflow("CallLuaActivity", {
      id = id, task_queue = helper.task_queue, args = { spec }, execution_timeout = 120,
    })
    if opts and opts.no_wait then return h end
    return h:result(), h
  end

  local activities = {
    echo = function(ctx, ...)
      local args = compat.pack(...)
      local out = temporal.array{}
      for i = 1, args.n do
        local v = args[i]
        if v == nil then v = temporal.null end
        out[i] = v
      end
      seen.echo = { args = args, info = ctx.info }
      return { echo = out, kinds = { compat.math_type(args[1]), compat.math_type(args[2]), type(args[3]) } }
    end,
    flaky = function(ctx, fail_until)
      seen.flaky = (seen.flaky or 0) + 1
      if ctx.info.attempt < fail_until then error("boom on attempt " .. ctx.info.attempt) end
      return { attempt = ctx.info.attempt }
    end,
    declined = function()
      seen.declined = (seen.declined or 0) + 1
      error(temporal.application_error("card declined", {
        type = "PaymentError", non_retryable = true,
        details = { { code = 51 }, "try another card" }, next_retry_delay = 0.5,
      }))
    end,
    retry_later = function()
      error(temporal.application_error("busy", { type = "Busy", next_retry_delay = 0.5 }))
    end,
    lua_error = function()
      local t = nil
      return t.field   -- attempt to index a nil value
    end,
    two_results = function() return 1, 2 end,
    progress = function(ctx)
      if ctx.info.attempt == 1 then
        ctx:heartbeat("step", 1)        -- sent at once
        ctx:heartbeat("step", 2)        -- throttled: waits for the interval
        seen.progress = "beating"
        while not flags.progress do ctx:sleep(0.02) end
        error("crash after two heartbeats")
      end
      return { attempt = ctx.info.attempt, details = ctx.info.heartbeat_details }
    end,
    stalls = function(ctx)
      ctx:heartbeat("alive")
      seen.stalls = "stalled"
      while not flags.stalls do temporal.sleep(0.02) end
      ctx:heartbeat("too late")            -- the server no longer knows this attempt
      local ok, err = pcall(function() while true do ctx:sleep(0.02) end end)
      seen.stalls_after = { ok = ok, err = err, details = ctx:cancellation_details() }
      error(err)
    end,
    cancellable = function(ctx)
      seen.cancellable = "started"
      local ok, err = pcall(function()
        while true do
          ctx:heartbeat("working")
          ctx:sleep(0.05)
        end
      end)
      seen.cancellable_err = err
      seen.cancellable_details = ctx:cancellation_details()
      assert(not ok)
      error(errors.new("CancelledError", { message = "Cancelled", details = compat.pack("cleaned up", 7) }))
    end,
    deadline = function(ctx)
      local ok, err = pcall(function() while true do ctx:sleep(0.02) end end)
      seen.deadline = { ok = ok, err = err, details = ctx:cancellation_details() }
      error(err)
    end,
    pausable = function(ctx)
      if ctx.info.attempt > 1 then return { attempt = ctx.info.attempt } end
      seen.pausable = "running"
      local ok, err = pcall(function()
        while true do
          ctx:heartbeat("running")
          ctx:sleep(0.05)
        end
      end)
      seen.pausable_details = ctx:cancellation_details()
      assert(not ok)
      error(err)
    end,
    async = function(ctx)
      seen.async_token = ctx.info.task_token
      ctx:raise_complete_async()
    end,
    info = function(ctx)
      local i = ctx.info
      return {
        activity_type = i.activity_type, attempt = i.attempt, task_queue = i.task_queue,
        workflow_type = i.workflow_type, workflow_id = i.workflow_id,
        has_token = type(i.task_token) == "string" and #i.task_token > 0,
        deadline_ok = i.deadline ~= nil and i.started_time ~= nil
          and math.abs(i.deadline - i.started_time - 7) < 0.01,
        heartbeat_timeout = i.heartbeat_timeout, start_to_close_timeout = i.start_to_close_timeout,
      }
    end,
  }

  setup(function()
    client = temporal.connect(helper.address, { namespace = helper.namespace })
    tq = helper.unique_id("lua-worker-tq")
    worker = client:new_worker{ task_queue = tq, activities = activities, max_concurrent_activities = 10 }
    worker:start()
  end)

  teardown(function()
    if worker then worker:shutdown() end
    client:close()
  end)

  it("runs an activity by name: values both ways, compared on the Python side", function()
    -- integers, floats, unicode, None in the middle, nested nulls, [] and {}, an int64 > 2^53
    local spec = { activity = "echo" }
    spec.args = temporal.array{ 1, 2.5, "héllo ✓", temporal.null, true,
      { a = { 1, { b = temporal.null } } }, temporal.array{}, temporal.object{}, helper.int64("9007199254740993") }
    local r = call(spec)
    assert.is_true(r.echo_same)
    assert.same({ "int", "float", "str", "NoneType", "bool", "dict", "list", "dict", "int" }, r.types)
    assert.same({ "integer", "float", "string" }, r.result.kinds)
    -- the Lua side got nil for None, in its place (args.n counts it)
    assert.equals(9, seen.echo.args.n)
    assert.is_nil(seen.echo.args[4])
    assert.equals(helper.int64("9007199254740993"), seen.echo.args[9])
    assert.equals("echo", seen.echo.info.activity_type)
    assert.equals(1, seen.echo.info.attempt)
    assert.equals(tq, seen.echo.info.task_queue)
    assert.equals("CallLuaActivity", seen.echo.info.workflow_type)
  end)

  it("gives the activity its info: ids, attempt, timeouts, deadline", function()
    local r = call({ activity = "info", start_to_close = 7, heartbeat_timeout = 3 })
    assert.equals("info", r.result.activity_type)
    assert.equals(1, r.result.attempt)
    assert.equals(tq, r.result.task_queue)
    assert.equals("CallLuaActivity", r.result.workflow_type)
    assert.matches("^lua%-act", r.result.workflow_id)
    assert.is_true(r.result.has_token)
    assert.is_true(r.result.deadline_ok)
    assert.equals(3, r.result.heartbeat_timeout)
    assert.equals(7, r.result.start_to_close_timeout)
  end)

  it("retries a Lua error until the attempt that succeeds", function()
    seen.flaky = 0
    local r = call({ activity = "flaky", args = { 3 }, retry = { maximum_attempts = 5 } })
    assert.same({ attempt = 3 }, r.result)
    assert.equals(3, seen.flaky)
  end)

  it("sends application_error's type, non_retryable, details and next_retry_delay; non-retryable stops", function()
    seen.declined = 0
    local r = call({ activity = "declined", retry = { maximum_attempts = 5 } })
    assert.equals("ActivityError", r.error)
    assert.equals("ApplicationError", r.cause)
    assert.equals("card declined", r.message)
    assert.equals("PaymentError", r.type)
    assert.is_true(r.non_retryable)
    assert.same({ { code = 51 }, "try another card" }, r.details)
    assert.equals(0.5, r.next_retry_delay)
    assert.equals("NON_RETRYABLE_FAILURE", r.retry_state)
    assert.equals(1, seen.declined)
  end)

  it("reports a plain Lua error as ApplicationError with the message and the traceback", function()
    local r = call({ activity = "lua_error" })
    assert.equals("ApplicationError", r.cause)
    assert.matches("attempt to index .*a nil value", r.message)  -- LuaJIT: "index local 't' (a nil value)"
    assert.equals(temporal.null, r.type)
    assert.is_false(r.non_retryable)
    assert.matches("stack traceback", r.stack_trace)
    assert.matches("activity_worker_spec%.lua", r.stack_trace)
    assert.equals("MAXIMUM_ATTEMPTS_REACHED", r.retry_state)
  end)

  it("refuses to drop extra return values: more than one result is an error", function()
    local r = call({ activity = "two_results" })
    assert.equals("ApplicationError", r.cause)
    assert.matches("returned 2 values", r.message)
  end)

  it("names an activity the worker does not have (NotFoundError)", function()
    local r = call({ activity = "no_such_activity" })
    assert.equals("ApplicationError", r.cause)
    assert.equals("NotFoundError", r.type)
    assert.matches("no_such_activity", r.message)
    assert.matches("available activities: .*echo", r.message)
  end)

  it("throttles heartbeats and hands the latest details to the next attempt", function()
    seen.progress, flags.progress = nil, nil
    local h = call({ activity = "progress", heartbeat_timeout = 100, retry = { maximum_attempts = 2 } },
      { no_wait = true })
    wait_for(function() return seen.progress end, 30, "the first attempt")
    -- The server has the first heartbeat; the second waits for the 60 s throttle interval.
    local hb = wait_for(function()
      local d = h:describe().raw.pending_activities
      local pa = d and d[1]
      return pa and pa.heartbeat_details and temporal.converter.default:from_payloads(pa.heartbeat_details)
    end, 30, "the first heartbeat on the server")
    assert.same({ "step", 1, n = 2 }, hb)
    flags.progress = true
    local r = h:result()
    assert.equals(2, r.result.attempt)
    -- the throttled details went out with the failure: the next attempt sees them
    assert.same({ "step", 2 }, r.result.details)
  end)

  it("times out an activity that stops heartbeating; a late heartbeat cancels it locally", function()
    seen.stalls, flags.stalls, seen.stalls_after = nil, nil, nil
    local h = call({ activity = "stalls", heartbeat_timeout = 1 }, { no_wait = true })
    wait_for(function() return seen.stalls end, 30, "the activity")
    local r = h:result()
    assert.equals("ActivityError", r.error)
    assert.equals("TimeoutError", r.cause)
    assert.equals("HEARTBEAT", r.timeout_type)
    assert.same({ "alive" }, r.last_heartbeat_details)
    assert.equals("MAXIMUM_ATTEMPTS_REACHED", r.retry_state)
    flags.stalls = true
    local after = wait_for(function() return seen.stalls_after end, 30, "the late heartbeat's answer")
    assert.is_false(after.ok)
    assert.is_true(errors.is(after.err, "CancelledError"))
    assert.is_true(after.details.not_found)
  end)

  it("delivers a cancellation from the workflow; the activity's CancelledError details reach Python", function()
    seen.cancellable, seen.cancellable_err = nil, nil
    local h = call({ activity = "cancellable", heartbeat_timeout = 2, cancel_on_signal = true },
      { no_wait = true })
    wait_for(function() return seen.cancellable end, 30, "the activity")
    h:signal("cancel")
    local r = h:result()
    assert.equals("ActivityError", r.error)
    assert.equals("CancelledError", r.cause)
    assert.same({ "cleaned up", 7 }, r.details)
    assert.is_true(errors.is(seen.cancellable_err, "CancelledError"))
    assert.is_true(seen.cancellable_details.cancel_requested)
  end)

  it("cancels an activity locally when its start-to-close deadline passes", function()
    seen.deadline = nil
    local r = call({ activity = "deadline", start_to_close = 1 })
    assert.equals("ActivityError", r.error)
    assert.equals("TimeoutError", r.cause)
    assert.equals("START_TO_CLOSE", r.timeout_type)
    local d = wait_for(function() return seen.deadline end, 30, "the activity to see its deadline")
    assert.is_false(d.ok)
    assert.is_true(errors.is(d.err, "CancelledError"))
    assert.equals("timed_out", d.err.reason)
    assert.is_true(d.details.timed_out)
  end)

  it("stops an activity paused on the server; unpaused, it runs again and completes", function()
    seen.pausable, seen.pausable_details = nil, nil
    local h = call({ activity = "pausable", heartbeat_timeout = 2, retry = { maximum_attempts = 3 } },
      { no_wait = true })
    wait_for(function() return seen.pausable end, 30, "the activity")
    helper.cli("activity", "pause", "--workflow-id", h.id, "--activity-id", "1")
    local details = wait_for(function() return seen.pausable_details end, 30, "the pause to reach the activity")
    assert.is_true(details.paused)
    assert.is_false(details.cancel_requested)
    -- reported as Python does (a failure typed ActivityPause); the server holds it paused
    local pa = wait_for(function()
      local list = h:describe().raw.pending_activities
      return list and list[1] and list[1].paused and list[1].last_failure and list[1]
    end, 30, "the server to show the activity paused")
    assert.equals("ActivityPause", pa.last_failure.application_failure_info.type)
    helper.cli("activity", "unpause", "--workflow-id", h.id, "--activity-id", "1")
    local r = h:result()
    assert.is_true(r.result.attempt > 1)
  end)

  it("completes asynchronously: the task token goes to get_async_activity_handle", function()
    seen.async_token = nil
    local h = call({ activity = "async" }, { no_wait = true })
    local token = wait_for(function() return seen.async_token end, 30, "the task token")
    client:get_async_activity_handle({ task_token = token }):complete({ done = "later" })
    assert.same({ result = { done = "later" } }, h:result())
  end)

  it("holds polls back under max_activities_per_second", function()
    local w = client:new_worker{ task_queue = tq .. "-limited", activities = activities,
      max_concurrent_activities = 3, max_activities_per_second = 0.001 }   -- a poll per 1,000 s
    w:start()
    wait_for(function() return w.polls_in_flight == 1 end, 30, "the first poll")
    temporal.sleep(0.3)
    -- three free slots, one poll: the other two wait for the limiter (unlimited, all three poll)
    assert.equals(1, w.polls_in_flight)
    local r = call({ activity = "echo", args = { 1, 2.5, "limited" }, task_queue = tq .. "-limited" })
    assert.is_true(r.echo_same)
    assert.equals(0, w.polls_in_flight)   -- the next poll is due in 1,000 s
    w:shutdown()
    assert.equals("stopped", w.state)
  end)

  it("puts the worker's identity and task queue rate limit on its polls (seen by the server)", function()
    local w = client:new_worker{
      task_queue = tq .. "-described", activities = activities, identity = "lua-worker-identity",
      max_task_queue_activities_per_second = 12.5, max_concurrent_activities = 2,
    }
    w:start()
    local pollers = wait_for(function()
      local d = client:describe_task_queue(tq .. "-described", { task_queue_type = "ACTIVITY" })
      return #d.pollers > 0 and d.pollers
    end, 30, "the worker's polls")
    assert.equals("lua-worker-identity", pollers[1].identity)
    assert.equals(12.5, pollers[1].rate_per_second)
    w:shutdown()
  end)
end)

describe("Lua activity worker: converter, dynamic activities, versioning", function()
  it("decodes arguments and encodes results with the client's data converter, codec included", function()
    local decoded, encoded = 0, 0
    -- A codec Python can live with: it marks payloads on the way out, unmarks them on the way in.
    local codec = {
      encode = function(list)
        local out = {}
        for i, p in ipairs(list) do
          local md = {}
          for k, v in pairs(p.metadata) do md[k] = v end
          md["x-lua-codec"] = "1"
          out[i] = { metadata = md, data = p.data }
          encoded = encoded + 1
        end
        return out
      end,
      decode = function(list)
        decoded = decoded + #list
        return list
      end,
    }
    local c = temporal.connect(helper.address, { namespace = helper.namespace,
      data_converter = temporal.DataConverter.new{ codec = codec } })
    local tq = helper.unique_id("lua-worker-codec")
    local w = c:new_worker{ task_queue = tq, activities = {
      add = function(_, a, b) return { sum = a + b } end,
    } }
    w:start()
    local r = c:execute_workflow("CallLuaActivity", { id = helper.unique_id("codec"),
      task_queue = helper.task_queue, args = { { activity = "add", task_queue = tq, args = { 40, 2 } } } })
    w:shutdown()
    c:close()
    assert.same({ sum = 42 }, r.result)
    assert.is_true(decoded >= 2)     -- the activity's two arguments went through codec.decode
    assert.is_true(encoded >= 2)     -- the workflow argument and the activity result through encode
  end)

  it("hands unknown activity types to dynamic_activity", function()
    local c = temporal.connect(helper.address, { namespace = helper.namespace })
    local tq = helper.unique_id("lua-worker-dynamic")
    local w = c:new_worker{ task_queue = tq, activities = { known = function() return "known" end },
      dynamic_activity = function(ctx, ...)
        return { type = ctx.info.activity_type, args = temporal.array(compat.pack(...)) }
      end }
    w:start()
    local function run(activity)
      return c:execute_workflow("CallLuaActivity", { id = helper.unique_id("dynamic"),
        task_queue = helper.task_queue, args = { { activity = activity, task_queue = tq, args = { "x", 1 } } } })
    end
    local known, other = run("known"), run("anything_else")
    w:shutdown()
    c:close()
    assert.equals("known", known.result)
    assert.equals("anything_else", other.result.type)
    assert.same({ "x", 1 }, other.result.args)
  end)

  it("reports build id and deployment options on its polls (seen by the server)", function()
    local c = temporal.connect(helper.address, { namespace = helper.namespace })
    local fn = function() end
    local tq1, tq2 = helper.unique_id("lua-worker-build"), helper.unique_id("lua-worker-deploy")
    local w1 = c:new_worker{ task_queue = tq1, activities = { a = fn }, build_id = "lua-build-1",
      max_concurrent_activities = 1 }
    local w2 = c:new_worker{ task_queue = tq2, activities = { a = fn }, max_concurrent_activities = 1,
      deployment_options = { deployment_name = "lua-deployment", build_id = "lua-build-2" } }
    w1:start()
    w2:start()
    local function poller(tq)
      return wait_for(function()
        local d = c:describe_task_queue(tq, { task_queue_type = "ACTIVITY" })
        return d.raw.pollers and d.raw.pollers[1]
      end, 30, "the poller of " .. tq)
    end
    local p1, p2 = poller(tq1), poller(tq2)
    w1:shutdown()
    w2:shutdown()
    c:close()
    assert.equals("lua-build-1", p1.worker_version_capabilities.build_id)
    assert.equals("lua-deployment", p2.deployment_options.deployment_name)
    assert.equals("lua-build-2", p2.deployment_options.build_id)
    assert.equals("UNVERSIONED", p2.deployment_options.worker_versioning_mode)
  end)
end)

describe("Lua activity worker: Worker Deployment versioning", function()
  it("a VERSIONED worker gets its tasks once its version is current; the server lists it as the version's activity poller", function()
    local c = temporal.connect(helper.address, { namespace = helper.namespace })
    local tq, dep = helper.unique_id("lua-worker-versioned"), helper.unique_id("lua-deployment")
    local w = c:new_worker{ task_queue = tq, max_concurrent_activities = 2,
      deployment_options = { deployment_name = dep, build_id = "v1", use_worker_versioning = true },
      activities = { who = function(ctx) return { build = "v1", attempt = ctx.info.attempt } end } }
    w:start()
    local h = c:start_workflow("CallLuaActivity", { id = helper.unique_id("lua-act-versioned"),
      task_queue = helper.task_queue, args = { { activity = "who", task_queue = tq } }, execution_timeout = 60 })
    -- the polls registered the version and its task queue (activity type) on the server
    local version = wait_for(function()
      local ok, v = pcall(helper.cli_json, "worker", "deployment", "describe-version",
        "--deployment-name", dep, "--build-id", "v1")
      return ok and v.taskQueuesInfos and #v.taskQueuesInfos > 0 and v
    end, 30, "the version on the server")
    assert.same({ { name = tq, type = "activity" } }, version.taskQueuesInfos)
    -- not current yet: the unversioned workflow's activity is not given to it
    assert.equals(2, w.polls_in_flight)
    assert.equals("SCHEDULED", h:describe().raw.pending_activities[1].state)
    assert.equals(0, w.completed)
    helper.cli("worker", "deployment", "set-current-version", "--deployment-name", dep, "--build-id", "v1", "--yes")
    local r = h:result()
    w:shutdown()
    c:close()
    assert.same({ build = "v1", attempt = 1 }, r.result)
    assert.equals(1, w.completed)
  end)
end)

describe("Lua activity worker: a server that completes polls on shutdown", function()
  local extra_server = require("support.extra_server")
  local server
  setup(function() server = extra_server.start({ "frontend.enableCancelWorkerPollsOnShutdown=true" }) end)
  teardown(function() if server then server:stop() end end)

  it("ends its outstanding polls through ShutdownWorker instead of leaving them open", function()
    local c = temporal.connect(server.address)
    local tq = helper.unique_id("lua-worker-pollshutdown")
    local w = c:new_worker{ task_queue = tq, max_concurrent_activities = 8, activities = { a = function() end } }
    w:start()
    wait_for(function() return w.polls_in_flight == 8 end, 30, "eight polls in flight")
    assert.is_true(w.polls_complete_on_shutdown)
    w:shutdown()
    -- the server answers every open poll (empty) right away; a long poll would last a minute
    wait_for(function() return w.polls_in_flight == 0 end, 20, "the server to complete the polls")
    c:close()
  end)

  it("leaves nothing behind over repeated start and shutdown (memory)", function()
    local function cycle()
      local c = temporal.connect(server.address, { lazy = true })
      local w = c:new_worker{ task_queue = helper.unique_id("lua-worker-cycle"), max_concurrent_activities = 4,
        activities = { a = function() end } }
      w:start()
      wait_for(function() return w.polls_in_flight == 4 end, 30, "the polls")
      w:shutdown()
      wait_for(function() return w.polls_in_flight == 0 end, 30, "the polls to end")
      c:close()
    end
    for _ = 1, 10 do cycle() end
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    for _ = 1, 30 do cycle() end
    collectgarbage()
    collectgarbage()
    local growth = collectgarbage("count") - before
    -- measured: about 4 KiB in all; a worker (4 slot tasks, closures, tables) left per cycle
    -- would add hundreds
    assert.is_true(growth < 64, ("Lua heap grew by %.1f KiB over 30 cycles"):format(growth))
  end)
end)

describe("Lua activity worker: 500 activities through 50 slots", function()
  it("runs each exactly once and never more than 50 at a time", function()
    local client = temporal.connect(helper.address, { namespace = helper.namespace })
    local tq = helper.unique_id("lua-worker-fanout")
    local runs, running, peak = {}, 0, 0
    local w = client:new_worker{ task_queue = tq, max_concurrent_activities = 50, activities = {
      double = function(ctx, i)
        running = running + 1
        if running > peak then peak = running end
        runs[i] = (runs[i] or 0) + 1
        ctx:sleep(0.01)   -- hold the slot a moment, so slots fill up
        running = running - 1
        return i * 2
      end,
    } }
    w:start()
    local result = client:execute_workflow("FanOutLuaActivities", {
      id = helper.unique_id("fanout"), task_queue = helper.task_queue, execution_timeout = 300,
      args = { { activity = "double", task_queue = tq, count = 500, start_to_close = 60 } },
    })
    w:shutdown()
    client:close()
    assert.equals(500, #result)
    for i = 0, 499 do
      assert.equals(i * 2, result[i + 1])
      assert.equals(1, runs[i])
    end
    assert.is_true(peak <= 50, "peak " .. peak)
    assert.is_true(peak > 1, "activities ran one at a time (peak " .. peak .. ")")
  end)
end)

describe("Lua activity worker: shutdown", function()
  local client
  setup(function() client = temporal.connect(helper.address, { namespace = helper.namespace }) end)
  teardown(function() client:close() end)

  local function start_call(spec)
    return client:start_workflow("CallLuaActivity", {
      id = helper.unique_id("lua-act-shutdown"), task_queue = helper.task_queue,
      args = { spec }, execution_timeout = 120,
    })
  end

  it("stops polling, lets a running activity finish within the grace period, and returns", function()
    local tq = helper.unique_id("lua-worker-graceful")
    local started, release, shutdown_done = false, false, false
    local w = client:new_worker{ task_queue = tq, graceful_shutdown_timeout = 60, activities = {
      slow = function(ctx)
        started = true
        while not release do temporal.sleep(0.02) end
        return { worker_shutdown_seen = ctx:is_worker_shutdown(), cancelled = ctx:is_cancelled() }
      end,
    } }
    w:start()
    local h = start_call({ activity = "slow", task_queue = tq })
    wait_for(function() return started end, 30, "the activity")
    local stopper = temporal.spawn(function() w:shutdown(); shutdown_done = true end)
    wait_for(function() return w.state == "stopping" end, 10, "the shutdown to begin")
    assert.is_false(shutdown_done)    -- held by the running activity
    assert.is_true(w:is_running())
    release = true
    wait_for(function() return shutdown_done end, 30, "the shutdown")
    assert.is_true(stopper:done())
    assert.equals("stopped", w.state)
    assert.is_false(w:is_running())
    local r = h:result()
    assert.same({ worker_shutdown_seen = true, cancelled = false }, r.result)
  end)

  it("run() in a task returns once one of its own activities initiates the shutdown", function()
    local tq = helper.unique_id("lua-worker-selfstop")
    local w = client:new_worker{ task_queue = tq, graceful_shutdown_timeout = 10, activities = {
      last = function(ctx)
        ctx.worker:initiate_shutdown()      -- does not wait (it would wait for itself)
        return { shutting_down = ctx:is_worker_shutdown() }
      end,
    } }
    local returned = false
    local runner = temporal.spawn(function() w:run(); returned = true end)
    local h = start_call({ activity = "last", task_queue = tq })
    assert.same({ shutting_down = true }, h:result().result)
    wait_for(function() return returned end, 30, "run() to return")
    assert.is_true(runner:done())
    assert.equals("stopped", w.state)
  end)

  it("cancels what outlives the grace period and hands it back as WorkerShutdown; nothing is lost", function()
    local tq = helper.unique_id("lua-worker-grace-over")
    local started, release, after = false, false, nil
    local w = client:new_worker{ task_queue = tq, graceful_shutdown_timeout = 0.2, activities = {
      stubborn = function(ctx)
        started = true
        while not release do temporal.sleep(0.02) end   -- ignores cancellation
        after = { cancelled = ctx:is_cancelled(), details = ctx:cancellation_details() }
        return "too late"
      end,
    } }
    w:start()
    local h = start_call({ activity = "stubborn", task_queue = tq, retry = { maximum_attempts = 1 } })
    wait_for(function() return started end, 30, "the activity")
    w:shutdown()                       -- returns while the activity still runs
    assert.equals("stopped", w.state)
    local r = h:result()
    assert.equals("ApplicationError", r.cause)
    assert.equals("WorkerShutdown", r.type)
    assert.is_false(r.non_retryable)
    release = true
    wait_for(function() return after end, 10, "the activity to end")
    assert.is_true(after.cancelled)
    assert.is_true(after.details.worker_shutdown)
  end)

  it("a task scheduled after shutdown runs on the next worker (retried if a stale poll took it)", function()
    local tq = helper.unique_id("lua-worker-handover")
    local w1 = client:new_worker{ task_queue = tq, identity = "first", max_concurrent_activities = 2,
      activities = { who = function(ctx) return { identity = "first", attempt = ctx.info.attempt } end } }
    w1:start()
    wait_for(function()
      return #client:describe_task_queue(tq, { task_queue_type = "ACTIVITY" }).pollers > 0
    end, 30, "the first worker's polls")
    w1:shutdown()
    local h = start_call({ activity = "who", task_queue = tq, retry = { maximum_attempts = 3 } })
    local w2 = client:new_worker{ task_queue = tq, identity = "second",
      activities = { who = function(ctx) return { identity = "second", attempt = ctx.info.attempt } end } }
    w2:start()
    local r = h:result()
    w2:shutdown()
    assert.equals("second", r.result.identity)
    assert.is_true(r.result.attempt <= 2)
  end)
end)

describe("Lua activity worker: shutdown cancels open polls", function()
  -- The test bed's server does not complete polls on ShutdownWorker (see the extra server
  -- above for one that does): the worker cancels them itself.
  local client
  setup(function() client = temporal.connect(helper.address, { namespace = helper.namespace }) end)
  teardown(function() client:close() end)

  it("returns from shutdown with none of its long polls left in flight: they were cancelled", function()
    -- the client's request metrics say how each poll ended
    local reg = temporal.metrics.new()
    local c = temporal.connect(helper.address, { namespace = helper.namespace, metrics = reg })
    local tq = helper.unique_id("lua-worker-cancelpolls")
    local base = temporal.core.inflight()
    local w = c:new_worker{ task_queue = tq, max_concurrent_activities = 6, activities = { a = function() end } }
    w:start()
    wait_for(function() return w.polls_in_flight == 6 end, 30, "six polls in flight")
    assert.equals(base + 6, temporal.core.inflight())
    assert.is_false(w.polls_complete_on_shutdown)
    w:shutdown()
    assert.equals(0, w.polls_in_flight)
    assert.equals(base, temporal.core.inflight())
    assert.equals("stopped", w.state)
    -- each of the six polls failed CANCELLED (a poll the server ends itself, after about a
    -- minute, succeeds empty)
    local cancelled, polls = 0, 0
    for line in reg:exposition():gmatch("[^\n]+") do
      if line:find('operation="PollActivityTaskQueue"', 1, true) and line:find(tq, 1, true) then
        local v = tonumber(line:match(" (%d+)$"))
        if line:match("^temporal_long_request_failure{") and line:find('status_code="CANCELLED"', 1, true) then
          cancelled = cancelled + v
        elseif line:match("^temporal_long_request{") then
          polls = polls + v
        end
      end
    end
    assert.equals(6, polls)
    assert.equals(6, cancelled)
    c:close()
  end)

  -- The completions waiting in this process's runtime, not yet taken by the scheduler: the
  -- count of its eventfd (the runtime's poller thread adds one per completed call).
  local function completions_waiting()
    local f = assert(io.open("/proc/self/fdinfo/" .. temporal.pollfd()))
    local text = f:read("a")
    f:close()
    return tonumber(assert(text:match("eventfd%-count:%s*(%x+)"), text), 16)
  end

  -- The race, made by structure: the server hands the task to the worker's one open poll
  -- while this process's scheduler does not run (the workflow is started and watched by
  -- the temporal CLI, another process); once the answer waits in the runtime,
  -- initiate_shutdown cancels the poll.
  local function hand_out_then_shutdown(w, tq, retry)
    w:start()
    wait_for(function() return w.polls_in_flight == 1 end, 30, "the poll")
    local id = helper.unique_id("lua-act-race")
    helper.cli("workflow", "start", "--type", "CallLuaActivity", "--task-queue", helper.task_queue,
      "--workflow-id", id, "--input", helper.json.encode({ activity = "who", task_queue = tq,
        retry = { maximum_attempts = retry } }))
    helper.eventually(function()
      local d = helper.cli_json("workflow", "describe", "--workflow-id", id)
      local pa = d.pendingActivities and d.pendingActivities[1]
      return pa and pa.state == "PENDING_ACTIVITY_STATE_STARTED"
    end, 30, 0.1)
    helper.eventually(function() return completions_waiting() > 0 end, 30, 0.02)
    assert.equals(1, temporal.core.inflight())   -- the poll is this process's only call
    w:initiate_shutdown()    -- cancels the poll; its answer is already here
    assert.equals("stopping", w.state)
    return client:get_workflow_handle(id)
  end

  it("runs a task the server handed to a poll the shutdown cancelled", function()
    local tq = helper.unique_id("lua-worker-race-run")
    local w = client:new_worker{ task_queue = tq, max_concurrent_activities = 1, graceful_shutdown_timeout = 30,
      activities = { who = function(ctx) return { identity = "raced", attempt = ctx.info.attempt } end } }
    local h = hand_out_then_shutdown(w, tq, 1)
    w:shutdown()
    assert.equals(0, w.polls_in_flight)
    assert.equals(1, w.completed)
    assert.same({ identity = "raced", attempt = 1 }, h:result().result)
  end)

  it("hands such a task back when there is no grace period; the next worker runs it", function()
    local tq = helper.unique_id("lua-worker-race-back")
    local ran = false
    local w = client:new_worker{ task_queue = tq, max_concurrent_activities = 1,
      activities = { who = function() ran = true end } }
    local h = hand_out_then_shutdown(w, tq, 3)
    w:shutdown()
    assert.is_false(ran)
    local w2 = client:new_worker{ task_queue = tq,
      activities = { who = function(ctx) return { identity = "second", attempt = ctx.info.attempt } end } }
    w2:start()
    local r = h:result()
    w2:shutdown()
    -- attempt 1 came back as WorkerShutdown (retryable), attempt 2 ran on the second worker
    assert.same({ identity = "second", attempt = 2 }, r.result)
  end)
end)

describe("Lua activity worker: a cancellation wakes the activity where it waits", function()
  -- Held calls: the activities wait for the result of a workflow that never ends by itself
  -- (WaitForSignal), so only the cancellation can resume them.
  local client, held, worker, tq
  local seen, flags = {}, {}

  local function outcome(ctx, ok, err)
    return { ok = ok, err = err, details = ctx:cancellation_details() }
  end

  local activities = {
    -- heartbeats once the test says so, then waits in a client call
    call_after_heartbeat = function(ctx, id)
      seen.call_after_heartbeat = "started"
      while not flags.heartbeat do temporal.sleep(0.02) end
      ctx:heartbeat("about to wait")
      local ok, err = pcall(function() return client:get_workflow_handle(id):result() end)
      seen.call_after_heartbeat = outcome(ctx, ok, err)
      error(err)
    end,
    blocked_call = function(ctx, id)
      seen.blocked_call = "started"
      local ok, err = pcall(function() return client:get_workflow_handle(id):result() end)
      seen.blocked_call = outcome(ctx, ok, err)
      error(err)
    end,
    long_nap = function(ctx)
      seen.long_nap = "started"
      local ok, err = pcall(ctx.sleep, ctx, 3600)
      seen.long_nap = outcome(ctx, ok, err)
      error(err)
    end,
    wait_cancel = function(ctx, timeout)
      seen.wait_cancel = { cancelled = ctx:wait_for_cancel(timeout), details = ctx:cancellation_details() or temporal.null }
      return seen.wait_cancel
    end,
  }

  setup(function()
    client = temporal.connect(helper.address, { namespace = helper.namespace })
    held = helper.unique_id("lua-act-held")
    client:start_workflow("WaitForSignal", { id = held, task_queue = helper.task_queue })
    tq = helper.unique_id("lua-worker-wake")
    worker = client:new_worker{ task_queue = tq, activities = activities, max_concurrent_activities = 4 }
    worker:start()
  end)

  teardown(function()
    worker:shutdown()
    client:get_workflow_handle(held):terminate()
    client:close()
  end)

  local function start(spec)
    spec.task_queue = spec.task_queue or tq
    return client:start_workflow("CallLuaActivity", { id = helper.unique_id("lua-act-wake"),
      task_queue = helper.task_queue, args = { spec }, execution_timeout = 120 })
  end

  local function pending_state(h)
    local list = h:describe().raw.pending_activities
    return list and list[1] and list[1].state
  end

  it("from a heartbeat response: the client call the activity waits in ends, Python sees the cancellation", function()
    local h = start({ activity = "call_after_heartbeat", args = { held }, heartbeat_timeout = 30,
      cancel_on_signal = true })
    wait_for(function() return seen.call_after_heartbeat == "started" end, 30, "the activity")
    h:signal("cancel")
    wait_for(function() return pending_state(h) == "CANCEL_REQUESTED" end, 30, "the cancel request on the server")
    flags.heartbeat = true   -- its heartbeat's answer carries the cancellation
    local r = h:result()
    assert.equals("ActivityError", r.error)
    assert.equals("CancelledError", r.cause)
    local got = seen.call_after_heartbeat
    assert.is_false(got.ok)
    assert.is_true(errors.is(got.err, "RPCError"))
    assert.equals("CANCELLED", got.err.status)
    assert.is_true(got.details.cancel_requested)
  end)

  it("from the deadline: the client call ends when start-to-close passes", function()
    seen.blocked_call = nil
    local r = start({ activity = "blocked_call", args = { held }, start_to_close = 1 }):result()
    assert.equals("TimeoutError", r.cause)
    assert.equals("START_TO_CLOSE", r.timeout_type)
    local got = wait_for(function() return type(seen.blocked_call) == "table" and seen.blocked_call end,
      30, "the activity to be woken")
    assert.equals("CANCELLED", got.err.status)
    assert.is_true(got.details.timed_out)
  end)

  it("from the shutdown past the grace period: the client call ends and the task goes back", function()
    local tq2 = helper.unique_id("lua-worker-wake-shutdown")
    local w = client:new_worker{ task_queue = tq2, activities = activities, max_concurrent_activities = 1 }
    w:start()
    seen.blocked_call = nil
    local h = start({ activity = "blocked_call", args = { held }, task_queue = tq2 })
    wait_for(function() return seen.blocked_call == "started" end, 30, "the activity")
    w:shutdown()
    local got = wait_for(function() return type(seen.blocked_call) == "table" and seen.blocked_call end,
      30, "the activity to be woken")
    assert.equals("CANCELLED", got.err.status)
    assert.is_true(got.details.worker_shutdown)
    local r = h:result()
    assert.equals("ApplicationError", r.cause)
    assert.equals("WorkerShutdown", r.type)
  end)

  it("ctx:sleep is one wait, resumed at the deadline rather than at intervals", function()
    seen.long_nap = nil
    local h = start({ activity = "long_nap", start_to_close = 2 })
    wait_for(function() return seen.long_nap == "started" end, 30, "the activity")
    -- nothing else happens in this process meanwhile (idle polls, no other timer): each
    -- scheduler step is one wake-up; a sleep in slices would take dozens
    local steps = 0
    while seen.long_nap == "started" do
      temporal.step(nil)
      steps = steps + 1
    end
    assert.is_true(steps <= 4, ("%d scheduler steps while the activity slept"):format(steps))
    assert.is_true(errors.is(seen.long_nap.err, "CancelledError"))
    assert.is_true(seen.long_nap.details.timed_out)
    local r = h:result()
    assert.equals("TimeoutError", r.cause)
    assert.equals("START_TO_CLOSE", r.timeout_type)
  end)

  it("ctx:wait_for_cancel returns false at its timeout and true once cancelled", function()
    local r = start({ activity = "wait_cancel", args = { 0.2 } }):result()
    assert.same({ cancelled = false, details = temporal.null }, r.result)
    seen.wait_cancel = nil
    r = start({ activity = "wait_cancel", start_to_close = 1 }):result()   -- cancelled at the deadline
    assert.equals("TimeoutError", r.cause)
    local got = wait_for(function() return seen.wait_cancel end, 30, "wait_for_cancel to return")
    assert.is_true(got.cancelled)
    assert.is_true(got.details.timed_out)
  end)
end)

describe("Lua activity worker: interceptors", function()
  local function run_activity(c, tq, activity, args, extra)
    local spec = { activity = activity, task_queue = tq, args = args }
    for k, v in pairs(extra or {}) do spec[k] = v end
    return c:execute_workflow("CallLuaActivity", { id = helper.unique_id("lua-act-icpt"),
      task_queue = helper.task_queue, args = { spec }, execution_timeout = 60 })
  end

  it("execute_activity and info wrap the activity in order: inputs, arguments and result changed, seen by Python", function()
    local trace, inputs = {}, {}
    local function tracer(tag)
      return {
        execute_activity = function(next, input)
          trace[#trace + 1] = tag .. ">"
          inputs[tag] = { activity = input.activity, n = input.args.n, header_type = type(input.header),
            ctx_ok = getmetatable(input.ctx) == temporal.ActivityContext }
          local r = next(input)
          trace[#trace + 1] = "<" .. tag
          return r
        end,
      }
    end
    local c = temporal.connect(helper.address, { namespace = helper.namespace, interceptors = {
      tracer("client"),                                   -- applied to the worker too, first
      { start_workflow = function(next, input) return next(input) end },   -- a client-only one
    } })
    local tq = helper.unique_id("lua-worker-icpt")
    local w = c:new_worker{ task_queue = tq, interceptors = {
      tracer("outer"),
      {
        -- arguments in, result out
        execute_activity = function(next, input)
          input.args = compat.pack(input.args[1] * 10, input.args[2])
          local r = next(input)
          r.wrapped = true
          return r
        end,
        info = function(next, input)
          local info = next(input)
          info.tenant = "blue"
          return info
        end,
        ["*"] = function(next, input, name)
          trace[#trace + 1] = "*" .. name
          return next(input)
        end,
      },
      tracer("inner"),
    }, activities = {
      add = function(ctx, a, b)
        trace[#trace + 1] = "fn"
        return { sum = a + b, tenant = ctx.info.tenant, attempt = ctx.info.attempt }
      end,
    } }
    w:start()
    local r = run_activity(c, tq, "add", { 4, 2 })
    w:shutdown()
    c:close()
    assert.same({ sum = 42, tenant = "blue", attempt = 1, wrapped = true }, r.result)
    assert.same({ "*info", "client>", "outer>", "*execute_activity", "inner>", "fn", "<inner", "<outer", "<client" }, trace)
    assert.same({ activity = "add", n = 2, header_type = "table", ctx_ok = true }, inputs.outer)
    assert.same({ activity = "add", n = 2, header_type = "table", ctx_ok = true }, inputs.client)
  end)

  it("execute_activity sees the activity's error and may replace it; Python sees the replacement", function()
    local c = temporal.connect(helper.address, { namespace = helper.namespace })
    local tq = helper.unique_id("lua-worker-icpt-err")
    local caught
    local w = c:new_worker{ task_queue = tq, interceptors = { {
      execute_activity = function(next, input)
        local ok, err = pcall(next, input)
        if ok then return err end
        caught = err
        error(temporal.application_error("wrapped: " .. tostring(err):match("boom"), { type = "Wrapped", non_retryable = true }))
      end,
    } }, activities = { boom = function() error("boom") end } }
    w:start()
    local r = run_activity(c, tq, "boom", {}, { retry = { maximum_attempts = 3 } })
    w:shutdown()
    c:close()
    assert.matches("boom", caught)
    assert.equals("ApplicationError", r.cause)
    assert.equals("Wrapped", r.type)
    assert.equals("wrapped: boom", r.message)
    assert.equals("NON_RETRYABLE_FAILURE", r.retry_state)
  end)

  it("heartbeat sees and changes the details the server records", function()
    local c = temporal.connect(helper.address, { namespace = helper.namespace })
    local tq = helper.unique_id("lua-worker-icpt-hb")
    local release, beating = false, false
    local w = c:new_worker{ task_queue = tq, interceptors = { {
      heartbeat = function(next, input)
        input.details = compat.pack(input.details[1] .. " (intercepted)", input.details.n)
        return next(input)
      end,
    } }, activities = { beat = function(ctx)
      ctx:heartbeat("progress")
      beating = true
      while not release do ctx:sleep(0.02) end
      return "done"
    end } }
    w:start()
    local h = c:start_workflow("CallLuaActivity", { id = helper.unique_id("lua-act-icpt-hb"),
      task_queue = helper.task_queue, args = { { activity = "beat", task_queue = tq, heartbeat_timeout = 30 } } })
    wait_for(function() return beating end, 30, "the activity")
    local details = wait_for(function()
      local pa = h:describe().raw.pending_activities
      pa = pa and pa[1]
      return pa and pa.heartbeat_details and temporal.converter.default:from_payloads(pa.heartbeat_details)
    end, 30, "the heartbeat on the server")
    release = true
    assert.same({ "progress (intercepted)", 1, n = 2 }, details)
    assert.equals("done", h:result().result)
    w:shutdown()
    c:close()
  end)

  it("names a bad interceptor", function()
    local c = temporal.connect(helper.address, { namespace = helper.namespace, lazy = true })
    local fn = function() end
    local function fails(icpts, pattern)
      local ok, err = pcall(c.new_worker, c, { task_queue = "q", activities = { a = fn }, interceptors = icpts })
      assert.is_false(ok)
      assert.matches(pattern, tostring(err))
    end
    fails({ { execute_activty = fn } }, "new_worker: interceptors%[1%]: unknown operation 'execute_activty'")
    fails({ { heartbeat = 1 } }, "new_worker: interceptors%[1%]%.heartbeat: expected a function, got number")
    fails({ fn }, "new_worker: interceptors%[1%]: expected a table of functions, got function")
    fails("x", "new_worker: interceptors: expected a list of tables, got string")
    fails({ a = {} }, "new_worker: interceptors: expected a list")
    c:close()
  end)
end)

describe("Lua activity worker: bad input", function()
  local client
  setup(function() client = temporal.connect(helper.address, { namespace = helper.namespace, lazy = true }) end)
  teardown(function() client:close() end)

  local function fails(opts, pattern)
    local ok, err = pcall(client.new_worker, client, opts)
    assert.is_false(ok)
    assert.matches(pattern, tostring(err))
  end

  local fn = function() end

  it("names the option at fault", function()
    fails({ task_queue = "q", activities = { a = fn }, task_queeu = "x" }, "new_worker: unknown option 'task_queeu'")
    fails({ activities = { a = fn } }, "new_worker: task_queue: expected a non%-empty string, got nil")
    fails({ task_queue = "", activities = { a = fn } }, "task_queue: expected a non%-empty string, got an empty string")
    fails({ task_queue = "q", activities = { a = 42 } }, "new_worker: activities%.a: expected a function, got number")
    fails({ task_queue = "q", activities = { fn } }, "activities: names must be non%-empty strings")
    fails({ task_queue = "q", activities = {} }, "at least one activity")
    fails({ task_queue = "q", activities = "a" }, "activities: expected a table")
    fails({ task_queue = "q", activities = { a = fn }, max_concurrent_activities = 0 },
      "max_concurrent_activities: must be >= 1, got 0")
    fails({ task_queue = "q", activities = { a = fn }, max_concurrent_activities = 2.5 },
      "max_concurrent_activities: expected an integer, got 2.5")
    fails({ task_queue = "q", activities = { a = fn }, graceful_shutdown_timeout = "5" },
      "graceful_shutdown_timeout: expected a number, got string")
    fails({ task_queue = "q", activities = { a = fn }, max_activities_per_second = 0 },
      "max_activities_per_second: must be > 0")
    fails({ task_queue = "q", activities = { a = fn }, dynamic_activity = true },
      "dynamic_activity: expected a function, got boolean")
    fails({ task_queue = "q", activities = { a = fn }, deployment_options = { build_id = "1" } },
      "deployment_options: deployment_name and build_id are required")
    fails({ task_queue = "q", activities = { a = fn },
            deployment_options = { deployment_name = "d", build_id = "1", x = 1 } },
      "deployment_options: unknown option 'x'")
    fails({ task_queue = "q", activities = { a = fn }, use_worker_versioning = true }, "needs build_id")
    fails(nil, "expected an options table")
  end)

  it("refuses a second start and methods called with '.'", function()
    local w = client:new_worker{ task_queue = helper.unique_id("unused"), activities = { a = fn } }
    local ok, err = pcall(w.start, {})
    assert.is_false(ok)
    assert.matches("call it with ':'", err)
    w:initiate_shutdown()        -- never started: stops at once
    assert.equals("stopped", w.state)
    ok, err = pcall(w.start, w)
    assert.is_false(ok)
    assert.matches("start: the worker is already stopped", err)
  end)

  it("raises from run() when the namespace does not exist", function()
    local c = temporal.connect(helper.address, { namespace = "no-such-namespace-" .. os.time(), lazy = true })
    local w = c:new_worker{ task_queue = "q", activities = { a = fn } }
    local ok, err = pcall(w.run, w)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "RPCError"))
    assert.equals("NOT_FOUND", err.status)
    assert.matches("activity worker on task queue q", err.message)
    c:close()
  end)
end)

describe("Lua activity worker: hosts (Lua 5.4 processes) #lua54", function()
  local env = { TEMPORAL_ADDRESS = helper.address, TEMPORAL_TASK_QUEUE = helper.task_queue }

  local function check_example_output(out)
    -- what the Python workflow got back from each Lua activity
    assert.matches('grant_item %-> result {"attempt":1,"item":"sword","player":"alice"}', out)
    assert.matches('move_player %-> result {"at":%[3,4%],"player":"bob"}', out)
    assert.matches("grant_item %-> ApplicationError: shield is out of stock %(OutOfStock%)", out)
    assert.matches("worker stopped, activities completed: 3", out)
  end

  it("serves activities from temporal-lua (examples/activity_worker.lua)", function()
    local ok, out, err = helper.run({ helper.temporal_lua, "examples/activity_worker.lua" }, env)
    assert.is_true(ok, err)
    check_example_output(out)
  end)

  it("serves activities from a plain lua5.4 script", function()
    local ok, out, err = helper.run({ "lua5.4", "examples/activity_worker.lua" }, env)
    assert.is_true(ok, err)
    check_example_output(out)
  end)

  it("serves activities inside a C host's frame loop driven by pollfd/timeout/step", function()
    local ok, out, err = helper.run({ "build/activity_host", helper.address, helper.task_queue, "6" })
    assert.is_true(ok, err)
    for i = 1, 6 do
      assert.matches(("\np%d at %d,%%-%d\n"):format(i, i, i), "\n" .. out)
    end
    assert.matches("worker stopped", out)
    local frames = tonumber(out:match("frames: (%d+)"))
    assert.is_true(frames > 1)
  end)
end)

describe("Lua activity worker: memory (a Lua 5.4 C host) #lua54", function()
  it("is valgrind-clean in the C host (worker started, activities served, shut down, state closed)", function()
    local ok, out, err = helper.run({ "valgrind", "--error-exitcode=9", "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
      "build/activity_host", helper.address, helper.task_queue, "3" })
    assert.is_true(ok, err)
    assert.matches("p3 at 3,%-3", out)
    assert.matches("ERROR SUMMARY: 0 errors", err)
    assert.matches("definitely lost: 0 bytes", err)
  end)
end)
