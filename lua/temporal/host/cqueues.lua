--- temporal.host.cqueues: run temporal calls in cqueues coroutines.
--
--   local cqueues = require("cqueues")
--   local cq = cqueues.new()
--   temporal.set_host(require("temporal.host.cqueues").new(cq))
--   cq:wrap(function() print(client:execute_workflow(...)) end)  -- parks only this coroutine
--   assert(cq:loop())
--
-- A call parks the calling coroutine on a cqueues condition; one driver coroutine on `cq`
-- polls temporal's pollfd/timeout (cqueues.poll accepts any object with pollfd, events
-- and timeout) and runs temporal.step(0), which signals the conditions of finished calls.
-- temporal.spawn tasks are cq:wrap coroutines, so cqueues.sleep and socket I/O inside
-- them go to cqueues.
local cqueues = require("cqueues")
local condition = require("cqueues.condition")
local scheduler = require("temporal.scheduler")

local M = {}

--- A host adapter for the controller `cq`.
-- opts: budget ({ max_tasks = n, max_time = seconds } per step; see temporal.step).
function M.new(cq, opts)
  if type(cq) ~= "userdata" or not cq.wrap then
    error("temporal.host.cqueues.new: expected a cqueues controller (cqueues.new()), got " .. type(cq), 2)
  end
  local pollable = {
    pollfd = scheduler.pollfd(),
    events = "r",
    timeout = function() return scheduler.timeout() end,
  }
  return {
    name = "cqueues",
    budget = opts and opts.budget,
    owns = function() return cqueues.running() ~= nil end,
    wait = function(w)
      w.cond = w.cond or condition.new()
      w.cond:wait()
    end,
    wakeup = function(w) w.cond:signal() end,
    start = function(drive)
      cq:wrap(function()
        repeat cqueues.poll(pollable) until not drive()
      end)
    end,
    spawn = function(fn) cq:wrap(fn) end,
  }
end

return M
