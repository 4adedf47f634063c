/*
 * The one seam between Lua 5.4 and LuaJIT 2.1 (OpenResty's branch, what nginx's Lua module
 * links). The rest of src/ is written against the Lua 5.4 C API; on Lua 5.4 this header is
 * just lua.h and lauxlib.h.
 *
 * On LuaJIT (LUA_VERSION_NUM 501):
 * - Debian lua-compat53-dev (compat-5.3, header-only mode: every function static) supplies
 *   lua_absindex, lua_rawlen, lua_rotate, luaL_tolstring, the 5.3 luaL_Buffer, lua_getfield
 *   and lua_rawget(i) returning the type, and the rest of the 5.3 API we use.
 * - User values: a userdata's environment table holds them (lua_newuserdatauv with nuv > 0
 *   gives it one; lua_{get,set}iuservalue index it).
 * - Integers: LuaJIT numbers are doubles, exact up to 2^53. lua_pushinteger pushes a number
 *   when the value is within 2^53 and a boxed int64_t cdata (what 1LL is) beyond, so no
 *   64-bit value loses precision. On input, lua_tointegerx also takes int64_t / uint64_t
 *   cdata, and numbers that are integral and within int64; lua_isinteger is true for
 *   numbers that are integral and within 2^53 except -0.0 (the line temporal.compat's
 *   math_type draws too), so other floats keep their float encoding.
 *   tl_isboxedint tells an int64/uint64 cdata from anything else.
 */
#ifndef TEMPORAL_LUA_COMPAT_H
#define TEMPORAL_LUA_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 504

#define TL_LUA_FLAVOUR "Lua 5.4"
/* 1 when the value at idx is a boxed 64-bit integer (LuaJIT cdata): never on Lua 5.4. */
#define tl_isboxedint(L, idx) ((void)(L), (void)(idx), 0)
#define tl_format_boxedint(L, idx, buf) ((void)(L), (void)(idx), (void)(buf), 0)
/* Pushes an unsigned 64-bit value: Lua 5.4 wraps values above math.maxinteger to negative
 * integers (compare them with math.ult). */
#define tl_pushuint64(L, v) lua_pushinteger((L), (lua_Integer)(v))

#elif LUA_VERSION_NUM == 501

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <luajit.h>   /* only LuaJIT: PUC Lua 5.1 has no int64 boxes and is not supported */
#include <compat-5.3.h>

#define TL_LUA_FLAVOUR "LuaJIT"
#define LUA_TCDATA 10  /* LuaJIT's type tag for FFI cdata (lj_obj.h); lua_type returns it */

#ifndef LUA_MAXINTEGER
#define LUA_MAXINTEGER INT64_MAX
#define LUA_MININTEGER INT64_MIN
#endif

/* --- user values in the userdata's environment table --- */
static inline void *tl_compat_newuserdatauv(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
    lua_setfenv(L, -2);
  }
  return p;
}
static inline int tl_compat_setiuservalue(lua_State *L, int idx, int n) {
  idx = lua_absindex(L, idx);
  lua_getfenv(L, idx);
  if (!lua_istable(L, -1)) { lua_pop(L, 2); return 0; }
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}
static inline int tl_compat_getiuservalue(lua_State *L, int idx, int n) {
  lua_getfenv(L, idx);
  if (!lua_istable(L, -1)) { lua_pop(L, 1); lua_pushnil(L); return LUA_TNONE; }
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}
#define lua_newuserdatauv tl_compat_newuserdatauv
#define lua_setiuservalue tl_compat_setiuservalue
#define lua_getiuservalue tl_compat_getiuservalue

/* --- exact 64-bit integers --- */
#define TL_SAFE_INTEGER 9007199254740992.0 /* 2^53: doubles hold every integer up to here */
#define TL_COMPAT_BOX_KEY "temporal.compat.box_int64"

/* The boxing function, made once per lua_State: (hi, lo, unsigned) -> int64_t/uint64_t cdata.
 * hi is the signed (or unsigned) upper 32 bits, lo the lower 32, both exact as doubles. */
static inline void tl_compat_push_boxer(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, TL_COMPAT_BOX_KEY);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (luaL_loadstring(L,
          "local ffi = require('ffi')\n"
          "local i64, u64 = ffi.typeof('int64_t'), ffi.typeof('uint64_t')\n"
          "return function(hi, lo, unsigned)\n"
          "  if unsigned then return u64(hi) * 4294967296ULL + lo end\n"
          "  return i64(hi) * 4294967296LL + lo\n"
          "end") != 0)
      lua_error(L);
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, TL_COMPAT_BOX_KEY);
  }
}
static inline void tl_compat_push_boxed(lua_State *L, uint64_t bits, int is_unsigned) {
  tl_compat_push_boxer(L);
  if (is_unsigned) lua_pushnumber(L, (lua_Number)(uint32_t)(bits >> 32));
  else lua_pushnumber(L, (lua_Number)(int32_t)(uint32_t)(bits >> 32));
  lua_pushnumber(L, (lua_Number)(uint32_t)bits);
  lua_pushboolean(L, is_unsigned);
  lua_call(L, 3, 1);
}
static inline void tl_compat_pushinteger(lua_State *L, int64_t v) {
  if (v >= -(int64_t)TL_SAFE_INTEGER && v <= (int64_t)TL_SAFE_INTEGER) lua_pushnumber(L, (lua_Number)v);
  else tl_compat_push_boxed(L, (uint64_t)v, 0);
}
static inline void tl_pushuint64(lua_State *L, uint64_t v) {
  if (v <= (uint64_t)TL_SAFE_INTEGER) lua_pushnumber(L, (lua_Number)v);
  else tl_compat_push_boxed(L, v, 1);
}

