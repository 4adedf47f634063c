/* Shared set-up of the libFuzzer harnesses: one Lua state per process holding the parts
 * of temporal.core that read untrusted bytes (protobuf, JSON; no runtime, no threads) and
 * a Lua `check(data)` function per harness. An error raised by check is a rejected input,
 * which is fine; an error whose message starts with "BUG:" is a broken invariant and
 * aborts, as does anything the sanitizers see. */
#ifndef TEMPORAL_FUZZ_HARNESS_H
#define TEMPORAL_FUZZ_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>
#include "temporal_lua.h"

#ifndef FUZZ_LUA_DIR
#define FUZZ_LUA_DIR "lua"
#endif

/* Deep equality for round trips; NaN equals NaN, integer and float differ. */
static const char fuzz_prelude[] =
  "function deep_equal(a, b)\n"
  "  if type(a) ~= type(b) then return false end\n"
  "  if type(a) == 'number' then\n"
  "    if math.type(a) ~= math.type(b) then return false end\n"
  "    return a == b or (a ~= a and b ~= b)\n"
  "  end\n"
  "  if type(a) ~= 'table' then return a == b end\n"
  "  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end\n"
  "  for k in pairs(b) do if a[k] == nil then return false end end\n"
  "  return true\n"
  "end\n";

/* Coverage of Lua code for libFuzzer (harnesses that define FUZZ_LUA_COVERAGE): the Lua VM
 * is not instrumented, so a line hook maps each (chunk, previous line, line) step into
 * libFuzzer's extra counters; without it a harness whose code under test is Lua (the TOML
 * parser) would fuzz blind. */
#ifdef FUZZ_LUA_COVERAGE
#define FUZZ_LUA_COUNTERS 8192
__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t fuzz_lua_counters[FUZZ_LUA_COUNTERS];

static void fuzz_line_hook(lua_State *L, lua_Debug *ar) {
  static uintptr_t previous;
  if (!lua_getinfo(L, "S", ar)) return;
  uintptr_t here = (uintptr_t)ar->source * 2654435761u + (uintptr_t)ar->currentline;
  uint8_t *c = &fuzz_lua_counters[(here ^ (previous << 1)) % FUZZ_LUA_COUNTERS];
  if (*c < 255) (*c)++;
  previous = here;
}
#endif

static lua_State *fuzz_state(const char *check_source) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
#ifdef FUZZ_LUA_COVERAGE
  lua_sethook(L, fuzz_line_hook, LUA_MASKLINE, 0);
#endif
  lua_getglobal(L, "package");
  lua_pushstring(L, FUZZ_LUA_DIR "/?.lua");
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "loaded");
  lua_newtable(L);
  tl_registry_open(L);
  tl_pb_open(L);
  tl_json_open(L);
  lua_setfield(L, -2, "temporal.core");
  lua_pop(L, 2);
  if (luaL_dostring(L, fuzz_prelude) != LUA_OK || luaL_dostring(L, check_source) != LUA_OK) {
    fprintf(stderr, "harness set-up: %s\n", lua_tostring(L, -1));
    abort();
  }
  return L;
}

static void fuzz_check(lua_State *L, const uint8_t *data, size_t size) {
  lua_getglobal(L, "check");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg && strncmp(msg, "BUG:", 4) == 0) {
      fprintf(stderr, "%s\n", msg);
      abort();
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  /* Free this input's garbage now: libFuzzer runs a (slow) leak check after any input
   * whose mallocs and frees do not balance, which a lazy collector would trigger often. */
  lua_gc(L, LUA_GCCOLLECT, 0);
}

#define FUZZ_TARGET(source)                                                  \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);              \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {             \
    static lua_State *L;                                                     \
    if (!L) L = fuzz_state(source);                                          \
    fuzz_check(L, data, size);                                               \
    return 0;                                                                \
  }

#endif
