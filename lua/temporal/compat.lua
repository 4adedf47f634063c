--- temporal.compat: the one seam between Lua 5.4 and LuaJIT 2.1 on the Lua side.
-- luacheck: read globals jit unpack
--
-- The other modules are plain Lua 5.4 that also parses as LuaJIT: where they need a Lua 5.4
-- library function or operator LuaJIT lacks, they call it here. On Lua 5.4 each entry is the
-- standard function (or the operator, wrapped); on LuaJIT it is written with what LuaJIT has.
-- The C half of the seam is src/compat.h.
--
-- Numbers on LuaJIT: there is no integer subtype. An integer is a number that is integral
-- (exact up to 2^53) or a boxed int64_t / uint64_t cdata (`123LL`), which is how the core
-- hands back 64-bit values beyond 2^53 and how they may be given to it.
local M = {}

local math_floor = math.floor

if jit then
  local ffi = require("ffi")
  local bit = require("bit")
  local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")

  M.flavour = "LuaJIT"

  local function boxed(v)
    return type(v) == "cdata" and (ffi.istype(int64_t, v) or ffi.istype(uint64_t, v))
  end
  --- true for an int64_t / uint64_t cdata (always false on Lua 5.4)
  M.is_boxed_integer = boxed

  --- math.type: "integer" for int64/uint64 cdata and for integral numbers up to 2^53 in
  -- magnitude (the ones a double holds exactly; -0.0 stays a float), "float" for other
  -- numbers, nil for anything else. The core's JSON and protobuf conversions draw the same
  -- line (src/compat.h).
  function M.math_type(v)
    if type(v) == "number" then
      if v == math_floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 and (v ~= 0 or 1 / v > 0) then return "integer" end
      return "float"
    end
    if boxed(v) then return "integer" end
    return nil
  end

  --- math.tointeger: the value when it is an integer (as math_type says), else nil.
  function M.tointeger(v)
    if M.math_type(v) == "integer" then return v end
    return nil
  end

  local one = int64_t(1)
  M.maxinteger = (one * 2 ^ 62 - 1) * 2 + 1
  M.mininteger = -M.maxinteger - 1

  function M.idiv(a, b) return math_floor(a / b) end
  M.band, M.bor, M.rshift = bit.band, bit.bor, bit.rshift

  function M.pack(...) return { n = select("#", ...), ... } end
  M.unpack = unpack

  --- coroutine.isyieldable: nginx's Lua module replaces the coroutine table without it;
  -- there the code that can yield is the code running in a coroutine (LuaJIT's
  -- coroutine.running() is nil on the main thread).
  function M.isyieldable()
    if coroutine.isyieldable then return coroutine.isyieldable() end
    return coroutine.running() ~= nil
  end

  --- utf8.char for one code point
  function M.utf8_char(c)
    if c < 0x80 then return string.char(c) end
    if c < 0x800 then return string.char(0xC0 + math_floor(c / 0x40), 0x80 + c % 0x40) end
    if c < 0x10000 then
      return string.char(0xE0 + math_floor(c / 0x1000), 0x80 + math_floor(c / 0x40) % 0x40, 0x80 + c % 0x40)
    end
    return string.char(0xF0 + math_floor(c / 0x40000), 0x80 + math_floor(c / 0x1000) % 0x40,
      0x80 + math_floor(c / 0x40) % 0x40, 0x80 + c % 0x40)
  end

  --- utf8.len: the number of code points, or nil when s is not valid UTF-8 (as Lua 5.4:
  -- no surrogates, no overlong forms, at most U+10FFFF).
  function M.utf8_len(s)
    local n, i, len = 0, 1, #s
    while i <= len do
      local c = s:byte(i)
      local need, min
      if c < 0x80 then need, min = 0, 0
      elseif c >= 0xC2 and c < 0xE0 then need, min, c = 1, 0x80, c - 0xC0
      elseif c >= 0xE0 and c < 0xF0 then need, min, c = 2, 0x800, c - 0xE0
      elseif c >= 0xF0 and c < 0xF5 then need, min, c = 3, 0x10000, c - 0xF0
      else return nil end
      for k = 1, need do
        local cc = s:byte(i + k)
        if not cc or cc < 0x80 or cc > 0xBF then return nil end
        c = c * 64 + (cc - 0x80)
      end
      if c < min or c > 0x10FFFF or (c >= 0xD800 and c <= 0xDFFF) then return nil end
      i, n = i + need + 1, n + 1
    end
    return n
  end
else
  M.flavour = _VERSION
  function M.is_boxed_integer() return false end
  M.math_type = math.type
  M.tointeger = math.tointeger
  M.maxinteger, M.mininteger = math.maxinteger, math.mininteger
  -- Lua 5.4 operators, compiled from text so that this file also parses under LuaJIT.
  M.idiv, M.band, M.bor, M.rshift = load([[
    return function(a, b) return a // b end, function(a, b) return a & b end,
      function(a, b) return a | b end, function(a, b) return a >> b end]])()
  M.pack, M.unpack = table.pack, table.unpack
  M.isyieldable = coroutine.isyieldable  -- (called without arguments: the running coroutine)
  M.utf8_char = utf8.char
  M.utf8_len = function(s) return (utf8.len(s)) end
end

return M
