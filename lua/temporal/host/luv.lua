--- temporal.host.luv: run temporal calls in coroutines resumed by libuv callbacks.
--
--   local uv = require("luv")
--   temporal.set_host(require("temporal.host.luv").new())
--   coroutine.wrap(function() print(client:execute_workflow(...)) end)()
--   uv.run()
--
-- A call parks the calling coroutine (coroutine.yield back to whoever resumed it, as
-- luv code does around its own callbacks); a uv_poll on temporal's pollfd plus a
-- uv_timer for temporal.timeout() run temporal.step(0), which resumes the coroutines of
-- finished calls. The handles exist only while something waits, so uv.run() returns when
-- all is done. temporal.spawn tasks are plain coroutines started from a uv timer.
local uv = require("luv")
local scheduler = require("temporal.scheduler")

local M = {}

local function resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then error(debug.traceback(co, tostring(err)), 0) end
end

--- A host adapter for the default uv loop.
-- opts: budget ({ max_tasks = n, max_time = seconds } per step; see temporal.step).
function M.new(opts)
  local poll, timer
  local adapter = {
    name = "luv",
    budget = opts and opts.budget,
    -- luv does not own coroutines: any coroutine resumed from its callbacks qualifies
    owns = function() return true end,
    wait = function() coroutine.yield() end,
    wakeup = function(w) resume(w.co) end,
    spawn = function(fn)
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        resume(coroutine.create(fn))
      end)
    end,
  }
  local function stop()
    if poll then
      poll:stop(); poll:close()
      timer:stop(); timer:close()
      poll, timer = nil, nil
    end
  end
  function adapter.start(drive)
    stop()
    poll = uv.new_poll(scheduler.pollfd())
    timer = uv.new_timer()
    local function run()
      local ok, more = pcall(drive)
      if not ok then stop(); error(more, 0) end
      if more then
        local t = scheduler.timeout()
        timer:stop()
        if t then timer:start(math.ceil(t * 1000), 0, run) end
      else
        stop()
      end
    end
    poll:start("r", run)
    -- first round soon: what made the driver start may already be ready
    timer:start(0, 0, run)
  end
  return adapter
end

return M
