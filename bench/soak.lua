-- The soak (make soak): one client, for a bounded time, runs starts, signals, queries,
-- describes, results and failing calls (NOT_FOUND, already started, a failed workflow, an
-- unknown query) from 4 concurrent tasks, and samples the process every interval: RSS,
-- Lua heap (after a full collection), open file descriptors and threads. After a warm-up
-- (the first fifth of the run) all four must stay flat; the report goes to OUT.
--   temporal-lua bench/soak.lua ADDRESS TASK_QUEUE SECONDS OUT
local temporal = require("temporal")
local address, task_queue, seconds, out_path = ...
seconds = tonumber(seconds) or 180
local interval = math.max(seconds / 20, 2)

local client = temporal.connect(address, { namespace = "default" })
local now = temporal.core.now

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function sample()
  collectgarbage("collect")
  local fds = 0
  for _ in io.popen("ls /proc/" .. temporal.core.pid() .. "/fd"):lines() do fds = fds + 1 end
  local status = read("/proc/self/status")
  return {
    rss_kib = tonumber(status:match("VmRSS:%s*(%d+)")),
    lua_kib = math.floor(collectgarbage("count")),
    fds = fds - 1,   -- minus the one ls itself had open for the listing
    threads = tonumber(status:match("Threads:%s*(%d+)")),
  }
end

local counts = { iterations = 0, calls = 0, expected_failures = 0 }
local function expect_error(class, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok and temporal.errors.is(err, class), ("expected %s, got %s"):format(class, tostring(err)))
  counts.expected_failures = counts.expected_failures + 1
end

local prefix = ("soak-%d-%d"):format(os.time(), temporal.core.pid())
local function iteration(task, i)
  local id = ("%s-%d-%d"):format(prefix, task, i)
  local h = client:start_workflow("WaitForSignal", { id = id, task_queue = task_queue })
  h:signal("approve", i)
  local status = h:query("status")
  assert(status.approved == true)
  assert(h:describe().id == id)
  assert(#h:result() == 1)
  expect_error("WorkflowAlreadyStartedError", client.start_workflow, client, "WaitForSignal",
    { id = id, task_queue = task_queue, id_reuse_policy = "REJECT_DUPLICATE" })
  expect_error("RPCError", client:get_workflow_handle(id .. "-missing").describe,
    client:get_workflow_handle(id .. "-missing"))
  expect_error("WorkflowQueryFailedError", h.query, h, "no-such-query")
  counts.calls = counts.calls + 8
  if i % 5 == 0 then
    local f = client:start_workflow("Fail", { id = id .. "-fail", task_queue = task_queue, args = { "boom" } })
    expect_error("WorkflowFailureError", f.result, f)
    counts.calls = counts.calls + 2
  end
  counts.iterations = counts.iterations + 1
end

local started = now()
local samples = { { t = 0, iterations = 0, calls = 0, s = sample() } }
local tasks = {}
for task = 1, 4 do
  tasks[task] = temporal.spawn(function()
    local i = 0
    while now() - started < seconds do
      i = i + 1
      iteration(task, i)
    end
  end)
end
local sampler = temporal.spawn(function()
  while now() - started < seconds do
    temporal.sleep(interval)
    samples[#samples + 1] = { t = now() - started, iterations = counts.iterations, calls = counts.calls, s = sample() }
    io.stderr:write(("soak %4.0f s: %d iterations, rss %d KiB, lua %d KiB, fds %d, threads %d\n"):format(
      samples[#samples].t, counts.iterations, samples[#samples].s.rss_kib, samples[#samples].s.lua_kib,
      samples[#samples].s.fds, samples[#samples].s.threads))
  end
end)
for task = 1, 4 do tasks[task]:wait() end
sampler:wait()
client:close()

-- Flat after warm-up: the last sample against the first one after the first fifth.
local base
for _, smp in ipairs(samples) do
  if smp.t >= seconds / 5 then base = smp; break end
end
local last = samples[#samples]
local function growth(key) return (last.s[key] - base.s[key]) / base.s[key] * 100 end
local verdict = {
  ("RSS %+.1f %%"):format(growth("rss_kib")),
  ("Lua heap %+.1f %%"):format(growth("lua_kib")),
  ("fds %+d"):format(last.s.fds - base.s.fds),
  ("threads %+d"):format(last.s.threads - base.s.threads),
}
local flat = growth("rss_kib") <= 10 and growth("lua_kib") <= 25 and last.s.fds <= base.s.fds
  and last.s.threads <= base.s.threads

local lines = {
  "# Soak: one client under a steady mix of calls",
  "",
  ("`make soak SOAK_SECONDS=%d` on %s (temporal-lua %s, gRPC %s). Four tasks share one client and"):format(
    seconds, os.date("!%Y-%m-%d"), temporal.core.version, temporal.core.grpc_version()),
  "loop over: start `WaitForSignal`, signal, query, describe, result; an already-started start,",
  "a describe of a missing workflow (NOT_FOUND), an unknown query; every 5th loop a failing",
  "workflow and its result (WorkflowFailureError). The Python worker of the test bed runs the",
  "workflows against the dev server (in-memory SQLite).",
  "",
  ("%d loops, %d calls (%d of them failing as expected) in %d s."):format(
    counts.iterations, counts.calls, counts.expected_failures, math.floor(last.t + 0.5)),
  "",
  "| t (s) | loops | RSS (KiB) | Lua heap (KiB) | fds | threads |",
  "|---:|---:|---:|---:|---:|---:|",
}
for _, smp in ipairs(samples) do
  lines[#lines + 1] = ("| %.0f | %d | %d | %d | %d | %d |"):format(smp.t, smp.iterations, smp.s.rss_kib,
    smp.s.lua_kib, smp.s.fds, smp.s.threads)
end
lines[#lines + 1] = ""
lines[#lines + 1] = ("After warm-up (from t = %.0f s to the end): %s: **%s**."):format(base.t,
  table.concat(verdict, ", "), flat and "flat" or "GROWING")
lines[#lines + 1] = "(Flat: RSS within +10 %, Lua heap within +25 % - it breathes with the garbage"
lines[#lines + 1] = "collector's pace -, no more fds or threads than at the end of warm-up.)"
local f = assert(io.open(out_path, "w"))
f:write(table.concat(lines, "\n"), "\n")
f:close()
print(("soak: %d loops, %s: %s"):format(counts.iterations, table.concat(verdict, ", "), flat and "flat" or "GROWING"))
os.exit(flat and 0 or 1)
