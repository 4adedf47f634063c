-- temporal in a cqueues program: each cq:wrap coroutine that calls Temporal parks only
-- itself; the controller keeps running the others (here a ticker).
--   TEMPORAL_ADDRESS=127.0.0.1:7233 TEMPORAL_TASK_QUEUE=tq lua5.4 examples/hosts/cqueues.lua
local cqueues = require("cqueues")
local temporal = require("temporal")

local cq = cqueues.new()
temporal.set_host(require("temporal.host.cqueues").new(cq))
local client = temporal.connect(os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233", {
  namespace = os.getenv("TEMPORAL_NAMESPACE") or "default", lazy = true })
local task_queue = os.getenv("TEMPORAL_TASK_QUEUE") or "tq"

local running, ticks = 3, 0
for i = 1, 3 do
  cq:wrap(function()
    local result = client:execute_workflow("Greet", {
      id = ("cqueues-example-%d-%d"):format(os.time(), i), task_queue = task_queue, args = { "cqueues " .. i } })
    print(result)
    running = running - 1
  end)
end
cq:wrap(function()                      -- the rest of the program keeps going
  while running > 0 do ticks = ticks + 1; cqueues.sleep(0.01) end
end)
assert(cq:loop())
print("ticker ran", ticks > 0)
