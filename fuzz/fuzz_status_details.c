/* grpc-status-details-bin handling: whatever the bytes, the failure table keeps its
 * fields and gets either a details list or a details_error string, never an error. */
#include "harness.h"
#include "rpc.h"

static int push_details(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "UNAVAILABLE");
  lua_setfield(L, -2, "status");
  tl_push_status_details(L, (const uint8_t *)s, len, TL_PB_EXACT_TIMES);
  return 1;
}

static const char check_source[] =
  "function check(s)\n"
  "  local ok, f = pcall(push_details, s)\n"
  "  if not ok then error('BUG: status details raised: ' .. tostring(f)) end\n"
  "  if f.status ~= 'UNAVAILABLE' then error('BUG: failure fields lost') end\n"
  "  if (type(f.details) == 'table') == (type(f.details_error) == 'string') then\n"
  "    error('BUG: expected details or details_error, exactly one')\n"
  "  end\n"
  "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  if (!L) {
    L = fuzz_state("");
    lua_register(L, "push_details", push_details);
    if (luaL_dostring(L, check_source) != LUA_OK) abort();
  }
  fuzz_check(L, data, size);
  return 0;
}
