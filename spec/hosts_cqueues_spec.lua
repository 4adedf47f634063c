-- Host: cqueues (Debian lua-cqueues). Calls made from cq:wrap coroutines park only their
-- coroutine; the controller keeps running the others. Overlap is proven by structure:
-- N result() long polls held open by the server at once, released in an order the test
-- chooses, while a ticker coroutine keeps running between their start and completion.
local helper = require("support.helper")
local temporal = require("temporal")
local cqueues = require("cqueues")
local condition = require("cqueues.condition")
local host_cqueues = require("temporal.host.cqueues")
local core = temporal.core

describe("cqueues host", function()
  local client
  setup(function()
    client = temporal.connect(helper.address, { namespace = helper.namespace })
  end)
  teardown(function() client:close() end)
  after_each(function() temporal.set_host(nil) end)

  it("overlaps calls from cqueues coroutines while another coroutine keeps ticking", function()
    local cq = cqueues.new()
    temporal.set_host(host_cqueues.new(cq))
    local n = 6
    local handles, results, done_order = {}, {}, {}
    local ticks, ticks_when_all_open = 0, nil
    local finished = condition.new()
    local stop_ticker = false
    -- the ticker: a host coroutine that must keep running while the calls are open
    cq:wrap(function()
      while not stop_ticker do
        ticks = ticks + 1
        cqueues.sleep(0.01)
      end
    end)
    for i = 1, n do
      cq:wrap(function()
        handles[i] = client:start_workflow("WaitForSignal", {
          id = helper.unique_id("cq-" .. i), task_queue = helper.task_queue })
        results[i] = handles[i]:result()      -- a long poll the server holds open
        done_order[#done_order + 1] = i
        finished:signal()
      end)
    end
    -- the releaser: once every long poll is on the wire, release them in reverse order,
    -- each only after the previous one came back
    cq:wrap(function()
      while core.inflight() < n or #handles < n do cqueues.sleep(0.01) end
      ticks_when_all_open = ticks
      assert.equals(0, #done_order)
      local ticks_before = ticks
      while ticks == ticks_before do cqueues.sleep(0.005) end  -- the ticker runs meanwhile
      for i = n, 1, -1 do
        handles[i]:signal("approve", "r" .. i)
        while #done_order < n - i + 1 do finished:wait() end
        assert.equals(i, done_order[#done_order])
      end
      stop_ticker = true
    end)
    assert(cq:loop())
    assert.same({ 6, 5, 4, 3, 2, 1 }, done_order)
    for i = 1, n do assert.same({ { "r" .. i } }, results[i]) end
    assert.is_true(ticks > ticks_when_all_open)
    assert.equals(0, core.inflight())
    -- the other side: the server saw each workflow completed with its own signal
    local desc = helper.cli_json("workflow", "describe", "--workflow-id", handles[1].id)
    assert.equals("WORKFLOW_EXECUTION_STATUS_COMPLETED", desc.workflowExecutionInfo.status)
  end)

  it("passes cqueues' own yields inside temporal.spawn tasks through to cqueues", function()
    local cq = cqueues.new()
    temporal.set_host(host_cqueues.new(cq))
    local cond = condition.new()
    local order = {}
    local task = temporal.spawn(function()
      order[#order + 1] = "task waits"
      cond:wait()                      -- a cqueues yield, not temporal's
      order[#order + 1] = "task resumed"
      local info = client.workflow_service:get_system_info{}
      return info.server_version
    end)
    cq:wrap(function()
      while #order == 0 do cqueues.sleep(0.01) end
      cqueues.sleep(0.05)
      order[#order + 1] = "signalled"
      cond:signal()
      assert.equals(client.system_info.server_version, task:wait())
    end)
    assert(cq:loop())
    assert.same({ "task waits", "signalled", "task resumed" }, order)
    assert.is_true(task:done())
  end)

  it("temporal.sleep in a cqueues coroutine parks only that coroutine", function()
    local cq = cqueues.new()
    temporal.set_host(host_cqueues.new(cq))
    local order = {}
    cq:wrap(function()
      temporal.sleep(0.2)
      order[#order + 1] = "slept"
    end)
    cq:wrap(function()
      order[#order + 1] = "other"
    end)
    assert(cq:loop())
    assert.same({ "other", "slept" }, order)
  end)

  it("without a host, a call in a cqueues coroutine blocks and still completes", function()
    local cq = cqueues.new()
    local got
    cq:wrap(function() got = client.workflow_service:get_system_info{}.server_version end)
    assert(cq:loop())
    assert.equals(client.system_info.server_version, got)
  end)

  it("host tasks: errors surface through wait; waiting from the main thread is refused clearly", function()
    local cq = cqueues.new()
    temporal.set_host(host_cqueues.new(cq))
    local bad = temporal.spawn(function() error({ code = 7 }) end)
    local good = temporal.spawn(function() cqueues.sleep(0.01); return "fine" end)
    local ok, err = pcall(good.wait, good)
    assert.is_false(ok)
    assert.equals("Task:wait: the task runs in the cqueues host; wait for it from a coroutine "
      .. "of that host, or run the host's loop", err:match("Task:wait: .*$"))
    local got = {}
    cq:wrap(function()
      got.good = good:wait()
      got.ok, got.err = pcall(bad.wait, bad)
    end)
    assert(cq:loop())
    assert.equals("fine", got.good)
    assert.is_false(got.ok)
    assert.equals(7, got.err.code)
  end)

  it("rejects a controller that is not one", function()
    assert.has_error(function() host_cqueues.new({}) end,
      "temporal.host.cqueues.new: expected a cqueues controller (cqueues.new()), got table")
  end)
end)
