-- Hosts in C: a fixed-tick frame loop resuming its own coroutines with lua_resume
-- (examples/hosts/frame_loop.c), and many lua_States in one process sharing the one
-- runtime (bench/many_states.c).
local helper = require("support.helper")

describe("C frame loop host", function()
  it("parks only the entities that call; the ticker runs every frame meanwhile", function()
    local order = { 4, 1, 5, 3, 2 }
    local ok, out, err = helper.run({ "timeout", "120", "build/frame_loop", helper.address,
      helper.namespace, helper.task_queue, "5", table.concat(order, ",") })
    assert.is_true(ok, out .. err)
    -- all five long polls were open at once, and the ticker entity kept stepping
    assert.matches("all open\t5\n", out)
    assert.matches("ticked while open\t3\n", out)
    local released = {}
    for i, back in out:gmatch("released\t(%d)\treturned\t(%d)\n") do
      assert.equals(i, back)
      released[#released + 1] = tonumber(i)
    end
    assert.same(order, released)
    for i = 1, 5 do assert.matches(("result\t%d\tr%d\n"):format(i, i), out) end
    -- the ticker entity ran in every frame but the last (when it had finished)
    local frames, ticker = out:match("frames (%d+), ticker (%d+), most resumes in one frame %d+")
    assert.is_truthy(frames, out)
    assert.is_true(tonumber(ticker) >= tonumber(frames) - 1, out)
  end)
end)

describe("many states", function()
  it("1000 lua_States with a client each share one runtime: threads and connections stay flat", function()
    local ok, out, err = helper.run({ "sh", "-c",
      'ulimit -n 4096 2>/dev/null; exec build/many_states "$0" "$1" 1000', helper.address, helper.namespace })
    assert.is_true(ok, out .. err)
    io.stderr:write("\n", out)   -- the measured numbers, for the record
    assert.matches("states 1000, runtime states 1000, calls ok 1000\n", out)
    local with1, with_n, after = out:match("threads: %d+ before any state, (%d+) with 1, (%d+) with 1000, (%d+) after a call in each")
    assert.is_truthy(with1, out)
    -- the module's own threads: one poller, whatever the state count; gRPC's pool is its own
    -- and bounded by the cores, not by states
    assert.is_true(tonumber(with_n) - tonumber(with1) <= 2, out)
    assert.equals(with_n, after)
    assert.matches("sockets 1, eventfds 100%d\n", out)  -- one connection; one eventfd per state
    assert.matches("threads after closing all: 1\n", out)
  end)

  it("sharing the runtime is valgrind-clean: states come and go, the last one stops the poller", function()
    local ok, out, err = helper.run({ "valgrind", "--error-exitcode=9", "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
      "build/many_states", helper.address, helper.namespace, "5" })
    assert.is_true(ok, out .. err)
    assert.matches("states 5, runtime states 5, calls ok 5\n", out)
    assert.matches("threads after closing all: 1\n", out)
    assert.matches("ERROR SUMMARY: 0 errors", err)
    assert.matches("definitely lost: 0 bytes", err)
  end)
end)
