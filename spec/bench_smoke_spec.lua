-- The benchmark keeps working: bench/bench.py --smoke runs every workload with tiny counts
-- against the test bed's server and worker, with temporal-lua, the Python SDK client and the
-- raw gRPC C program (build/bench-raw). Only the shape of the results is checked: fields
-- present, counts as configured, numbers finite and not negative. No timing is asserted (that
-- is what make bench reports). The Go SDK client is not built here (a cold Go build takes
-- minutes); its slot is taken by a peer that dies of SIGSEGV on every run, which the bench
-- must record, retry a bounded number of times and report as missing, never aborting.
local helper = require("support.helper")
local json = helper.json

local ROOT = os.getenv("PWD") or "."
local function from_root(path)
  if path:sub(1, 1) == "/" then return path end
  return ROOT .. "/" .. path
end

local function is_measure(v)
  return type(v) == "number" and v == v and v >= 0 and v ~= math.huge
end

-- A summary entry: median, min, max over n repetitions.
local function assert_spread(s, what)
  assert(type(s) == "table", what .. ": missing")
  for _, k in ipairs({ "median", "min", "max", "n" }) do
    assert(is_measure(s[k]), what .. "." .. k .. " = " .. tostring(s[k]))
  end
  assert(s.min <= s.median and s.median <= s.max, what .. ": min <= median <= max")
end

