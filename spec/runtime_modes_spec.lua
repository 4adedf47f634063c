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

local function write_script()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(SCRIPT)
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
end)
