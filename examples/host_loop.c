/*
 * A C host program with its own event loop (think: a game server's frame loop) that
 * drives temporal-lua without any thread of its own for Lua. It embeds Lua, starts a
 * few Lua tasks that make RPCs, and then, each frame, polls temporal's pollfd together
 * with its own work and calls temporal.step(0) - the pollfd/events/timeout protocol.
 *
 *   build/host_loop <address> [namespace]
 * prints one line per frame in which temporal work completed, then the task results.
 */
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static const char *script =
  "local temporal = require('temporal')\n"
  "local address, namespace = ...\n"
  "local client = temporal.connect(address, { namespace = namespace, lazy = true })\n"
  "results = {}\n"
  "tasks = {}\n"
  "for i = 1, 5 do\n"
  "  tasks[i] = temporal.spawn(function()\n"
  "    local info = client.workflow_service:get_system_info{}\n"
  "    temporal.sleep(0.05 * i)\n"
  "    local ns = client.workflow_service:describe_namespace{ namespace = namespace }\n"
  "    results[#results + 1] = ('task %d: server %s, namespace %s'):format(i, info.server_version, ns.namespace_info.name)\n"
  "  end)\n"
  "end\n";

/* Calls temporal.<name>(...) leaving `nresults` results on the stack; exits on error. */
static void call_temporal(lua_State *L, const char *name, int nargs, int nresults) {
  lua_getglobal(L, "temporal");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  if (lua_pcall(L, nargs, nresults, 0) != LUA_OK) {
    fprintf(stderr, "host_loop: temporal.%s: %s\n", name, luaL_tolstring(L, -1, NULL));
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s host:port [namespace]\n", argv[0]); return 2; }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "temporal");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); return 1; }
  lua_setglobal(L, "temporal");
  if (luaL_loadstring(L, script) != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); return 1; }
  lua_pushstring(L, argv[1]);
  lua_pushstring(L, argc > 2 ? argv[2] : "default");
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) { fprintf(stderr, "%s\n", luaL_tolstring(L, -1, NULL)); return 1; }

  call_temporal(L, "pollfd", 0, 1);
  int fd = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);

  long frame = 0, active_frames = 0;
  for (;;) {
    frame++;
    /* The host's own frame budget is 16 ms; temporal may ask for less (a timer due). */
    int wait_ms = 16;
    call_temporal(L, "timeout", 0, 1);
    if (!lua_isnil(L, -1)) {
      int t = (int)ceil(lua_tonumber(L, -1) * 1000);
      if (t < wait_ms) wait_ms = t;
    }
    lua_pop(L, 1);
    struct pollfd p = { fd, POLLIN, 0 };
    int n = poll(&p, 1, wait_ms);
    /* ... the host's own per-frame work would run here ... */
    lua_pushnumber(L, 0);
    call_temporal(L, "step", 1, 1);   /* never blocks */
    int more = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (n > 0) active_frames++;
    if (!more) break;
    if (frame > 100000) { fprintf(stderr, "host_loop: not finished after %ld frames\n", frame); return 1; }
  }
  lua_getglobal(L, "results");
  lua_Integer count = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= count; i++) {
    lua_rawgeti(L, -1, i);
    printf("%s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* Surface any task error. */
  lua_getglobal(L, "tasks");
  for (lua_Integer i = 1; i <= luaL_len(L, -1); i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "wait");
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) { fprintf(stderr, "task %d failed: %s\n", (int)i, luaL_tolstring(L, -1, NULL)); return 1; }
  }
  lua_pop(L, 1);
  printf("frames: %ld, frames with completions: %ld\n", frame, active_frames);
  lua_close(L);
  return count == 5 ? 0 : 1;
}
