-- The data converter (lua/temporal/converter.lua): payloads byte-identical to the Python
-- SDK's default converter, nil holes, binary, codecs, user converters, memo and typed
-- search attributes. Pure unit specs; the Python SDK (TEMPORAL_TEST_PYTHON, set by
-- spec/run.sh) is only run to compare bytes.
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local core = require("temporal.core")
local converter = require("temporal.converter")
local py = require("support.python_sdk")
local helper = require("support.helper")
-- LuaJIT has no float subtype: an integral number up to 2^53 is an integer there, so it
-- travels as a JSON integer where Lua 5.4's float 1.0 travels as 1.0.
local function flavour(lua54, luajit) if helper.luajit then return luajit end return lua54 end

local dc = converter.default
local sa = converter.search_attributes
local null = converter.null

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function payload_bytes(p)
  return core.encode("temporal.api.common.v1.Payload", p)
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- rot13 over the serialized payload: a reversible codec that changes the encoding.
local function rot13(s)
  return (s:gsub("%a", function(c)
    local base = c:match("%l") and 97 or 65
    return string.char((c:byte() - base + 13) % 26 + base)
  end))
end

local rot13_codec = {
  encode = function(payloads)
    local out = {}
    for i, p in ipairs(payloads) do
      out[i] = { metadata = { encoding = "binary/rot13" }, data = rot13(payload_bytes(p)) }
    end
    return out
  end,
  decode = function(payloads)
    local out = {}
    for i, p in ipairs(payloads) do
      if p.metadata and p.metadata.encoding == "binary/rot13" then
        out[i] = core.decode("temporal.api.common.v1.Payload", rot13(p.data))
      else
        out[i] = p
      end
    end
    return out
  end,
}

-- The same codec in Python.
local PY_ROT13 = [[
import codecs
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec
def rot13(b):
    return codecs.encode(b.decode("latin-1"), "rot13").encode("latin-1")
class Rot13Codec(PayloadCodec):
    async def encode(self, payloads):
        return [Payload(metadata={"encoding": b"binary/rot13"}, data=rot13(p.SerializeToString())) for p in payloads]
    async def decode(self, payloads):
        out = []
        for p in payloads:
            if p.metadata.get("encoding") == b"binary/rot13":
                q = Payload(); q.ParseFromString(rot13(p.data)); out.append(q)
            else:
                out.append(p)
        return out
]]

