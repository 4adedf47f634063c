-- wrk script of bench/nginx.sh (wrk runs it in its own LuaJIT): POST /workflows with a
-- fresh workflow id per request when BENCH_START is set (its value prefixes the ids), plain
-- GETs otherwise; at the end one line "WRK {json}" with the counts and latencies.
--   BENCH_START=prefix BENCH_TASK_QUEUE=tq wrk -t1 -c16 -d10s -s bench/nginx_wrk.lua http://127.0.0.1:8080/workflows
-- luacheck: globals wrk setup request done tid
local prefix = os.getenv("BENCH_START")
local task_queue = os.getenv("BENCH_TASK_QUEUE") or "bench-nginx-noworker"
local thread_no = 0
local n = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("tid", thread_no)
end

if prefix then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  function request()
    n = n + 1
    local body = ('{"workflow":"BenchNoWorker","id":"%s-%d-%d","task_queue":"%s","args":["payload"]}')
      :format(prefix, tid or 0, n, task_queue)
    return wrk.format(nil, nil, nil, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(("WRK {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d,\"max_us\":%d,"
    .. "\"non_2xx\":%d,\"connect\":%d,\"read\":%d,\"write\":%d,\"timeout\":%d}\n"):format(
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
