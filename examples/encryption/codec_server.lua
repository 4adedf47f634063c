-- A codec server for the Temporal CLI and Web UI: Temporal's remote codec protocol over
-- HTTP (lua-http on cqueues), with the AES-256-GCM codec of codec.lua.
--
--   temporal-lua codec_server.lua [--host 127.0.0.1] [--port 8081] [--origin URL]...
--                                 [--auth 'Bearer <token>'] [--ready-file F]
--   temporal workflow show --workflow-id ID --codec-endpoint http://127.0.0.1:8081 \
--     [--codec-auth 'Bearer <token>']
--
-- POST <anything>/encode and <anything>/decode take and return the JSON form of a
-- temporal.api.common.v1.Payloads message (`{"payloads": [{"metadata": {"encoding":
-- "<base64>"}, "data": "<base64>"}]}`, bytes as base64 as the protobuf JSON mapping
-- writes them). Only the last part of the path counts, so the server can be mounted under
-- any prefix. CORS: requests from an allowed origin (--origin, repeatable; default the
-- dev server's UI at http://localhost:8233 and http://127.0.0.1:8233, and the Web UI's
-- default http://localhost:8080) get the Access-Control-Allow-* headers, preflight
-- OPTIONS included. With --auth, a request whose Authorization header is not exactly that
-- value gets 401. Port 0 picks a free port; the bound address is printed (and written to
-- --ready-file).
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path

-- Debian packages lua-http's pure-Lua files (and its dependencies fifo, basexx,
-- lpeg_patterns) for Lua 5.1-5.3 only; they run unchanged on 5.4 (cqueues, luaossl and
-- lpeg have 5.4 builds).
if not pcall(require, "http.server") then
  package.path = package.path .. ";/usr/share/lua/5.3/?.lua;/usr/share/lua/5.3/?/init.lua" ..
    ";/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
end
local http_server = require("http.server")
local http_headers = require("http.headers")
local core = require("temporal.core")
local codec_mod = require("codec")

local opts = { host = "127.0.0.1", port = 8081, origins = {} }
do
  local i = 1
  while arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--host" or a == "--port" or a == "--origin" or a == "--auth" or a == "--ready-file" then
      if v == nil then error(a .. ": needs a value", 0) end
      if a == "--port" then
        opts.port = math.tointeger(tonumber(v))
        if not opts.port or opts.port < 0 or opts.port > 65535 then error("--port: not a port number: " .. v, 0) end
      elseif a == "--origin" then
        opts.origins[v] = true
      else
        opts[a:sub(3):gsub("-", "_")] = v
      end
      i = i + 2
    else
      error(("unknown argument '%s' (see the comment at the top of codec_server.lua)"):format(a), 0)
    end
  end
  if next(opts.origins) == nil then
    opts.origins = { ["http://localhost:8233"] = true, ["http://127.0.0.1:8233"] = true,
      ["http://localhost:8080"] = true }
  end
end

-- base64 as the protobuf JSON mapping: standard alphabet with padding out; standard or
-- URL-safe, padded or not, in.
local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local DECODE = {}
for i = 1, 64 do DECODE[ALPHABET:byte(i)] = i - 1 end
DECODE[("-"):byte()] = 62
DECODE[("_"):byte()] = 63

