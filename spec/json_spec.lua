-- Exact JSON codec (src/json.c): the number path of the json/plain payload converter.
-- Byte-for-byte agreement with the Python SDK, which writes
--   json.dumps(value, separators=(",", ":"), sort_keys=True)
-- is checked against python3 itself when it is on PATH.
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local core = require("temporal.core")
local helper = require("support.helper")
local int64 = helper.int64
-- LuaJIT has no float subtype: integral numbers up to 2^53 (but -0.0) are integers there.
local function flavour(lua54, luajit) if helper.luajit then return luajit end return lua54 end
local rawlen = rawget(_G, "rawlen") or function(t) return #t end  -- LuaJIT: no __len on tables anyway
local encode, decode = core.json_encode, core.json_decode
local null, array_mt, object_mt = core.json_null, core.json_array_mt, core.json_object_mt

local function encode_error(value, opts)
  local ok, err = pcall(encode, value, opts)
  assert(not ok, "expected an error, got " .. tostring(err))
  return err
end

local function decode_error(text, opts)
  local ok, err = pcall(decode, text, opts)
  assert(not ok, "expected an error decoding " .. string.format("%q", text))
  return err
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function command_exists(name)
  local p = io.popen("command -v " .. name .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  return out ~= ""
end

local has_python = command_exists("python3")

-- A Python expression for a Lua value: exact for floats (hex), bytes-exact for strings.
local function py_expr(v)
  local t = type(v)
  if v == null or v == nil then return "None" end
  if t == "boolean" then return v and "True" or "False" end
  if compat.math_type(v) == "integer" then return string.format("%d", v) end
  if t == "number" then return string.format("float.fromhex('%a')", v) end
  if t == "string" then
    return "bytes.fromhex('" .. v:gsub(".", function(c) return string.format("%02x", c:byte()) end) .. "').decode()"
  end
  assert(t == "table")
  local parts = {}
  if getmetatable(v) == object_mt or (next(v) ~= nil and rawlen(v) == 0) then
    for k, x in pairs(v) do parts[#parts + 1] = py_expr(k) .. ":" .. py_expr(x) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  for i = 1, (v.n or #v) do parts[i] = py_expr(v[i]) end
  return "[" .. table.concat(parts, ",") .. "]"
end

-- What the Python SDK writes for each value, one python3 run for the whole list.
local function python_dumps(values)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  for _, v in ipairs(values) do f:write(py_expr(v), "\n") end
  f:close()
  local script = 'import json,sys\nfor line in open(sys.argv[1]):\n'
    .. '    print(json.dumps(eval(line), separators=(",", ":"), sort_keys=True))\n'
  local p = io.popen("python3 -c " .. shell_quote(script) .. " " .. path)
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  os.remove(path)
  assert(#out == #values, "python3 printed " .. #out .. " lines for " .. #values .. " values")
  return out
end

-- A double from 64 random bits.
local bits_to_double
if helper.luajit then
  local ffi = require("ffi")
  local u = ffi.new("union { uint64_t i; double d; }")
  bits_to_double = function()
    local hi
    -- Never NaN or infinity bits (exponent all ones): LuaJIT's interpreter takes a NaN with
    -- a payload read through the FFI for one of its own tagged values.
    repeat hi = math.random(0, 0xFFFFFFFF) until math.floor(hi / 2 ^ 20) % 2048 ~= 2047
    u.i = ffi.cast("uint64_t", hi) * 4294967296 + math.random(0, 0xFFFFFFFF)
    return u.d
  end
else
  bits_to_double = function()
    return string.unpack("<d", string.pack("<i8", math.random(compat.mininteger, compat.maxinteger)))
  end
end
local function random_double()
  while true do
    local x = bits_to_double()
    if x == x and x ~= math.huge and x ~= -math.huge then return x end
  end
end

describe("json_encode", function()
  describe("integers", function()
    it("are exact over the whole int64 range", function()
      assert.equal("0", encode(0))
      assert.equal("-1", encode(-1))
      assert.equal("9223372036854775807", encode(compat.maxinteger))
      assert.equal("-9223372036854775808", encode(compat.mininteger))
      assert.equal("9007199254740993", encode(int64("9007199254740993")))
      assert.equal("-9007199254740993", encode(int64("-9007199254740993")))
      assert.equal("[1,-2,3]", encode({1, -2, 3}))
    end)
  end)

  describe("floats", function()
    it("use the shortest digits that read back, laid out like Python's repr", function()
      assert.equal("0.30000000000000004", encode(0.1 + 0.2))
      assert.equal("0.1", encode(0.1))
      assert.equal(flavour("1.0", "1"), encode(1.0))
      assert.equal(flavour("100.0", "100"), encode(100.0))
      assert.equal("-0.0", encode(-0.0))
      assert.equal(flavour("0.0", "0"), encode(0.0))
      assert.equal("1e+300", encode(1e300))
      assert.equal("5e-324", encode(5e-324))
      assert.equal("1.7976931348623157e+308", encode(1.7976931348623157e308))
      assert.equal("2.2250738585072014e-308", encode(2.2250738585072014e-308))
      assert.equal("1e+16", encode(1e16))
      assert.equal(flavour("1000000000000000.0", "1000000000000000"), encode(1e15))
      assert.equal(flavour("9007199254740992.0", "9007199254740992"), encode(2.0 ^ 53))
      assert.equal("9007199254740994.0", encode(2.0 ^ 53 + 2))
      assert.equal("0.0001", encode(1e-4))
      assert.equal("1e-05", encode(1e-5))
      assert.equal("9.223372036854776e+18", encode(2.0 ^ 63))
      assert.equal("0.3333333333333333", encode(1 / 3))
    end)

    it("read back to the same double", function()
      for _ = 1, 2000 do
        local x = random_double()
        local y = decode(encode(x))
        assert(compat.math_type(y) == compat.math_type(x) and (y == x) and (1 / y > 0) == (1 / x > 0), encode(x))
      end
    end)

    it("refuse NaN and infinities, which are not JSON", function()
      assert.matches("value: NaN is not valid JSON", encode_error(0 / 0), 1, true)
      assert.matches("value.x: inf is not valid JSON", encode_error({x = math.huge}), 1, true)
      assert.matches("value[1]: -inf is not valid JSON", encode_error({-math.huge}), 1, true)
    end)
  end)

  describe("strings", function()
    it("escape like Python's ensure_ascii", function()
      assert.equal('"plain"', encode("plain"))
      assert.equal('"q\\" b\\\\ s/"', encode('q" b\\ s/'))
      assert.equal('"\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f"', encode("\b\f\n\r\t\0\31\127"))
      assert.equal('"caf\\u00e9 \\u20ac \\ud83d\\ude00 \\uffff \\udbff\\udfff"',
        encode("caf\u{e9} \u{20ac} \u{1F600} \u{FFFF} \u{10FFFF}"))
    end)

    it("must be valid UTF-8; the error names the path", function()
      local err = encode_error({name = "\xff"}, {path = "args[1]"})
      assert.matches("args[1].name: string is not valid UTF-8", err, 1, true)
      assert.matches("use temporal.binary for bytes", err, 1, true)
      for _, bad in ipairs{"\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80", "\xf5\x80\x80\x80",
                           "ok\xe0\x80\xaf"} do
        assert.matches("not valid UTF-8", encode_error(bad), 1, true)
      end
      assert.matches('value.a: key "\\xFF" is not valid UTF-8', encode_error({a = {["\xff"] = 1}}), 1, true)
    end)
  end)

  describe("tables", function()
    it("with keys 1..n are arrays; with string keys, objects with sorted keys", function()
      assert.equal('[1,"a",true,false]', encode({1, "a", true, false}))
      assert.equal('{"a":1,"b":[2],"c":{"d":"e"}}', encode({c = {d = "e"}, b = {2}, a = 1}))
      -- byte order of UTF-8 = code point order = Python's sort_keys
      assert.equal('{"Z":1,"a":2,"z":3,"\\u00e9":4,"\\uffff":5,"\\ud83d\\ude00":6}',
        encode({["\u{1F600}"] = 6, ["\u{FFFF}"] = 5, ["\u{e9}"] = 4, z = 3, a = 2, Z = 1}))
      assert.equal('{"a":1,"ab":2,"b":3}', encode({b = 3, ab = 2, a = 1}))
    end)

    it("encode an empty plain table as [] and an empty marked object as {}", function()
      assert.equal("[]", encode({}))
      assert.equal("{}", encode(setmetatable({}, object_mt)))
      assert.equal("[]", encode(setmetatable({}, array_mt)))
      assert.equal('{"a":[],"b":{}}', encode({a = {}, b = setmetatable({}, object_mt)}))
    end)

    it("honour __jsontype in any metatable and opts.array_mt / opts.object_mt", function()
      assert.equal("{}", encode(setmetatable({}, {__jsontype = "object", __index = {}})))
      assert.equal("[]", encode(setmetatable({}, {__jsontype = "array"})))
      local mine = {}
      assert.equal("{}", encode(setmetatable({}, mine), {object_mt = mine}))
      assert.equal("[[]]", encode({setmetatable({}, mine)}, {array_mt = mine}))
      assert.matches("__jsontype must be", encode_error(setmetatable({}, {__jsontype = "list"})))
      assert.matches("marked as object has integer keys",
        encode_error(setmetatable({1}, object_mt)))
      assert.matches("marked as array has string keys",
        encode_error(setmetatable({a = 1}, array_mt)))
    end)

    it("use n (table.pack) for nil holes, written as null", function()
      assert.equal("[1,null,3]", encode(compat.pack(1, nil, 3)))
      assert.equal("[1,null,null]", encode(compat.pack(1, nil, nil)))
      assert.equal("[null,null]", encode(setmetatable({n = 2}, array_mt)))
      assert.equal("[]", encode(setmetatable({n = 0}, array_mt)))
      -- a table holding only n is an object: {n = 3} is data, not three nils
      assert.equal('{"n":3}', encode({n = 3}))
      assert.equal('{"n":0}', encode({n = 0}))
      assert.matches("beyond its length n = 1", encode_error({1, 2, n = 1}))
    end)

    it("refuse holes without n, mixed keys and non-string keys", function()
      assert.matches("value: array has holes", encode_error({1, nil, 3}))
      assert.matches("mixes integer keys and string keys", encode_error({1, a = 2}))
      assert.matches("value.t: table has float key 1.5", encode_error({t = {[1.5] = 1}}))
      assert.matches("integer key 0", encode_error({[0] = 1}))
      assert.matches("integer key %-1", encode_error({[-1] = 1}))
      assert.matches("boolean key true", encode_error({[true] = 1}))
      assert.matches("key of type table", encode_error({[{}] = 1}))
      assert.matches('value%["a b"%]%[2%]: cannot encode a value of type function',
        encode_error({["a b"] = {1, print}}))
    end)

    it("write json_null as null and nil at top level as null", function()
      assert.equal("null", encode(nil))
      assert.equal("null", encode(null))
      assert.equal('[null,{"a":null}]', encode({null, {a = null}}))
    end)

    it("refuse cycles but accept shared tables", function()
      local t = {}
      t.self = {t}
      assert.equal("cyclic table at value.self[1]", encode_error(t))
      local shared = {1}
      assert.equal('{"a":[1],"b":[1]}', encode({a = shared, b = shared}))
    end)

    it("limit nesting to max_depth (default 100)", function()
      local function nest(n)
        local v = 1
        for _ = 1, n do v = {v} end
        return v
      end
      assert.equal(string.rep("[", 100) .. "1" .. string.rep("]", 100), encode(nest(100)))
      assert.matches("nested deeper than max_depth %(100%)", encode_error(nest(101)))
      assert.matches("max_depth %(3%)", encode_error(nest(4), {max_depth = 3}))
      assert.equal(1000, #encode(nest(500), {max_depth = 500}) - 1)
      assert.matches("max_depth must be between", encode_error(1, {max_depth = 0}))
      assert.matches("max_depth must be between", encode_error(1, {max_depth = 5000}))
    end)

    it("refuse functions, threads and userdata", function()
      assert.matches("value: cannot encode a value of type function", encode_error(print))
      assert.matches("value.co: cannot encode a value of type thread",
        encode_error({co = coroutine.create(print)}))
      assert.matches("value%[1%]: cannot encode a value of type userdata", encode_error({io.stdout}))
    end)

    it("reject unknown options", function()
      assert.matches("unknown option max_dept", encode_error(1, {max_dept = 3}))
    end)
  end)

  describe("matches Python's json.dumps byte for byte", function()
    if not has_python then
      pending("python3 is not on PATH")
      return
    end

    it("for scalars, strings and nested values", function()
      local controls = {}
      for c = 0, 127 do controls[#controls + 1] = string.char(c) end
      local values = {
        0, -1, compat.maxinteger, compat.mininteger, int64("9007199254740993"), 2 ^ 53, 2 ^ 53 + 2,
        0.1 + 0.2, 1.0, -0.0, 1e300, 5e-324, 1e16, 1e15, 1e-4, 1e-5, 2.0 ^ 63, 1e22, 123456789.123,
        1.7976931348623157e308, 2.2250738585072014e-308, 2.225073858507201e-308, 1 / 3, -1.5e-7,
        true, false, null,
        "", table.concat(controls), "caf\u{e9} \u{20ac} \u{1F600} \u{FFFF} \u{10FFFF} \u{2028} \u{7FF} \u{800}",
        setmetatable({}, object_mt), {},
        {b = {1, 2.5, {c = "x"}}, a = null, ["\u{1F600}"] = {}, ["\u{FFFF}"] = 1, ["\u{e9}"] = 2, Z = -0.0},
      }
      local expected = python_dumps(values)
      for i, v in ipairs(values) do
        assert.equal(expected[i], encode(v), "value #" .. i .. " " .. py_expr(v))
      end
    end)

    it("for every power of two and thousands of random doubles", function()
      local powers, randoms, decimals = {}, {}, {}
      for e = -1074, 1023 do powers[#powers + 1] = 2.0 ^ e end
      for i = 1, 5000 do randoms[i] = random_double() end
      for i = 1, 3000 do decimals[i] = math.random(1, 10 ^ math.random(1, 17)) / 10 ^ math.random(0, 20) end
      local expected = python_dumps({powers, randoms, decimals})
      for i, list in ipairs({powers, randoms, decimals}) do
        local got = encode(list)
        if got ~= expected[i] then
          local mine, theirs = decode(got), decode(expected[i])
          for j = 1, #mine do
            assert.equal(encode(theirs[j]), encode(mine[j]), string.format("%a", list[j]))
          end
        end
        assert.equal(expected[i], got)
      end
    end)

    it("and decoding Python's output then encoding it again gives the same bytes", function()
      local values = {
        {}, setmetatable({}, object_mt), {null}, {a = null}, {{}, setmetatable({}, object_mt)},
        {x = {1, 2.5, "s", true, false, null, -0.0, 1e-7}}, "\u{1F600}\n", compat.mininteger,
      }
      for _, s in ipairs(python_dumps(values)) do
        assert.equal(s, encode(decode(s)))
      end
    end)
  end)
end)

describe("json_decode", function()
  it("reads integers exactly and other numbers as floats", function()
    assert.equal(compat.maxinteger, decode("9223372036854775807"))
    assert.equal(compat.mininteger, decode("-9223372036854775808"))
    assert.equal(int64("9007199254740993"), decode("9007199254740993"))
    assert.equal(int64("-9007199254740993"), decode("-9007199254740993"))
    assert.equal("integer", compat.math_type(decode("1")))
    assert.equal("integer", compat.math_type(decode("-0")))
    assert.equal(flavour("float", "integer"), compat.math_type(decode("1.0")))
    assert.equal(flavour("float", "integer"), compat.math_type(decode("1E2")))
    assert.equal("float", compat.math_type(decode("-0.0")))
    assert.equal("float", compat.math_type(decode("1.5")))
    assert.equal(100.0, decode("1e2"))
    assert.equal(0.30000000000000004, decode("0.30000000000000004"))
    assert.equal(5e-324, decode("5e-324"))
    assert.equal(0.0, decode("1e-400"))
    local negzero = decode("-0.0")
    assert.equal(-math.huge, 1 / negzero)
  end)

  it("reads short decimals (at most 15 digits, exponent within 22) as strtod does #lua54", function()
    -- decode's fast path (one exact multiplication or division) against Lua's tonumber,
    -- which is strtod: the same double for every form and sign. The fast path is C shared
    -- by both flavours; the test builds its inputs with Lua 5.4's integer tostring (LuaJIT
    -- would print 15-digit numbers with an exponent), so it runs in the 5.4 pass.
    for _ = 1, 20000 do
      local m = math.random(0, 10 ^ math.random(1, 15) - 1)
      local frac = math.random(0, 20)
      local s = tostring(m)
      if frac > 0 then
        s = ("0"):rep(math.max(0, frac + 1 - #s)) .. s
        s = s:sub(1, #s - frac) .. "." .. s:sub(#s - frac + 1)
      end
      if math.random() < 0.3 then s = s .. (math.random() < 0.5 and "e" or "E-") .. math.random(0, 25) end
      if math.random() < 0.5 then s = "-" .. s end
      local x = decode(s)
      local want = tonumber(s)  -- a float when s has '.' or an exponent, as decode's
      assert.equal(math.type(want), math.type(x), s)
      assert(x == want and (1 / x > 0) == (1 / want > 0), s .. " -> " .. ("%a"):format(x) .. ", strtod " .. ("%a"):format(want))
    end
  end)

  it("refuses integers beyond int64 unless big_int = 'float'", function()
    assert.matches('integer 9223372036854775808 does not fit a 64%-bit Lua integer.*big_int = "float"',
      decode_error("9223372036854775808"))
    assert.matches("integer %-9223372036854775809 does not fit", decode_error("-9223372036854775809"))
    assert.matches("integer 1180591620717411303424 does not fit", decode_error("[1180591620717411303424]"))
    local x = decode("1180591620717411303424", {big_int = "float"})
    assert.equal("float", compat.math_type(x))
    assert.equal(2.0 ^ 70, x)
    assert.matches("big_int must be", decode_error("1", {big_int = "string"}))
  end)

  it("reads strings with every escape and checks UTF-8", function()
    assert.equal('q" b\\ s/ \b\f\n\r\t', decode('"q\\" b\\\\ s\\/ \\b\\f\\n\\r\\t"'))
    assert.equal("caf\u{e9}\u{e9} \u{1F600}", decode('"caf\\u00e9\\u00E9 \\ud83d\\ude00"'))
    assert.equal("a\0b", decode('"a\\u0000b"'))
    assert.equal("caf\u{e9} \u{1F600}", decode('"caf\u{e9} \u{1F600}"'))
    assert.equal("\127", decode('"\127"'))
  end)

  it("gives arrays and objects their marker metatables and nulls json_null", function()
    local v = decode('{"a":[1,null,3],"b":{},"c":[],"d":null}')
    assert.equal(object_mt, getmetatable(v))
    assert.equal(array_mt, getmetatable(v.a))
    assert.equal(3, #v.a)
    assert.equal(null, v.a[2])
    assert.equal(object_mt, getmetatable(v.b))
    assert.equal(array_mt, getmetatable(v.c))
    assert.equal(null, v.d)
    assert.is_nil(decode("null"))
    assert.is_nil(decode(" null "))
  end)

  it("keeps the last of duplicate keys, as Python", function()
    assert.equal(2, decode('{"a":1,"a":2}').a)
  end)

  it("accepts whitespace around tokens", function()
    assert.equal('{"a":[1,2]}', encode(decode(' \t\r\n{ "a" : [ 1 , 2 ] } \n')))
  end)

  it("round-trips exactly", function()
    for _, s in ipairs{"[]", "{}", "[null]", '{"a":null}', "[[],{}]", '{"a":[1,2.5,"x",true,false]}',
                       '"\\u00e9\\ud83d\\ude00"', "-9223372036854775808", "1e-05", "1e+16", "-0.0",
                       "0.30000000000000004", '{"n":3}', "[[[]]]"} do
      assert.equal(s, encode(decode(s)))
    end
    local v = decode('{"a":[],"b":{}}')
    v.a[1] = 1
    assert.equal('{"a":[1],"b":{}}', encode(v))
    table.remove(v.a)
    assert.equal('{"a":[],"b":{}}', encode(v))
  end)

  it("rejects what is not strict JSON", function()
    local bad = {
      "", " ", "[1,]", '{"a":1,}', "[1 2]", '{"a" 1}', "{a:1}", "{1:2}", "'x'", "[", "]", "{",
      "01", "-01", "1.", ".5", "+1", "-", "1e", "1e+", "0x10", "1.5.2", "--1",
      "NaN", "Infinity", "-Infinity", "nan", "tru", "nul", "True", "undefined",
      "[1] x", "1 2", '"a" "b"',
      '"\\x"', '"\\u12"', '"\\u12G4"', '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"', '"\\ud800x"',
      '"a\tb"', '"\1"', '"\31"', '"unterminated', '"\\', '"\xff"', '"\xc0\x80"', '"\xed\xa0\x80"',
      "\xef\xbb\xbf1", "1e400", "-1e400",
    }
    for _, text in ipairs(bad) do
      assert.matches("^json_decode: .* at line %d+ column %d+ %(byte %d+%)$", decode_error(text))
    end
    assert.matches("leading zero", decode_error("01"))
    assert.matches("lone surrogate \\ud800", decode_error('"\\ud800"'), 1, true)
    assert.matches("raw control character", decode_error('"a\tb"'))
    assert.matches("byte order mark", decode_error("\xef\xbb\xbf1"))
    assert.matches("out of the range of a double", decode_error("1e400"))
    assert.matches("after the JSON value at line 2 column 2", decode_error("[1]\n x"))
  end)

  it("limits nesting to max_depth (default 100)", function()
    assert.equal(array_mt, getmetatable(decode(string.rep("[", 100) .. string.rep("]", 100))))
    assert.matches("nested deeper than max_depth %(100%)", decode_error(string.rep("[", 101) .. string.rep("]", 101)))
    assert.matches("max_depth %(2%)", decode_error('{"a":{"b":[]}}', {max_depth = 2}))
    assert.matches("nested deeper", decode_error(string.rep("[", 100000)))
  end)

  it("rejects unknown options and non-string input", function()
    assert.matches("unknown option bigint", decode_error("1", {bigint = "float"}))
    assert.is_false(pcall(decode, {}))
  end)
end)

describe("JSON numbers under a locale with a decimal comma", function()
  -- Lua's own number formatting follows setlocale(); the codec must not.
  local check = [[
    local core = require("temporal.core")
    assert(os.setlocale(LOCALE), "no such locale")
    -- LuaJIT formats numbers itself, whatever the locale: only Lua 5.4 shows it took effect
    assert(jit or tostring(0.5) == "0,5", "locale has no decimal comma")
    assert(core.json_encode({0.5, 1e-7, 2.5e20, 1.0}) == (jit and "[0.5,1e-07,2.5e+20,1]" or "[0.5,1e-07,2.5e+20,1.0]"),
      core.json_encode({0.5}))
    local v = core.json_decode("[0.5,1e-7,-2.25]")
    assert(v[1] == 0.5 and v[2] == 1e-7 and v[3] == -2.25, "decode")
    print("ok")
  ]]
  local candidates = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "ru_RU.UTF-8"}

  local function find_locale()
    local saved = os.setlocale(nil, "numeric")
    for _, name in ipairs(candidates) do
      if os.setlocale(name, "numeric") then
        os.setlocale(saved, "numeric")
        return name
      end
    end
  end

  it("encodes and decodes with '.'", function()
    local name = find_locale()
    if name then
      local saved = os.setlocale(nil, "numeric")
      local ok, err = pcall(load((check:gsub("LOCALE", string.format("%q", name)):gsub('print%("ok"%)', ""))))
      os.setlocale(saved, "numeric")
      assert(ok, err)
      return
    end
    -- No such locale installed: build one with localedef and run the check in a child
    -- interpreter (LOCPATH is read from the environment).
    local lua = helper.luajit and "luajit" or "lua5.4"
    if not (command_exists("localedef") and command_exists(lua)) then
      pending("no locale with a decimal comma and no localedef to build one")
      return
    end
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. " && localedef -i de_DE -f UTF-8 " .. dir
      .. "/de_DE.UTF-8 >/dev/null 2>&1") or true)
    local script = "package.cpath = " .. string.format("%q", package.cpath) .. "\n"
      .. check:gsub("LOCALE", '"de_DE.UTF-8"')
    local p = io.popen("LOCPATH=" .. dir .. " " .. lua .. " -e " .. shell_quote(script) .. " 2>&1")
    local out = p:read("a")
    p:close()
    os.execute("rm -rf " .. dir)
    if out:match("no such locale") then
      pending("localedef could not build de_DE.UTF-8")
      return
    end
    assert.equal("ok\n", out)
  end)
end)

describe("large payloads", function()
  it("round-trip 1 MiB", function()
    local records = {}
    for i = 1, 16000 do
      records[i] = {id = i, name = "customer " .. i, score = i * 0.37, tags = {"a", "\u{e9}"}, ok = i % 2 == 0}
    end
    local s = encode(records)
    assert.is_true(#s > 1000000)
    assert.equal(s, encode(decode(s)))
  end)
end)

describe("decoding a large input (on credit from the collector)", function()
  -- 64 KiB and more of JSON: past the size from which json.c lowers the Lua 5.4 collector's
  -- debt while it builds the value and hands the credit back at the next decode.
  local function big(tail)
    local parts = {}
    for i = 1, 2000 do parts[i] = ('{"id":%d,"name":"user-%d","tags":["a","b"]}'):format(i, i) end
    return "[" .. table.concat(parts, ",") .. tail
  end

  it("gives the same value and leaves the collector running", function()
    local s = big("]")
    assert.is_true(#s > 65536)
    local v = decode(s)
    assert.equal(2000, #v)
    assert.equal("user-1999", v[1999].name)
    assert.equal(s, encode(v))
    assert.is_true(collectgarbage("isrunning"))
  end)

  it("leaves the collector running when the input is malformed", function()
    local s = big(",}")
    local ok, err = pcall(decode, s)
    assert.is_false(ok)
    assert.equal(("json_decode: expected a JSON value but found character '}' at line 1 column %d (byte %d)")
      :format(#s, #s), err)
    assert.is_true(collectgarbage("isrunning"))
  end)

  it("runs no collection in a collector the program stopped #lua54", function()
    local s = big("]")
    local function decode_kib() -- the heap's growth over one decode (the value dropped)
      local before = collectgarbage("count")
      local v = decode(s)
      assert.equal(2000, #v)
      return collectgarbage("count") - before
    end
    collectgarbage("collect")
    local size = decode_kib() -- leaves a credit to hand back at the next decode
    collectgarbage("stop")
    local ok, grown = pcall(decode_kib)
    local running = collectgarbage("isrunning")
    collectgarbage("restart")
    assert.is_true(ok, grown)
    assert.is_false(running)
    -- no step ran: the first value, garbage by now, was not freed while the second was made
    -- (which reuses its strings, still interned: less than a whole value)
    assert.is_true(grown > 0.5 * size, ("grew by %.0f KiB, a value is %.0f KiB"):format(grown, size))
  end)

  it("keeps memory bounded when large values are decoded and dropped #lua54", function()
    -- The incremental collector paces its work by the bytes allocated: each decode's
    -- credit must come back (the generational one collects young garbage wholesale).
    local mode = collectgarbage("incremental")
    finally(function() collectgarbage(mode) end)
    local s = big("]")
    collectgarbage("collect")
    local base = collectgarbage("count")
    local size
    do
      local one = decode(s)
      size = collectgarbage("count") - base
      assert.equal(2000, #one)
    end
    local function high_after(n) -- the heap's highest growth over n decodes
      local high = 0
      for _ = 1, n do
        decode(s)
        high = math.max(high, collectgarbage("count") - base)
      end
      return high
    end
    local high100 = high_after(100)
    local high300 = math.max(high100, high_after(200))
    -- 300 values were made (300 x size). The collector kept up: the heap's high-water mark
    -- stopped rising after the first cycles (it grows by what the collector's pause allows
    -- over the heap the process already holds, and a few values), where a collector
    -- falling behind would have it grow with the number of values.
    local msg = ("grew by %.0f KiB over 100 decodes, %.0f KiB over 300, from %.0f KiB; a value is %.0f KiB")
      :format(high100, high300, base, size)
    assert.is_true(high300 < 1.5 * high100 + 2 * size or high300 < 2 * base + 10 * size, msg)
    assert.is_true(high300 < 100 * size, msg)
  end)
end)

describe("object keys (decoded through a small cache of key strings)", function()
  it("come out right when many keys share cache slots", function()
    -- "id" and "email" fall in one slot of the cache; 300 other keys make every slot
    -- hold several keys in turn
    local list = {}
    for i = 1, 300 do
      list[i] = { id = i, email = "e" .. i, ["k" .. i] = i, ["key_" .. (i % 7)] = -i }
    end
    local s = encode(list)
    for _ = 1, 3 do
      local v = decode(s)
      for i = 1, 300 do
        assert.equal(i, v[i].id)
        assert.equal("e" .. i, v[i].email)
        assert.equal(i, v[i]["k" .. i])
        assert.equal(-i, v[i]["key_" .. (i % 7)])
      end
      assert.equal(s, encode(v))
    end
  end)
end)

-- The encoder writes a small object whose keys (bytes, traversal order) are those of the
-- last object at its level from that object's sorted keys; the decoder first tries, for
-- each member, the key the last object at that depth had there. Both must give exactly
-- what the general paths give, whatever the objects of a list have in common.
describe("lists of objects sharing keys", function()
  -- The same keys set in another order make another traversal of the same keys.
  local function record(i, order)
    local t = {}
    local fields = {
      { "id", i }, { "name", "user-" .. i }, { "email", "user" .. i .. "@example.com" },
      { "active", i % 2 == 0 }, { "score", i * 1.5 }, { "tags", { "alpha", "beta" } },
      { "address", { street = i .. " Main Street", city = "Springfield", zip = ("%05d"):format(i) } },
    }
    for _, j in ipairs(order) do t[fields[j][1]] = fields[j][2] end
    return t
  end

  local function varied_list()
    local list, orders = {}, { { 1, 2, 3, 4, 5, 6, 7 }, { 7, 6, 5, 4, 3, 2, 1 }, { 3, 1, 2, 7, 4, 6, 5 } }
    for i = 1, 60 do
      local r = record(i, orders[i % 3 + 1])
      if i % 7 == 0 then r.extra = i end                           -- one key more
      if i % 11 == 0 then r.name = nil end                         -- one key less
      if i % 13 == 0 then r["na\"me"], r["\u{e9}"] = "q", "e" end  -- keys needing escapes
      if i % 17 == 0 then r.emaik = "x" end                        -- a key one byte off another
      if i % 5 == 0 then r.name, r.nbme = nil, r.name end          -- instead of one: same length
      if i % 19 == 0 then r.n = 3 end                              -- n is just a key in an object
      if i % 23 == 0 then                                          -- more than 8 keys
        for k = 1, 6 do r["k" .. k] = k end
      end
      list[i] = r
    end
    return list
  end

  it("encode with every object's keys sorted, as json.dumps(sort_keys=True)", function()
    if not has_python then
      pending("python3 is not on PATH")
      return
    end
    local list = varied_list()
    -- keys of the same lengths, other bytes, in every order
    local pairs_of = { { ab = 1, cd = 2 }, { ba = 1, dc = 2 }, { ab = 3, dc = 4 }, { cd = 5, ab = 6 }, { dc = 7, ba = 8 } }
    local values = { list, { a = list, b = { list[1], list[2] } }, pairs_of }
    local expected = python_dumps(values)
    for i, v in ipairs(values) do assert.equal(expected[i], encode(v)) end
  end)

  it("decode each object with its own keys, however the keys of the last one looked", function()
    local parts = {}
    local keys = { '"id"', '"identity"', '"i\\u0064"', '"i"', '"idx"', '"n\\"m"', '"\\u00e9"', '"\u{e9}"',
                   '"' .. ("k"):rep(40) .. '"', '"' .. ("k"):rep(41) .. '"', '""', '"ab"', '"ba"' }
    local expected = {}
    math.randomseed(7)
    for r = 1, 300 do
      local members, want = {}, {}
      for m = 1, math.random(1, 6) do
        local k = keys[math.random(#keys)]
        members[#members + 1] = k .. ":" .. (r * 10 + m)
        want[decode(k)] = r * 10 + m -- the key alone, decoded on its own
      end
      parts[r] = "{" .. table.concat(members, ",") .. "}"
      expected[r] = want
    end
    local v = decode("[" .. table.concat(parts, ",") .. "]")
    for r = 1, 300 do
      local got = {}
      for k, x in pairs(v[r]) do got[k] = x end
      assert.same(expected[r], got, "object " .. r .. ": " .. parts[r])
    end
  end)

  it("name the object and key of a bad value in any of them", function()
    local list = varied_list()
    list[41].email = "\255"
    assert.matches("value[41].email: string is not valid UTF-8", encode_error(list), 1, true)
    list[41].email = "ok"
    list[42].address.zip = print
    assert.matches("value[42].address.zip: cannot encode a value of type function", encode_error(list), 1, true)
  end)
end)
