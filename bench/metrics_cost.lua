-- What recording the client's request metrics costs per call (bench/README.md, "Metrics
-- recording cost"). Nothing is asserted; it prints a table.
--   temporal-lua bench/metrics_cost.lua ADDRESS [calls] [rounds]
-- 1. the recording alone: what Client:_rpc adds per call (find the recorder, begin, finish),
--    in a loop without any RPC;
-- 2. GetSystemInfo, sequential, through two clients on the same server, one recording into a
--    registry and one with metrics = false, in alternating rounds: client CPU (os.clock: the
--    whole process, gRPC's threads included) and wall time per call, medians over the rounds.
local temporal = require("temporal")
local metrics = temporal.metrics

local address = assert(arg[1], "usage: metrics_cost.lua ADDRESS [calls] [rounds] | ADDRESS --callgrind on|off N")

-- 3. (run by metrics_cost.sh under callgrind) N GetSystemInfo calls, metrics on or off
if arg[2] == "--callgrind" then
  local client = temporal.connect(address, { metrics = arg[3] == "on" and metrics.new() or false })
  local ws = client.workflow_service
  for _ = 1, tonumber(arg[4]) do ws:get_system_info({}) end
  return
end
local calls = tonumber(arg[2] or "2000")
local rounds = tonumber(arg[3] or "7")
local now = temporal.core.now

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- 1. recording alone
local reg = metrics.new()
local request = { namespace = "default" }
local function record_loop(n, failure)
  local c0 = os.clock()
  for _ = 1, n do
    local r = reg:recorder("GetSystemInfo", request)
    r:finish(r:begin(), failure)
  end
  return (os.clock() - c0) / n
end
record_loop(100000)
local ok_ns, fail_ns = {}, {}
for i = 1, rounds do
  ok_ns[i] = record_loop(200000) * 1e9
  fail_ns[i] = record_loop(200000, { status = "NOT_FOUND" }) * 1e9
end

-- 2. GetSystemInfo with and without metrics
local on = temporal.connect(address, { metrics = metrics.new() })
local off = temporal.connect(address, { metrics = false })
local function run(client, n)
  local ws = client.workflow_service
  local c0, t0 = os.clock(), now()
  for _ = 1, n do ws:get_system_info({}) end
  return (os.clock() - c0) / n, (now() - t0) / n
end
run(on, 200)
run(off, 200)
local cpu_on, cpu_off, wall_on, wall_off = {}, {}, {}, {}
for i = 1, rounds do
  local first, second = on, off
  if i % 2 == 0 then first, second = off, on end
  local c1, w1 = run(first, calls)
  local c2, w2 = run(second, calls)
  if first == on then cpu_on[i], wall_on[i], cpu_off[i], wall_off[i] = c1, w1, c2, w2
  else cpu_off[i], wall_off[i], cpu_on[i], wall_on[i] = c1, w1, c2, w2 end
end

local con, coff = median(cpu_on) * 1e6, median(cpu_off) * 1e6
print(("| measurement | value |\n|---|---|"))
print(("| recording one successful attempt (recorder lookup + begin + finish) | %.2f µs |")
  :format(median(ok_ns) / 1000))
print(("| recording one failed attempt (same + failure counter) | %.2f µs |"):format(median(fail_ns) / 1000))
print(("| GetSystemInfo client CPU per call, metrics off | %.1f µs |"):format(coff))
print(("| GetSystemInfo client CPU per call, metrics on | %.1f µs |"):format(con))
print(("| difference (on - off) | %+.1f µs (%+.1f %%) |"):format(con - coff, (con - coff) / coff * 100))
print(("| GetSystemInfo wall time per call, off / on | %.0f / %.0f µs |")
  :format(median(wall_off) * 1e6, median(wall_on) * 1e6))
print(("(%d rounds of %d sequential calls per client, medians; %s)"):format(rounds, calls, _VERSION))
