--- Client configuration from the environment and TOML profiles, as the other Temporal
-- SDKs and the CLI read it.
--
--   local client = temporal.connect()                 -- uses all of this
--   local target, opts = temporal.envconfig.load_connect_config{ profile = "prod" }
--
-- The file: TEMPORAL_CONFIG_FILE, else $XDG_CONFIG_HOME/temporalio/temporal.toml
-- (~/.config/temporalio/temporal.toml). A missing default file is no error; a missing
-- file that was named is. The profile: TEMPORAL_PROFILE, else "default"; a named profile
-- must exist. The file's shape:
--
--   [profile.default]
--   address = "localhost:7233"
--   namespace = "default"
--   api_key = "..."
--   [profile.default.tls]                 # any setting here turns TLS on
--   disabled = false
--   server_name = "..."
--   server_ca_cert_path = "..."           # or server_ca_cert_data = "-----BEGIN..."
--   client_cert_path = "..."              # or client_cert_data
--   client_key_path = "..."               # or client_key_data
--   [profile.default.grpc_meta]
--   my-header = "value"
--
-- A profile's `codec` table (the remote codec settings of other SDKs) is accepted and
-- ignored: this client does not support it.
--
-- Environment variables override the profile: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
-- TEMPORAL_API_KEY, TEMPORAL_TLS (true/false), TEMPORAL_TLS_SERVER_NAME,
-- TEMPORAL_TLS_SERVER_CA_CERT_PATH / _DATA, TEMPORAL_TLS_CLIENT_CERT_PATH / _DATA,
-- TEMPORAL_TLS_CLIENT_KEY_PATH / _DATA, TEMPORAL_GRPC_META_<NAME> (metadata key
-- <name> in lower case, '_' as '-'). An api_key turns TLS on unless TLS is disabled.
-- Errors name the setting and the file, never a key's value.
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local M = {}

---------------------------------------------------------------- TOML (the subset config files use)

local ESCAPES = { b = "\b", t = "\t", n = "\n", f = "\f", r = "\r", ['"'] = '"', ["\\"] = "\\" }

