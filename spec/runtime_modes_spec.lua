-- The runtime's two ways of getting a state's completions (src/runtime.c): direct (the
-- state's own completion queue, waited on by its own thread) until a host asks for the
-- pollfd; relayed (the process-wide queue, its poller thread and the state's eventfd) from
-- then on, with the calls in flight at the switch handed over. Each case runs in a fresh
-- process: the busted process itself has long been relayed by the hosts specs.
local helper = require("support.helper")

local SCRIPT = [=[
local temporal = require("temporal")
local core = temporal.core
local address, namespace, task_queue, prefix = ...
local client = temporal.connect(address, { namespace = namespace })
local info = core.runtime_info()
print("start", tostring(info.relayed), info.poller_threads)
assert(client.workflow_service:get_system_info{}.server_version)
info = core.runtime_info()
print("after a blocking call", tostring(info.relayed), info.poller_threads)

local handles, tasks = {}, {}
for i = 1, 3 do
  handles[i] = client:start_workflow("WaitForSignal", { id = prefix .. i, task_queue = task_queue })
end
for i = 1, 3 do tasks[i] = temporal.spawn(function() return handles[i]:result() end) end
temporal.step(0)  -- each task runs up to its result long poll, held open by the server
print("in flight", core.inflight())

assert(type(temporal.pollfd()) == "number")  -- a host asks: relayed from here on
info = core.runtime_info()
print("after pollfd", tostring(info.relayed), info.poller_threads)

-- released in an order of the test's choosing; each result arrives through the relay
local open = { true, true, true }
for _, i in ipairs({ 2, 3, 1 }) do
  handles[i]:signal("approve", i)
  while not tasks[i]:done() do temporal.step(nil) end
  open[i] = false
  local r = tasks[i]:wait()
  local others = {}
  for j = 1, 3 do
    if open[j] and tasks[j]:done() then others[#others + 1] = j end
  end
  print("released", i, "result", r[1][1], "others done early", #others)
end
client:close()
print("script ok")
]=]

-- Direct mode, completions one at a time (each call alone in flight beside results the
-- server holds): the runtime stops polling for more after each one (src/runtime.c,
-- drain_wanted). Then the held results are released together: every one must still be
-- delivered, to the task that waits for it.
local DRAIN_SCRIPT = [=[
local temporal = require("temporal")
local core = temporal.core
local address, namespace, task_queue, prefix = ...
local client = temporal.connect(address, { namespace = namespace })
local K = 6
local handles, tasks = {}, {}
for i = 1, K do
  handles[i] = client:start_workflow("WaitForSignal", { id = prefix .. i, task_queue = task_queue })
end
for i = 1, K do tasks[i] = temporal.spawn(function() return handles[i]:result() end) end
temporal.step(0)
print("held", core.inflight())
for _ = 1, 40 do assert(client.workflow_service:get_system_info{}.server_version) end
local early = 0
for i = 1, K do if tasks[i]:done() then early = early + 1 end end
print("done before the signals", early)
for i = K, 1, -1 do handles[i]:signal("approve", i) end
for i = 1, K do
  local r = tasks[i]:wait()
  print("result", i, r[1][1])
end
print("relayed", tostring(core.runtime_info().relayed), "in flight", core.inflight())
client:close()
print("script ok")
]=]

local function write_script(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text or SCRIPT)
  f:close()
  return path
end

local function check(out)
  assert.matches("start\tfalse\t0\n", out, 1, true)
  -- a blocking call in a script takes its completion itself: no poller thread
  assert.matches("after a blocking call\tfalse\t0\n", out, 1, true)
  assert.matches("in flight\t3\n", out, 1, true)
  assert.matches("after pollfd\ttrue\t1\n", out, 1, true)
  local order = {}
  for i, r, early in out:gmatch("released\t(%d)\tresult\t(%d)\tothers done early\t(%d)\n") do
    assert.equals(i, r)
    assert.equals("0", early)
    order[#order + 1] = tonumber(i)
  end
  assert.same({ 2, 3, 1 }, order)
  assert.matches("script ok", out)
end

describe("runtime modes", function()
  it("a script takes completions itself; calls in flight when a host asks for the pollfd are handed over", function()
    local path = write_script()
    local ok, out, err = helper.run({ "lua5.4", path, helper.address, helper.namespace, helper.task_queue,
      helper.unique_id("modes") .. "-" })
    os.remove(path)
    assert.is_true(ok, out .. err)
    check(out)
  end)

  it("the switch with calls in flight is valgrind-clean", function()
    local path = write_script()
    local ok, out, err = helper.run({ "valgrind", "--error-exitcode=9", "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite", "lua5.4", path,
      helper.address, helper.namespace, helper.task_queue, helper.unique_id("modes-vg") .. "-" })
    os.remove(path)
    assert.is_true(ok, out .. err)
    check(out)
    assert.matches("ERROR SUMMARY: 0 errors", err)
    assert.matches("definitely lost: 0 bytes", err)
  end)

  it("completions taken one at a time, then released together: each reaches its task", function()
    local path = write_script(DRAIN_SCRIPT)
    local ok, out, err = helper.run({ "lua5.4", path, helper.address, helper.namespace, helper.task_queue,
      helper.unique_id("drain") .. "-" })
    os.remove(path)
    assert.is_true(ok, out .. err)
    assert.matches("held\t6\n", out, 1, true)
    assert.matches("done before the signals\t0\n", out, 1, true)
    for i = 1, 6 do assert.matches(("result\t%d\t%d\n"):format(i, i), out, 1, true) end
    assert.matches("relayed\tfalse\tin flight\t0\n", out, 1, true)
    assert.matches("script ok", out)
  end)
end)
