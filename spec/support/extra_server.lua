-- A second, private Temporal dev server for specs that need server features the shared test
-- bed leaves off (dynamic config given at start): the CHASM scheduler, legacy worker
-- versioning. No worker polls on it.
--
--   local extra = require 'support.extra_server'
--   local srv = extra.start({ 'history.enableChasm=true', ... })   -- waits until healthy
--   srv.address                                                    -- '127.0.0.1:PORT'
--   srv:stop()
local helper = require 'support.helper'

local M = {}

local function free_port()
  local out = helper.python([[
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
]])
  return assert(tonumber(out:match('%d+')), 'no free port')
end

local Server = {}
Server.__index = Server

function Server:stop()
  if self.pid then
    -- The server runs in its own process group (setsid): stop the group, then make sure.
    -- /bin/kill: dash's builtin kill takes no process group ("-- -PID").
    os.execute(('/bin/kill -TERM -- -%d 2>/dev/null; for i in $(seq 100); do kill -0 %d 2>/dev/null || break; sleep 0.1; done; /bin/kill -KILL -- -%d 2>/dev/null'):format(
      self.pid, self.pid, self.pid))
    self.pid = nil
  end
  if self.dir then os.execute('rm -rf ' .. helper.shell_quote(self.dir)) end
end

-- dynamic_config: list of 'key=value' strings. Raises (with the log tail) when the server
-- does not become healthy within 60 s.
function M.start(dynamic_config)
  local port, http, metrics = free_port(), free_port(), free_port()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute('mkdir -p ' .. helper.shell_quote(dir)))
  local argv = {
    helper.cli_path, 'server', 'start-dev', '--headless', '--ip', '127.0.0.1',
    '--port', port, '--http-port', http, '--metrics-port', metrics, '--log-level', 'warn',
    '--db-filename', dir .. '/server.db',
    '--dynamic-config-value', 'frontend.enableServerVersionCheck=false',
  }
  for _, kv in ipairs(dynamic_config or {}) do
    argv[#argv + 1] = '--dynamic-config-value'
    argv[#argv + 1] = kv
  end
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = helper.shell_quote(a) end
  local log = dir .. '/server.log'
  local cmd = ('TEMPORAL_VERSION_CHECK_DISABLED=1 setsid %s </dev/null >%s 2>&1 & echo $!')
    :format(table.concat(parts, ' '), helper.shell_quote(log))
  local p = assert(io.popen(cmd, 'r'))
  local pid = tonumber(p:read('a'):match('%d+'))
  p:close()
  local srv = setmetatable({ pid = pid, dir = dir, address = '127.0.0.1:' .. port, log = log }, Server)
  local ok = pcall(helper.eventually, function()
    return helper.run({ helper.cli_path, 'operator', 'cluster', 'health', '--address', srv.address },
      { TEMPORAL_VERSION_CHECK_DISABLED = '1' })
  end, 60, 0.2)
  if not ok then
    local f = io.open(log)
    local tail = f and f:read('a') or ''
    if f then f:close() end
    srv:stop()
    error('extra dev server did not start:\n' .. tail:sub(-2000))
  end
  return srv
end

return M
