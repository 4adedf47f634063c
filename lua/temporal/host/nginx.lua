--- temporal.host.nginx: temporal calls inside nginx (lua-nginx-module / OpenResty) that
-- yield to nginx's event loop instead of blocking the worker.
--
--   init_by_lua_block {          -- the master: loading starts no thread
--     local temporal = require("temporal")
--     temporal.set_host(require("temporal.host.nginx").new())
--   }
--   init_worker_by_lua_block {   -- each worker: its client (its runtime comes with it)
--     CLIENT = require("temporal").connect("127.0.0.1:7233", { lazy = true })
--   }
--   content_by_lua_block { ngx.say(CLIENT:execute_workflow("Greet", {...})) }
--
-- A call parks the request's coroutine (or a timer's, or an ngx.thread's) on an
-- ngx.semaphore; while it waits nginx serves everything else. One driver per worker, a
-- timer that runs only while something waits, reads one byte from a cosocket connected to
-- the core's socket relay (temporal.core.relay: a thread that writes a byte when the
-- runtime's pollfd becomes readable or temporal's next timer is due) and runs
-- temporal.step(0), which posts the semaphores of the calls that finished. Nothing polls.
--
-- `require "temporal"` and this adapter may be made in init_by_lua* (the master): loading
-- the module starts nothing; the runtime (gRPC, its threads) is made per worker on its first
-- connect or call, which nginx's master refuses. Calls where nginx cannot yield (init,
-- init_worker, set, header_filter, body_filter, log, balancer, ...) raise an error naming
-- the phase, before anything is sent.
local M = {}

-- Phases whose code runs in a coroutine nginx can suspend on a semaphore.
M.YIELDING_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

local ONE_DAY_MS = 86400000

local function ngx_api()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then
    error("temporal.host.nginx: not running inside nginx's Lua module", 3)
  end
  return ngx
end

local OPTIONS = { budget = true, socket_dir = true }