local function b64encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local chunk = {}
    for j = 1, 4 do
      local k = (n >> (6 * (4 - j))) & 63
      chunk[j] = ALPHABET:sub(k + 1, k + 1)
    end
    if b == nil then chunk[3], chunk[4] = "=", "=" elseif c == nil then chunk[4] = "=" end
    out[#out + 1] = table.concat(chunk)
  end
  return table.concat(out)
end

local function b64decode(s, where)
  if type(s) ~= "string" then error(where .. ": expected a base64 string", 0) end
  s = s:gsub("=+$", "")
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = DECODE[s:byte(i)]
    if v == nil then error(("%s: invalid base64 character at %d"):format(where, i), 0) end
    bits = (bits << 6) | v
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      out[#out + 1] = string.char((bits >> nbits) & 255)
    end
  end
  return table.concat(out)
end

local function payloads_from_json(body)
  local ok, doc = pcall(core.json_decode, body)
  if not ok then error("request body is not JSON: " .. tostring(doc), 0) end
  if type(doc) ~= "table" then error("request body must be a JSON object with 'payloads'", 0) end
  local list = doc.payloads
  if list == nil then return {} end
  if type(list) ~= "table" then error("payloads must be an array", 0) end
  local payloads = {}
  for i, p in ipairs(list) do
    local where = ("payloads[%d]"):format(i)
    if type(p) ~= "table" then error(where .. " must be an object", 0) end
    local md = {}
    for k, v in pairs(p.metadata or {}) do md[k] = b64decode(v, where .. ".metadata." .. k) end
    payloads[i] = { metadata = md, data = p.data and b64decode(p.data, where .. ".data") or "" }
  end
  return payloads
end

local function payloads_to_json(payloads)
  local list = setmetatable({}, core.json_array_mt)
  for i, p in ipairs(payloads) do
    local md = setmetatable({}, core.json_object_mt)
    for k, v in pairs(p.metadata or {}) do md[k] = b64encode(v) end
    local entry = setmetatable({ metadata = md }, core.json_object_mt)
    if p.data ~= nil and p.data ~= "" then entry.data = b64encode(p.data) end
    list[i] = entry
  end
  return core.json_encode(setmetatable({ payloads = list }, core.json_object_mt))
end

local codec = codec_mod.new()

local function respond(stream, status, body, extra)
  local h = http_headers.new()
  h:append(":status", tostring(status))
  for k, v in pairs(extra) do h:append(k, v) end
  if body then
    h:append("content-type", "application/json")
    h:append("content-length", tostring(#body))
  end
  assert(stream:write_headers(h, body == nil))
  if body then assert(stream:write_chunk(body, true)) end
end

local function error_body(message)
  return core.json_encode({ message = message })
end

local function handle(stream)
  local req = assert(stream:get_headers())
  local method = req:get(":method")
  local path = (req:get(":path") or "/"):gsub("%?.*$", "")
  local op = path:match("/(encode)/?$") or path:match("/(decode)/?$")
  local cors = {}
  local origin = req:get("origin")
  if origin and opts.origins[origin] then
    cors["access-control-allow-origin"] = origin
    cors["access-control-allow-methods"] = "POST, OPTIONS"
    cors["access-control-allow-headers"] = "content-type, x-namespace, authorization"
    cors["access-control-allow-credentials"] = "true"
    cors["vary"] = "Origin"
  end
  if method == "OPTIONS" then return respond(stream, op and 204 or 404, nil, cors) end
  if not op then return respond(stream, 404, error_body("not found: use POST /encode or /decode"), cors) end
  if method ~= "POST" then
    cors["allow"] = "POST, OPTIONS"
    return respond(stream, 405, error_body(method .. " not allowed: use POST"), cors)
  end
  if opts.auth and req:get("authorization") ~= opts.auth then
    return respond(stream, 401, error_body("unauthorized"), cors)
  end
  local body = stream:get_body_as_string(30)
  if body == nil then return respond(stream, 400, error_body("could not read the request body"), cors) end
  local ok, result = pcall(function() return payloads_to_json(codec[op](payloads_from_json(body))) end)
  if not ok then return respond(stream, 400, error_body(tostring(result)), cors) end
  return respond(stream, 200, result, cors)
end

local server = assert(http_server.listen({
  host = opts.host,
  port = opts.port,
  onstream = function(_, stream)
    local ok, err = pcall(handle, stream)
    if not ok then
      io.stderr:write("codec server: ", tostring(err), "\n")
      pcall(respond, stream, 500, error_body("internal error"), {})
    end
  end,
  onerror = function(_, context, op, err)
    io.stderr:write(("codec server: %s on %s: %s\n"):format(op, tostring(context), tostring(err)))
  end,
}))
assert(server:listen())
local _, host, port = server:localname()
io.stdout:write(("codec server on http://%s:%d\n"):format(host, port))
io.stdout:flush()
if opts.ready_file then
  local f = assert(io.open(opts.ready_file, "w"))
  f:write(("%d\n"):format(port))
  f:close()
end
assert(server:loop())
