-- Lua activities in skynet (issue 14 in the hosts of issue 9): a skynet service
-- (examples/hosts/skynet/activity_service.lua) installs the skynet host adapter, creates a
-- client and client:new_worker{...} and starts it; Python workflows (spec/worker/worker.py,
-- FanOutLuaActivities and CallLuaActivity) call its activities. Four "hold" activities stay
-- open at once (each waits in its own skynet session until the main service releases it)
-- while the service answers pings and its worker serves an "echo" activity; they are released
-- in an order the test chooses, the last one after the graceful shutdown began. Values are
-- read back from the server: the Python workflows' results.
local helper = require("support.helper")
local temporal = require("temporal")

local ROOT = assert(helper.temporal_lua, "TEMPORAL_LUA is set by spec/run.sh"):match("^(.*)/build/temporal%-lua$")

describe("skynet host: a service serving Lua activities", function()
  it("builds skynet and temporal/core.so against skynet's Lua", function()
    local ok, out, err = helper.run({ "make", "--no-print-directory", "skynet" })
    assert.is_true(ok, out .. err)
  end)

  it("holds several activities at once, keeps answering, shuts its worker down cleanly", function()
    local order = { 2, 0, 3, 1 }
    local activity_queue = helper.unique_id("skynet-act")
    local skynet_root = ROOT .. "/build/skynet-1.8.0"
    local ok, out, err = helper.run({ "timeout", "120", skynet_root .. "/skynet",
      ROOT .. "/examples/hosts/skynet/activity_config" }, {
      SKYNET_ROOT = skynet_root, TEMPORAL_LUA_ROOT = ROOT, TEMPORAL_LUA_CPATH = ROOT .. "/build/skynet",
      TEMPORAL_ADDRESS = helper.address, TEMPORAL_NAMESPACE = helper.namespace,
      TEMPORAL_TASK_QUEUE = helper.task_queue, TEMPORAL_ACTIVITY_TASK_QUEUE = activity_queue,
      TEMPORAL_RELEASE_ORDER = table.concat(order, ","),
    })
    assert.is_true(ok, out .. err)
    assert.matches("\ndone\n", out)
    assert.matches("worker running\ttrue\n", out)
    -- four activities open at once in the service, which answered pings meanwhile
    assert.matches("all held\t4\t0,1,2,3\n", out)
    for n = 1, 3 do assert.matches(("ping\tpong\t%d\t4\t"):format(n), out) end
    -- the echo activity ran on the fifth slot while the four were held
    assert.matches("still held\t4\n", out)
    -- the graceful shutdown began with one activity running; the service still answered
    assert.matches("shutdown initiated, running\ttrue\nping\tpong\t4\t1\t", out)
    local released = {}
    for i in out:gmatch("released\t(%d)\n") do released[#released + 1] = tonumber(i) end
    assert.same(order, released)
    -- the worker stopped (not running) after all five activities completed
    local running, completed, max_held, inflight, polls = out:match("stopped, running\t(%a+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t%a+\n")
    assert.equals("false", running)
    assert.equals("5", completed)
    assert.equals("4", max_held)
    -- the shutdown cancelled the open polls (the dev server does not complete them on
    -- ShutdownWorker): nothing of the worker is left in flight when it returns
    assert.equals("0", polls)
    assert.equals("0", inflight)
    assert.matches("closed, in flight\t0\t0\n", out)

    -- From the Python side: the workflows' results, read back from the server.
    local client = temporal.connect(helper.address, { namespace = helper.namespace })
    local fan_id = assert(out:match("\nfan\t(%S+)\n"), out)
    local fan = client:get_workflow_handle(fan_id):result()
    assert.equals(#order, #fan)
    local position = {}
    for k, i in ipairs(order) do position[i] = k end
    for idx, r in ipairs(fan) do
      local i = idx - 1
      assert.equals(i, r.i)
      assert.equals(i * i, r.square)
      assert.equals(position[i], r.released_as)   -- released in the order the test chose
      assert.equals(1, r.attempt)                 -- each once: none handed back by the shutdown
    end
    local echo_id = assert(out:match("\necho\t(%S+)\t"), out)
    local echo = client:get_workflow_handle(echo_id):result()
    assert.is_true(echo.echo_same)
    assert.same({ "str", "int", "float", "bool", "dict", "list" }, echo.types)
    client:close()
  end)
end)
