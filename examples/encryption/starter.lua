-- Starts the EncryptedGreeting workflow with encrypted arguments and prints the result the
-- Python worker (worker.py, same codec) encrypted:
--   temporal-lua starter.lua [workflow-id]     (TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE)
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local temporal = require("temporal")
local codec = require("codec")

local client = temporal.connect(os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233", {
  namespace = os.getenv("TEMPORAL_NAMESPACE") or "default",
  data_converter = temporal.converter.new{ codec = codec.new() },
})
local result = client:execute_workflow("EncryptedGreeting", {
  id = arg[1] or ("encrypted-greeting-" .. os.time()),
  task_queue = os.getenv("TEMPORAL_TASK_QUEUE") or "encryption-tq",
  args = { "Lua", { card = "4111-1111-1111-1111", amount = 42 } },
})
print(result.greeting, result.by, result.received.card, result.received.amount)
