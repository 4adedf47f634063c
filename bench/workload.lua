-- The Lua side of the benchmark: one workload per process, parameters as JSON, results as
-- one JSON object on stdout. bench/workload.py is its twin for the Python SDK client: keep
-- the two doing the same work in the same order.
--
--   temporal-lua bench/workload.lua throughput '{"address":"127.0.0.1:7233","count":2000,...}'
--
-- Workloads: throughput, memory, payload, latency (see bench/README.md). Timing uses
-- temporal.core.now() (CLOCK_MONOTONIC); client CPU is os.clock() (CLOCK_PROCESS_CPUTIME_ID:
-- user + sys of every thread, gRPC's included); server CPU is read from /proc/<pid>/stat of
-- the dev server (and the worker) around the measured section only.
local temporal = require("temporal")
local core = temporal.core
local now = core.now

local name, params_json = arg[1], arg[2]
local p = core.json_decode(params_json or "{}")

-- The high-level API (client:start_workflow, handles, temporal.converter) when it is
-- there; raw WorkflowService calls doing the same requests otherwise.
local HIGH_LEVEL = pcall(require, "temporal.converter")
local uuid4 = require("temporal.client").uuid4

-- ------------------------------------------------------------------ process measurements

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function rss_kib(field)
  return tonumber(read_file("/proc/self/status"):match((field or "VmRSS") .. ":%s*(%d+)"))
end

-- user and sys seconds of a process (all its threads) from /proc/<pid>/stat.
local function proc_cpu(pid)
  local s = read_file("/proc/" .. pid .. "/stat")
  if not s then return nil end
  local fields = {}
  for f in s:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = f end
  -- fields[1] is stat's field 3 (state): utime and stime are fields 14 and 15.
  return tonumber(fields[12]) / p.clk_tck, tonumber(fields[13]) / p.clk_tck
end

-- CPU seconds the whole machine was busy (every core): user, nice, system, irq, softirq, steal.
local function machine_cpu()
  local f = {}
  for x in read_file("/proc/stat"):match("^cpu%s+([^\n]*)"):gmatch("%d+") do f[#f + 1] = tonumber(x) end
  return (f[1] + f[2] + f[3] + f[6] + f[7] + f[8]) / p.clk_tck
end

local function sides()
  local t = { client_cpu = os.clock(), wall = now(), machine_cpu = machine_cpu() }
  t.client_user, t.client_sys = proc_cpu("self")
  for _, who in ipairs({ "server", "worker" }) do
    local pid = p[who .. "_pid"]
    if pid then
      local u, s = proc_cpu(pid)
      if u then t[who .. "_cpu"] = u + s end
    end
  end
  return t
end

-- The measured section's deltas: wall seconds, client CPU (precise total; user/sys split at
-- clock-tick resolution), server and worker CPU seconds.
local function deltas(a, b)
  local d = {
    wall = b.wall - a.wall,
    client_cpu = b.client_cpu - a.client_cpu,
    client_user = b.client_user - a.client_user,
    client_sys = b.client_sys - a.client_sys,
    machine_cpu = b.machine_cpu - a.machine_cpu,
  }
  if a.server_cpu then d.server_cpu = b.server_cpu - a.server_cpu end
  if a.worker_cpu then d.worker_cpu = b.worker_cpu - a.worker_cpu end
  return d
end

local function merge(into, t)
  for k, v in pairs(t) do into[k] = v end
  return into
end

-- ------------------------------------------------------------------ the calls measured

local function json_payload(v)
  return { metadata = { encoding = "json/plain" }, data = core.json_encode(v) }
end

local function connect()
  return temporal.connect(p.address, { namespace = p.namespace })
end

local function start(client, wf_type, id, task_queue, args)
  if HIGH_LEVEL then
    return client:start_workflow(wf_type, { id = id, task_queue = task_queue, args = args })
  end
  local input
  if args and #args > 0 then
    input = { payloads = {} }
    for i, v in ipairs(args) do input.payloads[i] = json_payload(v) end
  end
  local resp = client.workflow_service:start_workflow_execution{
    namespace = client.namespace, workflow_id = id, workflow_type = { name = wf_type },
    task_queue = { name = task_queue }, input = input, identity = client.identity,
    request_id = uuid4(), workflow_id_reuse_policy = "ALLOW_DUPLICATE",
  }
  return client:get_workflow_handle(id, { run_id = resp.run_id })
end

local function describe(client, h)
  if HIGH_LEVEL then return h:describe() end
  return client.workflow_service:describe_workflow_execution{
    namespace = client.namespace, execution = { workflow_id = h.id },
  }
end

local function signal(client, h, signal_name, ...)
  if HIGH_LEVEL then return h:signal(signal_name, ...) end
  local input = { payloads = {} }
  for i, v in ipairs({ ... }) do input.payloads[i] = json_payload(v) end
  client.workflow_service:signal_workflow_execution{
    namespace = client.namespace, workflow_execution = { workflow_id = h.id },
    signal_name = signal_name, input = input, identity = client.identity, request_id = uuid4(),
  }
end

local function query(client, h, query_name)
  if HIGH_LEVEL then return h:query(query_name) end
  local resp = client.workflow_service:query_workflow{
    namespace = client.namespace, execution = { workflow_id = h.id },
    query = { query_type = query_name },
  }
  return core.json_decode(resp.query_result.payloads[1].data)
end

local function execute(client, wf_type, id, task_queue, args)
  if HIGH_LEVEL then
    return client:execute_workflow(wf_type, { id = id, task_queue = task_queue, args = args })
  end
  local h = start(client, wf_type, id, task_queue, args)
  while true do
    local resp = client.workflow_service:get_workflow_execution_history({
      namespace = client.namespace, execution = { workflow_id = id, run_id = h.run_id },
      wait_new_event = true, history_event_filter_type = "CLOSE_EVENT", skip_archival = true,
    }, { rpc_timeout = 70 })
    local ev = resp.history and resp.history.events and resp.history.events[1]
    if ev then
      local a = assert(ev.workflow_execution_completed_event_attributes, ev.event_type)
      return core.json_decode(a.result.payloads[1].data)
    end
  end
end

-- The payload converter: encode one value to payloads, decode them back.
local to_payloads, from_payloads
if HIGH_LEVEL then
  local dc = require("temporal.converter").default
  to_payloads = function(values) return dc:to_payloads(values) end
  from_payloads = function(list) return dc:from_payloads(list) end
else
  to_payloads = function(values)
    local out = {}
    for i = 1, #values do out[i] = json_payload(values[i]) end
    return out
  end
  from_payloads = function(list)
    local out = { n = #list }
    for i = 1, #list do out[i] = core.json_decode(list[i].data) end
    return out
  end
end

-- ------------------------------------------------------------------ workloads

local workloads = {}

-- `count` starts by `concurrency` tasks, each starting the next id until none is left.
function workloads.throughput()
  local client = connect()
  local rss_connected = rss_kib()
  local count, latencies, next_index = p.count, {}, 0
  local args = { "payload" }
  local function run()
    while next_index < count do
      next_index = next_index + 1
      local i = next_index
      local t0 = now()
      start(client, p.workflow_type, p.id_prefix .. i, p.task_queue, args)
      latencies[i] = now() - t0
    end
  end
  local before = sides()
  local tasks = {}
  for w = 1, p.concurrency do tasks[w] = temporal.spawn(run) end
  for w = 1, p.concurrency do tasks[w]:wait() end
  local after = sides()
  -- latencies = false (the callgrind phase): none returned, so encoding them into the
  -- result is not counted as part of the starts
  if p.latencies == false then latencies = {} end
  return merge({ calls = count, latencies = latencies, rss_connected_kib = rss_connected,
    rss_end_kib = rss_kib() }, deltas(before, after))
end

-- A server-cheap RPC (GetSystemInfo, raw in both clients): the clients' own ceiling, where
-- the server's persistence does not set the pace.
function workloads.rpc_throughput()
  local client = connect()
  local count, next_index = p.count, 0
  local function run()
    while next_index < count do
      next_index = next_index + 1
      client.workflow_service:get_system_info{}
    end
  end
  local before = sides()
  local tasks = {}
  for w = 1, p.concurrency do tasks[w] = temporal.spawn(run) end
  for w = 1, p.concurrency do tasks[w]:wait() end
  return merge({ calls = count }, deltas(before, sides()))
end

-- RSS growth for `count` live handles (no RPC: client:get_workflow_handle with a run id).
function workloads.memory()
  local client = connect()
  collectgarbage("collect")
  local rss_connected, anon_connected = rss_kib(), rss_kib("RssAnon")
  local heap0 = collectgarbage("count")
  local handles = {}
  for i = 1, p.count do
    handles[i] = client:get_workflow_handle(p.id_prefix .. i, { run_id = uuid4() })
  end
  collectgarbage("collect")
  local rss_handles = rss_kib()
  local heap1 = collectgarbage("count")
  assert(#handles == p.count)
  return { handles = p.count, rss_connected_kib = rss_connected, rss_handles_kib = rss_handles,
    rss_anon_connected_kib = anon_connected, rss_file_connected_kib = rss_kib("RssFile"),
    heap_growth_kib = heap1 - heap0 }
end

-- The benchmark's JSON-like value: `records` records, the same in bench/workload.py.
local function make_value(records)
  local list = {}
  for i = 1, records do
    list[i] = {
      id = i, name = "user-" .. i, email = "user" .. i .. "@example.com",
      active = i % 2 == 0, score = i * 1.5, tags = { "alpha", "beta", "gamma" },
      address = { street = i .. " Main Street", city = "Springfield", zip = ("%05d"):format(i) },
    }
  end
  return { kind = "bench", records = list }
end

-- Encode + decode of one value per size, repeated for at least `min_seconds`.
function workloads.payload()
  local results = {}
  local before = sides()
  for _, size in ipairs(p.sizes) do
    local value = make_value(size.records)
    local payloads = to_payloads({ value })
    local bytes = #payloads[1].data
    assert(from_payloads(payloads)[1].records[size.records].id == size.records)
    local iterations, t0, c0 = 0, now(), os.clock()
    repeat
      from_payloads(to_payloads({ value }))
      iterations = iterations + 1
    until iterations >= 3 and now() - t0 >= p.min_seconds
    results[#results + 1] = { label = size.label, bytes = bytes, iterations = iterations,
      seconds_per_op = (now() - t0) / iterations, cpu_per_op = (os.clock() - c0) / iterations }
  end
  return merge({ sizes = results }, deltas(before, sides()))
end

-- Sequential latency of describe, query and signal (WaitForSignal, on the worker's task
-- queue) and of a whole execute_workflow of Greet.
function workloads.latency()
  local client = connect()
  local tq, prefix, n = p.worker_task_queue, p.id_prefix, p.count
  local out = {}
  local function timed(op, count, fn)
    local lat = {}
    local before = sides()
    for i = 1, count do
      local t0 = now()
      fn(i)
      lat[i] = now() - t0
    end
    out[op] = merge({ calls = count, latencies = lat }, deltas(before, sides()))
  end
  local h = start(client, "WaitForSignal", prefix .. "wait", tq)
  -- The first query waits for the worker's first workflow task: not part of the numbers.
  assert(query(client, h, "status").approved == false)
  timed("describe", n, function() describe(client, h) end)
  timed("query", n, function() assert(query(client, h, "status").approved == false) end)
  -- The first "approve" completes the workflow, so each signal goes to a fresh one
  -- (started outside the timed call).
  local fresh = {}
  for i = 1, n do fresh[i] = start(client, "WaitForSignal", prefix .. "sig-" .. i, tq) end
  timed("signal", n, function(i) signal(client, fresh[i], "approve", i) end)
  timed("execute", p.execute_count, function(i)
    assert(execute(client, "Greet", prefix .. "greet-" .. i, tq, { "bench" }) == "Hello, bench!")
  end)
  signal(client, h, "approve")
  return out
end

-- `count` result() long polls held open at once on one workflow nobody runs, released
-- together by terminating it: RSS per in-flight call, client CPU while they wait, time to
-- issue them and from the release to the last one returned.
function workloads.scaling()
  local client = connect()
  local h = client:start_workflow(p.workflow_type, { id = p.id, task_queue = p.task_queue })
  collectgarbage("collect")
  local rss_before, heap_before = rss_kib(), collectgarbage("count")
  local count, issued, returned = p.count, 0, 0
  local function hold()
    issued = issued + 1
    local ok = pcall(h.result, h)
    assert(not ok, "a terminated workflow's result raises")
    returned = returned + 1
  end
  local t0 = now()
  local tasks = {}
  for i = 1, count do tasks[i] = temporal.spawn(hold) end
  while issued < count do temporal.sleep(0.01) end
  local issue_s = now() - t0
  temporal.sleep(p.settle_seconds)  -- the calls reach the server
  local a = sides()
  temporal.sleep(p.idle_seconds)
  local b = sides()
  collectgarbage("collect")  -- live memory, as the other clients measure it after a collection
  local rss_held = rss_kib()
  local heap_held = collectgarbage("count")
  assert(returned == 0, "no call returned before the release")
  local t1 = now()
  h:terminate()
  for i = 1, count do tasks[i]:wait() end
  return { calls = count, rss_before_kib = rss_before, rss_held_kib = rss_held, issue_s = issue_s,
    idle_cpu = b.client_cpu - a.client_cpu, idle_wall = b.wall - a.wall, release_s = now() - t1,
    returned = returned, lua_heap_kib_per_call = (heap_held - heap_before) / count }
end

-- What bench/raw.c sends: the path, request bytes, metadata and timeout of the unary calls
-- temporal-lua makes for a start (client:start_workflow, one JSON argument) and for
-- get_system_info{}, captured at core.unary and not sent. The start's workflow id ends in
-- p.id_digits zeros that bench-raw rewrites per call (as it does the request_id's tail).
function workloads.request_template()
  local client = connect()
  local captured
  local unary = core.unary
  core.unary = function(_, service, method, request, timeout, md)
    captured = { service = service, method = method, request = request, timeout = timeout, md = md }
    error("captured", 0)
  end
  local function capture(fn)
    captured = nil
    local ok, err = pcall(fn)
    assert(not ok and captured, "no call captured: " .. tostring(err))
    local c = captured
    local pkg = c.service:match("^(.*)%.[^.]+$")
    local bytes = core.encode(pkg .. "." .. c.method .. "Request", c.request)
    local md = {}
    for k, v in pairs(c.md or {}) do
      if type(v) == "table" then
        for _, x in ipairs(v) do md[#md + 1] = { k, x } end
      else
        md[#md + 1] = { k, v }
      end
    end
    table.sort(md, function(a, b) return a[1] < b[1] end)
    return {
      path = "/" .. c.service .. "/" .. c.method, timeout = c.timeout, metadata = md,
      hex = (bytes:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)),
      request_id = c.request.request_id, workflow_id = c.request.workflow_id,
    }
  end
  local id = p.id_prefix .. ("0"):rep(p.id_digits)
  local out = {
    start = capture(function()
      start(client, p.workflow_type, id, p.task_queue, { "payload" })
    end),
    get_system_info = capture(function() client.workflow_service:get_system_info{} end),
  }
  core.unary = unary
  return out
end

-- The activity worker (issue 14): a Lua worker with `slots` slots serves a no-op activity;
-- the bench's Python worker runs FanOutLuaActivities, which schedules `count` of them at
-- once on the Lua worker's task queue. Client CPU is the worker's (same process).
function workloads.activity_worker()
  local client = connect()
  local tq = p.id_prefix .. "tq"
  local worker = client:new_worker{ task_queue = tq, max_concurrent_activities = p.slots,
    activities = { noop = function(_, i) return i end } }
  worker:start()
  local function fan_out(id, count)
    local r = client:execute_workflow("FanOutLuaActivities", { id = id, task_queue = p.worker_task_queue,
      args = { { activity = "noop", task_queue = tq, count = count, start_to_close = 60 } } })
    assert(#r == count and r[count] == count - 1)
  end
  fan_out(p.id_prefix .. "warmup", p.warmup)   -- polls in place, caches warm: not measured
  local before = sides()
  fan_out(p.id_prefix .. "measured", p.count)
  local d = deltas(before, sides())
  worker:shutdown()
  return merge({ activities = p.count }, d)
end

local fn = workloads[name] or error("unknown workload " .. tostring(name))
local result = fn()
result.api = HIGH_LEVEL and "high-level" or "raw"
io.write(core.json_encode(result), "\n")
