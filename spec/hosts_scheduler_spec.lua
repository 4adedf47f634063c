-- The scheduler and host protocol without a host package: step's arguments, the frame
-- budget, plain yields in tasks, contexts that can neither yield nor block, adapters
-- checked at set_host, and core.unary's optional arguments.
local helper = require("support.helper")
local temporal = require("temporal")
local core = temporal.core

local WS = "temporal.api.workflowservice.v1.WorkflowService"

describe("temporal.step", function()
  it("rejects NaN and other bad timeouts, naming the value", function()
    assert.has_error(function() temporal.step(0 / 0) end,
      "step: timeout must be a non-negative number or nil, got " .. tostring(0 / 0))
    assert.has_error(function() temporal.step(-1) end,
      "step: timeout must be a non-negative number or nil, got -1")
    assert.has_error(function() temporal.step("1") end,
      "step: timeout must be a non-negative number or nil, got 1")
    assert.has_error(function() core.wait(0 / 0) end)
  end)

  it("math.huge with nothing to wait for returns at once instead of sleeping", function()
    -- in a child process bounded by `timeout`: the bug slept for 24 days
    local ok, out, err = helper.run({ "timeout", "30", helper.luajit and "luajit" or "lua5.4", "-e", [[
      local temporal = require("temporal")
      print(temporal.step(math.huge), #temporal.core.wait(math.huge))
    ]] }, { LUA_PATH = os.getenv("LUA_PATH"), LUA_CPATH = os.getenv("LUA_CPATH") })
    assert.is_true(ok, err)
    assert.equals("false\t0\n", out)
  end)

  it("rejects bad budgets, naming the option", function()
    assert.has_error(function() temporal.step(0, { max_task = 1 }) end, "step: unknown budget option 'max_task'")
    assert.has_error(function() temporal.step(0, { max_tasks = 0 }) end,
      "step: budget.max_tasks must be a positive integer, got 0")
    assert.has_error(function() temporal.step(0, { max_time = 0 / 0 }) end,
      "step: budget.max_time must be a non-negative number of seconds, got " .. tostring(0 / 0))
    assert.has_error(function() temporal.step(0, 5) end, "step: budget must be a table, got number")
  end)

  it("a plain coroutine.yield() inside a task (no host) lets the others run, then goes on", function()
    local order = {}
    local a = temporal.spawn(function()
      for i = 1, 3 do order[#order + 1] = "a" .. i; coroutine.yield() end
      return "a done"
    end)
    local b = temporal.spawn(function()
      for i = 1, 3 do order[#order + 1] = "b" .. i; coroutine.yield() end
      return "b done"
    end)
    assert.equals("a done", a:wait())
    assert.equals("b done", b:wait())
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, order)
  end)
end)

describe("blocking waits", function()
  it("task:wait() returns once the task is done, not when an unrelated call completes", function()
    local client = temporal.connect(helper.address, { namespace = helper.namespace })
    local h = client:start_workflow("WaitForSignal", {
      id = helper.unique_id("unrelated-poll"), task_queue = helper.task_queue })
    -- a raw long poll for the close event, held open by the server for up to 10 s
    local poll = core.unary(core.handle_state(client).channel, WS, "GetWorkflowExecutionHistory", {
      namespace = helper.namespace, execution = { workflow_id = h.id },
      wait_new_event = true, history_event_filter_type = "CLOSE_EVENT" }, 10)
    local quick = temporal.spawn(function() return "quick" end)
    assert.equals("quick", quick:wait())
    -- the poll is still in flight: the wait did not sit on it until it ended
    assert.is_false(poll:done())
    assert.equals(1, core.inflight())
    h:terminate({ reason = "spec done" })
    local resp = require("temporal.scheduler").await(poll)
    assert.equals("WORKFLOW_EXECUTION_TERMINATED", resp.history.events[1].event_type)
    client:close()
  end)
end)

describe("frame budget", function()
  local client
  setup(function() client = temporal.connect(helper.address, { namespace = helper.namespace }) end)
  teardown(function() client:close() end)

  it("spreads 1000 starts launched in one frame over frames of at most max_tasks", function()
    local queue = helper.unique_id("budget-tq")  -- no worker polls it: the workflows wait
    local frame, started_in = 0, {}
    local tasks = {}
    for i = 1, 1000 do
      tasks[i] = temporal.spawn(function()
        started_in[frame] = (started_in[frame] or 0) + 1
        -- the dev server's SQLite takes its time with 1000 starts at once on a busy
        -- machine: this spec is about how the client spreads them, not the server's latency.
        -- No execution timeout: 1000 timeouts firing later would load the server under
        -- the specs that run then; idle on a queue nobody polls, they cost nothing.
        return client:start_workflow("Greet", {
          id = queue .. "-" .. i, task_queue = queue, args = { i }, rpc_timeout = 300 })
      end)
    end
    local more = true
    while more do
      frame = frame + 1
      more = temporal.step(0.05, { max_tasks = 100 })
    end
    local frames_with_starts, most = 0, 0
    for _, count in pairs(started_in) do
      frames_with_starts = frames_with_starts + 1
      if count > most then most = count end
    end
    assert.equals(100, most)
    assert.equals(10, frames_with_starts)
    for i = 1, 1000 do assert.is_string(tasks[i]:wait().result_run_id) end
    -- the other side: the server has all 1000 on that task queue
    local count = helper.eventually(function()
      local c = client:count_workflows(("TaskQueue = '%s'"):format(queue)).count
      return c == 1000 and c
    end, 30, 0.5)
    assert.equals(1000, count)
  end)

  it("max_time bounds a step, but every step resumes at least one task", function()
    local ran_in = {}
    local frame = 0
    for _ = 1, 20 do
      temporal.spawn(function() ran_in[#ran_in + 1] = frame end)
    end
    local more = true
    while more do
      frame = frame + 1
      more = temporal.step(0, { max_time = 0 })
    end
    assert.equals(20, #ran_in)
    for i = 1, 20 do assert.equals(i, ran_in[i]) end
  end)
end)

describe("wait contexts", function()
  local client
  setup(function() client = temporal.connect(helper.address, { namespace = helper.namespace }) end)
  teardown(function() client:close() end)
  after_each(function() temporal.set_host(nil) end)

  it("a call inside a task across a C boundary fails clearly before anything is sent", function()
    local task = temporal.spawn(function()
      table.sort({ 2, 1 }, function(x, y)
        client.workflow_service:get_system_info{}
        return x < y
      end)
    end)
    local ok, err = pcall(task.wait, task)
    assert.is_false(ok)
    assert.matches("GetSystemInfo: cannot wait inside this temporal task: it is inside a C call", err)
    assert.equals(0, core.inflight())
  end)

  it("a host that cannot block rejects calls from its main thread, naming it", function()
    temporal.set_host({
      name = "frame-loop", blocking = false,
      owns = function() return true end, wait = coroutine.yield, wakeup = function() end,
      start = function() end, spawn = function() end,
    })
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {})
    assert.is_false(ok)
    assert.equals("GetSystemInfo: cannot wait in the main thread: blocking would stall the "
      .. "frame-loop host; make the call from a coroutine of the host", err)
    assert.equals(0, core.inflight())
  end)

  it("checks adapters at set_host", function()
    assert.has_error(function() temporal.set_host(5) end, "set_host: expected an adapter table or nil, got number")
    assert.has_error(function() temporal.set_host({ name = "x" }) end)
    local ok, err = pcall(temporal.set_host, { name = "x", owns = print, wait = print, wakeup = print, start = print })
    assert.is_false(ok)
    assert.equals("set_host: adapter.spawn must be a function, got nil", err)
  end)
end)

describe("core.unary", function()
  it("works with its optional arguments left out", function()
    local client = temporal.connect(helper.address, { namespace = helper.namespace })
    local channel = temporal.core.handle_state(client).channel
    for _, call in ipairs({
      core.unary(channel, WS, "GetSystemInfo", {}),
      core.unary(channel, WS, "GetSystemInfo", {}, 10),
      core.unary(channel, WS, "GetSystemInfo", {}, math.huge, nil),
    }) do
      local resp = require("temporal.scheduler").await(call)
      assert.equals(client.system_info.server_version, resp.server_version)
    end
    assert.has_error(function() core.unary(channel, WS, "GetSystemInfo", {}, 0 / 0) end)
    -- through the client, the option is named; math.huge means no deadline
    local ws = client.workflow_service
    assert.has_error(function() ws:get_system_info({}, { rpc_timeout = 0 / 0 }) end,
      "rpc_timeout: expected a non-negative number of seconds (math.huge: none), got " .. tostring(0 / 0))
    assert.has_error(function() ws:get_system_info({}, { rpc_timeout = -1 }) end,
      "rpc_timeout: expected a non-negative number of seconds (math.huge: none), got -1")
    assert.equals(client.system_info.server_version, ws:get_system_info({}, { rpc_timeout = math.huge }).server_version)
    client:close()
  end)
end)
