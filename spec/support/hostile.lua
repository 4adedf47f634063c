-- The hostile gRPC peer of spec/support/hostile_server.py: each reply gets a port that
-- answers every call with it.
--
--   local hostile = require 'support.hostile'
--   local h = hostile.start{ { status = 3, message = "bad", details = bytes }, { body = bytes } }
--   h.address[1], h.address[2], h:stop()
local helper = require 'support.helper'
local cjson = require 'cjson'

local M = {}

local function hex(s)
  return (s:gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end

local Hostile = {}
Hostile.__index = Hostile

function Hostile:stop()
  if self.pid then
    os.execute(('kill -TERM %d 2>/dev/null; for i in $(seq 50); do kill -0 %d 2>/dev/null || break; '
      .. 'sleep 0.1; done; kill -KILL %d 2>/dev/null'):format(self.pid, self.pid, self.pid))
    self.pid = nil
  end
  os.remove(self.port_file)
end

function M.start(replies)
  local config = {}
  for i, r in ipairs(replies) do
    config[i] = { status = r.status, message = r.message,
      details = r.details and hex(r.details), body = r.body and hex(r.body) }
  end
  local port_file = os.tmpname()
  os.remove(port_file)
  local script = debug.getinfo(1, 'S').source:sub(2):gsub('hostile%.lua$', 'hostile_server.py')
  local ok, out, err = helper.run({ 'bash', '-c', 'setsid "$0" "$1" "$2" "$3" </dev/null >/dev/null 2>&1 & echo $!',
    'python3', script, port_file, cjson.encode(config) })
  assert(ok, err)
  local h = setmetatable({ pid = assert(tonumber(out:match('%d+'))), port_file = port_file, address = {} }, Hostile)
  for _ = 1, 100 do
    local f = io.open(port_file)
    if f then
      for line in f:lines() do h.address[#h.address + 1] = '127.0.0.1:' .. line end
      f:close()
      if #h.address == #replies then return h end
    end
    helper.sleep(0.05)
  end
  h:stop()
  error('hostile server did not start')
end

return M
