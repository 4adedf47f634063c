-- Real endpoints in front of the test bed's server for the connection specs: nginx from
-- Debian (grpc_pass) with certificates that openssl makes at test time in a temp dir.
--
--   local nginx = require 'support.nginx'
--   local pki = nginx.make_pki()       -- pki.ca, pki.other_ca, pki.client_cert, pki.client_key
--   local gw = nginx.start(pki, helper.address, { api_keys = { 'key-one', 'key-two' } })
--   gw.tls, gw.mtls, gw.bearer_tls, gw.bearer_plain, gw.faults   -- '127.0.0.1:PORT' each
--   gw:access_log()                    -- the lines nginx logged so far
--   gw:stop()
--
-- Listeners: tls (server-auth TLS), mtls (client certificate required), bearer_tls and
-- bearer_plain (TLS / h2c; only `authorization: Bearer <one of api_keys>` passes, else
-- HTTP 401, which gRPC reports as UNAUTHENTICATED), faults (h2c; answers every call with
-- the gRPC status named by the x-fault request header, e.g. x-fault: 14).
-- The server certificate names localhost, temporal.test and 127.0.0.1.
local helper = require 'support.helper'

local M = {}

local function sh(cmd)
  local ok, out, err = helper.run({ 'bash', '-c', cmd })
  if not ok then error('command failed: ' .. cmd .. '\n' .. err .. out, 2) end
  return out
end

local function write(path, text)
  local f = assert(io.open(path, 'w'))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('a')
  f:close()
  return s
end
M.read = read

function M.free_port()
  local out = helper.python([[
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
]])
  return assert(tonumber(out:match('%d+')), 'no free port')
end

function M.tempdir(prefix)
  return (sh('mktemp -d /tmp/' .. (prefix or 'temporal-lua') .. '.XXXXXX'):gsub('%s+$', ''))
end

