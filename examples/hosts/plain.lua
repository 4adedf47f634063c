-- temporal in a plain script (no event loop): the main thread blocks while it waits and
-- runs temporal.spawn tasks meanwhile; tasks run concurrently with each other.
--   TEMPORAL_ADDRESS=127.0.0.1:7233 TEMPORAL_TASK_QUEUE=tq temporal-lua examples/hosts/plain.lua
local temporal = require("temporal")

local client = temporal.connect(os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233", {
  namespace = os.getenv("TEMPORAL_NAMESPACE") or "default" })
local task_queue = os.getenv("TEMPORAL_TASK_QUEUE") or "tq"

local tasks = {}
for i = 1, 3 do
  tasks[i] = temporal.spawn(function()
    return client:execute_workflow("Greet", {
      id = ("plain-example-%d-%d"):format(os.time(), i), task_queue = task_queue, args = { "plain " .. i } })
  end)
end
for i = 1, 3 do print(tasks[i]:wait()) end   -- blocks, driving all three
