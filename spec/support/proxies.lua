-- Proxies for the connection specs, all on 127.0.0.1:
--
--   local proxies = require 'support.proxies'
--   local p = proxies.tinyproxy{ user = 'alice', password = 's3cret' }   -- HTTP CONNECT, Debian's tinyproxy
--   p.address, p:log(), p:stop()
--   local f = proxies.forwarder(helper.address)    -- plain TCP forwarder (spec/support/forwarder.py)
--   f.address, f:freeze(), f:thaw(), f:stop()      -- frozen: traffic is accepted and dropped
local helper = require 'support.helper'
local nginx = require 'support.nginx'

local M = {}

local function stop_pid(pid)
  os.execute(('kill -CONT %d 2>/dev/null; kill -TERM %d 2>/dev/null; for i in $(seq 50); do kill -0 %d 2>/dev/null || break; sleep 0.1; done; kill -KILL %d 2>/dev/null')
    :format(pid, pid, pid, pid))
end

local function spawn(cmd)
  local ok, out, err = helper.run({ 'bash', '-c', 'setsid ' .. cmd .. ' </dev/null & echo $!' })
  assert(ok, err)
  return assert(tonumber(out:match('%d+')))
end

local Proxy = {}
Proxy.__index = Proxy

function Proxy:log() return nginx.read(self.dir .. '/tinyproxy.log') or '' end

function Proxy:stop()
  if self.pid then stop_pid(self.pid); self.pid = nil end
  os.execute('rm -rf ' .. helper.shell_quote(self.dir))
end

function M.tinyproxy(opts)
  opts = opts or {}
  local dir = nginx.tempdir('temporal-lua-proxy')
  local port = nginx.free_port()
  local conf = {
    'Port ' .. port,
    'Listen 127.0.0.1',
    'Timeout 600',
    'LogFile "' .. dir .. '/tinyproxy.log"',
    'LogLevel Connect',
    'MaxClients 64',
    'Allow 127.0.0.1',
  }
  if opts.user then conf[#conf + 1] = ('BasicAuth %s %s'):format(opts.user, opts.password) end
  local f = assert(io.open(dir .. '/tinyproxy.conf', 'w'))
  f:write(table.concat(conf, '\n'), '\n')
  f:close()
  local pid = spawn(('tinyproxy -d -c %s/tinyproxy.conf >%s/tinyproxy.out 2>&1'):format(dir, dir))
  local p = setmetatable({ dir = dir, pid = pid, address = '127.0.0.1:' .. port }, Proxy)
  local ok, err = pcall(nginx.wait_port, port, 10)
  if not ok then p:stop(); error(err, 2) end
  return p
end

local Forwarder = {}
Forwarder.__index = Forwarder

function Forwarder:freeze() os.execute('kill -STOP ' .. self.pid) end
function Forwarder:thaw() os.execute('kill -CONT ' .. self.pid) end
function Forwarder:stop()
  if self.pid then stop_pid(self.pid); self.pid = nil end
end

function M.forwarder(target)
  local port = nginx.free_port()
  local script = debug.getinfo(1, 'S').source:sub(2):gsub('proxies%.lua$', 'forwarder.py')
  local pid = spawn(('%s -u %s %d %s >/dev/null 2>&1'):format(
    helper.shell_quote(helper.python_path), helper.shell_quote(script), port, helper.shell_quote(target)))
  local f = setmetatable({ pid = pid, address = '127.0.0.1:' .. port }, Forwarder)
  local ok, err = pcall(nginx.wait_port, port, 10)
  if not ok then f:stop(); error(err, 2) end
  return f
end

return M