-- Waits until something accepts TCP connections on 127.0.0.1:port (bash's /dev/tcp).
function M.wait_port(port, timeout)
  local cmd = ('for i in $(seq %d); do (exec 3<>/dev/tcp/127.0.0.1/%d) 2>/dev/null && exit 0; sleep 0.1; done; exit 1')
    :format(math.floor((timeout or 10) * 10), port)
  if not helper.run({ 'bash', '-c', cmd }) then
    error('nothing listens on 127.0.0.1:' .. port .. ' after ' .. (timeout or 10) .. ' s', 2)
  end
end

-- A CA, a server certificate it signs, a client certificate it signs, and an unrelated CA.
-- EC P-256 keys: quick to make. Nothing of it outlives the spec run.
function M.make_pki()
  local dir = M.tempdir('temporal-lua-pki')
  local key = 'openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '
  sh(([[
set -e
cd %s
%s ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj "/CN=temporal-lua test CA" 2>/dev/null
%s other_ca.key
openssl req -x509 -new -key other_ca.key -out other_ca.pem -days 2 -subj "/CN=some other CA" 2>/dev/null
%s server.key
openssl req -new -key server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,DNS:temporal.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
%s client.key
openssl req -new -key client.key -out client.csr -subj "/CN=lua-spec-client" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null
]]):format(helper.shell_quote(dir), key, key, key, key))
  return {
    dir = dir,
    ca = read(dir .. '/ca.pem'),
    other_ca = read(dir .. '/other_ca.pem'),
    client_cert = read(dir .. '/client.pem'),
    client_key = read(dir .. '/client.key'),
    client_cert_path = dir .. '/client.pem',
    client_key_path = dir .. '/client.key',
    ca_path = dir .. '/ca.pem',
  }
end

local CONF = [[
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events { worker_connections 256; }
http {
  client_body_temp_path {dir}/tmp_body;
  proxy_temp_path {dir}/tmp_proxy;
  fastcgi_temp_path {dir}/tmp_fcgi;
  uwsgi_temp_path {dir}/tmp_uwsgi;
  scgi_temp_path {dir}/tmp_scgi;
  log_format spec '$server_port $request_uri status=$status auth="$http_authorization" '
                  'cert="$ssl_client_s_dn" verify=$ssl_client_verify x_spec="$http_x_spec"';
  access_log {dir}/access.log spec;
  grpc_read_timeout 120s;
  grpc_send_timeout 120s;
  client_max_body_size 0;
  ssl_certificate {pki}/server.pem;
  ssl_certificate_key {pki}/server.key;
  map $http_authorization $bearer_ok {
    default 0;
{keys}
  }
  server {
    listen 127.0.0.1:{tls} ssl http2;
    location / { grpc_pass grpc://{upstream}; }
  }
  server {
    listen 127.0.0.1:{mtls} ssl http2;
    ssl_client_certificate {pki}/ca.pem;
    ssl_verify_client on;
    location / { grpc_pass grpc://{upstream}; }
  }
  server {
    listen 127.0.0.1:{bearer_tls} ssl http2;
    location / {
      if ($bearer_ok = 0) { return 401; }
      grpc_pass grpc://{upstream};
    }
  }
  server {
    listen 127.0.0.1:{bearer_plain} http2;
    location / {
      if ($bearer_ok = 0) { return 401; }
      grpc_pass grpc://{upstream};
    }
  }
  server {
    listen 127.0.0.1:{faults} http2;
    location / {
      default_type application/grpc;
      add_header grpc-status $http_x_fault always;
      add_header grpc-message "fault injected by the spec's nginx" always;
      return 200 "";
    }
  }
}
]]

local Gateway = {}
Gateway.__index = Gateway

function Gateway:access_log()
  local lines = {}
  for line in (read(self.dir .. '/access.log') or ''):gmatch('[^\n]+') do lines[#lines + 1] = line end
  return lines
end

-- The access-log lines for one listener's port.
function Gateway:requests(port_of)
  local port = port_of:match(':(%d+)$')
  local out = {}
  for _, line in ipairs(self:access_log()) do
    if line:sub(1, #port + 1) == port .. ' ' then out[#out + 1] = line end
  end
  return out
end

function Gateway:stop()
  if self.pid then
    os.execute(('kill -TERM %d 2>/dev/null; for i in $(seq 50); do kill -0 %d 2>/dev/null || break; sleep 0.1; done; kill -KILL %d 2>/dev/null')
      :format(self.pid, self.pid, self.pid))
    self.pid = nil
  end
  os.execute('rm -rf ' .. helper.shell_quote(self.dir))
end

-- Starts nginx in front of `upstream` ("127.0.0.1:PORT"); returns the gateway.
function M.start(pki, upstream, opts)
  opts = opts or {}
  local dir = M.tempdir('temporal-lua-nginx')
  local ports = {}
  for _, name in ipairs({ 'tls', 'mtls', 'bearer_tls', 'bearer_plain', 'faults' }) do
    ports[name] = M.free_port()
  end
  local keys = {}
  for _, k in ipairs(opts.api_keys or {}) do keys[#keys + 1] = ('    "Bearer %s" 1;'):format(k) end
  local conf = CONF:gsub('{(%w+[_%w]*)}', function(name)
    if name == 'dir' then return dir end
    if name == 'pki' then return pki.dir end
    if name == 'upstream' then return upstream end
    if name == 'keys' then return table.concat(keys, '\n') end
    return tostring(assert(ports[name], name))
  end)
  write(dir .. '/nginx.conf', conf)
  local pid = sh(('setsid nginx -p %s -c %s/nginx.conf -g "daemon off;" </dev/null >%s/nginx.out 2>&1 & echo $!')
    :format(helper.shell_quote(dir), helper.shell_quote(dir), helper.shell_quote(dir)))
  local gw = setmetatable({ dir = dir, pid = tonumber(pid:match('%d+')) }, Gateway)
  for name, port in pairs(ports) do gw[name] = '127.0.0.1:' .. port end
  local ok, err = pcall(function()
    for _, port in pairs(ports) do M.wait_port(port, 10) end
  end)
  if not ok then
    local log = (read(dir .. '/error.log') or '') .. (read(dir .. '/nginx.out') or '')
    gw:stop()
    error(tostring(err) .. '\nnginx log:\n' .. log, 2)
  end
  return gw
end

return M
