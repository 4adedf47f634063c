/*
 * temporal.core: the C half of the `temporal` module. The pure-Lua facade in
 * lua/temporal/ builds the public API on these functions.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include "temporal_lua.h"

static int l_pid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

/* Random bytes for request ids from a small per-thread pool filled by getrandom(2). The
 * pool is tagged with the process id: a forked child never reuses bytes its parent had
 * drawn (a shared buffer would give parent and child the same request ids, and the server
 * deduplicates signals, updates and starts by request id). Threads have their own pool, as
 * hosts may run Lua states on several threads. */
static __thread unsigned char rnd_pool[256];
static __thread size_t rnd_left;
static __thread pid_t rnd_pid;

static int fill_random(unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(buf + got, n - got, 0);
    if (r > 0) { got += (size_t)r; continue; }
    if (r < 0 && errno == EINTR) continue;
    break;
  }
  if (got == n) return 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);  /* kernels without getrandom */
  if (fd < 0) return -1;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r > 0) { got += (size_t)r; continue; }
    if (r < 0 && errno == EINTR) continue;
    break;
  }
  close(fd);
  return got == n ? 0 : -1;
}

/* core.uuid4() -> a random (version 4, RFC 4122 variant) UUID string. */
static int l_uuid4(lua_State *L) {
  static const char hex[] = "0123456789abcdef";
  pid_t pid = getpid();
  if (rnd_pid != pid || rnd_left < 16) {
    if (fill_random(rnd_pool, sizeof(rnd_pool)) != 0)
      return luaL_error(L, "uuid4: no random bytes from the system (getrandom and /dev/urandom failed)");
    rnd_left = sizeof(rnd_pool);
    rnd_pid = pid;
  }
  unsigned char *b = rnd_pool + sizeof(rnd_pool) - rnd_left;
  rnd_left -= 16;
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);  /* version 4 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);  /* variant 10 */
  char out[36];
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  memset(b, 0, 16);  /* drawn bytes are not kept */
  lua_pushlstring(L, out, sizeof(out));
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
  /* one byte: what tells it from a fields handle (size 0) in handle_state, cheaply */
  *(char *)lua_newuserdatauv(L, 1, 1) = 0;
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 1);
  lua_setmetatable(L, -2);
  return 1;
}

/* Handles that are only a few fixed fields and never change (WorkflowHandle,
 * ScheduleHandle; one per workflow an application tracks, so their size counts) keep them
 * as the userdata's own user values, no state table: the metatable's __fields lists the
 * field names in slot order, and its __index is a core.fields_index closure.
 *
 * core.fields_handle(metatable, v1, ..., vn) -> a userdata whose user value i is vi; the
 * trailing nils take no slot. */
static int l_fields_handle(lua_State *L) {
  int n = lua_gettop(L) - 1, i;
  luaL_checktype(L, 1, LUA_TTABLE);
  while (n > 0 && lua_isnil(L, n + 1)) n--;
  lua_newuserdatauv(L, 0, n > 0 ? n : 1);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, i + 1);
    lua_setiuservalue(L, -2, i);
  }
  lua_pushvalue(L, 1);
  lua_setmetatable(L, -2);
  return 1;
}

/* Pushes field `slot` of fields handle u: its user value, or when that is nil, the field
 * the fallback list (at index fb, 0 for none) names for it (a WorkflowHandle's
 * result_run_id is its run_id unless it differs: one slot less per handle). */
