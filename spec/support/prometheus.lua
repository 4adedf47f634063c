-- A real Prometheus (Debian's `prometheus`) for the specs: runs from a temp dir, listens on
-- 127.0.0.1 only, scrapes the given 127.0.0.1 targets every second.
--
--   local prometheus = require 'support.prometheus'
--   local prom = prometheus.start({ '127.0.0.1:9464' })
--   prom:query('temporal_request{operation="GetSystemInfo"}')  -> the API's data.result list
--   prom:stop()
local helper = require 'support.helper'
local nginx = require 'support.nginx'   -- free_port, tempdir, wait_port

local M = {}

local Prom = {}
Prom.__index = Prom

local function read(path)
  local f = io.open(path, 'rb')
  if not f then return '' end
  local s = f:read('a')
  f:close()
  return s
end

-- GET http://127.0.0.1:<port><path> through the venv's python; returns status, body.
function M.http_get(url)
  local out = helper.python([[
import json, os, sys, urllib.request, urllib.error
url = json.loads(os.environ["ARGS"])["url"]
try:
    r = urllib.request.urlopen(url, timeout=10)
    status, body = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read().decode()
sys.stdout.write(json.dumps({"status": status, "body": body}))
]], { url = url })
  local r = helper.json.decode(out)
  return r.status, r.body
end

function M.start(targets)
  assert(targets[1]:match('^127%.'), 'targets must be on 127.0.0.0/8')
  local dir = nginx.tempdir('temporal-lua-prometheus')
  local port = nginx.free_port()
  local quoted = {}
  for i, t in ipairs(targets) do quoted[i] = "'" .. t .. "'" end
  local f = assert(io.open(dir .. '/prometheus.yml', 'w'))
  f:write(([[
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: temporal-lua
    static_configs:
      - targets: [%s]
]]):format(table.concat(quoted, ', ')))
  f:close()
  local q = helper.shell_quote
  local ok, started = helper.run({ 'bash', '-c', ('cd %s; setsid prometheus --config.file=%s/prometheus.yml '
    .. '--storage.tsdb.path=%s/data --web.listen-address=127.0.0.1:%d --log.level=warn '
    .. '</dev/null >%s/prometheus.log 2>&1 & echo $!'):format(q(dir), q(dir), q(dir), port, q(dir)) })
  assert(ok, 'could not start prometheus')
  local self = setmetatable({ dir = dir, port = port, base = 'http://127.0.0.1:' .. port,
    pid = tonumber(started:match('%d+')) }, Prom)
  local ready, err = pcall(helper.eventually, function()
    local status = M.http_get(self.base .. '/-/ready')
    return status == 200
  end, 30, 0.2)
  if not ready then
    local log = read(dir .. '/prometheus.log')
    self:stop()
    error(tostring(err) .. '\nprometheus log:\n' .. log, 2)
  end
  return self
end

function Prom:log() return read(self.dir .. '/prometheus.log') end

-- An instant query through the HTTP API; returns data.result (a list of { metric, value }).
function Prom:query(promql)
  local status, body = M.http_get(self.base .. '/api/v1/query?query=' .. promql:gsub('[^%w%-_%.~]', function(c)
    return ('%%%02X'):format(c:byte())
  end))
  local r = helper.json.decode(body)
  if status ~= 200 or r.status ~= 'success' then
    error(('prometheus query %s failed (%s): %s'):format(promql, tostring(status), body), 2)
  end
  return r.data.result
end

-- The value of a query that yields one series (nil when it yields none).
function Prom:value(promql)
  local res = self:query(promql)
  assert(#res <= 1, 'more than one series for ' .. promql)
  return res[1] and tonumber(res[1].value[2])
end

function Prom:stop()
  if self.pid then
    os.execute(('kill -TERM %d 2>/dev/null; for i in $(seq 50); do kill -0 %d 2>/dev/null || break; '
      .. 'sleep 0.1; done; kill -KILL %d 2>/dev/null')
      :format(self.pid, self.pid, self.pid))
    self.pid = nil
  end
  os.execute('rm -rf ' .. helper.shell_quote(self.dir))
end

return M