describe("converter", function()
  describe("default payload converter", function()
    it("writes the metadata and data Python's default converter writes", function()
      local ps = dc:to_payloads(compat.pack(nil, 1, 1.5, "x", true, converter.binary("\0\255")))
      assert.same({ metadata = { encoding = "binary/null" } }, ps[1])
      assert.same({ metadata = { encoding = "json/plain" }, data = "1" }, ps[2])
      assert.same({ metadata = { encoding = "json/plain" }, data = "1.5" }, ps[3])
      assert.same({ metadata = { encoding = "json/plain" }, data = '"x"' }, ps[4])
      assert.same({ metadata = { encoding = "json/plain" }, data = "true" }, ps[5])
      assert.same({ metadata = { encoding = "binary/plain" }, data = "\0\255" }, ps[6])
    end)

    it("keeps nil holes when args has .n", function()
      local ps = dc:to_payloads(compat.pack(nil, 2, nil))
      assert.equal(3, #ps)
      assert.equal("binary/null", ps[1].metadata.encoding)
      assert.equal("binary/null", ps[3].metadata.encoding)
      local vs = dc:from_payloads(ps)
      assert.equal(3, vs.n)
      assert.is_nil(vs[1])
      assert.equal(2, vs[2])
      assert.is_nil(vs[3])
    end)

    it("without .n counts the sequence; nil and {} give no payloads", function()
      assert.equal(2, #dc:to_payloads({ "a", "b" }))
      assert.same({}, dc:to_payloads(nil))
      assert.same({}, dc:to_payloads({}))
      assert.same({ n = 0 }, dc:from_payloads(nil))
      assert.same({ n = 0 }, dc:from_payloads({}))
    end)

    it("accepts a Payloads message as well as a list", function()
      local vs = dc:from_payloads({ payloads = dc:to_payloads({ 7, "x" }) })
      assert.equal(2, vs.n)
      assert.equal(7, vs[1])
      assert.equal("x", vs[2])
    end)

    it("round-trips numbers exactly (integers stay integers, floats floats)", function()
      local vs = dc:from_payloads(dc:to_payloads(compat.pack(
        compat.maxinteger, compat.mininteger, helper.int64("9007199254740993"), 0.1 + 0.2, 1.0, -0.0, 5e-324)))
      assert.equal(compat.maxinteger, vs[1]); assert.equal("integer", compat.math_type(vs[1]))
      assert.equal(compat.mininteger, vs[2]); assert.equal("integer", compat.math_type(vs[2]))
      assert.equal(helper.int64("9007199254740993"), vs[3]); assert.equal("integer", compat.math_type(vs[3]))
      assert.equal(0.1 + 0.2, vs[4]); assert.equal("float", compat.math_type(vs[4]))
      assert.equal(1, vs[5]); assert.equal(flavour("float", "integer"), compat.math_type(vs[5]))
      assert.equal("-0.0", dc:to_payload(vs[6]).data)
      assert.equal(5e-324, vs[7])
    end)

    it("maps temporal.null at top level to binary/null and keeps it inside tables", function()
      assert.equal("binary/null", dc:to_payload(null).metadata.encoding)
      local p = dc:to_payload({ a = null, b = converter.array({ null, 1, n = 2 }) })
      assert.equal('{"a":null,"b":[null,1]}', p.data)
      local v = dc:from_payload(p)
      assert.equal(null, v.a)
      assert.equal(null, v.b[1])
    end)

    it("tells empty lists from empty objects with temporal.array / temporal.object", function()
      assert.equal("[]", dc:to_payload({}).data)
      assert.equal("[]", dc:to_payload(converter.array()).data)
      assert.equal("{}", dc:to_payload(converter.object()).data)
      assert.equal('{"l":[],"o":{}}', dc:to_payload({ l = {}, o = converter.object{} }).data)
      -- decoded tables keep their kind, so re-encoding gives the same bytes
      local v = dc:from_payload({ metadata = { encoding = "json/plain" }, data = '{"l":[],"o":{}}' })
      assert.equal('{"l":[],"o":{}}', dc:to_payload(v).data)
    end)

    it("decodes binary/plain to a plain Lua string", function()
      local v = dc:from_payload(dc:to_payload(converter.binary("\255\0")))
      assert.equal("string", type(v))
      assert.equal("\255\0", v)
    end)

    it("rejects strings that are not UTF-8, pointing at temporal.binary", function()
      local ok, err = pcall(dc.to_payloads, dc, { "ok", "\255\254" })
      assert.is_false(ok)
      assert.matches("args[2]", err, 1, true)
      assert.matches("not valid UTF-8", err, 1, true)
      assert.matches("temporal.binary", err, 1, true)
      ok, err = pcall(dc.to_payloads, dc, { { name = "\192" } })
      assert.is_false(ok)
      assert.matches("args[1].name", err, 1, true)
    end)

    it("refuses temporal.binary nested in JSON with a clear message", function()
      local ok, err = pcall(dc.to_payloads, dc, { { blob = converter.binary("x") } })
      assert.is_false(ok)
      assert.matches("args[1].blob: temporal.binary cannot be nested", err, 1, true)
    end)

    it("refuses functions, cycles and bad tables naming the argument", function()
      local ok, err = pcall(dc.to_payloads, dc, { 1, print })
      assert.is_false(ok)
      assert.matches("args[2]: no payload converter accepts a value of type function", err, 1, true)
      local cyc = {}
      cyc.self = cyc
      ok, err = pcall(dc.to_payloads, dc, { cyc })
      assert.is_false(ok)
      assert.matches("cyclic", err)
      ok, err = pcall(dc.to_payloads, dc, { { [true] = 1 } })
      assert.is_false(ok)
      assert.matches("args[1]", err, 1, true)
    end)

    it("names unknown encodings and bad binary/null", function()
      local ok, err = pcall(dc.from_payloads, dc, { dc:to_payload(1), { metadata = { encoding = "x/custom" }, data = "?" } })
      assert.is_false(ok)
      assert.matches("payload 2 (x/custom): unknown payload encoding 'x/custom'", err, 1, true)
      ok, err = pcall(dc.from_payload, dc, { metadata = {}, data = "1" })
      assert.is_false(ok)
      assert.matches("no metadata 'encoding'", err, 1, true)
      ok, err = pcall(dc.from_payload, dc, { metadata = { encoding = "binary/null" }, data = "x" })
      assert.is_false(ok)
      assert.matches("empty data", err, 1, true)
      ok, err = pcall(dc.from_payload, dc, { metadata = { encoding = "json/plain" }, data = "{" })
      assert.is_false(ok)
      assert.matches("payload 1 (json/plain)", err, 1, true)
    end)

    it("decodes json/protobuf to the JSON tables and binary/protobuf via the registry", function()
      local v = dc:from_payload({
        metadata = { encoding = "json/protobuf", messageType = "temporal.api.common.v1.WorkflowExecution" },
        data = '{"runId":"r","workflowId":"w"}',
      })
      assert.equal("w", v.workflowId)
      assert.equal("r", v.runId)
      local bytes = core.encode("temporal.api.common.v1.WorkflowExecution", { workflow_id = "w", run_id = "r" })
      v = dc:from_payload({
        metadata = { encoding = "binary/protobuf", messageType = "temporal.api.common.v1.WorkflowExecution" },
        data = bytes,
      })
      assert.same({ workflow_id = "w", run_id = "r" }, v)
      v = dc:from_payload({ metadata = { encoding = "binary/protobuf", messageType = "acme.Unknown" }, data = "\8\1" })
      assert.equal("\8\1", v)
    end)
  end)

  describe("byte-identical to Python's default converter", function()
    -- Lua value and the Python expression for the same value.
    local cases = {
      { nil, "None" },
      { 1, "1" },
      { -7, "-7" },
      { 1.5, "1.5" },
      { 1.0, flavour("1.0", "1") },
      { 0.1 + 0.2, "0.1 + 0.2" },
      { compat.maxinteger, "2**63 - 1" },
      { compat.mininteger, "-2**63" },
      { helper.int64("9007199254740993"), "9007199254740993" },
      { helper.int64("-9007199254740995"), "-9007199254740995" },
      { 1e16, "1e16" },
      { 5e-324, "5e-324" },
      { -0.0, "-0.0" },
      { 123456.789e-10, "123456.789e-10" },
      { true, "True" },
      { false, "False" },
      { "", "''" },
      { "héllo wörld", "'héllo wörld'" },
      { "日本😀", "'日本😀'" },
      { "q\"\\/\b\f\n\r\t\1\127", "'q\"\\\\/\\b\\f\\n\\r\\t\\x01\\x7f'" },
      { "\u{2028}\u{FEFF}", "'\\u2028\\ufeff'" },
      { {}, "[]" },
      { converter.object(), "{}" },
      { { 1, "two", 3.0, { true } }, flavour("[1, 'two', 3.0, [True]]", "[1, 'two', 3, [True]]") },
      { 2 ^ 53, flavour("2.0**53", "2**53") },
      { 2 ^ 53 + 2, "2.0**53 + 2" },
      { { z = 1, a = { ["é"] = null, B = {} }, ["10"] = 2, ["9"] = 3 },
        "{'z': 1, 'a': {'é': None, 'B': []}, '10': 2, '9': 3}" },
      { converter.array({ null, "x", n = 2 }), "[None, 'x']" },
      { { list = {}, dict = converter.object(), nested = { { {} } } }, "{'list': [], 'dict': {}, 'nested': [[[]]]}" },
      { converter.binary("\0\1\255"), "b'\\x00\\x01\\xff'" },
      { converter.binary(""), "b''" },
    }

    it("for ints, floats, unicode, nested, empty list vs dict, None, bool, bytes", function()
      if not py.available() then return pending(py.why_not()) end
      local exprs = {}
      for i, c in ipairs(cases) do exprs[i] = c[2] end
      local out = py.run([[
vals = [ ]] .. table.concat(exprs, ",\n  ") .. [[ ]
pc = DataConverter.default.payload_converter
for p in pc.to_payloads(vals):
    print(p.SerializeToString().hex())
]])
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(#cases, #lines)
      local n = #cases
      local args = { n = n }
      for i, c in ipairs(cases) do args[i] = c[1] end
      local ps = dc:to_payloads(args)
      for i = 1, n do
        assert.equal(lines[i], hex(payload_bytes(ps[i])), "value " .. i .. " (" .. cases[i][2] .. ")")
      end
    end)

    it("decodes what Python writes back to the same Lua values", function()
      if not py.available() then return pending(py.why_not()) end
      local out = py.run([==[
vals = [None, 2**63 - 1, 0.1 + 0.2, 1.0, 'é😀', {'a': [], 'b': {}, 'c': None}, b'\x00\xff', [1, None]]
pc = DataConverter.default.payload_converter
for p in pc.to_payloads(vals):
    print(p.SerializeToString().hex())
]==])
      local ps = {}
      for line in out:gmatch("[^\n]+") do
        ps[#ps + 1] = core.decode("temporal.api.common.v1.Payload", (line:gsub("..", function(h)
          return string.char(tonumber(h, 16))
        end)))
      end
      local vs = dc:from_payloads(ps)
      assert.equal(8, vs.n)
      assert.is_nil(vs[1])
      assert.equal(compat.maxinteger, vs[2])
      assert.equal(0.1 + 0.2, vs[3])
      assert.equal(1, vs[4]); assert.equal(flavour("float", "integer"), compat.math_type(vs[4]))
      assert.equal("é😀", vs[5])
      assert.equal('{"a":[],"b":{},"c":null}', dc:to_payload(vs[6]).data)
      assert.equal(null, vs[6].c)
      assert.equal("\0\255", vs[7])
      assert.equal(null, vs[8][2])
    end)
  end)

  describe("codec", function()
    local cdc = converter.new({ codec = rot13_codec })

    it("is applied to argument lists and undone on decode", function()
      local ps = cdc:to_payloads(compat.pack("Hello", nil, { k = 1 }))
      assert.equal(3, #ps)
      for _, p in ipairs(ps) do assert.equal("binary/rot13", p.metadata.encoding) end
      local vs = cdc:from_payloads(ps)
      assert.equal(3, vs.n)
      assert.equal("Hello", vs[1])
      assert.is_nil(vs[2])
      assert.equal(1, vs[3].k)
      -- without the codec the payloads are unreadable
      local ok, err = pcall(dc.from_payloads, dc, ps)
      assert.is_false(ok)
      assert.matches("binary/rot13", err, 1, true)
    end)

    it("is applied to single payloads and to each memo value", function()
      assert.equal("binary/rot13", cdc:to_payload(1).metadata.encoding)
      assert.equal(1, cdc:from_payload(cdc:to_payload(1)))
      local memo = cdc:to_memo({ a = "x", b = { 1, 2 } })
      assert.equal("binary/rot13", memo.fields.a.metadata.encoding)
      assert.equal("binary/rot13", memo.fields.b.metadata.encoding)
      assert.same({ a = "x", b = { 1, 2 } }, cdc:from_memo(memo))
    end)

    it("is not applied to search attributes", function()
      local sa_msg = cdc:to_search_attributes({ K = sa.keyword("v") })
      assert.equal("json/plain", sa_msg.indexed_fields.K.metadata.encoding)
    end)

    it("must return as many payloads as it was given", function()
      local bad = converter.new({ codec = { encode = function() return {} end, decode = function(p) return p end } })
      local ok, err = pcall(bad.to_payloads, bad, { 1 })
      assert.is_false(ok)
      assert.matches("codec.encode must return a list of 1 payloads", err, 1, true)
    end)

    it("produces payloads the same codec in Python decodes", function()
      if not py.available() then return pending(py.why_not()) end
      local ps = cdc:to_payloads(compat.pack("Hello", nil, { k = 1.5, l = { 1, 2 } }, 2 ^ 53))
      local hexes = {}
      for i, p in ipairs(ps) do hexes[i] = "'" .. hex(payload_bytes(p)) .. "'" end
      local out = py.run(PY_ROT13 .. [[
import asyncio
from temporalio.api.common.v1 import Payload
ps = []
for h in []] .. table.concat(hexes, ",") .. [[]:
    p = Payload(); p.ParseFromString(bytes.fromhex(h)); ps.append(p)
dc = DataConverter(payload_codec=Rot13Codec())
vals = asyncio.run(dc.decode(ps))
print(repr(vals))
]])
      assert.equal("['Hello', None, {'k': 1.5, 'l': [1, 2]}, " .. flavour("9007199254740992.0", "9007199254740992") .. "]",
        out:match("[^\n]+"))
    end)
  end)

  describe("user payload converters", function()
    -- An encoding converter for a Lua "class" the default chain does not know.
    local Point = {}
    Point.__index = Point
    local point_converter = {
      encoding = "json/point",
      to_payload = function(v)
        if getmetatable(v) ~= Point then return nil end
        return { metadata = { encoding = "json/point" }, data = ("[%d,%d]"):format(v.x, v.y) }
      end,
      from_payload = function(p)
        local a = core.json_decode(p.data)
        return setmetatable({ x = a[1], y = a[2] }, Point)
      end,
    }

    it("are tried before the default chain (encoding_converters)", function()
      local pdc = converter.new({ encoding_converters = { point_converter } })
      local ps = pdc:to_payloads(compat.pack(setmetatable({ x = 1, y = 2 }, Point), "plain", nil))
      assert.same({ metadata = { encoding = "json/point" }, data = "[1,2]" }, ps[1])
      assert.equal("json/plain", ps[2].metadata.encoding)
      assert.equal("binary/null", ps[3].metadata.encoding)
      local vs = pdc:from_payloads(ps)
      assert.equal(Point, getmetatable(vs[1]))
      assert.equal(2, vs[1].y)
      assert.equal("plain", vs[2])
    end)

    it("can replace the whole chain (payload_converter)", function()
      local pc = converter.composite_payload_converter({ converter.binary_null_converter, point_converter })
      local pdc = converter.new({ payload_converter = pc })
      assert.equal("json/point", pdc:to_payload(setmetatable({ x = 3, y = 4 }, Point)).metadata.encoding)
      local ok, err = pcall(pdc.to_payloads, pdc, { "str" })
      assert.is_false(ok)
      assert.matches("args[1]: no payload converter accepts a value of type string", err, 1, true)
      ok, err = pcall(pdc.from_payload, pdc, dc:to_payload("x"))
      assert.is_false(ok)
      assert.matches("unknown payload encoding 'json/plain'", err, 1, true)
    end)

    it("can be a plain table with to_payload/from_payload", function()
      local pdc = converter.new({ payload_converter = {
        to_payload = function(v) return { metadata = { encoding = "text/lua" }, data = tostring(v) } end,
        from_payload = function(p) return "got " .. p.data end,
      } })
      assert.equal("got 5", pdc:from_payload(pdc:to_payload(5)))
    end)

    it("rejects bad options naming them", function()
      local ok, err = pcall(converter.new, { codecs = {} })
      assert.is_false(ok)
      assert.matches("unknown option 'codecs'", err, 1, true)
      ok, err = pcall(converter.new, { codec = { encode = print } })
      assert.is_false(ok)
      assert.matches("codec: needs a function field 'decode'", err, 1, true)
      ok, err = pcall(converter.new, { encoding_converters = { { encoding = "x" } } })
      assert.is_false(ok)
      assert.matches("encoding_converters", err, 1, true)
    end)
  end)

  describe("memo", function()
    it("encodes each value as a payload under fields and decodes back", function()
      local m = dc:to_memo({ owner = "ana", n = 3, tags = { "a" }, none = null })
      assert.same({ metadata = { encoding = "json/plain" }, data = '"ana"' }, m.fields.owner)
      assert.equal("3", m.fields.n.data)
      assert.equal("binary/null", m.fields.none.metadata.encoding)
      local back = dc:from_memo(m)
      assert.equal("ana", back.owner)
      assert.equal(3, back.n)
      assert.equal("a", back.tags[1])
      assert.is_nil(back.none)
      assert.same({}, dc:from_memo(nil))
      assert.same({}, dc:from_memo({}))
    end)

    it("rejects non-string keys", function()
      local ok, err = pcall(dc.to_memo, dc, { [1] = "x" })
      assert.is_false(ok)
      assert.matches("memo: keys must be strings", err, 1, true)
    end)
  end)

  describe("search attributes", function()
    local attrs = {
      CustomKeyword = sa.keyword("kw"),
      CustomText = sa.text("some text é"),
      CustomInt = sa.int(compat.maxinteger),
      CustomDouble = sa.double(2),
      CustomBool = sa.bool(true),
      CustomDatetime = sa.datetime(1700000000.25),
      CustomDatetime2 = sa.datetime(1700000000),
      CustomKeywordList = sa.keyword_list({ "a", "b" }),
      CustomEmptyList = sa.keyword_list({}),
    }

    it("writes payloads with metadata type as Python's typed search attributes", function()
      local msg = dc:to_search_attributes(attrs)
      local f = msg.indexed_fields
      assert.same({ metadata = { encoding = "json/plain", type = "Keyword" }, data = '"kw"' }, f.CustomKeyword)
      assert.equal("Text", f.CustomText.metadata.type)
      assert.equal("9223372036854775807", f.CustomInt.data)
      assert.equal("2.0", f.CustomDouble.data)
      assert.equal("true", f.CustomBool.data)
      assert.equal('"2023-11-14T22:13:20.250000+00:00"', f.CustomDatetime.data)
      assert.equal('"2023-11-14T22:13:20+00:00"', f.CustomDatetime2.data)
      assert.equal('["a","b"]', f.CustomKeywordList.data)
      assert.equal("[]", f.CustomEmptyList.data)
    end)

    it("matches Python's encode_typed_search_attribute_value byte for byte", function()
      if not py.available() then return pending(py.why_not()) end
      local out = py.run([[
from datetime import datetime, timezone
from temporalio.common import SearchAttributeKey as K
import temporalio.converter as tc
pairs = [
  ("CustomKeyword", K.for_keyword("CustomKeyword"), "kw"),
  ("CustomText", K.for_text("CustomText"), "some text é"),
  ("CustomInt", K.for_int("CustomInt"), 2**63 - 1),
  ("CustomDouble", K.for_float("CustomDouble"), 2.0),
  ("CustomBool", K.for_bool("CustomBool"), True),
  ("CustomDatetime", K.for_datetime("CustomDatetime"), datetime.fromtimestamp(1700000000.25, timezone.utc)),
  ("CustomDatetime2", K.for_datetime("CustomDatetime2"), datetime.fromtimestamp(1700000000, timezone.utc)),
  ("CustomKeywordList", K.for_keyword_list("CustomKeywordList"), ["a", "b"]),
  ("CustomEmptyList", K.for_keyword_list("CustomEmptyList"), []),
]
for name, key, value in pairs:
    p = tc.encode_typed_search_attribute_value(key, value)
    md = ",".join(k + "=" + p.metadata[k].hex() for k in sorted(p.metadata))
    print(name, md, p.data.hex())
]])
      local msg = dc:to_search_attributes(attrs)
      local seen = 0
      for name, md, data in out:gmatch("(%S+) (%S+) (%x*)") do
        seen = seen + 1
        local p = msg.indexed_fields[name]
        local keys = {}
        for k in pairs(p.metadata) do keys[#keys + 1] = k end
        table.sort(keys)
        local parts = {}
        for i, k in ipairs(keys) do parts[i] = k .. "=" .. hex(p.metadata[k]) end
        assert.equal(md, table.concat(parts, ","), name)
        assert.equal(data, hex(p.data or ""), name)
      end
      assert.equal(count(attrs), seen)
    end)

    it("decodes by the metadata type", function()
      local values, types = dc:from_search_attributes(dc:to_search_attributes(attrs))
      assert.equal("kw", values.CustomKeyword)
      assert.equal("some text é", values.CustomText)
      assert.equal(compat.maxinteger, values.CustomInt)
      assert.equal(2.0, values.CustomDouble)
      assert.equal(flavour("float", "integer"), compat.math_type(values.CustomDouble))
      assert.is_true(values.CustomBool)
      assert.equal(1700000000.25, values.CustomDatetime)
      assert.equal(1700000000, values.CustomDatetime2)
      assert.equal("integer", compat.math_type(values.CustomDatetime2))
      assert.same({ "a", "b" }, values.CustomKeywordList)
      assert.equal(0, #values.CustomEmptyList)
      assert.equal("KeywordList", types.CustomKeywordList)
      assert.equal("Datetime", types.CustomDatetime)
    end)

    it("decodes what the server sends: Z and nanosecond datetimes, list-wrapped values, whole doubles", function()
      local msg = { indexed_fields = {
        D = { metadata = { encoding = "json/plain", type = "Datetime" }, data = '"2024-01-02T03:04:05.123456789Z"' },
        E = { metadata = { encoding = "json/plain", type = "Datetime" }, data = '"1969-12-31T23:00:00-01:00"' },
        L = { metadata = { encoding = "json/plain", type = "Keyword" }, data = '["only"]' },
        F = { metadata = { encoding = "json/plain", type = "INDEXED_VALUE_TYPE_DOUBLE" }, data = "3" },
        U = { metadata = { encoding = "json/plain" }, data = '"untyped"' },
      } }
      local v = dc:from_search_attributes(msg)
      assert.near(1704164645.123456789, v.D, 1e-6)
      assert.equal(0, v.E)
      assert.equal("only", v.L)
      assert.equal(3.0, v.F)
      assert.equal(flavour("float", "integer"), compat.math_type(v.F))
      assert.equal("untyped", v.U)
      assert.same({}, dc:from_search_attributes(nil))
    end)

    it("unsets with temporal.null and requires typed values", function()
      local msg = dc:to_search_attributes({ Gone = null })
      assert.same({ metadata = { encoding = "binary/null" } }, msg.indexed_fields.Gone)
      local ok, err = pcall(dc.to_search_attributes, dc, { CustomKeyword = "x" })
      assert.is_false(ok)
      -- the whole message, without a file:line of the library in front (issue 16)
      assert.equals("search attribute 'CustomKeyword': a plain string is refused (the attribute's type"
        .. " cannot be told from a Lua value); wrap it in its type, e.g. temporal.search_attributes.keyword(v)"
        .. " (keyword, text, int, double, bool, datetime, keyword_list)", err)
    end)

    it("checks the constructors' arguments", function()
      assert.has_error(function() sa.int(1.5) end, "search_attributes.int: expected an integer, got number")
      assert.has_error(function() sa.keyword(1) end, "search_attributes.keyword: expected a string, got number")
      assert.has_error(function() sa.keyword_list({ "a", 2 }) end,
        "search_attributes.keyword_list: item 2 is a number, not a string")
      assert.equal(3, sa.int(3.0).value)
      assert.equal("integer", compat.math_type(sa.int(3.0).value))
    end)

    it("formats datetimes as Python's isoformat, microseconds rounded", function()
      assert.equal("1970-01-01T00:00:00+00:00", sa.format_datetime(0))
      assert.equal("2023-11-14T22:13:20.000001+00:00", sa.format_datetime(1700000000.000001))
      assert.equal("1969-12-31T23:59:59.500000+00:00", sa.format_datetime(-0.5))
      assert.equal(-0.5, sa.parse_datetime("1969-12-31T23:59:59.500000+00:00"))
      assert.is_nil(sa.parse_datetime("yesterday"))
    end)
  end)

  describe("markers", function()
    it("temporal.binary wraps strings only", function()
      local b = converter.binary("abc")
      assert.is_true(converter.is_binary(b))
      assert.equal("abc", b.data)
      assert.equal("temporal.binary(3 bytes)", tostring(b))
      assert.has_error(function() converter.binary(1) end, "temporal.binary: expected a string, got number")
    end)

    it("are exported by the temporal module", function()
      local temporal = require("temporal")
      assert.equal(converter.binary, temporal.binary)
      assert.equal(converter.array, temporal.array)
      assert.equal(converter.object, temporal.object)
      assert.equal(core.json_null, temporal.null)
      assert.equal(converter.search_attributes, temporal.search_attributes)
      assert.equal(converter.DataConverter, temporal.DataConverter)
      assert.equal(converter, temporal.converter)
    end)
  end)
end)