-- The escapes of a basic string resolved; nil, message for a bad one.
local function unescape(raw)
  local out, i = {}, 1
  while i <= #raw do
    local c = raw:sub(i, i)
    if c ~= "\\" then
      out[#out + 1] = c
      i = i + 1
    else
      local e = raw:sub(i + 1, i + 1)
      if ESCAPES[e] then
        out[#out + 1] = ESCAPES[e]
        i = i + 2
      elseif e == "u" or e == "U" then
        local n = e == "u" and 4 or 8
        local hex = raw:sub(i + 2, i + 1 + n)
        if not hex:match("^" .. ("%x"):rep(n) .. "$") then return nil, "bad \\" .. e .. " escape" end
        out[#out + 1] = compat.utf8_char(tonumber(hex, 16))
        i = i + 2 + n
      else
        return nil, "bad escape \\" .. e
      end
    end
  end
  return table.concat(out)
end

-- Parses TOML text into nested tables: tables, dotted keys, strings (basic, literal,
-- multi-line), integers, floats, booleans, arrays and inline tables. Dates are kept as
-- strings. Raises "<name>:<line>: <message>".
function M.parse_toml(src, name)
  local pos, len = 1, #src
  local root = {}
  local current = root
  local defined = {}

  local function peek(n) return src:sub(pos, pos + (n or 1) - 1) end
  local function skip_ws() pos = src:find("[^ \t]", pos) or len + 1 end
  local function skip_ws_nl()
    while true do
      pos = src:find("[^ \t\r\n]", pos) or len + 1
      if peek() == "#" then pos = src:find("\n", pos) or len + 1 else return end
    end
  end
  local function fail(msg)
    local line = 1
    for _ in src:sub(1, pos - 1):gmatch("\n") do line = line + 1 end
    error(("%s:%d: %s"):format(name or "toml", line, msg), 0)
  end

  -- The end of a basic string's body from `from`: the index of its closing quote(s).
  local function basic_close(from, quote)
    local i = from
    while true do
      local c = src:sub(i, i)
      if c == "" then return nil end
      if c == "\\" then
        i = i + 2
      elseif src:sub(i, i + #quote - 1) == quote then
        return i
      else
        i = i + 1
      end
    end
  end

  local function parse_string()
    local q3 = peek(3)
    if q3 == '"""' or q3 == "'''" then
      pos = pos + 3
      if peek() == "\n" then pos = pos + 1 elseif peek(2) == "\r\n" then pos = pos + 2 end
      local close = q3 == "'''" and src:find(q3, pos, true) or basic_close(pos, q3)
      if not close then fail("unterminated multi-line string") end
      -- up to two quotes may end the body right before the closing three
      while src:sub(close + 3, close + 3) == q3:sub(1, 1) do close = close + 1 end
      local raw = src:sub(pos, close - 1)
      pos = close + 3
      if q3 == "'''" then return raw end
      local v, err = unescape((raw:gsub("\\[ \t]*\r?\n[ \t\r\n]*", "")))
      if not v then fail(err) end
      return v
    end
    local q = peek()
    pos = pos + 1
    local close = q == "'" and src:find("'", pos, true) or (q == '"' and basic_close(pos, '"'))
    local raw = close and src:sub(pos, close - 1)
    if not raw or raw:find("\n") then fail("unterminated string") end
    pos = close + 1
    if q == "'" then return raw end
    local v, err = unescape(raw)
    if not v then fail(err) end
    return v
  end

  local function parse_key()
    skip_ws()
    local c = peek()
    if c == '"' or c == "'" then return parse_string() end
    local s, e = src:find("^[%w_%-]+", pos)
    if not s then fail("expected a key") end
    pos = e + 1
    return src:sub(s, e)
  end

  local function parse_dotted_key()
    local keys = { parse_key() }
    skip_ws()
    while peek() == "." do
      pos = pos + 1
      keys[#keys + 1] = parse_key()
      skip_ws()
    end
    return keys
  end

  local parse_value

  local function parse_array()
    pos = pos + 1
    local arr = {}
    while true do
      skip_ws_nl()
      if peek() == "]" then pos = pos + 1; return arr end
      arr[#arr + 1] = parse_value()
      skip_ws_nl()
      if peek() == "," then pos = pos + 1
      elseif peek() == "]" then pos = pos + 1; return arr
      else fail("expected ',' or ']' in an array") end
    end
  end

  local function descend(t, keys, last_is_value)
    for i = 1, #keys - (last_is_value and 1 or 0) do
      local k = keys[i]
      if t[k] == nil then t[k] = {} end
      if type(t[k]) ~= "table" then fail("key '" .. k .. "' is already a value") end
      t = t[k]
    end
    return t
  end

  local function parse_inline_table()
    pos = pos + 1
    local t = {}
    skip_ws()
    if peek() == "}" then pos = pos + 1; return t end
    while true do
      local keys = parse_dotted_key()
      if peek() ~= "=" then fail("expected '='") end
      pos = pos + 1
      skip_ws()
      local parent = descend(t, keys, true)
      parent[keys[#keys]] = parse_value()
      skip_ws()
      if peek() == "," then pos = pos + 1
      elseif peek() == "}" then pos = pos + 1; return t
      else fail("expected ',' or '}' in an inline table") end
    end
  end

  function parse_value()
    local c = peek()
    if c == '"' or c == "'" then return parse_string() end
    if c == "[" then return parse_array() end
    if c == "{" then return parse_inline_table() end
    if src:find("^true", pos) then pos = pos + 4; return true end
    if src:find("^false", pos) then pos = pos + 5; return false end
    local s, e = src:find("^[%w_%+%-%.:]+", pos)
    if not s then fail("expected a value") end
    local word = src:sub(s, e)
    pos = e + 1
    local clean = word:gsub("_", "")
    if clean:match("^[+-]?%d+$") then return compat.tointeger(tonumber(clean)) or tonumber(clean) end
    if clean:match("^0x%x+$") or clean:match("^0o[0-7]+$") or clean:match("^0b[01]+$") then
      local base = ({ x = 16, o = 8, b = 2 })[clean:sub(2, 2)]
      return tonumber(clean:sub(3), base)
    end
    local f = tonumber(clean)
    if f and not clean:match("^[+-]?0x") then return f end
    if clean == "inf" or clean == "+inf" then return math.huge end
    if clean == "-inf" then return -math.huge end
    if clean:match("^[+-]?nan$") then return 0 / 0 end
    if word:match("^%d%d%d%d%-%d%d%-%d%d") or word:match("^%d%d:%d%d") then
      -- A date or time: keep the rest of it (a space may separate date and time).
      local rest = src:match("^ %d%d:[%d:%.]+[Z%d:+%-]*", pos)
      if rest then pos = pos + #rest; word = word .. rest end
      return word
    end
    fail("bad value '" .. word .. "'")
  end

  while true do
    skip_ws_nl()
    if pos > len then break end
    if peek(2) == "[[" then
      pos = pos + 2
      local keys = parse_dotted_key()
      if peek(2) ~= "]]" then fail("expected ']]'") end
      pos = pos + 2
      local parent = descend(root, keys, true)
      local k = keys[#keys]
      parent[k] = parent[k] or {}
      local item = {}
      table.insert(parent[k], item)
      current = item
    elseif peek() == "[" then
      pos = pos + 1
      local keys = parse_dotted_key()
      if peek() ~= "]" then fail("expected ']'") end
      pos = pos + 1
      local path = table.concat(keys, "\0")
      if defined[path] then fail("table [" .. table.concat(keys, ".") .. "] defined twice") end
      defined[path] = true
      current = descend(root, keys, false)
    else
      local keys = parse_dotted_key()
      if peek() ~= "=" then fail("expected '=' after a key") end
      pos = pos + 1
      skip_ws()
      local parent = descend(current, keys, true)
      local k = keys[#keys]
      if parent[k] ~= nil then fail("key '" .. k .. "' defined twice") end
      parent[k] = parse_value()
    end
    skip_ws()
    if peek() == "#" then pos = src:find("\n", pos) or len + 1 end
    local c = peek()
    if c ~= "" and c ~= "\n" and c ~= "\r" then fail("unexpected text after a value") end
  end
  return root
end

---------------------------------------------------------------- profiles

local function read_file(path, what)
  local f, err = io.open(path, "rb")
  if not f then error(("%s: cannot read %s"):format(what, err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

--- The process environment as a table (Linux: /proc/self/environ), for the
-- TEMPORAL_GRPC_META_* variables that cannot be looked up by a known name.
function M.environ()
  local env = {}
  local f = io.open("/proc/self/environ", "rb")
  if f then
    local all = f:read("a")
    f:close()
    for k, v in all:gmatch("([^=%z]+)=([^%z]*)") do env[k] = v end
  end
  return env
end

local function default_config_file(getenv)
  local base = getenv("XDG_CONFIG_HOME")
  if not base or base == "" then
    local home = getenv("HOME")
    if not home or home == "" then return nil end
    base = home .. "/.config"
  end
  return base .. "/temporalio/temporal.toml"
end

local PROFILE_KEYS = { address = "string", namespace = "string", api_key = "string", tls = "table",
  grpc_meta = "table", codec = "table" }
local TLS_KEYS = { disabled = "boolean", server_name = "string", disable_host_verification = "boolean",
  server_ca_cert_path = "string", server_ca_cert_data = "string", client_cert_path = "string",
  client_cert_data = "string", client_key_path = "string", client_key_data = "string" }

local function check_section(t, known, where)
  for k, v in pairs(t) do
    local want = known[k]
    if not want then error(("%s: unknown setting '%s'"):format(where, tostring(k)), 0) end
    if type(v) ~= want then
      error(("%s.%s: expected a %s, got %s"):format(where, k, want, type(v)), 0)
    end
  end
end

local function truthy(name, v)
  local l = v:lower()
  if l == "1" or l == "true" then return true end
  if l == "0" or l == "false" then return false end
  error(("%s: expected true or false"):format(name), 0)
end

--- Loads one profile: { address, namespace, api_key, tls = {...}, grpc_meta = {...} }.
-- opts: profile (name), config_file (path), config_data (TOML text instead of a file),
-- disable_file, disable_env, env (a table used instead of the process environment).
function M.load_profile(opts)
  opts = opts or {}
  local env = opts.env
  local getenv = env and function(k) return env[k] end or os.getenv
  local profile_name = opts.profile or (not opts.disable_env and getenv("TEMPORAL_PROFILE")) or nil
  if profile_name == "" then profile_name = nil end
  local profile = {}
  if not opts.disable_file then
    local text, where = opts.config_data, "config_data"
    if not text then
      local path = opts.config_file or (not opts.disable_env and getenv("TEMPORAL_CONFIG_FILE")) or nil
      if path == "" then path = nil end
      if path then
        text, where = read_file(path, "TEMPORAL_CONFIG_FILE " .. path), path
      else
        path = default_config_file(getenv)
        local f = path and io.open(path, "rb")
        if f then text, where = f:read("a"), path; f:close() end
      end
    end
    if text then
      local doc = M.parse_toml(text, where)
      local profiles = doc.profile or {}
      local found = profiles[profile_name or "default"]
      if found == nil and profile_name then
        error(("%s: profile '%s' not found"):format(where, profile_name), 0)
      end
      if found then
        local section = ("%s: [profile.%s]"):format(where, profile_name or "default")
        check_section(found, PROFILE_KEYS, section)
        if found.tls then check_section(found.tls, TLS_KEYS, section .. ".tls") end
        for k, v in pairs(found.grpc_meta or {}) do
          if type(v) ~= "string" then error(("%s.grpc_meta.%s: expected a string"):format(section, k), 0) end
        end
        for k, v in pairs(found) do profile[k] = v end
        local tls = {}
        for k, v in pairs(found.tls or {}) do tls[k] = v end
        profile.tls = found.tls and tls or nil
        local meta = {}
        for k, v in pairs(found.grpc_meta or {}) do meta[k:lower()] = v end
        profile.grpc_meta = meta
      end
    end
  end
  profile.grpc_meta = profile.grpc_meta or {}
  if not opts.disable_env then
    local function set(var, field)
      local v = getenv(var)
      if v ~= nil and v ~= "" then profile[field] = v end
    end
    set("TEMPORAL_ADDRESS", "address")
    set("TEMPORAL_NAMESPACE", "namespace")
    set("TEMPORAL_API_KEY", "api_key")
    local function tls_set(var, field, bool)
      local v = getenv(var)
      if v == nil or v == "" then return end
      profile.tls = profile.tls or {}
      if bool then v = truthy(var, v) end
      profile.tls[field] = v
      -- a path from the environment replaces data from the file, and data a path
      local item, kind = field:match("^(.*)_(%a+)$")
      if kind == "path" or kind == "data" then
        local other = item .. (kind == "path" and "_data" or "_path")
        if (getenv("TEMPORAL_TLS_" .. other:upper()) or "") == "" then profile.tls[other] = nil end
      end
    end
    local tls_env = getenv("TEMPORAL_TLS")
    if tls_env ~= nil and tls_env ~= "" then
      profile.tls = profile.tls or {}
      profile.tls.disabled = not truthy("TEMPORAL_TLS", tls_env)
    end
    tls_set("TEMPORAL_TLS_SERVER_NAME", "server_name")
    tls_set("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "server_ca_cert_path")
    tls_set("TEMPORAL_TLS_SERVER_CA_CERT_DATA", "server_ca_cert_data")
    tls_set("TEMPORAL_TLS_CLIENT_CERT_PATH", "client_cert_path")
    tls_set("TEMPORAL_TLS_CLIENT_CERT_DATA", "client_cert_data")
    tls_set("TEMPORAL_TLS_CLIENT_KEY_PATH", "client_key_path")
    tls_set("TEMPORAL_TLS_CLIENT_KEY_DATA", "client_key_data")
    tls_set("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "disable_host_verification", true)
    for k, v in pairs(env or M.environ()) do
      local name = k:match("^TEMPORAL_GRPC_META_(.+)$")
      if name then profile.grpc_meta[name:lower():gsub("_", "-")] = v end
    end
  end
  return profile
end

-- The PEM text of a TLS item given as *_path or *_data (not both).
local function pem(tls, item)
  local path, data = tls[item .. "_path"], tls[item .. "_data"]
  if path and data then
    error(("tls: %s_path and %s_data are both set; use one"):format(item, item), 0)
  end
  if path then return read_file(path, "tls." .. item .. "_path " .. path) end
  return data
end

--- Connect arguments from a profile: target, opts for temporal.connect.
function M.to_connect_config(profile)
  local opts = {}
  opts.namespace = profile.namespace
  opts.api_key = profile.api_key
  if next(profile.grpc_meta or {}) then opts.rpc_metadata = profile.grpc_meta end
  local tls = profile.tls
  if tls then
    if tls.disabled then
      opts.tls = false
    else
      if tls.disable_host_verification then
        error("tls.disable_host_verification: not supported by this client (use server_name)", 0)
      end
      local t = {
        domain = tls.server_name,
        server_root_ca_cert = pem(tls, "server_ca_cert"),
        client_cert = pem(tls, "client_cert"),
        client_private_key = pem(tls, "client_key"),
      }
      if (t.client_cert == nil) ~= (t.client_private_key == nil) then
        error("tls: a client certificate needs its key and a key its certificate", 0)
      end
      opts.tls = next(t) and t or true
    end
  end
  return profile.address or "localhost:7233", opts
end

--- load_profile(opts) then to_connect_config: returns target, connect options.
function M.load_connect_config(opts)
  return M.to_connect_config(M.load_profile(opts))
end

return M
