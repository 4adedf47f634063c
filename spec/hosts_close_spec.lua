-- Closing under waiting host coroutines: client:close() fails their waits with a clear
-- error (nothing hangs, nothing leaks); closing the state with coroutines still parked
-- is valgrind-clean.
local helper = require("support.helper")
local temporal = require("temporal")
local cqueues = require("cqueues")
local host_cqueues = require("temporal.host.cqueues")
local core = temporal.core

describe("closing while host coroutines wait", function()
  after_each(function() temporal.set_host(nil) end)

  it("client:close() fails every waiting call with CANCELLED naming the close", function()
    local client = temporal.connect(helper.address, { namespace = helper.namespace })
    local cq = cqueues.new()
    temporal.set_host(host_cqueues.new(cq))
    local n = 4
    local handles, errs = {}, {}
    for i = 1, n do
      handles[i] = client:start_workflow("WaitForSignal", {
        id = helper.unique_id("close-" .. i), task_queue = helper.task_queue })
      cq:wrap(function()
        local ok, err = pcall(handles[i].result, handles[i])
        errs[i] = ok and "no error" or err
      end)
    end
    cq:wrap(function()
      while core.inflight() < n do cqueues.sleep(0.01) end
      client:close()
    end)
    assert(cq:loop())
    for i = 1, n do
      assert.is_true(temporal.errors.is(errs[i], "RPCError"), tostring(errs[i]))
      assert.equals("CANCELLED", errs[i].status)
      assert.matches("the client was closed while the call was in flight", tostring(errs[i]))
    end
    assert.equals(0, core.inflight())
    -- later calls fail at once, naming the target
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {})
    assert.is_false(ok)
    assert.matches("channel to " .. helper.address:gsub("%.", "%%.") .. " is closed", err)
    -- the workflows themselves are untouched: still running on the server
    local desc = helper.cli_json("workflow", "describe", "--workflow-id", handles[1].id)
    assert.equals("WORKFLOW_EXECUTION_STATUS_RUNNING", desc.workflowExecutionInfo.status)
  end)

  it("is valgrind-clean: waits failed by close, and coroutines still parked at exit", function()
    local script = [=[
local temporal = require("temporal")
local cqueues = require("cqueues")
local address, namespace, task_queue = ...
local cq = cqueues.new()
temporal.set_host(require("temporal.host.cqueues").new(cq))
local function open_waits(client, tag)
  local started = 0
  for i = 1, 3 do
    cq:wrap(function()
      local h = client:start_workflow("WaitForSignal", {
        id = ("vg-%s-%d-%d-%d"):format(tag, os.time(), math.random(1e6), i), task_queue = task_queue })
      started = started + 1
      local ok, err = pcall(h.result, h)
      print(tag, i, ok, err and err.status)
    end)
  end
  return function() return started end
end
local c1 = temporal.connect(address, { namespace = namespace })
local started1 = open_waits(c1, "closed")
cq:wrap(function()
  while started1() < 3 or temporal.core.inflight() < 3 do cqueues.sleep(0.01) end
  c1:close()
end)
assert(cq:loop())
-- a second client whose waits are still parked when the state closes
local c2 = temporal.connect(address, { namespace = namespace })
local started2 = open_waits(c2, "parked")
while started2() < 3 or temporal.core.inflight() < 3 do assert(cq:step(0.05)) end
print("exiting with", temporal.core.inflight(), "in flight")
os.exit(0, true)   -- closes the state: runtime and call finalizers run
]=]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local ok, out, err = helper.run({ "valgrind", "--error-exitcode=9", "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite", "lua5.4", path,
      helper.address, helper.namespace, helper.task_queue })
    os.remove(path)
    assert.is_true(ok, out .. err)
    for i = 1, 3 do assert.matches(("closed\t%d\tfalse\tCANCELLED\n"):format(i), out) end
    assert.matches("exiting with\t3\tin flight\n", out)
    assert.not_matches("parked\t", out)
    assert.matches("ERROR SUMMARY: 0 errors", err)
    assert.matches("definitely lost: 0 bytes", err)
  end)
end)