--- A host adapter for nginx's workers. Make it in init_by_lua* (the workers inherit it),
-- init_worker_by_lua* or later.
-- opts: socket_dir (where the worker's relay socket lives, default "/tmp"; the file is
-- removed when the worker exits), budget ({ max_tasks = n, max_time = s } per step).
function M.new(opts)
  local ngx = ngx_api()
  opts = opts or {}
  if type(opts) ~= "table" then error("temporal.host.nginx.new: opts must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(("temporal.host.nginx.new: unknown option '%s'"):format(tostring(k)), 2) end
  end
  if opts.socket_dir ~= nil and type(opts.socket_dir) ~= "string" then
    error("temporal.host.nginx.new: socket_dir must be a string, got " .. type(opts.socket_dir), 2)
  end
  local core = require("temporal.core")
  local scheduler = require("temporal.scheduler")
  local semaphore = require("ngx.semaphore")
  local socket_dir = opts.socket_dir or "/tmp"
  local relay  -- the worker's socket relay, made with the first driver
  local adapter = { name = "nginx", blocking = false, budget = opts.budget }

  local function relay_path()
    if not relay then
      local path = ("%s/temporal-lua-%d-%d.sock"):format(socket_dir, ngx.worker.pid(), math.random(1, 1e9))
      relay = core.relay(scheduler.pollfd(), path)
    end
    return relay.path
  end

  function adapter.owns()
    return M.YIELDING_PHASES[ngx.get_phase()] == true
  end

  -- The error for a call where nginx cannot suspend the running code (the scheduler raises
  -- it before anything is sent).
  function adapter.cannot_wait(what)
    local phase = ngx.get_phase()
    if M.YIELDING_PHASES[phase] then  -- e.g. inside a metamethod or an iterator called from C
      return ("%s: cannot wait here: in phase %s this code runs inside a C call (a metamethod, an "
        .. "iterator, a function called from C) that nginx cannot suspend; make the call directly "
        .. "in the handler, an ngx.thread or an ngx.timer.at callback"):format(what, phase)
    end
    return ("%s: nginx cannot yield in phase %s (ngx.get_phase()), and waiting there would block "
      .. "the whole worker; make the call from rewrite/access/content_by_lua*, or from an "
      .. "ngx.timer.at(0, fn) callback started here"):format(what, tostring(phase))
  end

  function adapter.wait(w)
    w.sema = w.sema or semaphore.new()
    -- a day at a time: a call with no deadline may wait longer; the scheduler asks again
    local ok, err = w.sema:wait(86400)
    if not ok and err ~= "timeout" then
      error("temporal.host.nginx: waiting on a semaphore failed: " .. tostring(err), 0)
    end
  end

  function adapter.wakeup(w)
    w.sema = w.sema or semaphore.new()
    w.sema:post(1)
  end

  -- The driver: a timer while something waits. Asks the relay for a byte when the pollfd
  -- is readable or temporal.timeout() passes, then steps; ends when drive() says so.
  local driver
  -- After a failure the driver comes back a little later (the waiters still need one).
  local function restart(drive, why, err)
    ngx.log(ngx.ERR, "temporal.host.nginx: ", why, ": ", tostring(err), "; driver restarts in 0.1 s")
    local ok, terr = ngx.timer.at(0.1, driver, drive)
    if not ok then ngx.log(ngx.ERR, "temporal.host.nginx: cannot restart the driver: ", terr) end
  end

  driver = function(_, drive)
    local sock = ngx.socket.tcp()
    sock:settimeout(ONE_DAY_MS)
    local path_ok, path = pcall(relay_path)
    if not path_ok then return restart(drive, "cannot start the relay", path) end
    local ok, err = sock:connect("unix:" .. path)
    if not ok then return restart(drive, "cannot connect to the relay", err) end
    local more = true
    while more do
      local t = scheduler.timeout()
      local sent, serr = sock:send((t and math.ceil(t * 1000) or -1) .. "\n")
      if not sent then sock:close(); return restart(drive, "relay send failed", serr) end
      local byte, rerr
      repeat byte, rerr = sock:receive(1) until byte or rerr ~= "timeout"
      if not byte then sock:close(); return restart(drive, "relay receive failed", rerr) end
      local stepped, result = pcall(drive)
      if not stepped then  -- the scheduler has let this driver go; the next wait starts one
        ngx.log(ngx.ERR, "temporal.host.nginx: step failed: ", tostring(result))
        break
      end
      more = result
    end
    -- Idle now (no line sent, no byte due): kept in the worker's cosocket pool, so the next
    -- driver reuses the connection instead of a connect and an accept per busy spell. The
    -- relay serves one connection at a time; only the driver (one at a time) connects.
    local kept = sock:setkeepalive(0, 1)
    if not kept then sock:close() end
  end

  function adapter.start(drive)
    local ok, err = ngx.timer.at(0, driver, drive)
    if not ok then error("temporal.host.nginx: cannot start the driver timer: " .. tostring(err), 0) end
  end

  -- temporal.spawn: a light thread of the request when there is one (it ends with the
  -- request), a timer otherwise.
  function adapter.spawn(fn)
    if M.YIELDING_PHASES[ngx.get_phase()] and ngx.get_phase() ~= "timer" and ngx.thread then
      local ok, err = pcall(ngx.thread.spawn, fn)
      if ok then return end
      ngx.log(ngx.WARN, "temporal.host.nginx: ngx.thread.spawn failed, using a timer: ", tostring(err))
    end
    local ok, err = ngx.timer.at(0, function() fn() end)
    if not ok then error("temporal.host.nginx: cannot start a timer for a task: " .. tostring(err), 0) end
  end

  --- Stops this worker's relay (exit_worker_by_lua*; the finalizer does it too).
  function adapter.close()
    if relay then relay:close(); relay = nil end
  end

  return adapter
end

return M
