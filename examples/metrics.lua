-- Client metrics under the SDKs' names, served on http://127.0.0.1:<port>/metrics for a
-- Prometheus to scrape, plus a custom counter in the same registry.
--   temporal-lua examples/metrics.lua [address] [task_queue] [serve_seconds]
-- With serve_seconds > 0 it keeps serving that long (try: curl 127.0.0.1:<port>/metrics).
local temporal = require("temporal")
local address = arg[1] or os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233"
local task_queue = arg[2] or os.getenv("TEMPORAL_TASK_QUEUE") or "lua-test-tq"
local serve_seconds = tonumber(arg[3] or os.getenv("METRICS_SERVE_SECONDS") or "0")

-- One registry for this script: the client's request metrics and our own.
local reg = temporal.metrics.new({ global_tags = { app = "metrics-example" } })
local greetings = reg:counter("example_greetings_total", "Greetings the example asked for")

local listener = reg:serve({ port = tonumber(os.getenv("METRICS_PORT") or "0") })
print(("metrics on http://%s:%d/metrics"):format(listener.host, listener.port))

local client = temporal.connect(address, { namespace = "default", metrics = reg })
for i = 1, 3 do
  local result = client:execute_workflow("Greet", {
    id = ("metrics-example-%d-%d-%d"):format(os.time(), math.random(1e6), i),
    task_queue = task_queue, args = { "metrics " .. i },
  })
  greetings:add(1, { outcome = "ok" })
  print(result)
end
-- a failing call: counted in temporal_request_failure{status_code="NOT_FOUND"}
local missing = client:get_workflow_handle("metrics-example-no-such-workflow")
print("describe of a missing workflow fails:", not pcall(missing.describe, missing))

-- What a scrape sees, in short: one line per request series.
for _, family in ipairs(reg:collect()) do
  for _, s in ipairs(family.series) do
    if family.kind == "counter" then
      print(("%-32s %-28s %-14s %s"):format(family.name, s.labels.operation or "-",
        s.labels.status_code or "", s.value))
    end
  end
end

if serve_seconds > 0 then temporal.sleep(serve_seconds) end
listener:close()