/* An int64_t or uint64_t cdata: its value in *bits and whether it is unsigned, read from
 * tostring ("-5LL", "5ULL"), the one public view of a cdata's type and value. */
static inline int tl_compat_boxed_value(lua_State *L, int idx, uint64_t *bits, int *is_unsigned) {
  if (lua_type(L, idx) != LUA_TCDATA) return 0;
  idx = lua_absindex(L, idx);
  lua_getglobal(L, "tostring");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  int ok = 0;
  if (s && len > 3 && len < 32) {
    char buf[32], *end;
    memcpy(buf, s, len + 1);
    if (len > 3 && strcmp(buf + len - 3, "ULL") == 0) {
      buf[len - 3] = '\0';
      *bits = strtoull(buf, &end, 10);
      ok = *end == '\0' && buf[0] != '-';
      *is_unsigned = 1;
    } else if (strcmp(buf + len - 2, "LL") == 0) {
      buf[len - 2] = '\0';
      *bits = (uint64_t)strtoll(buf, &end, 10);
      ok = *end == '\0';
      *is_unsigned = 0;
    }
  }
  lua_pop(L, 1);
  return ok;
}
static inline int tl_isboxedint(lua_State *L, int idx) {
  uint64_t bits;
  int u;
  return tl_compat_boxed_value(L, idx, &bits, &u);
}

/* Writes the decimal digits of the boxed integer at idx into buf (24 bytes); returns the
 * length. */
static inline int tl_format_boxedint(lua_State *L, int idx, char *buf) {
  uint64_t bits = 0;
  int is_unsigned = 0;
  tl_compat_boxed_value(L, idx, &bits, &is_unsigned);
  if (is_unsigned) return snprintf(buf, 24, "%llu", (unsigned long long)bits);
  return snprintf(buf, 24, "%lld", (long long)(int64_t)bits);
}

static inline lua_Integer tl_compat_tointegerx(lua_State *L, int idx, int *isnum) {
  int ok = 0;
  lua_Integer v = 0;
  if (lua_type(L, idx) == LUA_TCDATA) {
    uint64_t bits;
    int is_unsigned;
    if (tl_compat_boxed_value(L, idx, &bits, &is_unsigned) && !(is_unsigned && bits > (uint64_t)INT64_MAX)) {
      v = (lua_Integer)bits;
      ok = 1;
    }
  } else if (lua_isnumber(L, idx)) {  /* numbers and numeric strings, as Lua 5.4 */
    lua_Number n = lua_tonumber(L, idx);
    if (n == n && n >= -9223372036854775808.0 && n < 9223372036854775808.0 && (lua_Number)(int64_t)n == n) {
      v = (lua_Integer)(int64_t)n;
      ok = 1;
    }
  }
  if (isnum) *isnum = ok;
  return v;
}
static inline int tl_compat_isinteger(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(L, idx);
  return n >= -TL_SAFE_INTEGER && n <= TL_SAFE_INTEGER && (lua_Number)(int64_t)n == n && !(n == 0 && signbit(n));
}
/* --- formats: Lua 5.4's %I (a lua_Integer) in lua_pushfstring and luaL_error --- */
/* LuaJIT's lua_pushfstring stops at a directive it does not know: format with the C library
 * instead (every other directive Lua has - %s %d %f %p %c %% - means the same to printf),
 * reading %I as the ptrdiff_t that LuaJIT's lua_Integer is. */
static inline const char *tl_compat_pushvfstring(lua_State *L, const char *fmt, va_list ap) {
  char cfmt[512];
  size_t j = 0;
  for (const char *p = fmt; *p && j + 3 < sizeof(cfmt); p++) {
    if (p[0] == '%' && p[1] == 'I') { cfmt[j++] = '%'; cfmt[j++] = 't'; cfmt[j++] = 'd'; p++; }
    else if (p[0] == '%' && p[1] == '%') { cfmt[j++] = '%'; cfmt[j++] = '%'; p++; }
    else cfmt[j++] = *p;
  }
  cfmt[j] = '\0';
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  int n = vsnprintf(small, sizeof(small), cfmt, ap2);
  va_end(ap2);
  if (n < 0) return lua_pushstring(L, fmt);
  if ((size_t)n < sizeof(small)) return lua_pushlstring(L, small, (size_t)n), lua_tostring(L, -1);
  char *big = malloc((size_t)n + 1);
  if (!big) return lua_pushstring(L, fmt);
  vsnprintf(big, (size_t)n + 1, cfmt, ap);
  lua_pushlstring(L, big, (size_t)n);
  free(big);
  return lua_tostring(L, -1);
}
static inline const char *tl_compat_pushfstring(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *s = tl_compat_pushvfstring(L, fmt, ap);
  va_end(ap);
  return s;
}
static inline int tl_compat_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  luaL_where(L, 1);
  tl_compat_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}
#undef lua_pushfstring
#undef lua_pushvfstring
#undef luaL_error
#define lua_pushvfstring tl_compat_pushvfstring
#define lua_pushfstring tl_compat_pushfstring
#define luaL_error tl_compat_error

#undef lua_tointegerx
#undef lua_isinteger
#undef lua_tointeger
#define lua_tointegerx tl_compat_tointegerx
#define lua_tointeger(L, idx) tl_compat_tointegerx((L), (idx), NULL)
#define lua_isinteger tl_compat_isinteger
#define lua_pushinteger tl_compat_pushinteger

/* 5.4's name; LuaJIT has the 5.1 spelling with the same arguments and message */
#define luaL_typeerror luaL_typerror

#else
#error "temporal-lua builds against Lua 5.4 or LuaJIT 2.1"
#endif

#endif
