-- The shortest round trip: start the sample worker's "Greet" workflow and wait for its
-- result, through the raw WorkflowService surface.
--   temporal-lua examples/hello.lua [address] [task_queue]
local temporal = require("temporal")
local address = arg[1] or os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233"
local task_queue = arg[2] or os.getenv("TEMPORAL_TASK_QUEUE") or "lua-test-tq"

local client = temporal.connect(address, { namespace = "default" })
print(("connected to %s (server %s)"):format(address, client.system_info.server_version))

local ws = client.workflow_service
local id = ("hello-%d-%d"):format(os.time(), math.random(1e6))
local started = ws:start_workflow_execution{
  namespace = client.namespace,
  workflow_id = id,
  workflow_type = { name = "Greet" },
  task_queue = { name = task_queue },
  input = { payloads = { { metadata = { encoding = "json/plain" }, data = '"World"' } } },
  request_id = id,
  identity = client.identity,
}
print("started " .. id .. " run " .. started.run_id)

-- Long-poll the history for the close event.
local close
repeat
  local page = ws:get_workflow_execution_history({
    namespace = client.namespace,
    execution = { workflow_id = id, run_id = started.run_id },
    wait_new_event = true,
    history_event_filter_type = "CLOSE_EVENT",
  }, { rpc_timeout = 70 })
  close = page.history and page.history.events and page.history.events[1]
until close
print(close.event_type .. ": " .. close.workflow_execution_completed_event_attributes.result.payloads[1].data)
