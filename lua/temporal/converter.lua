--- The data converter: Lua values <-> Temporal payloads, wire-compatible with the
-- Python SDK's default converter (temporalio.converter.DataConverter.default).
--
--   local dc = temporal.converter.new{ codec = my_codec }   -- or converter.default
--   local payloads = dc:to_payloads(compat.pack("hi", nil, 3))  -- nil holes survive
--   local values = dc:from_payloads(payloads)                  -- values.n == 3
--
-- A payload is the Lua form of temporal.api.common.v1.Payload:
--   { metadata = { encoding = "json/plain" }, data = '{"a":1}' }
--
-- Default chain (Python's DefaultPayloadConverter; first converter that accepts wins):
--   binary/null      nil and temporal.null; data empty. Decodes to nil.
--   binary/plain     temporal.binary(s); data = s. Decodes to a plain Lua string (not a
--                    binary wrapper): re-sending it as-is goes out as json/plain.
--   json/protobuf    decode only: the JSON text decoded to tables (proto JSON names,
--                    camelCase); metadata messageType is left to the caller.
--   binary/protobuf  decode only: core.decode(messageType, data) when the type is one
--                    this build knows, otherwise the raw bytes as a string.
--   json/plain       booleans, numbers, strings, tables via core.json_encode: the bytes of
--                    Python's json.dumps(v, separators=(",", ":"), sort_keys=True), exact
--                    int64 and shortest round-trip floats. Strings must be UTF-8 (else an
--                    error pointing at temporal.binary). Table rules are src/json.c's:
--                    empty -> [], use temporal.object{} for {}; temporal.array marks a
--                    list; temporal.null is JSON null inside tables. Decodes with
--                    core.json_decode: arrays and objects come back marked, nested nulls
--                    as temporal.null, a top-level null as nil.
-- Unknown encodings raise an error naming the encoding.
--
-- Pluggable parts (plain functions in tables, no self):
--   encoding converter  { encoding = "x/y", to_payload = function(value, path) -> payload|nil,
--                         from_payload = function(payload) -> value }
--   payload converter   { to_payload = function(value, path) -> payload,
--                         from_payload = function(payload) -> value }
--                       converter.composite_payload_converter{ ... } builds one from a
--                       list of encoding converters (Python's CompositePayloadConverter).
--   codec               { encode = function(payloads) -> payloads,
--                         decode = function(payloads) -> payloads } on lists of payloads,
--                       same length in and out (compression, encryption...).
--   failure converter   see temporal.failure.new.
-- The codec is applied as Python applies it: to every argument/result list, to each memo
-- value, to failure details and encoded attributes; never to search attributes (the
-- server must read those), which also always use the default payload converter.
local core = require("temporal.core")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local failure = require("temporal.failure")

local M = {}

local json_encode, json_decode = core.json_encode, core.json_decode
local json_null = core.json_null

-- ------------------------------------------------------------------ markers

local binary_mt = {
  __name = "temporal.binary",
  -- json_encode refuses unknown __jsontype values: a binary nested in a table fails
  -- instead of silently becoming {"data":...}; to_payload rewords that error.
  __jsontype = "temporal.binary",
  __tostring = function(b) return ("temporal.binary(%d bytes)"):format(#b.data) end,
  __len = function(b) return #b.data end,
  __eq = function(a, b) return a.data == b.data end,
}

--- Wraps a byte string so it travels as binary/plain (Python bytes) instead of a JSON
-- string. `temporal.binary(s).data` is the string.
function M.binary(s)
  if type(s) ~= "string" then
    error("temporal.binary: expected a string, got " .. type(s), 2)
  end
  return setmetatable({ data = s }, binary_mt)
end

--- true for values made by temporal.binary.
function M.is_binary(v)
  return type(v) == "table" and getmetatable(v) == binary_mt
end

--- Marks t (default a new table) as a JSON array: temporal.array{} encodes as [].
function M.array(t)
  if t ~= nil and type(t) ~= "table" then error("temporal.array: expected a table, got " .. type(t), 2) end
  return setmetatable(t or {}, core.json_array_mt)
end

--- Marks t (default a new table) as a JSON object: temporal.object{} encodes as {}.
function M.object(t)
  if t ~= nil and type(t) ~= "table" then error("temporal.object: expected a table, got " .. type(t), 2) end
  return setmetatable(t or {}, core.json_object_mt)
end

--- JSON null inside tables (a Lua table cannot hold nil). At top level it is None.
M.null = json_null

-- ------------------------------------------------------------------ encoding converters

local function metadata_of(payload)
  return type(payload) == "table" and type(payload.metadata) == "table" and payload.metadata or {}
end

-- Where a binary marker sits inside v (for the error message), or nil.
local function find_binary(v, path, seen)
  if type(v) ~= "table" then return nil end
  if getmetatable(v) == binary_mt then return path end
  if seen[v] then return nil end
  seen[v] = true
  for k, x in next, v do
    local p = type(k) == "string" and (path .. "." .. k) or (path .. "[" .. tostring(k) .. "]")
    local found = find_binary(x, p, seen)
    if found then return found end
  end
  return nil
end

M.binary_null_converter = {
  encoding = "binary/null",
  to_payload = function(value)
    if value == nil or value == json_null then
      return { metadata = { encoding = "binary/null" } }
    end
    return nil
  end,
  from_payload = function(payload)
    if payload.data ~= nil and #payload.data > 0 then
      error("expected empty data for binary/null", 0)
    end
    return nil
  end,
}

M.binary_plain_converter = {
  encoding = "binary/plain",
  to_payload = function(value)
    if M.is_binary(value) then
      return { metadata = { encoding = "binary/plain" }, data = value.data }
    end
    return nil
  end,
  from_payload = function(payload)
    return payload.data or ""
  end,
}

M.json_protobuf_converter = {
  encoding = "json/protobuf",
  to_payload = function() return nil end,
  from_payload = function(payload)
    return json_decode(payload.data or "")
  end,
}

M.binary_protobuf_converter = {
  encoding = "binary/protobuf",
  to_payload = function() return nil end,
  from_payload = function(payload)
    local message_type = metadata_of(payload).messageType
    if message_type and pcall(core.message_fields, message_type) then
      return core.decode(message_type, payload.data or "")
    end
    return payload.data or ""
  end,
}

local JSON_TYPES = { boolean = true, number = true, string = true, table = true }

-- The json/plain payload of a value json/plain accepts.
local function json_plain_payload(value, path)
  -- No options table per call: errors are rare, so a failed encode is redone with the
  -- path for its message (encoding is deterministic: it fails the same way).
  local ok, data = pcall(json_encode, value)
  if not ok then
    path = path or "value"
    if path ~= "value" then
      local ok2, data2 = pcall(json_encode, value, { path = path })
      if not ok2 then data = data2 end
    end
    if type(data) == "string" and data:find("__jsontype", 1, true) then
      local at = find_binary(value, path, {})
      if at then
        error(at .. ": temporal.binary cannot be nested inside JSON; pass bytes as a"
          .. " top-level value or encode them (e.g. base64) yourself", 0)
      end
    end
    error(data, 0)
  end
  return { metadata = { encoding = "json/plain" }, data = data }
end

local function json_plain_to_payload(value, path)
  if not (JSON_TYPES[type(value)] or compat.is_boxed_integer(value)) or getmetatable(value) == binary_mt then
    return nil  -- (a string's metatable is the string library's, never binary_mt)
  end
  return json_plain_payload(value, path)
end

local function json_plain_from_payload(payload)
  return json_decode(payload.data or "")
end

M.json_plain_converter = {
  encoding = "json/plain",
  to_payload = json_plain_to_payload,
  from_payload = json_plain_from_payload,
}

-- The original to_payload of the four default converters before json/plain.
local declines = {
  M.binary_null_converter.to_payload, M.binary_plain_converter.to_payload,
  M.json_protobuf_converter.to_payload, M.binary_protobuf_converter.to_payload,
}

--- A fresh list of the default encoding converters, in Python's order.
function M.default_encoding_converters()
  return {
    M.binary_null_converter, M.binary_plain_converter, M.json_protobuf_converter,
    M.binary_protobuf_converter, M.json_plain_converter,
  }
end

local function type_name(v)
  if M.is_binary(v) then return "temporal.binary" end
  return type(v)
end

--- A payload converter that tries each encoding converter in order to encode (first
-- non-nil payload wins) and picks the one named by metadata.encoding to decode.
-- When several converters share an encoding, the first one in the list wins both for
-- encoding and for decoding (prepend yours to override a default).
function M.composite_payload_converter(converters)
  if type(converters) ~= "table" then
    error("composite_payload_converter: expected a list of encoding converters", 2)
  end
  local list, by_encoding = {}, {}
  -- The default chain (the converter tables themselves, in Python's order): a boolean,
  -- number, string or table that is not a temporal.binary is declined by the first four
  -- (while their to_payload are the originals) and goes straight to the fifth, without
  -- four calls that say no.
  local defaults = M.default_encoding_converters()
  local is_default = #converters == #defaults
  for i, c in ipairs(defaults) do is_default = is_default and converters[i] == c end
  for i, c in ipairs(converters) do
    if type(c) ~= "table" or type(c.encoding) ~= "string" or type(c.to_payload) ~= "function"
      or type(c.from_payload) ~= "function" then
      error(("encoding converter %d: needs encoding (string), to_payload and from_payload"
        .. " (functions)"):format(i), 2)
    end
    list[i] = c
    if by_encoding[c.encoding] == nil then by_encoding[c.encoding] = c end
  end
  return {
    encoding_converters = list,
    to_payload = function(value, path)
      local t = type(value)
      if is_default and JSON_TYPES[t] and (t ~= "table" or getmetatable(value) ~= binary_mt)
        and list[1].to_payload == declines[1] and list[2].to_payload == declines[2]
        and list[3].to_payload == declines[3] and list[4].to_payload == declines[4] then
        local to_payload = list[5].to_payload
        -- json/plain's own to_payload would check the type again: straight to the encoding
        if to_payload == json_plain_to_payload then return json_plain_payload(value, path) end
        local p = to_payload(value, path)
        if p ~= nil then return p end
        error(("%s: no payload converter accepts a value of type %s"):format(path or "value", type_name(value)), 0)
      end
      for _, c in ipairs(list) do
        local p = c.to_payload(value, path)
        if p ~= nil then return p end
      end
      error(("%s: no payload converter accepts a value of type %s"):format(path or "value", type_name(value)), 0)
    end,
    from_payload = function(payload)
      if type(payload) ~= "table" then
        error("expected a payload table, got " .. type(payload), 0)
      end
      local metadata, encoding = payload.metadata, nil
      if type(metadata) == "table" then encoding = metadata.encoding end
      if encoding == nil then error("payload has no metadata 'encoding'", 0) end
      local c = by_encoding[encoding]
      if c == nil then error(("unknown payload encoding '%s'"):format(encoding), 0) end
      return c.from_payload(payload)
    end,
  }
end

M.default_payload_converter = M.composite_payload_converter(M.default_encoding_converters())
local default_payload_converter = M.default_payload_converter
local default_from_payload = default_payload_converter.from_payload

-- ------------------------------------------------------------------ DataConverter

local DataConverter = {}
DataConverter.__index = DataConverter
DataConverter.__name = "temporal.DataConverter"
M.DataConverter = DataConverter

local function check_fns(v, name, fns)
  if v == nil then return end
  if type(v) ~= "table" then error(("%s: expected a table, got %s"):format(name, type(v)), 3) end
  for _, f in ipairs(fns) do
    if type(v[f]) ~= "function" then
      error(("%s: needs a function field '%s'"):format(name, f), 3)
    end
  end
end

local NEW_OPTIONS = {
  payload_converter = true, encoding_converters = true, codec = true, failure_converter = true,
}

--- A data converter. opts (all optional):
--   payload_converter    replaces the whole default chain ({ to_payload, from_payload })
--   encoding_converters  list of encoding converters tried before the default ones
--   codec                { encode(payloads) -> payloads, decode(payloads) -> payloads }
--   failure_converter    { to_failure(err, pc), from_failure(f, pc) }; default
--                        temporal.failure.default
--   local dc = temporal.converter.new{ encoding_converters = { my_converter }, codec = zip }
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("DataConverter: options must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not NEW_OPTIONS[k] then error(("DataConverter: unknown option '%s'"):format(tostring(k)), 2) end
  end
  if opts.payload_converter and opts.encoding_converters then
    error("DataConverter: give payload_converter or encoding_converters, not both", 2)
  end
  check_fns(opts.payload_converter, "payload_converter", { "to_payload", "from_payload" })
  check_fns(opts.codec, "codec", { "encode", "decode" })
  check_fns(opts.failure_converter, "failure_converter", { "to_failure", "from_failure" })
  local pc = opts.payload_converter
  if opts.encoding_converters ~= nil then
    if type(opts.encoding_converters) ~= "table" then
      error("encoding_converters: expected a list, got " .. type(opts.encoding_converters), 2)
    end
    local list = {}
    for _, c in ipairs(opts.encoding_converters) do list[#list + 1] = c end
    for _, c in ipairs(M.default_encoding_converters()) do list[#list + 1] = c end
    local ok, built = pcall(M.composite_payload_converter, list)
    if not ok then error("encoding_converters: " .. tostring(built), 2) end
    pc = built
  end
  return setmetatable({
    payload_converter = pc or M.default_payload_converter,
    codec = opts.codec,
    failure_converter = opts.failure_converter or failure.default,
  }, DataConverter)
end
DataConverter.new = M.new

local function run_codec(codec, fn_name, payloads)
  local out = codec[fn_name](payloads)
  if type(out) ~= "table" or #out ~= #payloads then
    error(("codec.%s must return a list of %d payloads, got %s"):format(
      fn_name, #payloads, type(out) == "table" and (#out .. " payloads") or type(out)), 0)
  end
  return out
end

function DataConverter:_encode_list(payloads)
  if self.codec and #payloads > 0 then return run_codec(self.codec, "encode", payloads) end
  return payloads
end

function DataConverter:_decode_list(payloads)
  if self.codec and #payloads > 0 then return run_codec(self.codec, "decode", payloads) end
  return payloads
end

-- "args[i]", made once per index (names the argument in errors).
local arg_paths = setmetatable({}, { __index = function(t, i)
  local s = ("args[%d]"):format(i)
  t[i] = s
  return s
end })

-- The count of a list of no value or one (keys 1 and n at most), the usual arguments and
-- results, read with a few raw lookups; nil for anything else (failure.count_values then
-- counts it, or says what is wrong with it).
local function small_count(args)
  local n, k = args.n, next(args)
  if n == nil then
    if k == nil then return 0 end
    if k == 1 and next(args, 1) == nil then return 1 end
    return nil
  end
  if n ~= 0 and n ~= 1 then return nil end
  while k ~= nil do
    if k ~= "n" and not (k == 1 and n == 1) then return nil end
    k = next(args, k)
  end
  return n == 1 and 1 or 0
end

--- Values -> list of payloads (codec applied). args is a sequence; args.n (table.pack)
-- counts nil holes. Errors name the argument: "args[2].name: ...".
function DataConverter:to_payloads(args)
  if args == nil then return {} end
  if type(args) ~= "table" then error("to_payloads: expected a list of values, got " .. type(args), 2) end
  local n = small_count(args) or failure.count_values(args, "args", 2)
  local to_payload = self.payload_converter.to_payload
  local payloads
  if n == 1 then -- the usual single argument: a list made at its size (no rehash)
    payloads = { (to_payload(args[1], "args[1]")) }
  else
    payloads = {}
    for i = 1, n do
      payloads[i] = to_payload(args[i], arg_paths[i])
    end
  end
  if self.codec then return self:_encode_list(payloads) end
  return payloads
end

--- List of payloads (or a Payloads message { payloads = ... }) -> values with .n.
function DataConverter:from_payloads(payloads)
  if payloads == nil then return { n = 0 } end
  if type(payloads) ~= "table" then error("from_payloads: expected a list of payloads, got " .. type(payloads), 2) end
  local inner = payloads.payloads
  if inner ~= nil and type(inner) == "table" then payloads = inner end
  if self.codec then payloads = self:_decode_list(payloads) end
  local n = #payloads
  local values
  local pc = self.payload_converter
  -- The default converter with its json/plain decoding as it came: a json/plain payload
  -- goes straight to json_decode (what the composite converter would call after checking
  -- the payload and looking its encoding up); anything else takes the converter's path.
  local fast = pc == default_payload_converter and pc.from_payload == default_from_payload
    and M.json_plain_converter.from_payload == json_plain_from_payload
  for i = 1, n do
    local p = payloads[i]
    local metadata = fast and type(p) == "table" and p.metadata
    local ok, v
    if metadata and type(metadata) == "table" and metadata.encoding == "json/plain" then
      ok, v = pcall(json_decode, p.data or "")
    else
      ok, v = pcall(pc.from_payload, p)
    end
    if not ok then
      local encoding = metadata_of(payloads[i]).encoding
      error(("payload %d%s: %s"):format(i, encoding and (" (" .. encoding .. ")") or "", tostring(v)), 0)
    end
    if n == 1 then
      values = { v, n = 1 } -- the usual single value: made at its size (no rehash)
    else
      values = values or { n = n }
      values[i] = v
    end
  end
  return values or { n = 0 }
end

--- One value -> one payload (codec applied).
function DataConverter:to_payload(value)
  return self:_encode_list({ self.payload_converter.to_payload(value, "value") })[1]
end

--- One payload -> one value (codec applied).
function DataConverter:from_payload(payload)
  return self:from_payloads({ payload })[1]
end

--- { key = value } -> Memo message { fields = { key = payload } }; each value is encoded
-- on its own (codec applied per value, as Python). temporal.null stores a null.
function DataConverter:to_memo(memo)
  if type(memo) ~= "table" then error("memo: expected a table, got " .. type(memo), 2) end
  local fields = {}
  for k, v in pairs(memo) do
    if type(k) ~= "string" then error("memo: keys must be strings, got " .. type(k), 2) end
    fields[k] = self:_encode_list({ self.payload_converter.to_payload(v, "memo." .. k) })[1]
  end
  return { fields = fields }
end

--- Memo message -> { key = value } (keys whose value decodes to nil are absent).
function DataConverter:from_memo(memo)
  local out = {}
  for k, p in pairs(memo and memo.fields or {}) do
    local ok, v = pcall(self.from_payload, self, p)
    if not ok then error("memo." .. k .. ": " .. tostring(v), 0) end
    out[k] = v
  end
  return out
end

--- Error value -> Failure table, payloads through the codec.
function DataConverter:encode_failure(err)
  local f = self.failure_converter.to_failure(err, self.payload_converter)
  if self.codec then
    failure.map_payloads(f, function(list) return self:_encode_list(list) end)
  end
  return f
end

--- Failure table -> error object (see temporal.failure). The input is not modified.
function DataConverter:decode_failure(f)
  if self.codec then
    f = failure.copy(f)
    failure.map_payloads(f, function(list) return self:_decode_list(list) end)
  end
  return self.failure_converter.from_failure(f, self.payload_converter)
end

-- ------------------------------------------------------------------ search attributes

--- Typed search attribute values. Lua cannot tell a Keyword from a Text string, so
-- values are wrapped: temporal.search_attributes.keyword("x"). temporal.null as a value
-- unsets the attribute (binary/null without a type, as Python sends None).
local sa = {}
M.search_attributes = sa

local sa_mt = { __name = "temporal.search_attribute" }
sa_mt.__tostring = function(v)
  return ("temporal.search_attributes.%s(%s)"):format(v.type, tostring(v.value))
end

local function sa_value(kind, value)
  return setmetatable({ type = kind, value = value }, sa_mt)
end

local function sa_check(cond, name, expected, v)
  if not cond then
    error(("search_attributes.%s: expected %s, got %s"):format(name, expected, type(v)), 3)
  end
end

function sa.keyword(v)
  sa_check(type(v) == "string", "keyword", "a string", v)
  sa_check(compat.utf8_len(v) ~= nil, "keyword", "a UTF-8 string", "invalid UTF-8")
  return sa_value("Keyword", v)
end

function sa.text(v)
  sa_check(type(v) == "string", "text", "a string", v)
  sa_check(compat.utf8_len(v) ~= nil, "text", "a UTF-8 string", "invalid UTF-8")
  return sa_value("Text", v)
end

function sa.int(v)
  local i = compat.tointeger(v)
  sa_check((type(v) == "number" or compat.is_boxed_integer(v)) and i ~= nil, "int", "an integer", v)
  return sa_value("Int", i)
end

function sa.double(v)
  sa_check(type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge, "double", "a finite number", v)
  return sa_value("Double", v + 0.0)
end

function sa.bool(v)
  sa_check(type(v) == "boolean", "bool", "a boolean", v)
  return sa_value("Bool", v)
end

--- epoch seconds (number; fractions kept to the microsecond, as Python's datetime) or
-- an RFC 3339 string sent as-is.
function sa.datetime(v)
  -- years 1..9999 (what the server's RFC 3339 parser accepts); strings must parse
  local ok = (type(v) == "number" and v >= -62135596800 and v < 253402300800)
    or (type(v) == "string" and M.search_attributes.parse_datetime(v) ~= nil)
  if not ok then
    error(("search_attributes.datetime: expected epoch seconds (years 1..9999) or an RFC 3339 string, got %s")
      :format(type(v) == "string" and ("'" .. v .. "'") or tostring(v)), 2)
  end
  return sa_value("Datetime", v)
end

function sa.keyword_list(v)
  sa_check(type(v) == "table", "keyword_list", "a list of strings", v)
  local list = M.array({})
  for k in pairs(v) do
    if compat.math_type(k) ~= "integer" or k < 1 or k > #v then
      error(("search_attributes.keyword_list: expected a list (keys 1..n), found key %s"):format(tostring(k)), 2)
    end
  end
  for i = 1, #v do
    if type(v[i]) ~= "string" then
      error(("search_attributes.keyword_list: item %d is a %s, not a string"):format(i, type(v[i])), 2)
    end
    if compat.utf8_len(v[i]) == nil then
      error(("search_attributes.keyword_list: item %d is not a UTF-8 string"):format(i), 2)
    end
    list[i] = v[i]
  end
  return sa_value("KeywordList", list)
end

--- true for values made by the constructors above.
function sa.is_typed(v)
  return type(v) == "table" and getmetatable(v) == sa_mt
end

-- Python's datetime.isoformat() of an aware UTC datetime: "2024-01-02T03:04:05+00:00",
-- with ".ffffff" when there are microseconds.
local function format_datetime(t)
  local secs = math.floor(t)
  local micros = math.floor((t - secs) * 1e6 + 0.5)
  if micros >= 1000000 then secs, micros = secs + 1, micros - 1000000 end
  local s = os.date("!%Y-%m-%dT%H:%M:%S", secs)
  if micros > 0 then s = s .. (".%06d"):format(micros) end
  return s .. "+00:00"
end
sa.format_datetime = format_datetime

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local idiv = compat.idiv
  local era = idiv(y >= 0 and y or y - 399, 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = idiv(153 * mp + 2, 5) + d - 1
  local doe = yoe * 365 + idiv(yoe, 4) - idiv(yoe, 100) + doy
  return era * 146097 + doe - 719468
end

--- RFC 3339 / ISO 8601 date-time ("2024-01-02T03:04:05.5Z", "...+02:00") -> epoch
-- seconds: an integer when there is no fraction, else a float. nil when unparsable.
local function parse_datetime(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local frac = rest:match("^%.(%d+)")
  if frac then rest = rest:sub(#frac + 2) end
  local offset
  if rest == "Z" or rest == "z" then
    offset = 0
  else
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) - offset
  if frac and frac:match("[1-9]") then return t + tonumber("0." .. frac) end
  return t
end
sa.parse_datetime = parse_datetime

local function sa_payload(name, v)
  if v == json_null then return M.default_payload_converter.to_payload(nil) end
  if not sa.is_typed(v) then
    error(("search attribute '%s': a plain %s is refused (the attribute's type cannot be"
      .. " told from a Lua value); wrap it in its type, e.g. temporal.search_attributes.keyword(v)"
      .. " (keyword, text, int, double, bool, datetime, keyword_list)"):format(name, type(v)), 0)
  end
  local value = v.value
  if v.type == "Datetime" and type(value) == "number" then value = format_datetime(value) end
  local p = M.default_payload_converter.to_payload(value, "search_attributes." .. name)
  -- A Double is a float on the wire, as Python writes it ("2.0"), also where the number
  -- has no float subtype to say so (LuaJIT).
  if v.type == "Double" and p.data:match("^%-?%d+$") then p.data = p.data .. ".0" end
  p.metadata.type = v.type
  return p
end

--- { Name = typed value } -> SearchAttributes message { indexed_fields = { Name = payload } },
-- byte-identical to Python's typed search attributes (metadata type = "Keyword", ...;
-- datetimes as isoformat strings). No codec: the server reads these.
function DataConverter:to_search_attributes(attrs)
  if type(attrs) ~= "table" then error("search_attributes: expected a table, got " .. type(attrs), 2) end
  local fields = {}
  for k, v in pairs(attrs) do
    if type(k) ~= "string" then error("search_attributes: names must be strings, got " .. type(k), 2) end
    local ok, p = pcall(sa_payload, k, v)
    if not ok then error(p, 0) end  -- the message names the attribute; no file:line of ours
    fields[k] = p
  end
  return { indexed_fields = fields }
end

local TYPE_ALIASES = {
  INDEXED_VALUE_TYPE_TEXT = "Text", INDEXED_VALUE_TYPE_KEYWORD = "Keyword",
  INDEXED_VALUE_TYPE_INT = "Int", INDEXED_VALUE_TYPE_DOUBLE = "Double",
  INDEXED_VALUE_TYPE_BOOL = "Bool", INDEXED_VALUE_TYPE_DATETIME = "Datetime",
  INDEXED_VALUE_TYPE_KEYWORD_LIST = "KeywordList",
}

--- SearchAttributes message -> { Name = value }, plus { Name = type } as second result.
-- Datetime -> epoch seconds, KeywordList -> list, Double -> float, single-item lists of
-- other types unwrapped (as Python's typed decoding). Values without a type metadata
-- are decoded as they are.
function DataConverter:from_search_attributes(attrs)
  local out, types = {}, {}
  for k, p in pairs(attrs and attrs.indexed_fields or {}) do
    local ok, v = pcall(M.default_payload_converter.from_payload, p)
    if not ok then error("search attribute '" .. k .. "': " .. tostring(v), 2) end
    local t = metadata_of(p).type
    t = TYPE_ALIASES[t] or t
    if t and t ~= "KeywordList" and type(v) == "table" and #v == 1 then v = v[1] end
    if t == "Datetime" and type(v) == "string" then
      v = parse_datetime(v) or error("search attribute '" .. k .. "': bad datetime " .. v, 2)
    elseif t == "Double" and compat.math_type(v) == "integer" then
      v = v + 0.0
    end
    out[k] = v
    types[k] = t
  end
  return out, types
end

--- SearchAttributes message -> { Name = typed value } (temporal.search_attributes.keyword(v)
-- and friends), the type taken from each payload's "type" metadata, as Python's
-- typed_search_attributes: values without a known type, and lists of several values for
-- a type that is not KeywordList, are left out. A typed value sent back on write keeps its
-- type.
function DataConverter:from_typed_search_attributes(attrs)
  local values, types = self:from_search_attributes(attrs)
  local make = {
    Keyword = sa.keyword, Text = sa.text, Int = sa.int, Double = sa.double, Bool = sa.bool,
    Datetime = sa.datetime, KeywordList = sa.keyword_list,
  }
  local out = {}
  for k, v in pairs(values) do
    local t = types[k]
    local ctor = make[t]
    if ctor and v ~= nil and (t == "KeywordList" or type(v) ~= "table") then
      local ok, typed = pcall(ctor, v)
      if ok then out[k] = typed end
    end
  end
  return out
end

M.default = M.new()

return M
