-- The client process a real Prometheus scrapes in spec/metrics_spec.lua (run by temporal-lua).
-- It serves its registry on 127.0.0.1 with the built-in listener, writes the port to
-- PORT_FILE, and sets the gauge spec_phase to 0. Once GO_FILE exists it makes exactly the
-- calls listed below, then sets spec_phase to 1 and keeps serving until it is killed.
--
-- env: ADDRESS (the test bed), FAULTS (nginx listener answering with the x-fault status),
-- TASK_QUEUE (the Python worker's), RUN_ID (global tag spec_run), PORT_FILE, GO_FILE.
local temporal = require("temporal")

local function env(name) return assert(os.getenv(name), name .. " not set") end
local run_id = env("RUN_ID")

local reg = temporal.metrics.new({ global_tags = { spec_run = run_id } })
local listener = reg:serve({ port = 0, interval = 0.02 })
local phase = reg:gauge("spec_phase", "0: connected, waiting; 1: every call made")
local client = temporal.connect(env("ADDRESS"), { namespace = "default", metrics = reg })  -- GetSystemInfo
phase:set(0)

local f = assert(io.open(env("PORT_FILE") .. ".tmp", "w"))
f:write(listener.port, "\n")
f:close()
assert(os.rename(env("PORT_FILE") .. ".tmp", env("PORT_FILE")))

local function exists(path)
  local h = io.open(path)
  if h then h:close() end
  return h ~= nil
end
while not exists(env("GO_FILE")) do temporal.sleep(0.05) end

-- 5 x GetSystemInfo (raw)
for _ = 1, 5 do client.workflow_service:get_system_info({}) end
-- 3 x DescribeWorkflowExecution of a workflow that does not exist: NOT_FOUND
for i = 1, 3 do
  local missing = client:get_workflow_handle("no-such-" .. run_id .. "-" .. i)
  assert(not pcall(missing.describe, missing))
end
-- 2 x StartWorkflowExecution on the worker's task queue, the second ALREADY_EXISTS
local id = "metrics-" .. run_id
local h = client:start_workflow("Greet", { id = id, task_queue = env("TASK_QUEUE"), args = { "metrics" } })
assert(not pcall(client.start_workflow, client, "Greet", { id = id, task_queue = env("TASK_QUEUE"), args = { "x" } }))
-- wait for the result through an unmetered client, then 1 long poll on the metered one
local quiet = temporal.connect(env("ADDRESS"), { namespace = "default", metrics = false })
quiet:get_workflow_handle(id):result()
assert(h:result() == "Hello, metrics!")
-- 3 attempts of DescribeNamespace, each answered UNAVAILABLE by the faults listener, with retries
local faulty = temporal.connect(env("FAULTS"), {
  lazy = true, metrics = reg, rpc_metadata = { ["x-fault"] = "14" },
  retry_config = { max_retries = 3, initial_interval = 0.01, max_interval = 0.02, max_elapsed_time = false },
})
local ok, err = pcall(faulty.workflow_service.describe_namespace, faulty.workflow_service,
  { namespace = "retry-" .. run_id }, { retry = true })
assert(not ok and err.attempts == 3, tostring(err))

phase:set(1)
while true do temporal.sleep(1) end
