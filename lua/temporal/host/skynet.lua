--- temporal.host.skynet: run temporal calls in skynet sessions (one lua_State per service).
--
--   local skynet = require("skynet")
--   local temporal = require("temporal")
--   skynet.start(function()
--     temporal.set_host(require("temporal.host.skynet").new())
--     local client = temporal.connect("127.0.0.1:7233")
--     skynet.dispatch("lua", function(_, _, cmd, id)
--       skynet.ret(skynet.pack(client:get_workflow_handle(id):result()))  -- parks this session only
--     end)
--   end)
--
-- A call parks the calling session with skynet.wait and is resumed by skynet.wakeup. The
-- service's temporal pollfd is bound into skynet's socket loop (socket.bind): a reader
-- session wakes the driver session, which runs temporal.step(0) and sleeps with
-- skynet.sleep(timeout, token) in between. temporal.spawn tasks are skynet.fork sessions.
-- A call from the service's main chunk (before skynet.start) raises: it can neither
-- yield nor block the worker thread. Nested coroutines must be skynet.coroutine ones.
-- skynet watches a duplicate of the pollfd; `adapter.close()` (before skynet.exit) gives
-- it back.
local skynet = require("skynet")
local socket = require("skynet.socket")
local scheduler = require("temporal.scheduler")
local core = require("temporal.core")

local M = {}

--- A host adapter for the running service.
-- opts: budget ({ max_tasks = n, max_time = seconds } per step; see temporal.step).
function M.new(opts)
  local token = {}          -- the driver sleeps on it; the reader wakes it
  local id                  -- skynet's socket for a duplicate of the pollfd
  local function start_reader()
    if id then return end
    id = socket.bind(core.dup_pollfd())
    local my_id = id
    skynet.fork(function()
      while socket.read(my_id) do skynet.wakeup(token) end
    end)
  end
  local adapter = {
    name = "skynet",
    blocking = false,
    budget = opts and opts.budget,
    owns = function() return true end,   -- every coroutine of a service is a skynet session
    wait = function(w) skynet.wait(w.co) end,
    wakeup = function(w) skynet.wakeup(w.co) end,
    spawn = function(fn) skynet.fork(fn) end,
    start = function(drive)
      start_reader()
      skynet.fork(function()
        repeat
          local t = scheduler.timeout()
          if t == nil then skynet.wait(token)
          elseif t > 0 then skynet.sleep(math.ceil(t * 100), token) end  -- centiseconds
        until not drive()
      end)
    end,
  }
  --- Closes skynet's socket on the pollfd (the service is about to exit).
  function adapter.close()
    if id then
      socket.close(id)
      id = nil
    end
  end
  return adapter
end

return M
