/*
 * temporal.core: the C half of the `temporal` module. The pure-Lua facade in
 * lua/temporal/ builds the public API on these functions.
 */
#include <string.h>
#include <unistd.h>
#include "temporal_lua.h"

static int l_pid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int l_hostname(lua_State *L) {
  char name[256];
  if (gethostname(name, sizeof(name)) != 0) strcpy(name, "localhost");
  name[sizeof(name) - 1] = '\0';
  lua_pushstring(L, name);
  return 1;
}

/* core.handle(metatable, state) -> a userdata whose one user value is the state table:
 * Client, WorkflowHandle and ScheduleHandle are userdata so type() and __name tell them
 * apart; the Lua facade keeps their fields in the state table. */
static int l_handle(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_newuserdatauv(L, 0, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 1);
  lua_setmetatable(L, -2);
  return 1;
}

/* core.handle_state(u) -> the state table of a handle made by core.handle */
static int l_handle_state(lua_State *L) {
  if (lua_type(L, 1) != LUA_TUSERDATA || lua_getiuservalue(L, 1, 1) != LUA_TTABLE)
    return luaL_typeerror(L, 1, "temporal handle (Client, WorkflowHandle, ScheduleHandle, ...)");
  return 1;
}

int luaopen_temporal_core(lua_State *L) {
  lua_newtable(L);
  tl_registry_open(L);
  tl_pb_open(L);
  tl_json_open(L);
  tl_runtime_open(L);
  tl_channel_open(L);
  tl_call_open(L);
  tl_relay_open(L);
  static const luaL_Reg fns[] = {
    {"pid", l_pid}, {"hostname", l_hostname}, {"handle", l_handle}, {"handle_state", l_handle_state},
    {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
