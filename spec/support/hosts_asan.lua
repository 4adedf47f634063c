-- Run by spec/hosts_asan_spec.lua under the ASan/UBSan/LSan build of temporal-lua: the
-- host paths (cqueues, luv, close, budget, NaN/huge timeouts, optional unary arguments,
-- coroutines parked when the state closes) with the sanitizers watching.
local temporal = require("temporal")
local cqueues = require("cqueues")
local uv = require("luv")
local address, task_queue = os.getenv("TEMPORAL_TEST_ADDRESS"), os.getenv("TEMPORAL_TEST_TASK_QUEUE")
local client = temporal.connect(address, { namespace = "default" })
local core = temporal.core
-- NaN / huge / optional args
assert(not pcall(temporal.step, 0/0))
assert(temporal.step(math.huge) == false)
local ch = core.handle_state(client).channel
local WS = "temporal.api.workflowservice.v1.WorkflowService"
for _, c in ipairs({ core.unary(ch, WS, "GetSystemInfo", {}), core.unary(ch, WS, "GetSystemInfo", {}, math.huge),
                     core.unary(ch, WS, "GetSystemInfo", {}, 1e300) }) do
  assert(require("temporal.scheduler").await(c).server_version)
end
assert(not pcall(core.unary, ch, WS, "GetSystemInfo", {}, 0/0))
-- cqueues overlap + close
local cq = cqueues.new()
temporal.set_host(require("temporal.host.cqueues").new(cq))
local n, got = 5, 0
local hs = {}
for i = 1, n do
  cq:wrap(function()
    hs[i] = client:start_workflow("WaitForSignal", { id = ("asan-%d-%d-%d"):format(os.time(), math.random(1e6), i), task_queue = task_queue })
    hs[i]:result(); got = got + 1
  end)
end
cq:wrap(function()
  while core.inflight() < n or #hs < n do cqueues.sleep(0.01) end
  for i = n, 1, -1 do hs[i]:signal("approve", i) end
end)
assert(cq:loop()); assert(got == n)
local c2 = temporal.connect(address, { namespace = "default" })
local errs, started = 0, 0
for i = 1, 3 do cq:wrap(function()
  local h = c2:start_workflow("WaitForSignal", { id = ("asan-c-%d-%d-%d"):format(os.time(), math.random(1e6), i), task_queue = task_queue })
  started = started + 1
  if not pcall(h.result, h) then errs = errs + 1 end end) end
cq:wrap(function() while started < 3 or core.inflight() < 3 do cqueues.sleep(0.01) end c2:close() end)
assert(cq:loop()); assert(errs == 3, errs)
temporal.set_host(nil)
-- luv
temporal.set_host(require("temporal.host.luv").new())
local done = 0
for _ = 1, 5 do local t = uv.new_timer(); t:start(0, 0, function() t:close()
  coroutine.wrap(function() client.workflow_service:get_system_info{}; done = done + 1 end)() end) end
uv.run(); assert(done == 5)
temporal.set_host(nil)
-- budget burst
local ts = {}
for i = 1, 200 do ts[i] = temporal.spawn(function() return client.workflow_service:describe_namespace{ namespace = "default" } end) end
while temporal.step(0.01, { max_tasks = 20 }) do end
for i = 1, 200 do assert(ts[i]:wait().namespace_info) end
-- parked at exit
temporal.set_host(require("temporal.host.cqueues").new(cq))
for i = 1, 2 do cq:wrap(function()
  local h = client:start_workflow("WaitForSignal", { id = ("asan-x-%d-%d-%d"):format(os.time(), math.random(1e6), i), task_queue = task_queue })
  started = started + 1; h:result() end) end
started = 0
while started < 2 or core.inflight() < 2 do assert(cq:step(0.05)) end
print("asan script ok")
os.exit(0, true)
