/*
 * A game-server-shaped host: a fixed-tick frame loop in C that runs its own Lua
 * coroutines ("entities") with lua_resume, and lets temporal calls made inside them
 * park only the entity that made them.
 *
 * Each frame (10 ms) the loop resumes every runnable entity once. An entity that yields
 * nothing waits for the next frame (the loop's own primitive); one that yields the
 * loop's PARK marker sleeps until the loop is told to wake it. The temporal host adapter
 * (the Lua in `adapter` below, ~20 lines on the documented protocol) parks entities with
 * that marker and wakes them through host.wake. Between frames the loop sleeps in poll()
 * on temporal's pollfd, so a completion ends the sleep early, and runs the driver that
 * temporal handed it (drive(), i.e. temporal.step(0) within a budget of 8 wakeups).
 *
 *   build/frame_loop <address> <namespace> <task_queue> <n> <release order, e.g. 3,1,2>
 *
 * Entities: n waiters (each starts a WaitForSignal workflow and waits for its result, a
 * long poll the server holds open), a ticker counting frames, and a releaser that once all
 * n polls are open signals the workflows in the order given, each after the previous
 * result came back. Prints what happened; exits 0 when every entity finished cleanly.
 */
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define FRAME_MS 10
#define MAX_ENTITIES 256

typedef struct {
  lua_State *co;
  int ref;          /* keeps the thread alive */
  int parked;       /* yielded PARK: not resumed until host.wake */
} entity;

static entity entities[MAX_ENTITIES];
static int nentities;
static int drive_ref = LUA_NOREF;   /* the driver temporal gave host.start, while active */
static int park_marker;             /* its address is the PARK light userdata */

/* host.spawn(fn): a new entity, first resumed next frame */
static int host_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (nentities == MAX_ENTITIES) return luaL_error(L, "frame_loop: too many entities");
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  entity *e = &entities[nentities++];
  e->co = co;
  e->parked = 0;
  e->ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* pops the thread */
  return 0;
}

/* host.wake(co): makes a parked entity runnable again */
static int host_wake(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  for (int i = 0; i < nentities; i++)
    if (entities[i].co == co) { entities[i].parked = 0; return 0; }
  return luaL_error(L, "frame_loop: wake of a coroutine that is no entity");
}

/* host.start(drive): from now on call drive() when the pollfd is readable or temporal's
 * timeout passes, until it returns false */
static int host_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, drive_ref);
  lua_pushvalue(L, 1);
  drive_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* The adapter: the documented host protocol (docs/hosts.md) on the functions above. */
static const char *adapter =
  "local host, PARK = ...\n"
  "return {\n"
  "  name = 'frame-loop',\n"
  "  blocking = false,                          -- never stall a frame\n"
  "  budget = { max_tasks = 8 },                -- wakeups per drive() step\n"
  "  owns = function() return true end,         -- every coroutine here is an entity\n"
  "  wait = function() coroutine.yield(PARK) end,\n"
  "  wakeup = function(w) host.wake(w.co) end,\n"
  "  start = host.start,\n"
  "  spawn = host.spawn,\n"
  "}\n";

static const char *script =
  "local temporal = require('temporal')\n"
  "local address, namespace, task_queue, n, order_s = ...\n"
  "n = tonumber(n)\n"
  "local client = temporal.connect(address, { namespace = namespace, lazy = true })  -- no call on the main thread\n"
  "local order = {}\n"
  "for i in order_s:gmatch('%d+') do order[#order + 1] = tonumber(i) end\n"
  "local handles, done_order = {}, {}\n"
  "frames = 0\n"
  "local ticks_all_open\n"
  "for i = 1, n do\n"
  "  host.spawn(function()\n"
  "    handles[i] = client:start_workflow('WaitForSignal', {\n"
  "      id = ('frame-loop-%d-%d-%d'):format(os.time(), math.random(1e6), i), task_queue = task_queue })\n"
  "    local r = handles[i]:result()\n"
  "    done_order[#done_order + 1] = i\n"
  "    print('result', i, r[1][1])\n"
  "  end)\n"
  "end\n"
  "local stop = false\n"
  "host.spawn(function()                 -- the ticker: one step per frame\n"
  "  while not stop do frames = frames + 1; coroutine.yield() end\n"
  "end)\n"
  "host.spawn(function()                 -- the releaser\n"
  "  while temporal.core.inflight() < n or #handles < n do coroutine.yield() end\n"
  "  ticks_all_open = frames\n"
  "  print('all open', temporal.core.inflight())\n"
  "  while frames < ticks_all_open + 3 do coroutine.yield() end\n"
  "  print('ticked while open', frames - ticks_all_open)\n"
  "  for k, i in ipairs(order) do\n"
  "    handles[i]:signal('approve', 'r' .. i)\n"
  "    while #done_order < k do coroutine.yield() end\n"
  "    print('released', i, 'returned', done_order[k])\n"
  "  end\n"
  "  stop = true\n"
  "end)\n";

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(lua_State *L, const char *what) {
  fprintf(stderr, "frame_loop: %s: %s\n", what, luaL_tolstring(L, -1, NULL));
  exit(1);
}

