-- temporal.metrics: the client's request metrics under sdk-core's names, custom instruments,
-- the MetricBuffer, the exposition (checked by promtool and compared with what the Python SDK
-- exports for the same calls), and a real Prometheus scraping a temporal-lua process.
local helper = require("support.helper")
local nginx = require("support.nginx")
local prometheus = require("support.prometheus")
local temporal = require("temporal")
local metrics = temporal.metrics

local function find_family(reg, name)
  for _, f in ipairs(reg:collect()) do
    if f.name == name then return f end
  end
end

-- The value of the one series of `name` whose labels include all of `want` (nil if none).
local function series(reg, name, want)
  local f = find_family(reg, name)
  local found
  for _, s in ipairs(f and f.series or {}) do
    local match = true
    for k, v in pairs(want) do
      if s.labels[k] ~= v then match = false end
    end
    if match then
      assert(found == nil, "more than one series of " .. name .. " matches")
      found = s
    end
  end
  return found
end

local function value(reg, name, want)
  local s = series(reg, name, want)
  return s and (s.value or s.count)
end

local function promtool(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  local ok, out, err, code = helper.run({ "bash", "-c", "promtool check metrics < " .. helper.shell_quote(path) })
  os.remove(path)
  return ok, code, out .. err
end

describe("temporal.metrics registry", function()
  it("exposes custom counters, gauges and histograms in the Prometheus text format", function()
    local reg = metrics.new({ global_tags = { app = "spec" } })
    local c = reg:counter("jobs_total", "Jobs done")
    c:add(2, { kind = "a" })
    c:add(3, { kind = "a" })
    c:with_labels({ kind = "b" }):add(1)
    reg:gauge("queue_depth", "Depth"):set(7.5)
    local h = reg:histogram("job_size", "Size", "bytes")
    h:record(40)
    h:record(700)
    h:record(20000)
    local text = reg:exposition()
    assert.matches('# TYPE jobs_total counter\n', text, 1, true)
    assert.matches('jobs_total{app="spec",kind="a",service_name="temporal-core-sdk"} 5\n', text, 1, true)
    assert.matches('jobs_total{app="spec",kind="b",service_name="temporal-core-sdk"} 1\n', text, 1, true)
    assert.matches('queue_depth{app="spec",service_name="temporal-core-sdk"} 7.5\n', text, 1, true)
    -- sdk-core's default buckets (milliseconds) for a histogram it has no special case for
    local expect = { ["50"] = 1, ["100"] = 1, ["500"] = 1, ["1000"] = 2, ["2500"] = 2, ["10000"] = 2, ["+Inf"] = 3 }
    local seen = 0
    for le, n in text:gmatch('job_size_bucket{app="spec",service_name="temporal%-core%-sdk",le="([^"]+)"} (%d+)') do
      assert.equal(expect[le], tonumber(n), "bucket le=" .. le)
      seen = seen + 1
    end
    assert.equal(7, seen)
    assert.matches('job_size_sum{app="spec",service_name="temporal-core-sdk"} 20740\n', text, 1, true)
    assert.matches('job_size_count{app="spec",service_name="temporal-core-sdk"} 3\n', text, 1, true)
    local ok, code, out = promtool(text)
    assert.is_true(ok, "promtool exit " .. tostring(code) .. ": " .. out)
  end)

  it("follows the Python SDK's Prometheus options: suffixes, seconds, bucket overrides, prefix", function()
    local reg = metrics.new({
      counters_total_suffix = true, unit_suffix = true, durations_as_seconds = true,
      histogram_bucket_overrides = { my_wait = { 0.5, 1, 2 } }, attach_service_name = false,
    })
    reg:counter("hits"):add(1)
    reg:histogram_duration("my_wait_time"):record(1.5)
    reg:histogram_duration("other_time"):record(0.2)
    local text = reg:exposition()
    assert.matches("# TYPE hits_total counter\nhits_total 1\n", text, 1, true)
    assert.matches('my_wait_time_seconds_bucket{le="1"} 0\nmy_wait_time_seconds_bucket{le="2"} 1\n', text, 1, true)
    assert.matches('other_time_seconds_bucket{le="0.1"} 0\nother_time_seconds_bucket{le="0.5"} 1\n', text, 1, true)
    assert.matches("other_time_seconds_sum 0.2\n", text, 1, true)
    -- milliseconds by default; the client's metrics take the prefix
    local ms = metrics.new({ prefix = "myapp_" })
    ms:histogram_duration("wait"):record(0.25)
    assert.matches('wait_bucket{service_name="temporal-core-sdk",le="500"} 1\n', ms:exposition(), 1, true)
    assert.matches("wait_sum{service_name=\"temporal-core-sdk\"} 250\n", ms:exposition(), 1, true)
    ms:recorder("GetSystemInfo", {}):begin()
    assert.matches('myapp_request{operation="GetSystemInfo",service_name="temporal-core-sdk"} 1\n',
      ms:exposition(), 1, true)
  end)

  it("escapes label values and writes numbers Prometheus reads back exactly", function()
    local reg = metrics.new({ attach_service_name = false })
    reg:gauge("g"):set(0.1, { v = 'a"b\\c\nd' })
    local text = reg:exposition()
    assert.matches('g{v="a\\"b\\\\c\\nd"} 0.1\n', text, 1, true)
    for _, v in ipairs({ 0.1, 1 / 3, 1e-9, 123456789.125, 2 ^ 60, 123456789012345, 2 ^ 53 }) do
      assert.equal(v, tonumber(metrics._number_text(v)))
    end
    assert.is_true((promtool(text)))
  end)

  it("rejects bad names, labels, values and options with the culprit named", function()
    local reg = metrics.new()
    assert.has_error(function() metrics.new({ prefx = "x" }) end, "metrics.new: unknown option 'prefx'")
    assert.has_error(function() reg:counter("9lives") end,
      "counter: metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*, got '9lives'")
    assert.has_error(function() reg:counter("c"):add(-1) end, "counter(c): a counter only goes up (value < 0)")
    assert.has_error(function() reg:counter("c"):add(1, { ["bad-name"] = "x" }) end)
    assert.has_error(function() reg:counter("c"):add(1, { k = {} }) end,
      "counter(c): label 'k' must be a string, number or boolean, got table")
    assert.has_error(function() reg:gauge("c") end, "gauge: 'c' is already a counter")
    assert.has_error(function() reg:histogram("h"):record("x") end, "histogram(h): value must be a number")
    assert.has_error(function() metrics.new({ histogram_bucket_overrides = { x = { 2, 1 } } }) end,
      "metrics.new: histogram_bucket_overrides['x']: bucket bounds must be increasing numbers")
    assert.has_error(function() temporal.connect(helper.address, { metrics = {} }) end,
      "metrics: expected a registry from temporal.metrics.new() or false")
    assert.has_error(function() reg:serve({ prot = 1 }) end, "serve: unknown option 'prot'")
  end)

  it("hands every update to a MetricBuffer, the same metric table each time, and drops when full", function()
    local buf = metrics.buffer(3, { duration_format = "seconds" })
    local reg = metrics.new({ buffer = buf, attach_service_name = false })
    local c = reg:counter("c", "a counter")
    c:add(2, { k = "v" })
    c:add(5, { k = "v" })
    reg:histogram_duration("d"):record(0.75)
    local ups = buf:retrieve_updates()
    assert.equal(3, #ups)
    assert.equal(ups[1].metric, ups[2].metric)
    assert.same({ name = "c", description = "a counter", kind = "counter" }, ups[1].metric)
    assert.equal(2, ups[1].value)   -- counters: deltas
    assert.equal(5, ups[2].value)
    assert.equal("v", ups[1].attributes.k)
    assert.equal(ups[1].attributes, ups[2].attributes)
    assert.same({ name = "d", unit = "seconds", kind = "histogram" }, ups[3].metric)
    assert.equal(0.75, ups[3].value)
    assert.same({}, buf:retrieve_updates())
    for _ = 1, 5 do c:add(1) end
    assert.equal(2, buf.dropped)
    assert.equal(3, #buf:retrieve_updates())
    -- milliseconds (integers) by default, as Python's MetricBufferDurationFormat.MILLISECONDS
    local ms = metrics.buffer(10)
    metrics.new({ buffer = ms }):histogram_duration("d"):record(0.0125)
    assert.equal(12, ms:retrieve_updates()[1].value)
  end)

  it("serves on 127.0.0.1 by default and stops listening on close", function()
    local listener = metrics.new():serve()
    assert.equal("127.0.0.1", listener.host)
    assert.is_true(listener.port > 0)
    assert.is_false(listener.task:done())
    listener:close()
    temporal.sleep(0.1)             -- the stepping task sees the close at its next turn
    assert.is_true(listener.task:done())
    assert.is_false((helper.run({ "bash", "-c", ("exec 3<>/dev/tcp/127.0.0.1/%d"):format(listener.port) })))
  end)

  it("has no default registry until one is set, as the Python SDK's default runtime", function()
    assert.is_nil(metrics.default())
    local reg = metrics.new()
    metrics.set_default(reg)
    assert.equal(reg, temporal.metrics.default())
    metrics.set_default(nil)
    assert.is_nil(metrics.default())
    assert.has_error(function() metrics.set_default({}) end, "set_default: expected a registry from metrics.new() or nil")
  end)
end)

describe("client request metrics", function()
  local gw, pki

  setup(function()
    pki = nginx.make_pki()
    gw = nginx.start(pki, helper.address)
  end)

  teardown(function()
    if gw then gw:stop() end
    if pki then os.execute("rm -rf " .. helper.shell_quote(pki.dir)) end
  end)

  it("count every attempt by operation, namespace and task queue; failures carry status_code", function()
    local reg = metrics.new()
    local client = temporal.connect(helper.address, { namespace = helper.namespace, metrics = reg })
    for _ = 1, 4 do client.workflow_service:get_system_info({}) end
    local missing = client:get_workflow_handle(helper.unique_id("no-such"))
    assert.is_false(pcall(missing.describe, missing))
    local id = helper.unique_id("metrics-start")
    client:start_workflow("Greet", { id = id, task_queue = helper.task_queue, args = { "m" } })
    assert.is_false(pcall(client.start_workflow, client, "Greet", { id = id, task_queue = helper.task_queue }))

    assert.equal(5, value(reg, "temporal_request", { operation = "GetSystemInfo" }))  -- connect + 4
    assert.is_nil(series(reg, "temporal_request", { operation = "GetSystemInfo" }).labels.namespace)
    assert.equal(1, value(reg, "temporal_request",
      { operation = "DescribeWorkflowExecution", namespace = helper.namespace }))
    assert.equal(1, value(reg, "temporal_request_failure",
      { operation = "DescribeWorkflowExecution", status_code = "NOT_FOUND" }))
    assert.equal(2, value(reg, "temporal_request",
      { operation = "StartWorkflowExecution", task_queue = helper.task_queue, namespace = helper.namespace }))
    assert.equal(1, value(reg, "temporal_request_failure",
      { operation = "StartWorkflowExecution", status_code = "ALREADY_EXISTS", task_queue = helper.task_queue }))
    assert.is_nil(series(reg, "temporal_request_failure", { operation = "GetSystemInfo" }))
    local lat = series(reg, "temporal_request_latency", { operation = "GetSystemInfo" })
    assert.equal(5, lat.count)
    assert.is_true(lat.sum > 0)
    assert.equal(5, lat.buckets[#lat.buckets].count)
    assert.same({ 50, 100, 500, 1000, 2500, 10000, math.huge }, (function()
      local les = {}
      for i, b in ipairs(lat.buckets) do les[i] = b.le end
      return les
    end)())

    -- the history read that waits is a long poll: temporal_long_request*, not temporal_request
    assert.equal("Hello, m!", client:get_workflow_handle(id):result())
    assert.is_true(value(reg, "temporal_long_request", { operation = "GetWorkflowExecutionHistory" }) >= 1)
    assert.is_nil(series(reg, "temporal_request", { operation = "GetWorkflowExecutionHistory" }))
    assert.is_true(value(reg, "temporal_long_request_latency", { operation = "GetWorkflowExecutionHistory" }) >= 1)
  end)

  it("count each retry attempt as the SDKs do, with the status the server sent", function()
    local reg = metrics.new()
    local client = temporal.connect(gw.faults, {
      lazy = true, metrics = reg, rpc_metadata = { ["x-fault"] = "14" },
      retry_config = { max_retries = 4, initial_interval = 0.01, max_interval = 0.02, max_elapsed_time = false },
    })
    local ok, err = pcall(client.workflow_service.describe_namespace, client.workflow_service,
      { namespace = "retry-ns" }, { retry = true })
    assert.is_false(ok)
    assert.equal(4, err.attempts)
    assert.equal(4, value(reg, "temporal_request", { operation = "DescribeNamespace", namespace = "retry-ns" }))
    assert.equal(4, value(reg, "temporal_request_failure",
      { operation = "DescribeNamespace", namespace = "retry-ns", status_code = "UNAVAILABLE" }))
    assert.equal(4, value(reg, "temporal_request_latency", { operation = "DescribeNamespace" }))
    -- the nginx log shows the same 4 attempts arrived (nginx logs a request after answering it)
    helper.eventually(function() return #gw:requests(gw.faults) >= 4 end, 5, 0.05)
    assert.equal(4, #gw:requests(gw.faults))
  end)

  it("go to the registry set as default, none without one, and none with metrics = false", function()
    local reg = metrics.new()
    local before = metrics.default()
    metrics.set_default(reg)
    local ok, err = pcall(function()
      local client = temporal.connect(helper.address, { namespace = helper.namespace })
      client.workflow_service:get_system_info({})
      local off = temporal.connect(helper.address, { namespace = helper.namespace, metrics = false })
      off.workflow_service:get_system_info({})
    end)
    metrics.set_default(before)
    assert(ok, tostring(err))
    assert.equal(2, value(reg, "temporal_request", { operation = "GetSystemInfo" }))
    -- without a default: no registry, nothing recorded anywhere
    assert.is_nil(metrics.default())
    local plain = temporal.connect(helper.address, { namespace = helper.namespace })
    assert.is_nil(plain.metrics)
    plain.workflow_service:get_system_info({})
    assert.equal(2, value(reg, "temporal_request", { operation = "GetSystemInfo" }))
  end)

  it("match what the Python SDK exports for the same calls: names, types, labels, buckets", function()
    for _, flags in ipairs({ { false, false, false }, { true, true, true } }) do
      local py = helper.python([[
import asyncio, json, os, socket, urllib.request
from temporalio.client import Client
from temporalio.runtime import Runtime, TelemetryConfig, PrometheusConfig
args = json.loads(os.environ["ARGS"])
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
async def main():
    rt = Runtime(telemetry=TelemetryConfig(global_tags={"app": "parity"}, metrics=PrometheusConfig(
        bind_address=f"127.0.0.1:{port}", counters_total_suffix=args["flags"][0],
        unit_suffix=args["flags"][1], durations_as_seconds=args["flags"][2])))
    c = await Client.connect(os.environ["TEMPORAL_TEST_ADDRESS"], namespace="default", runtime=rt)
    try:
        await c.get_workflow_handle(args["missing"]).describe()
    except Exception:
        pass
    try:
        await c.get_workflow_handle(args["missing"]).execute_update("nope")
    except Exception:
        pass
    await c.start_workflow("Greet", "p", id=args["id"], task_queue=args["tq"])
    print(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
asyncio.run(main())
os._exit(0)
]], { flags = flags, missing = helper.unique_id("no-such"), id = helper.unique_id("py-parity"),
        tq = helper.task_queue })
      local reg = metrics.new({ global_tags = { app = "parity" }, counters_total_suffix = flags[1],
        unit_suffix = flags[2], durations_as_seconds = flags[3] })
      local client = temporal.connect(helper.address, { namespace = "default", metrics = reg })
      local missing = client:get_workflow_handle(helper.unique_id("no-such"))
      pcall(missing.describe, missing)
      pcall(missing.execute_update, missing, "nope")   -- a long poll: temporal_long_request*
      client:start_workflow("Greet",
        { id = helper.unique_id("lua-parity"), task_queue = helper.task_queue, args = { "p" } })

      -- { "TYPE lines", "series shapes": metric name + sorted label names (+ le), value of counters and _count }
      local function shape(text)
        local types, lines = {}, {}
        for line in text:gmatch("[^\n]+") do
          local name, kind = line:match("^# TYPE (%S+) (%S+)")
          if name then types[#types + 1] = name .. " " .. kind
          elseif not line:match("^#") then
            local metric, labels, v = line:match("^([%w_:]+){(.*)} (%S+)$")
            local names = {}
            for k, lv in labels:gmatch('([%w_]+)="([^"]*)"') do
              names[#names + 1] = (k == "le" or k == "operation" or k == "status_code") and (k .. "=" .. lv) or k
            end
            table.sort(names)
            local shown = metric .. "{" .. table.concat(names, ",") .. "}"
            -- counts must agree; sums and bucket counts depend on each call's latency
            if not metric:match("_sum$") and not metric:match("_bucket$") then shown = shown .. " " .. v end
            lines[#lines + 1] = shown
          end
        end
        table.sort(types)
        table.sort(lines)
        return types, lines
      end
      local py_types, py_lines = shape(py)
      local lua_types, lua_lines = shape(reg:exposition())
      assert.matches('temporal_long_request_failure[%w_]*{[^}]*status_code="NOT_FOUND"', py)
      assert.same(py_types, lua_types)
      assert.same(py_lines, lua_lines)
      -- promtool: both expositions parse; the SDKs' default counter names draw the same lint
      local _, py_code, py_out = promtool(py)
      local _, lua_code, lua_out = promtool(reg:exposition())
      assert.equal(py_code, lua_code)
      assert.equal(py_out, lua_out)
      if flags[1] then
        assert.equal(0, lua_code)
        assert.equal("", lua_out)
      else
        assert.equal(3, lua_code)   -- lint only (a parse error is exit 1)
        assert.equal('temporal_long_request counter metrics should have "_total" suffix\n'
          .. 'temporal_long_request_failure counter metrics should have "_total" suffix\n'
          .. 'temporal_request counter metrics should have "_total" suffix\n'
          .. 'temporal_request_failure counter metrics should have "_total" suffix\n', lua_out)
      end
    end
  end)
end)

describe("a real Prometheus scraping a temporal-lua process", function()
  local gw, pki, prom, child_pid, dir

  teardown(function()
    if child_pid then os.execute(("kill -KILL %d 2>/dev/null"):format(child_pid)) end
    if prom then prom:stop() end
    if gw then gw:stop() end
    if pki then os.execute("rm -rf " .. helper.shell_quote(pki.dir)) end
    if dir then os.execute("rm -rf " .. helper.shell_quote(dir)) end
  end)

  it("sees counters move by exactly the calls made, failures with status_code, latencies", function()
    pki = nginx.make_pki()
    gw = nginx.start(pki, helper.address)
    dir = nginx.tempdir("temporal-lua-metrics")
    local run_id = helper.unique_id("run"):gsub("[^%w]", "_")
    local q = helper.shell_quote
    local ok, out = helper.run({ "bash", "-c", ("ADDRESS=%s FAULTS=%s TASK_QUEUE=%s RUN_ID=%s PORT_FILE=%s GO_FILE=%s "
      .. "setsid %s spec/support/metrics_client.lua </dev/null >%s/client.log 2>&1 & echo $!"):format(
      q(helper.address), q(gw.faults), q(helper.task_queue), q(run_id), q(dir .. "/port"), q(dir .. "/go"),
      q(helper.temporal_lua), q(dir)) })
    assert(ok, out)
    child_pid = tonumber(out:match("%d+"))
    local port = helper.eventually(function()
      local f = io.open(dir .. "/port")
      local p = f and tonumber(f:read("a"):match("%d+"))
      if f then f:close() end
      return p
    end, 30, 0.1)
    prom = prometheus.start({ "127.0.0.1:" .. port })
    local sel = ('{spec_run="%s"}'):format(run_id)
    local function get(metric, labels)
      return prom:value(("%s{spec_run=\"%s\"%s}"):format(metric, run_id, labels and ("," .. labels) or ""))
    end
    -- phase 0 scraped: connected (one GetSystemInfo), nothing else yet
    helper.eventually(function() return get("spec_phase") == 0 end, 30, 0.2)
    local before = get("temporal_request", 'operation="GetSystemInfo"')
    assert.equal(1, before)
    assert.equal(0, #prom:query("temporal_request_failure" .. sel))

    local f = assert(io.open(dir .. "/go", "w"))
    f:close()
    local phase_ok, err = pcall(helper.eventually, function() return get("spec_phase") == 1 end, 60, 0.2)
    if not phase_ok then
      local log = io.open(dir .. "/client.log")
      error(tostring(err) .. "\nclient log:\n" .. (log and log:read("a") or ""))
    end

    assert.equal(before + 5, get("temporal_request", 'operation="GetSystemInfo"'))
    assert.equal(3, get("temporal_request", 'operation="DescribeWorkflowExecution",namespace="default"'))
    assert.equal(3, get("temporal_request_failure", 'operation="DescribeWorkflowExecution",status_code="NOT_FOUND"'))
    assert.equal(2, get("temporal_request",
      ('operation="StartWorkflowExecution",task_queue="%s"'):format(helper.task_queue)))
    assert.equal(1, get("temporal_request_failure", 'operation="StartWorkflowExecution",status_code="ALREADY_EXISTS"'))
    assert.equal(1, get("temporal_long_request", 'operation="GetWorkflowExecutionHistory",namespace="default"'))
    assert.equal(3, get("temporal_request", 'operation="DescribeNamespace"'))
    assert.equal(3, get("temporal_request_failure", 'operation="DescribeNamespace",status_code="UNAVAILABLE"'))
    -- every failure series carries a status_code
    for _, s in ipairs(prom:query("temporal_request_failure" .. sel)) do
      assert.is_string(s.metric.status_code)
      assert.equal("temporal-core-sdk", s.metric.service_name)
    end
    -- latency histograms: one observation per attempt, in the SDK's millisecond buckets
    assert.equal(6, get("temporal_request_latency_count", 'operation="GetSystemInfo"'))
    assert.equal(6, get("temporal_request_latency_bucket", 'operation="GetSystemInfo",le="+Inf"'))
    assert.is_true(get("temporal_request_latency_sum", 'operation="GetSystemInfo"') > 0)
    assert.equal(7, #prom:query(('temporal_request_latency_bucket{operation="GetSystemInfo",spec_run="%s"}')
      :format(run_id)))
    assert.equal(1, get("temporal_long_request_latency_count", 'operation="GetWorkflowExecutionHistory"'))
    -- the dashboards' queries answer (GetSystemInfo has samples since phase 0, so rate() has two)
    local p99 = prom:query(('histogram_quantile(0.99, sum by (le, operation) '
      .. '(rate(temporal_request_latency_bucket%s[5m])))'):format(sel))
    assert.is_true(#p99 >= 1)
    local by_status = prom:query(('sum by (status_code) (temporal_request_failure%s)'):format(sel))
    local statuses = {}
    for _, s in ipairs(by_status) do statuses[#statuses + 1] = s.metric.status_code end
    table.sort(statuses)
    assert.same({ "ALREADY_EXISTS", "NOT_FOUND", "UNAVAILABLE" }, statuses)

    -- what Prometheus scraped passes promtool (SDK names: only the counter-suffix lint)
    local status, body = prometheus.http_get(("http://127.0.0.1:%d/metrics"):format(port))
    assert.equal(200, status)
    local _, code, lint = promtool(body)
    assert.equal(3, code)
    for line in lint:gmatch("[^\n]+") do assert.matches('counter metrics should have "_total" suffix$', line) end
    assert.equal(404, (prometheus.http_get(("http://127.0.0.1:%d/other"):format(port))))
  end)
end)
