-- temporal in a luv (libuv) program: coroutines resumed from uv callbacks park while
-- their calls are in flight; uv keeps running timers and I/O meanwhile.
--   TEMPORAL_ADDRESS=127.0.0.1:7233 TEMPORAL_TASK_QUEUE=tq lua5.4 examples/hosts/luv.lua
local uv = require("luv")
local temporal = require("temporal")

temporal.set_host(require("temporal.host.luv").new())
local client = temporal.connect(os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233", {
  namespace = os.getenv("TEMPORAL_NAMESPACE") or "default", lazy = true })
local task_queue = os.getenv("TEMPORAL_TASK_QUEUE") or "tq"

local running, ticks = 3, 0
local ticker = uv.new_timer()
ticker:start(10, 10, function()
  ticks = ticks + 1
  if running == 0 then ticker:close() end
end)
for i = 1, 3 do
  local t = uv.new_timer()
  t:start(0, 0, function()              -- a uv callback starts a coroutine, as luv code does
    t:close()
    coroutine.wrap(function()
      print(client:execute_workflow("Greet", {
        id = ("luv-example-%d-%d"):format(os.time(), i), task_queue = task_queue, args = { "luv " .. i } }))
      running = running - 1
    end)()
  end)
end
uv.run()
print("ticker ran", ticks > 0)