/* temporal.<name>() -> number (or -1 for nil) */
static double temporal_number(lua_State *L, const char *name) {
  lua_getglobal(L, "temporal");
  lua_getfield(L, -1, name);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) die(L, name);
  double v = lua_isnil(L, -1) ? -1 : lua_tonumber(L, -1);
  lua_pop(L, 2);
  return v;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s address namespace task_queue n order\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "temporal");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) die(L, "require");
  lua_setglobal(L, "temporal");

  static const luaL_Reg host_fns[] = {
    {"spawn", host_spawn}, {"wake", host_wake}, {"start", host_start}, {NULL, NULL}};
  luaL_newlib(L, host_fns);
  lua_setglobal(L, "host");

  /* temporal.set_host(adapter(host, PARK)) */
  if (luaL_loadstring(L, adapter) != LUA_OK) die(L, "adapter");
  lua_getglobal(L, "host");
  lua_pushlightuserdata(L, &park_marker);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) die(L, "adapter");
  lua_getglobal(L, "temporal");
  lua_getfield(L, -1, "set_host");
  lua_pushvalue(L, -3);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) die(L, "set_host");
  lua_pop(L, 2);

  if (luaL_loadstring(L, script) != LUA_OK) die(L, "script");
  for (int i = 1; i <= 5; i++) lua_pushstring(L, argv[i]);
  if (lua_pcall(L, 5, 0, 0) != LUA_OK) die(L, "script");

  int fd = (int)temporal_number(L, "pollfd");
  long frame = 0, max_resumed = 0;
  int failed = 0;
  double next = now_ms();
  while (nentities > 0) {
    frame++;
    /* 1. the frame's own work: resume each runnable entity once */
    long resumed = 0;
    for (int i = 0; i < nentities;) {
      entity *e = &entities[i];
      if (e->parked) { i++; continue; }
      int nres = 0;
      int st = lua_resume(e->co, L, 0, &nres);
      resumed++;
      if (st == LUA_YIELD) {
        if (nres > 0 && lua_touserdata(e->co, -nres) == &park_marker) e->parked = 1;
        lua_pop(e->co, nres);
        i++;
        continue;
      }
      if (st != LUA_OK) {
        fprintf(stderr, "frame_loop: entity failed: %s\n", luaL_tolstring(e->co, -1, NULL));
        failed = 1;
      }
      luaL_unref(L, LUA_REGISTRYINDEX, e->ref);
      entities[i] = entities[--nentities];  /* finished: drop it */
    }
    if (resumed > max_resumed) max_resumed = resumed;
    /* 2. sleep until the next tick; a completion (pollfd readable) ends it early */
    next += FRAME_MS;
    double t = temporal_number(L, "timeout");
    int wait_ms = (int)ceil(next - now_ms());
    if (wait_ms < 0) wait_ms = 0;
    if (t >= 0 && t * 1000 < wait_ms) wait_ms = (int)ceil(t * 1000);
    struct pollfd p = { fd, POLLIN, 0 };
    int ready = poll(&p, 1, wait_ms);
    /* 3. temporal's driver, when it has one: completions wake parked entities */
    if (drive_ref != LUA_NOREF && (ready > 0 || t >= 0)) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, drive_ref);
      if (lua_pcall(L, 0, 1, 0) != LUA_OK) die(L, "drive");
      if (!lua_toboolean(L, -1)) { luaL_unref(L, LUA_REGISTRYINDEX, drive_ref); drive_ref = LUA_NOREF; }
      lua_pop(L, 1);
    }
    if (frame > 100000) { fprintf(stderr, "frame_loop: not finished after %ld frames\n", frame); return 1; }
  }
  lua_getglobal(L, "frames");
  printf("frames %ld, ticker %lld, most resumes in one frame %ld\n", frame, (long long)lua_tointeger(L, -1), max_resumed);
  lua_pop(L, 1);
  lua_close(L);
  return failed;
}
