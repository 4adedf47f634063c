-- The workflow surface against the sample worker: execute, signal, query, update, result,
-- and a typed failure.
--   temporal-lua examples/workflows.lua [address] [task_queue]
local temporal = require("temporal")
local address = arg[1] or os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233"
local task_queue = arg[2] or os.getenv("TEMPORAL_TASK_QUEUE") or "lua-test-tq"
local client = temporal.connect(address)
local suffix = ("%d-%d"):format(os.time(), math.random(1e6))

print(client:execute_workflow("Greet", { id = "greet-" .. suffix, task_queue = task_queue, args = { "Lua" } }))

local h = client:start_workflow("WaitForSignal", { id = "approval-" .. suffix, task_queue = task_queue })
print("update add(5) ->", h:execute_update("add", { args = { 5 } }))
print("update add(7) ->", h:execute_update("add", { args = { 7 } }))
print("query status  ->", h:query("status").total)
h:signal("approve", "alice", 42)
local signals = h:result()
print("result        ->", signals[1][1], signals[1][2], "status " .. h:describe().status)

local ok, err = pcall(client.execute_workflow, client, "Fail",
  { id = "fail-" .. suffix, task_queue = task_queue, args = { "out of stock" } })
assert(not ok and temporal.errors.is(err, "WorkflowFailureError"))
print("failure       ->", err.cause.type, err.cause.message)
