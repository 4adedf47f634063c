-- A Lua program as the activity worker for Python workflows.
--
--   temporal-lua examples/activity_worker.lua            (make demo runs it)
--
-- It serves two activities on its own task queue, then asks the test bed's Python worker to
-- run the workflow "CallLuaActivity" (spec/worker/worker.py), which calls them by name there.
-- A real program would just call worker:run() and leave the workflows to others.
local temporal = require("temporal")

local address = os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233"
local workflow_queue = os.getenv("TEMPORAL_TASK_QUEUE") or "lua-test-tq"
local client = temporal.connect(address)
local task_queue = "lua-activities-example-" .. os.time()

local stock = { sword = 2, shield = 0 }

local worker = client:new_worker{
  task_queue = task_queue,
  max_concurrent_activities = 20,
  graceful_shutdown_timeout = 5,
  activities = {
    grant_item = function(ctx, player, item)
      ctx:heartbeat("checking stock")
      if (stock[item] or 0) == 0 then
        error(temporal.application_error(item .. " is out of stock",
          { type = "OutOfStock", non_retryable = true, details = { item } }))
      end
      stock[item] = stock[item] - 1
      return { player = player, item = item, attempt = ctx.info.attempt }
    end,
    move_player = function(ctx, player, x, y)
      ctx:sleep(0.1)   -- a cancellable wait
      return { player = player, at = { x, y } }
    end,
  },
}
worker:start()

-- Three workflows at once, each calling one Lua activity; run as tasks so they overlap.
local calls = {
  { activity = "grant_item", args = { "alice", "sword" } },
  { activity = "move_player", args = { "bob", 3, 4 } },
  { activity = "grant_item", args = { "carol", "shield" } },
}
local tasks = {}
for i, spec in ipairs(calls) do
  spec.task_queue = task_queue
  tasks[i] = temporal.spawn(function()
    return client:execute_workflow("CallLuaActivity", {
      id = ("lua-activity-example-%d-%d"):format(os.time(), i),
      task_queue = workflow_queue, args = { spec },
    })
  end)
end
for i, t in ipairs(tasks) do
  local r = t:wait()
  if r.result then
    print(("%s -> result %s"):format(calls[i].activity, temporal.core.json_encode(r.result)))
  else
    print(("%s -> %s: %s (%s)"):format(calls[i].activity, r.cause, r.message, r.type))
  end
end

worker:shutdown()
print("worker " .. worker.state .. ", activities completed: " .. worker.completed)
client:close()
