-- The LuaJIT flavour (`make LUA=luajit`, OpenResty's LuaJIT 2.1 that nginx's Lua module
-- links): the build links against what that LuaJIT exports, values leave a LuaJIT client
-- byte for byte as they leave the Lua 5.4 one, 64-bit integers stay exact both ways, and
-- `make LUA=luajit install` gives a module plain luajit finds. spec/run.sh runs this file
-- in its LuaJIT pass.
local temporal = require("temporal")
local core = require("temporal.core")
local compat = require("temporal.compat")
local helper = require("support.helper")

local ROOT = assert(os.getenv("PWD"))
local int64 = helper.int64

local function sh(cmd)
  local ok, out, err, code = helper.run({ "sh", "-c", cmd })
  assert(ok, ("%s failed (%s): %s%s"):format(cmd, tostring(code), out, err))
  return out
end

describe("LuaJIT flavour #luajit", function()
  it("runs under OpenResty's LuaJIT, with exact 64-bit integers as int64_t cdata", function()
    assert.equals("LuaJIT", compat.flavour)
    assert.matches("^LuaJIT 2%.1", rawget(_G, "jit").version)
    local max = core.json_decode("9223372036854775807")
    assert.equals("cdata", type(max))
    assert.equals("9223372036854775807LL", tostring(max))
    assert.equals(compat.maxinteger, max)
    assert.equals("number", type(core.json_decode("9007199254740992")))  -- 2^53: still a number
    assert.equals("cdata", type(core.json_decode("-9007199254740993")))
    assert.equals("integer", compat.math_type(max))
    -- what the core accepts: int64/uint64 cdata and integral numbers, nothing rounded
    local ev = "temporal.api.history.v1.HistoryEvent"
    for _, v in ipairs({ int64("9223372036854775807"), int64("-9223372036854775808"), int64("9007199254740993"), 2 ^ 60, 12 }) do
      local back = core.decode(ev, core.encode(ev, { event_id = v })).event_id
      assert.equals(v, back)
    end
    local u = require("ffi").new("uint64_t", 5)
    assert.equals(5, core.decode(ev, core.encode(ev, { event_id = u })).event_id)
    assert.matches("event_id: expected an integer, got 1.5", select(2, pcall(core.encode, ev, { event_id = 1.5 })))
    assert.matches("event_id: expected an integer, got cdata",
      select(2, pcall(core.encode, ev, { event_id = require("ffi").new("uint64_t", -1) })))
  end)

  it("core.so needs only Lua API symbols that libluajit-5.1.so.2 (what nginx links) exports", function()
    local needed = sh("nm -D --undefined-only build/luajit/temporal/core.so | awk '{print $2}' | grep -E '^luaL?_'")
    local lib = sh("ldd /usr/lib/nginx/modules/ngx_http_lua_module.so | awk '/libluajit/ {print $3}'"):match("%S+")
    assert.is_truthy(lib, "nginx's Lua module links libluajit")
    local exported = {}
    for name in sh("nm -D --defined-only " .. lib .. " | awk '{print $3}'"):gmatch("%S+") do exported[name] = true end
    local n = 0
    for name in needed:gmatch("%S+") do
      n = n + 1
      assert.is_true(exported[name] == true, name .. " is not exported by " .. lib)
    end
    assert.is_true(n > 20)
    -- and nothing from Lua 5.4's own library slipped in
    assert.is_nil(needed:match("lua_newuserdatauv") or needed:match("lua_absindex"))
  end)

  it("writes payloads byte-identical to the Lua 5.4 client's (data bytes and metadata)", function()
    -- The same chunk under both flavours; I(s) is an exact 64-bit integer in each.
    local chunk = [[
      local temporal = require("temporal")
      local sa = temporal.search_attributes
      local dc = temporal.converter.default
      local out = {}
      local values = temporal.converter.array({ n = 0 })
      local list = { 0, 1, -7, 2147483648, I("9007199254740993"), I("-9007199254740993"), I("9223372036854775807"),
        I("-9223372036854775808"), 1.5, 0.1 + 0.2, -0.0, 1e300, 5e-324, 2 ^ 53 + 2, 1e16, "h\195\169llo",
        { a = { 1, 2, { b = true } }, z = temporal.null, big = I("-9223372036854775807") },
        temporal.binary("\0\1\255"), temporal.object({}), {}, false }
      for i, v in ipairs(list) do values[i] = v end
      values.n = #list + 1  -- a nil at the end
      for _, p in ipairs(dc:to_payloads(values)) do
        out[#out + 1] = temporal.core.encode("temporal.api.common.v1.Payload", p)
      end
      local attrs = dc:to_search_attributes({ I = sa.int(I("9223372036854775807")), D = sa.double(2),
        F = sa.double(0.5), T = sa.datetime(1700000000.25) })
      for _, k in ipairs({ "I", "D", "F", "T" }) do
        out[#out + 1] = temporal.core.encode("temporal.api.common.v1.Payload", attrs.indexed_fields[k])
      end
      local memo = dc:to_memo({ m = { n = I("9007199254740993"), f = 2.5 } })
      out[#out + 1] = temporal.core.encode("temporal.api.common.v1.Payload", memo.fields.m)
      -- the data bytes and the metadata map: map entries are serialized in table order,
      -- which neither flavour fixes (Lua 5.4 seeds its string hashes per state)
      local function hex(b) return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
      for i, b in ipairs(out) do
        local p = temporal.core.decode("temporal.api.common.v1.Payload", b)
        local md = {}
        for k, v in pairs(p.metadata or {}) do md[#md + 1] = k .. "=" .. hex(v) end
        table.sort(md)
        out[i] = hex(p.data or "") .. " " .. table.concat(md, ",")
      end
      return table.concat(out, "\n")
    ]]
    local lua54 = "local function I(s) return math.tointeger(tonumber(s)) end\n"
      .. "io.write((function() " .. chunk .. " end)())"
    local ok, theirs, err = helper.run({ "lua5.4", "-e", lua54 }, {
      LUA_PATH = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. ROOT .. "/build/?.lua;;",
      LUA_CPATH = ROOT .. "/build/?.so;;",
    })
    assert.is_true(ok, err)
    local mine = assert(load("local I = ...\n" .. chunk))(int64)
    local a, b = {}, {}
    for l in mine:gmatch("[^\n]+") do a[#a + 1] = l end
    for l in theirs:gmatch("[^\n]+") do b[#b + 1] = l end
    assert.equals(27, #a)
    assert.same(b, a)
  end)

  it("sends 64-bit integers a Python workflow receives exactly, and decodes its answer exactly", function()
    local client = temporal.connect(helper.address, { namespace = helper.namespace })
    local r = client:execute_workflow("Echo", {
      id = helper.unique_id("luajit-echo"), task_queue = helper.task_queue,
      args = compat.pack(int64("9223372036854775807"), int64("-9223372036854775808"), int64("9007199254740993"),
        9007199254740992, 0.1 + 0.2, 2.5, "x", nil),
    })
    assert.same({ "int", "int", "int", "int", "float", "float", "str", "NoneType" }, { compat.unpack(r.types, 1, 8) })
    assert.equals(int64("9223372036854775807"), r.values[1])
    assert.equals(int64("-9223372036854775808"), r.values[2])
    assert.equals(int64("9007199254740993"), r.values[3])
    assert.equals("cdata", type(r.values[3]))
    assert.equals(9007199254740992, r.values[4])
    assert.equals(0.1 + 0.2, r.values[5])
    -- and what the server stored is what was sent: the CLI reads the start event
    client:close()
  end)

  it("make LUA=luajit install puts the module where luajit finds it", function()
    local dest = os.tmpname()
    os.remove(dest)
    sh(("make --no-print-directory -s LUA=luajit install DESTDIR=%s PREFIX=/usr/local >/dev/null"):format(dest))
    local code = ("local t = require('temporal'); local c = t.connect(%q); "
      .. "io.write(require('temporal.compat').flavour, ' ', package.searchpath('temporal.core', package.cpath), ' ', "
      .. "c.workflow_service:get_system_info{}.server_version)"):format(helper.address)
    local ok, out, err = helper.run({ "luajit", "-e", code }, {
      LUA_PATH = dest .. "/usr/local/share/lua/5.1/?.lua;" .. dest .. "/usr/local/share/lua/5.1/?/init.lua",
      LUA_CPATH = dest .. "/usr/local/lib/lua/5.1/?.so",
    })
    sh("rm -rf " .. helper.shell_quote(dest))
    assert.is_true(ok, err)
    assert.matches("^LuaJIT " .. dest:gsub("%p", "%%%0") .. "/usr/local/lib/lua/5%.1/temporal/core%.so %d+%.%d+", out)
  end)
end)