describe("bench smoke run", function()
  local results, out_dir

  setup(function()
    out_dir = os.tmpname()
    os.remove(out_dir)
    assert(os.execute("mkdir -p " .. helper.shell_quote(out_dir)))
    local built, _, berr = helper.run({ "make", "--no-print-directory", "-s", "build/bench-raw" })
    assert(built, "make build/bench-raw: " .. tostring(berr))
    local crash = out_dir .. "/crashing-peer"
    local script = assert(io.open(crash, "w"))
    script:write("#!/bin/sh\necho 'about to crash' >&2\nkill -SEGV $$\n")
    script:close()
    assert(os.execute("chmod +x " .. helper.shell_quote(crash)))
    local server_pid = assert(os.getenv("TEMPORAL_TEST_SERVER_PID"), "spec/run.sh exports the server pid")
    local ok, _, err, code = helper.run({
      helper.python_path, from_root("bench/bench.py"), "--smoke",
      "--address", helper.address, "--namespace", helper.namespace,
      "--server-pid", server_pid, "--worker-pid", os.getenv("TEMPORAL_TEST_WORKER_PID") or server_pid,
      "--worker-task-queue", helper.task_queue,
      "--temporal-lua", from_root(helper.temporal_lua or "build/temporal-lua"),
      "--python", helper.python_path, "--out-dir", out_dir,
      "--raw", from_root("build/bench-raw"), "--go", crash,
    })
    assert(ok, ("bench.py --smoke exited %s:\n%s"):format(tostring(code), err))
    local p = io.popen("ls " .. helper.shell_quote(out_dir) .. "/*.json")
    local path = p:read("l")
    p:close()
    assert(path, "no results file in " .. out_dir)
    local f = assert(io.open(path, "rb"))
    results = json.decode(f:read("a"))
    f:close()
  end)

  teardown(function()
    if out_dir then os.execute("rm -rf " .. helper.shell_quote(out_dir)) end
  end)

  it("records the machine, the versions and the API temporal-lua used", function()
    assert.is_true(results.machine.nproc >= 1)
    assert.is_string(results.machine.cpu_model)
    assert.is_true(results.machine.ram_gib > 0)
    assert.equals("1.35.0", results.versions.temporalio)
    assert.is_string(results.versions.temporal_lua)
    assert.is_true(#results.lua_api >= 1)
    assert.is_true(is_measure(results.elapsed_seconds))
  end)

  it("runs every workload with both clients, the counts as configured", function()
    local cfg = results.config
    local seen = {}
    for _, r in ipairs(results.runs) do
      local key = r.workload .. "/" .. r.client
      seen[key] = (seen[key] or 0) + 1
      if r.workload == "throughput" then
        assert.equals(cfg.throughput.count, r.calls)
        assert.is_true(r.workflows_per_s > 0)
        assert.is_true(r.p50_ms <= r.p99_ms)
      elseif r.workload == "rpc_throughput" then
        assert.equals(cfg.rpc_throughput.count, r.calls)
      elseif r.workload == "memory" then
        assert.equals(cfg.memory.count, r.handles)
        assert.is_true(r.rss_connected_kib > 0)
      elseif r.workload == "payload" then
        assert.equals(#cfg.payload.sizes, #r.sizes)
        for _, s in ipairs(r.sizes) do
          assert.is_true(s.bytes >= cfg.payload.sizes[1][2])
          assert.is_true(s.iterations >= 3)
        end
      elseif r.workload == "scaling" then
        assert.equals(cfg.scaling.count, r.calls)
        assert.equals(r.calls, r.returned)  -- every held call returned after the release
        assert.is_true(r.rss_held_kib > 0 and r.idle_wall > 0)
      elseif r.workload == "latency" then
        local want = r.op == "execute" and cfg.latency.execute_count or cfg.latency.count
        assert.equals(want, r.calls)
      elseif r.workload == "activity_worker" then
        assert.equals(cfg.activity_worker.count, r.activities)
      end
    end
    local reps = cfg.reps
    for _, client in ipairs({ "lua", "python" }) do
      assert.equals(reps * #cfg.throughput.concurrency, seen["throughput/" .. client])
      assert.equals(reps, seen["rpc_throughput/" .. client])
      assert.equals(reps, seen["memory/" .. client])
      assert.equals(cfg.cold_start.reps, seen["cold_start/" .. client])
      assert.equals(reps, seen["payload/" .. client])
      assert.equals(reps * 4, seen["latency/" .. client])  -- describe, query, signal, execute
      assert.equals(cfg.scaling.reps, seen["scaling/" .. client])
      assert.equals(reps, seen["activity_worker/" .. client])
    end
    -- the raw C program: the unary calls and the cold start only
    assert.equals(reps * #cfg.throughput.concurrency, seen["throughput/raw"])
    assert.equals(reps, seen["rpc_throughput/raw"])
    assert.equals(cfg.cold_start.reps, seen["cold_start/raw"])
    assert.is_nil(seen["memory/raw"])
    assert.is_nil(seen["payload/go"])  -- the crashing peer gave nothing
  end)

  it("the raw C program's starts are real workflows carrying temporal-lua's request", function()
    local n = 0
    for _, r in ipairs(results.runs) do
      if r.workload == "throughput" and r.client == "raw" then
        n = n + 1
        assert.is_true(r.client_cpu > 0)
        assert.equals(2, #r.workflow_ids)  -- the first and the last it started
        for _, id in ipairs(r.workflow_ids) do
          -- read back from the server: the type, task queue and JSON argument of the template
          local hist = helper.cli_json("workflow", "show", "--workflow-id", id)
          local started = hist.events[1].workflowExecutionStartedEventAttributes
          assert.equals("BenchNoWorker", started.workflowType.name)
          assert.equals("bench-unpolled", started.taskQueue.name)
          local data = started.input.payloads[1].data
          local decoded = helper.python(
            'import base64, json, os, sys\nsys.stdout.write(base64.b64decode(json.loads(os.environ["ARGS"])[0]).decode())',
            { data })
          assert.equals('"payload"', decoded)
        end
      end
    end
    assert.equals(#results.config.throughput.concurrency, n)
  end)

  it("records a crashing peer's attempts, retries each sample a bounded number of times, and reports it missing", function()
    local attempts, missing = {}, {}
    for _, f in ipairs(results.failures) do
      if f.client == "go" then
        assert.equals("killed by SIGSEGV", f.reason)
        assert.truthy(f.stderr:find("about to crash", 1, true))
        local key = f.workload .. "/" .. tostring(f.rep) .. "/" .. tostring(f.concurrency)
        attempts[key] = (attempts[key] or 0) + 1
      end
    end
    for _, m in ipairs(results.missing) do
      if m.client == "go" then missing[#missing + 1] = m end
    end
    assert.is_true(#missing >= 6)  -- warm-up, throughput, GetSystemInfo, memory, cold start, ...
    for key, n in pairs(attempts) do
      assert.equals(3, n, key)  -- the first try and two retries
    end
    local f = assert(io.open(out_dir .. "/latest.md", "rb"))
    local md = f:read("a")
    f:close()
    assert.truthy(md:find("Missing samples", 1, true))
    assert.truthy(md:find("Go SDK payload rep 0: killed by SIGSEGV", 1, true))
  end)

  it("summarizes medians and spreads, server CPU included, for both clients", function()
    local s = results.summary
    for _, client in ipairs({ "lua", "python" }) do
      for _, c in ipairs(results.config.throughput.concurrency) do
        local t = s.throughput[client][tostring(math.tointeger(c))]  -- cjson: 1 -> 1.0
        for _, k in ipairs({ "workflows_per_s", "p50_ms", "p99_ms", "client_cpu_us_per_call",
                             "server_cpu_cores", "machine_cpu_cores" }) do
          assert_spread(t[k], ("throughput.%s.%d.%s"):format(client, c, k))
        end
      end
      assert_spread(s.rpc_throughput[client].calls_per_s, "rpc_throughput calls_per_s")
      assert_spread(s.memory[client].rss_connected_mib, "memory rss_connected_mib")
      assert_spread(s.cold_start[client].to_first_rpc_ms, "cold_start to_first_rpc_ms")
      for _, op in ipairs({ "describe", "query", "signal", "execute" }) do
        assert_spread(s.latency[client][op].p50_ms, "latency " .. op)
      end
      assert_spread(s.activity_worker[client].activities_per_s, "activity_worker activities_per_s")
      assert_spread(s.activity_worker[client].worker_cpu_us_per_activity, "activity_worker worker CPU")
    end
    for _, what in ipairs({ "start", "get_system_info" }) do
      for _, client in ipairs({ "lua", "raw" }) do
        local cg = results.callgrind[what][client]
        assert.is_true(cg.instructions[1] > 0, what .. " " .. client)
        assert.is_number(cg.instructions_per_call)  -- a difference: any sign at tiny N
      end
    end
  end)

  it("writes the Markdown table and the PNG chart", function()
    local f = assert(io.open(out_dir .. "/latest.md", "rb"))
    local md = f:read("a")
    f:close()
    assert.truthy(md:find("| workload | unit | temporal-lua | Python SDK | Go SDK | raw gRPC C | Lua/Python | Lua/Go | Lua/raw C | target |", 1, true))
    assert.truthy(md:find("start throughput", 1, true))
    local png = assert(io.open(out_dir .. "/throughput.png", "rb"))
    assert.equals("\137PNG", png:read(4))
    png:close()
  end)
end)

-- The bench survives its dev server: bench/run.sh starts its own server and worker and execs
-- the driver, which owns them. A test hook sends the server SIGSEGV just before the first
-- attempt of temporal-lua's latency sample (which also needs the worker: execute_workflow runs
-- an activity on it); the Go runtime prints its crash report and exits, as in the real
-- crashes. The driver must record the death, restart the server and the worker on the same
-- port, run the sample again and end with the sample's result in the report.
describe("bench smoke run whose dev server is killed mid-run", function()
  local results, md, out_dir

  setup(function()
    out_dir = os.tmpname()
    os.remove(out_dir)
    assert(os.execute("mkdir -p " .. helper.shell_quote(out_dir)))
    local ok, _, err, code = helper.run({
      from_root("bench/run.sh"), "--smoke", "--phases", "latency",
      "--kill-server-before", "latency/lua/0/SEGV", "--out-dir", out_dir,
    }, { BENCH_GO = "0", BENCH_TB = out_dir .. "/tb" })
    assert(ok, ("bench/run.sh --smoke exited %s:\n%s"):format(tostring(code), err))
    local p = io.popen("ls " .. helper.shell_quote(out_dir) .. "/*.json")
    local path = p:read("l")
    p:close()
    assert(path, "no results file in " .. out_dir)
    local f = assert(io.open(path, "rb"))
    results = json.decode(f:read("a"))
    f:close()
    f = assert(io.open(out_dir .. "/latest.md", "rb"))
    md = f:read("a")
    f:close()
  end)

  teardown(function()
    if out_dir then os.execute("rm -rf " .. helper.shell_quote(out_dir)) end
  end)

  local function alive(pid)
    local f = io.open(("/proc/%d/stat"):format(pid), "rb")
    if not f then return false end
    local state = f:read("a"):match("%) (%S)")
    f:close()
    return state ~= "Z"
  end

  it("records the server's death: when, where, how it ended, its RSS, and the restart", function()
    assert.is_true(results.server.managed)
    assert.equals(1, #results.server.events)
    local ev = results.server.events[1]
    assert.equals("server died", ev.kind)
    assert.equals("exit status 2", ev.status)  -- the Go runtime's exit after a fatal signal
    assert.truthy(ev.log_crash:find("^SIGSEGV: segmentation violation"), ev.log_crash:sub(1, 200))
    assert.equals("latency", ev.phase)
    assert.equals("lua", ev.client)
    assert.equals(0, ev.rep)
    assert.equals(1, ev.attempt)
    assert.is_true(ev.rss_kib_before > 0)
    assert.is_string(ev.time)
    assert.is_true(ev.restarted)
    assert.is_true(ev.new_pid ~= ev.pid)
    -- the attempt it took down is recorded as failed because of it
    local f = results.failures[1]
    assert.equals(1, #results.failures)
    assert.equals("lua", f.client)
    assert.equals(1, f.attempt)
    assert.equals(0, f.server_event)
    assert.truthy(f.reason:find("server died: exit status 2", 1, true))
  end)

  it("runs the sample again against the restarted server and worker: nothing is missing", function()
    assert.equals(0, #results.missing)
    local ev = results.server.events[1]
    local epochs = {}
    for _, e in ipairs(results.server.epochs) do epochs[math.tointeger(e.n)] = e end
    local ops = {}
    for _, r in ipairs(results.runs) do
      if r.workload == "latency" and r.client == "lua" then
        ops[r.op] = r
        -- it ran against the server started after the death
        assert.equals(ev.new_pid, epochs[math.tointeger(r.server_epoch)].pid)
        local want = r.op == "execute" and results.config.latency.execute_count or results.config.latency.count
        assert.equals(want, r.calls)
      end
    end
    -- execute_workflow ran an activity on the restarted worker
    for _, op in ipairs({ "describe", "query", "signal", "execute" }) do
      assert.is_table(ops[op], op)
    end
    local py = 0
    for _, r in ipairs(results.runs) do
      if r.workload == "latency" and r.client == "python" then py = py + 1 end
    end
    assert.equals(4, py)
  end)

  it("reports the event and the retried sample, and stops every server and worker it started", function()
    assert.truthy(md:find("Unplanned events", 1, true))
    assert.truthy(md:find("server died (exit status 2", 1, true))
    assert.truthy(md:find("its log (the crash report): `SIGSEGV: segmentation violation", 1, true))
    assert.truthy(md:find("the sample was run again and has its result", 1, true))
    assert.truthy(md:find("Retried samples (1 failed attempts", 1, true))
    assert.is_nil(md:find("Missing samples", 1, true))
    for _, e in ipairs(results.server.epochs) do
      assert.is_false(alive(math.tointeger(e.pid)), "server pid " .. tostring(e.pid))
    end
  end)
end)
