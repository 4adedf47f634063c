-- Host: skynet 1.8.0 (../shared/hosts, built here with `make skynet`, temporal/core.so
-- against skynet's own Lua). The example service waits on six workflows at once - three
-- requests from another service, three skynet.fork sessions of its own - answers pings
-- and queries meanwhile, and each result comes back right after the signal the test
-- chose for it. 21 services (lua_States) share one runtime.
local helper = require("support.helper")

local ROOT = assert(helper.temporal_lua, "TEMPORAL_LUA is set by spec/run.sh"):match("^(.*)/build/temporal%-lua$")

describe("skynet host", function()
  it("builds skynet and temporal/core.so against skynet's Lua", function()
    local ok, out, err = helper.run({ "make", "--no-print-directory", "skynet" })
    assert.is_true(ok, out .. err)
  end)

  it("a service waits on workflows from several sessions at once and keeps answering", function()
    local order = { 5, 2, 6, 1, 4, 3 }
    local skynet_root = ROOT .. "/build/skynet-1.8.0"
    local ok, out, err = helper.run({ "timeout", "120", skynet_root .. "/skynet",
      ROOT .. "/examples/hosts/skynet/config" }, {
      SKYNET_ROOT = skynet_root, TEMPORAL_LUA_ROOT = ROOT, TEMPORAL_LUA_CPATH = ROOT .. "/build/skynet",
      TEMPORAL_ADDRESS = helper.address, TEMPORAL_NAMESPACE = helper.namespace,
      TEMPORAL_TASK_QUEUE = helper.task_queue, TEMPORAL_RELEASE_ORDER = table.concat(order, ","),
      TEMPORAL_EXTRA_SERVICES = "20",
    })
    assert.is_true(ok, out .. err)
    assert.matches("\ndone\n", out)
    -- six long polls open at once, and the service answered pings meanwhile
    assert.matches("all open\t6\n", out)
    for n = 1, 3 do assert.matches(("ping\tpong\t%d\t6\n"):format(n), out) end
    for i = 1, 6 do assert.matches(("query\t%d\twaiting\n"):format(i), out) end
    -- each came back right after its own signal, in the order chosen
    local released = {}
    for i, last in out:gmatch("released\t(%d)\treturned\t(%d)\n") do
      assert.equals(i, last)
      released[#released + 1] = tonumber(i)
    end
    assert.same(order, released)
    for i = 1, 3 do assert.matches(("result\t%d\tr%d\n"):format(i, i), out) end
    for i = 4, 6 do assert.matches(("forked result\t%d\tr%d\n"):format(i, i), out) end
    -- a service left with two calls in flight: its state closed, the others still work
    assert.matches("after a service left\t21\tstates,\t%d+%.%d+", out)
    -- 21 states on one runtime: one poller thread
    assert.matches("runtime\t21\tstates\t1\tpoller threads\n", out)
    local one, many = out:match("threads\t(%d+)\twith 1 service,\t(%d+)\twith\t21\n")
    assert.is_truthy(one)
    -- what each state adds is no thread: only gRPC's own pool may warm up by one or two
    assert.is_true(tonumber(many) - tonumber(one) <= 2, out)
  end)
end)
