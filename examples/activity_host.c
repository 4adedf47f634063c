/*
 * A C host with its own frame loop (think: a game server) in which a Lua activity worker
 * serves activities, with no thread of its own for Lua: each frame polls temporal's pollfd
 * (with the timeout temporal asks for, at most one 16 ms frame) and calls
 * temporal.step(0), which never blocks - the pollfd/timeout/step protocol.
 *
 *   build/activity_host <address> <workflow task queue> [count]
 *
 * The embedded script starts a worker on its own task queue, then starts `count` workflows
 * "CallLuaActivity" (the test bed's Python worker runs them) that call the Lua activity
 * "move_player" there, and shuts the worker down once all have finished. Prints one line
 * per workflow result, then the frame counts.
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
  "local address, workflow_queue, count = ...\n"
  "local client = temporal.connect(address, { lazy = true })\n"
  "local task_queue = 'lua-activity-host-' .. os.time() .. '-' .. math.random(1 << 30)\n"
  "worker = client:new_worker{ task_queue = task_queue, activities = {\n"
  "  move_player = function(ctx, player, x, y)\n"
  "    ctx:heartbeat('moving')\n"
  "    ctx:sleep(0.05)\n"
  "    return { player = player, at = { x, y }, host_frame = host_frame }\n"
  "  end,\n"
  "} }\n"
  "worker:start()\n"
  "results = {}\n"
  "driver = temporal.spawn(function()\n"
  "  local handles = {}\n"
  "  for i = 1, count do\n"
  "    handles[i] = client:start_workflow('CallLuaActivity', {\n"
  "      id = task_queue .. '-' .. i, task_queue = workflow_queue,\n"
  "      args = { { activity = 'move_player', task_queue = task_queue, args = { 'p' .. i, i, -i } } },\n"
  "    })\n"
  "  end\n"
  "  for i = 1, count do\n"
  "    local r = handles[i]:result()\n"
  "    results[i] = r.result and ('%s at %d,%d'):format(r.result.player, r.result.at[1], r.result.at[2])\n"
  "      or ('error: ' .. tostring(r.message))\n"
  "  end\n"
  "  worker:shutdown()\n"
  "  client:close()\n"
  "end)\n";

/* Calls temporal.<name>(...) leaving `nresults` results on the stack; exits on error. */
static void call_temporal(lua_State *L, const char *name, int nargs, int nresults) {
  lua_getglobal(L, "temporal");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  if (lua_pcall(L, nargs, nresults, 0) != LUA_OK) {
    fprintf(stderr, "activity_host: temporal.%s: %s\n", name, luaL_tolstring(L, -1, NULL));
    exit(1);
  }
}

/* true once the driver task has finished. */
static int driver_done(lua_State *L) {
  lua_getglobal(L, "driver");
  lua_getfield(L, -1, "done");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); exit(1); }
  int done = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return done;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s host:port workflow-task-queue [count]\n", argv[0]); return 2; }
  long count = argc > 3 ? atol(argv[3]) : 5;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "temporal");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); return 1; }
  lua_setglobal(L, "temporal");
  if (luaL_loadstring(L, script) != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); return 1; }
  lua_pushstring(L, argv[1]);
  lua_pushstring(L, argv[2]);
  lua_pushinteger(L, count);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) { fprintf(stderr, "%s\n", luaL_tolstring(L, -1, NULL)); return 1; }

  call_temporal(L, "pollfd", 0, 1);
  int fd = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);

  long frame = 0, active_frames = 0;
  while (!driver_done(L)) {
    frame++;
    lua_pushinteger(L, frame);
    lua_setglobal(L, "host_frame");   /* the host's own state, visible to the activities */
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
    call_temporal(L, "step", 1, 0);   /* never blocks */
    if (n > 0) active_frames++;
    if (frame > 1000000) { fprintf(stderr, "activity_host: not finished after %ld frames\n", frame); return 1; }
  }
  /* Surface the driver's error, if any. */
  lua_getglobal(L, "driver");
  lua_getfield(L, -1, "wait");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) { fprintf(stderr, "driver failed: %s\n", luaL_tolstring(L, -1, NULL)); return 1; }
  lua_getglobal(L, "results");
  lua_Integer got = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= got; i++) {
    lua_rawgeti(L, -1, i);
    printf("%s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "worker");
  lua_getfield(L, -1, "state");
  printf("worker %s\n", lua_tostring(L, -1));
  lua_pop(L, 2);
  printf("frames: %ld, frames with completions: %ld\n", frame, active_frames);
  lua_close(L);
  return got == count ? 0 : 1;
}