static void fields_push(lua_State *L, int u, int slot, int fb) {
  if (lua_getiuservalue(L, u, slot) == LUA_TNIL || lua_isnil(L, -1)) { /* LUA_TNONE: past the last */
    lua_pop(L, 1);
    if (fb && lua_rawgeti(L, fb, slot) == LUA_TNUMBER) {
      int other = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
      lua_getiuservalue(L, u, other);
    } else {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
  }
}

/* __index of a fields handle: a method from upvalue 1, else the field's user value (slot
 * from upvalue 2, name -> slot; fallbacks in upvalue 3, slot -> slot), else nil. */
static int l_fields_index_call(lua_State *L) {
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  if (lua_rawget(L, lua_upvalueindex(2)) == LUA_TNUMBER) {
    fields_push(L, 1, (int)lua_tointeger(L, -1), lua_upvalueindex(3));
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

/* Pushes { slot -> fallback slot } for fields (index fi) and fallbacks (index fbi, a table
 * { name = other name } or nil). */
static void fields_fallback_slots(lua_State *L, int fi, int fbi) {
  lua_Integer i, j, n = luaL_len(L, fi);
  lua_newtable(L);
  if (lua_type(L, fbi) != LUA_TTABLE) return;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, fi, i);
    if (lua_rawget(L, fbi) == LUA_TSTRING) {
      for (j = 1; j <= n; j++) {
        lua_rawgeti(L, fi, j);
        if (lua_rawequal(L, -1, -2)) {
          lua_pushinteger(L, j);
          lua_rawseti(L, -4, i);
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
}

/* core.fields_index(methods, fields[, fallbacks]) -> the __index function for handles
 * whose metatable has __fields = fields (a list of names) and __field_fallbacks =
 * fallbacks ({ name = the field read when this one is nil }). */
static int l_fields_index(lua_State *L) {
  lua_Integer i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  lua_settop(L, 3);
  lua_pushvalue(L, 1);
  lua_createtable(L, 0, (int)n);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    lua_pushinteger(L, i);
    lua_rawset(L, -3);
  }
  fields_fallback_slots(L, 2, 3);
  lua_pushcclosure(L, l_fields_index_call, 3);
  return 1;
}

/* core.handle_state(u) -> the state table of a handle made by core.handle; for a fields
 * handle, a new table of its fields (a read-only view: the REPL and the JSON dumps read
 * it). */
static int l_handle_state(lua_State *L) {
  lua_settop(L, 1);
  /* a plain handle (core.handle, one byte): its state table, no metatable lookups - every
   * RPC reads the client's this way */
  if (lua_type(L, 1) == LUA_TUSERDATA && lua_rawlen(L, 1) == 1 && lua_getiuservalue(L, 1, 1) == LUA_TTABLE) return 1;
  lua_settop(L, 1);
  if (lua_type(L, 1) == LUA_TUSERDATA && luaL_getmetafield(L, 1, "__fields") && !lua_istable(L, -1)) lua_pop(L, 1);
  if (lua_gettop(L) == 2 && lua_istable(L, 2)) { /* the metatable's __fields */
    lua_Integer i, n = luaL_len(L, 2);
    luaL_getmetafield(L, 1, "__field_fallbacks"); /* 3, or nothing */
    lua_settop(L, 3);
    fields_fallback_slots(L, 2, 3); /* 4 */
    lua_createtable(L, 0, (int)n);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, 2, i);
      fields_push(L, 1, (int)i, 4);
      lua_rawset(L, -3);
    }
    return 1;
  }
  if (lua_type(L, 1) != LUA_TUSERDATA || lua_getiuservalue(L, 1, 1) != LUA_TTABLE)
    return luaL_typeerror(L, 1, "temporal handle (Client, WorkflowHandle, ScheduleHandle, ...)");
  return 1;
}

/* core.keys_within(t, shape) -> true when t is a table without a metatable whose every key
 * is a key of shape and every value of the type shape names for its key (shape: { key =
 * "string" | "table" | ... }); false otherwise. One C call where a Lua loop over next would
 * make a call per key: the first check of the options of a hot call (start_workflow). */
static int l_keys_within(lua_State *L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_type(L, 1) != LUA_TTABLE || lua_getmetatable(L, 1)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pushvalue(L, -2);
    if (lua_rawget(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, -1), luaL_typename(L, -2)) != 0) {
      lua_pushboolean(L, 0);
      return 1;
    }
    lua_pop(L, 2);
  }
  lua_pushboolean(L, 1);
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
    {"pid", l_pid}, {"uuid4", l_uuid4}, {"hostname", l_hostname}, {"handle", l_handle}, {"handle_state", l_handle_state},
    {"fields_handle", l_fields_handle}, {"fields_index", l_fields_index}, {"keys_within", l_keys_within},
    {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
