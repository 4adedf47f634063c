/*
 * Unary calls. core.unary(channel, service, method, request, timeout, metadata) starts
 * one batch of six ops and returns a Call object at once; the runtime reports it done
 * and call:result() then decodes the response or the failure (status, message and the
 * typed details of grpc-status-details-bin). The Lua facade decides whether to block
 * or to yield - C never yields.
 */
#include <stdlib.h>
#include <string.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include "rpc.h"

#define TL_CALL_MT "temporal.Call"
/* the registry slot of the anchor table (a light userdata key) */
static const char anchors_key = 0;

typedef struct { tl_call *c; } call_ud;

static const char *const status_names[] = {
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED"};

/* The trailing metadata's keys and values belong to the grpc_call (grpc_types.h), which
 * the runtime releases at the completion: a failure's are copied first, since
 * push_failure reads them later. A success reads none. */
void tl_call_completed(tl_call *c) {
  if (c->status == GRPC_STATUS_OK) return;
  for (size_t i = 0; i < c->recv_trailing_md.count; i++) {
    grpc_metadata *m = &c->recv_trailing_md.metadata[i];
    m->key = grpc_slice_copy(m->key);
    m->value = grpc_slice_copy(m->value);
  }
  c->trailing_copied = 1;
}

void tl_call_free(tl_call *c) {
  if (!c) return;
  if (c->trailing_copied) {
    for (size_t i = 0; i < c->recv_trailing_md.count; i++) {
      grpc_slice_unref(c->recv_trailing_md.metadata[i].key);
      grpc_slice_unref(c->recv_trailing_md.metadata[i].value);
    }
  }
  for (size_t i = 0; i < c->n_send_md; i++) {
    grpc_slice_unref(c->send_md[i].key);
    grpc_slice_unref(c->send_md[i].value);
  }
  if (c->send_md != c->send_md_inline) free(c->send_md);
  grpc_metadata_array_destroy(&c->recv_initial_md);
  grpc_metadata_array_destroy(&c->recv_trailing_md);
  if (c->send_buf) grpc_byte_buffer_destroy(c->send_buf);
  if (c->recv_buf) grpc_byte_buffer_destroy(c->recv_buf);
  grpc_slice_unref(c->status_details);
  free(c);
}

/* The userdata at idx when its metatable is the running C function's upvalue `up` (no
 * registry lookup by name), else NULL. */
static void *udata_with_mt(lua_State *L, int idx, int up) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(up));
    lua_pop(L, 1);
    if (same) return p;
  }
  return NULL;
}

/* A Call object at idx, checked against the metatable every Call function keeps as its
 * first upvalue; luaL_checkudata for the error. */
static call_ud *check_call(lua_State *L, int idx) {
  call_ud *u = udata_with_mt(L, idx, 1);
  return u ? u : luaL_checkudata(L, idx, TL_CALL_MT);
}

static int call_gc(lua_State *L) {
  call_ud *u = check_call(L, 1);
  tl_call *c = u->c;
  u->c = NULL;
  if (!c) return 0;
  if (c->rt && !c->done) {
    /* Still in flight (only at lua_close: in-flight calls are anchored otherwise):
     * the runtime frees it when its completion is drained. */
    c->orphaned = 1;
    if (c->call) grpc_call_cancel(c->call, NULL);
  } else {
    tl_call_free(c);
  }
  return 0;
}

void tl_call_push_anchors(lua_State *L) { lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key); }

void tl_call_push_completed(lua_State *L, tl_call *c, int anchors) {
  anchors = lua_absindex(L, anchors);
  lua_rawgeti(L, anchors, c->anchor);
  luaL_unref(L, anchors, c->anchor);
  c->anchor = LUA_NOREF;
}

static int valid_md_key(const char *k, size_t len) {
  if (len == 0 || k[0] == ':') return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = k[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.')) return 0;
  }
  return 1;
}

static int valid_md_value(const char *v, size_t len) {
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e) return 0;
  return 1;
}

static void add_md(lua_State *L, tl_call *c, size_t *cap, int kidx, int vidx) {
  size_t klen, vlen;
  const char *k = lua_tolstring(L, kidx, &klen);
  if (lua_type(L, vidx) != LUA_TSTRING)
    luaL_error(L, "rpc_metadata['%s']: expected a string value, got %s", k, luaL_typename(L, vidx));
  const char *v = lua_tolstring(L, vidx, &vlen);
  int bin = klen > 4 && strcmp(k + klen - 4, "-bin") == 0;
  if (!bin && !valid_md_value(v, vlen))
    luaL_error(L, "rpc_metadata['%s']: value must be printable ASCII (use a '-bin' key for bytes)", k);
  if (c->n_send_md == *cap) {
    /* the first few in the call itself, more in a malloc'd array */
    size_t ncap = *cap * 2;
    grpc_metadata *m = malloc(ncap * sizeof(*m));
    if (!m) luaL_error(L, "out of memory");
    memcpy(m, c->send_md, c->n_send_md * sizeof(*m));
    if (c->send_md != c->send_md_inline) free(c->send_md);
    c->send_md = m;
    *cap = ncap;
  }
  grpc_metadata *m = &c->send_md[c->n_send_md++];
  memset(m, 0, sizeof(*m));
  m->key = grpc_slice_from_copied_buffer(k, klen);
  m->value = grpc_slice_from_copied_buffer(v, vlen);
}

/* metadata: { key = "value" | { "v1", "v2" } }; keys lowercase, "-bin" keys carry bytes. */
static void collect_metadata(lua_State *L, int idx, tl_call *c) {
  size_t cap = sizeof(c->send_md_inline) / sizeof(c->send_md_inline[0]);
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t klen;
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "rpc_metadata: keys must be strings, got %s", luaL_typename(L, -2));
    const char *k = lua_tolstring(L, -2, &klen);
    if (!valid_md_key(k, klen))
      luaL_error(L, "rpc_metadata: invalid key '%s' (lowercase letters, digits, '-', '_', '.')", k);
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        add_md(L, c, &cap, -3, -1);
        lua_pop(L, 1);
      }
    } else {
      add_md(L, c, &cap, -2, -1);
    }
    lua_pop(L, 1);
  }
}

/* The service and method named by two Lua strings, and the method's path, from a small
 * per-thread cache keyed by the strings' addresses (interned: the same name comes back at
 * the same address while it lives; a hit is confirmed by comparing the names, so an
 * address reused by another string only misses). 0: unknown service; -1: unknown method. */
typedef struct {
  const char *service, *method;     /* the Lua strings' addresses */
  const ProtobufCServiceDescriptor *sd;
  const ProtobufCMethodDescriptor *md;
  const char *path;
} method_cache_entry;

static int find_method(const char *service, const char *method, const ProtobufCServiceDescriptor **sd,
                       const ProtobufCMethodDescriptor **md, const char **path) {
  static __thread method_cache_entry cache[8];
  method_cache_entry *e = &cache[((uintptr_t)method >> 4) & 7];
  if (e->method == method && e->service == service && strcmp(e->md->name, method) == 0 &&
      strcmp(e->sd->name, service) == 0) {
    *sd = e->sd; *md = e->md; *path = e->path;
    return 1;
  }
  if (!(*sd = tl_service_by_name(service))) return 0;
  if (!(*md = protobuf_c_service_descriptor_get_method_by_name(*sd, method))) return -1;
  *path = tl_method_path(*sd, *md);
  if (*path) {
    e->service = service; e->method = method; e->sd = *sd; e->md = *md; e->path = *path;
  }
  return 1;
}

/* core.unary(channel, service, method, request, timeout_seconds|nil, metadata|nil, exact|nil) -> Call
 * exact: decode Timestamps/Durations losslessly (TL_PB_EXACT_TIMES), for raw calls. */
static int l_unary(lua_State *L) {
  /* Fewer arguments must not let the objects pushed below stand in for the metadata. */
  lua_settop(L, 7);
  tl_channel *ch = udata_with_mt(L, 1, 3);  /* the Channel metatable is the third upvalue */
  if (!ch || !ch->channel) ch = tl_channel_check(L, 1);  /* raises the error */
  const char *service = luaL_checkstring(L, 2);
  const char *method = luaL_checkstring(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  /* nil: no deadline; a number of seconds >= 0, where one too far to represent (math.huge,
   * 1e300) is no deadline either, never an overflow into an immediate one. */
  double timeout = luaL_optnumber(L, 5, -1);
  if (timeout != timeout) return luaL_argerror(L, 5, "timeout is NaN");
  if (timeout < 0 && !lua_isnoneornil(L, 5))
    return luaL_argerror(L, 5, "timeout must be a non-negative number of seconds (or nil)");
  int decode_flags = lua_toboolean(L, 7) ? TL_PB_EXACT_TIMES : 0;
  tl_runtime *rt = tl_runtime_get(L);
  const ProtobufCServiceDescriptor *sd;
  const ProtobufCMethodDescriptor *md;
  const char *method_path;
  int found = find_method(service, method, &sd, &md, &method_path);
  if (found == 0) return luaL_error(L, "unknown service '%s'", service);
  if (found < 0) return luaL_error(L, "%s has no method '%s'", service, method);

  /* The object owns the heap call from here on, so any error below frees it. */
  call_ud *u = lua_newuserdatauv(L, sizeof(*u), 0);
  u->c = NULL;
  lua_pushvalue(L, lua_upvalueindex(1));  /* the Call metatable */
  lua_setmetatable(L, -2);
  int ud_idx = lua_gettop(L);
  tl_call *c = calloc(1, sizeof(*c));
  if (!c) return luaL_error(L, "out of memory");
  u->c = c;
  c->anchor = LUA_NOREF;
  c->send_md = c->send_md_inline;
  c->output = md->output;
  c->decode_flags = decode_flags;
  c->status_details = grpc_empty_slice();
  grpc_metadata_array_init(&c->recv_initial_md);
  grpc_metadata_array_init(&c->recv_trailing_md);
  c->method = method_path;
  if (!c->method) return luaL_error(L, "out of memory");
  collect_metadata(L, 6, c);

  max_align_t ebuf[2048 / sizeof(max_align_t)];
  size_t n;
  const uint8_t *bytes = tl_pb_encode(L, 4, md->input, ebuf, sizeof(ebuf), &n, "request");
  grpc_slice payload = grpc_slice_from_copied_buffer((const char *)bytes, n);
  lua_pop(L, 1);  /* the encoder's block */
  c->send_buf = grpc_raw_byte_buffer_create(&payload, 1);
  grpc_slice_unref(payload);

  gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
  /* Beyond ~30 years (math.huge too) means no deadline: the microseconds must fit int64. */
  if (timeout >= 0 && timeout < 1e9)
    deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_micros((int64_t)(timeout * 1e6), GPR_TIMESPAN));
  grpc_slice path = grpc_slice_from_static_string(c->method);
  c->call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, rt->cq, path, NULL, deadline, NULL);
  if (!c->call) return luaL_error(L, "cannot create a call to %s", c->method);

  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = c->n_send_md;
  ops[0].data.send_initial_metadata.metadata = c->send_md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = c->send_buf;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->recv_initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &c->recv_buf;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &c->recv_trailing_md;
  ops[5].data.recv_status_on_client.status = &c->status;
  ops[5].data.recv_status_on_client.status_details = &c->status_details;
  /* The poller may deliver the completion before start_batch returns: it needs c->rt. */
  c->rt = rt;
  c->direct = !rt->relayed;
  grpc_call_error err = grpc_call_start_batch(c->call, ops, 6, c, NULL);
  if (err != GRPC_CALL_OK) {
    c->rt = NULL;  /* never in flight: the object frees it */
    grpc_call_unref(c->call);
    c->call = NULL;
    return luaL_error(L, "%s: gRPC refused the call (grpc_call_error %d)", c->method, (int)err);
  }
  c->owner = ch;
  tl_runtime_add(rt, c);
  /* Anchor the object while in flight: the completion must find it. */
  lua_pushvalue(L, ud_idx);
  c->anchor = luaL_ref(L, lua_upvalueindex(2));
  lua_pushvalue(L, ud_idx);
  return 1;
}

/* Decodes the response held by a finished call onto the stack. */
static void push_response(lua_State *L, tl_call *c) {
  grpc_byte_buffer *b = c->recv_buf;
  if (!b) { lua_newtable(L); return; }
  if (b->type == GRPC_BB_RAW && b->data.raw.compression == GRPC_COMPRESS_NONE &&
      b->data.raw.slice_buffer.count == 1) {
    grpc_slice s = b->data.raw.slice_buffer.slices[0];
    tl_pb_decode_push(L, c->output, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), c->decode_flags);
    return;
  }
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, b)) luaL_error(L, "%s: cannot read the response", c->method);
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  /* Copy into a Lua string so a raised decode error cannot leak the slice. */
  lua_pushlstring(L, (const char *)GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
  grpc_slice_unref(s);
  size_t len;
  const char *data = lua_tolstring(L, -1, &len);
  tl_pb_decode_push(L, c->output, (const uint8_t *)data, len, c->decode_flags);
  lua_remove(L, -2);
}

/* decode_status_details(data, len, flags) -> google.rpc.Status table; run protected. */
static int decode_status_details(lua_State *L) {
  const uint8_t *data = lua_touserdata(L, 1);
  size_t len = (size_t)lua_tointeger(L, 2);
  tl_pb_decode_push(L, tl_message_by_name("google.rpc.Status"), data, len, (int)lua_tointeger(L, 3));
  return 1;
}

/* Untrusted bytes: whatever they hold, the failure keeps its status, code and message;
 * details that do not decode are left out and the reason kept in details_error. */
void tl_push_status_details(lua_State *L, const uint8_t *data, size_t len, int flags) {
  int failure = lua_absindex(L, -1);
  lua_pushcfunction(L, decode_status_details);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushinteger(L, flags);
  if (lua_pcall(L, 3, 1, 0) == LUA_OK) {
    lua_getfield(L, -1, "details");
    if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_newtable(L); }
    lua_setfield(L, failure, "details");
  } else {
    lua_pushfstring(L, "grpc-status-details-bin: %s", lua_tostring(L, -1));
    lua_setfield(L, failure, "details_error");
  }
  lua_pop(L, 1);
}

/* { code = 6, status = "ALREADY_EXISTS", message = "...", method = "/...",
 *   details = { { ["@type"] = "temporal.api.errordetails.v1....", ... } }, metadata = {...} } */
static void push_failure(lua_State *L, tl_call *c) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, c->status);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, (unsigned)c->status < 17 ? status_names[c->status] : "UNKNOWN");
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, (const char *)GRPC_SLICE_START_PTR(c->status_details), GRPC_SLICE_LENGTH(c->status_details));
  lua_setfield(L, -2, "message");
  lua_pushstring(L, c->method);
  lua_setfield(L, -2, "method");
  lua_newtable(L);  /* metadata (text keys only) */
  for (size_t i = 0; i < c->recv_trailing_md.count; i++) {
    grpc_metadata *m = &c->recv_trailing_md.metadata[i];
    size_t klen = GRPC_SLICE_LENGTH(m->key);
    const char *k = (const char *)GRPC_SLICE_START_PTR(m->key);
    if (klen == 23 && memcmp(k, "grpc-status-details-bin", 23) == 0) {
      lua_pushvalue(L, -2);
      tl_push_status_details(L, GRPC_SLICE_START_PTR(m->value), GRPC_SLICE_LENGTH(m->value), c->decode_flags);
      lua_pop(L, 1);
      continue;
    }
    lua_pushlstring(L, k, klen);
    lua_pushlstring(L, (const char *)GRPC_SLICE_START_PTR(m->value), GRPC_SLICE_LENGTH(m->value));
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "metadata");
  if (lua_getfield(L, -1, "details") == LUA_TNIL) { lua_newtable(L); lua_setfield(L, -3, "details"); }
  lua_pop(L, 1);
}

/* call:result() -> response table | nil, failure table */
static int call_result(lua_State *L) {
  call_ud *u = check_call(L, 1);
  tl_call *c = u->c;
  if (!c) return luaL_error(L, "call object is closed");
  if (!c->done) return luaL_error(L, "%s: call still in flight", c->method);
  if (c->status == GRPC_STATUS_OK) {
    push_response(L, c);
    return 1;
  }
  lua_pushnil(L);
  push_failure(L, c);
  return 2;
}

static int call_done(lua_State *L) {
  call_ud *u = check_call(L, 1);
  lua_pushboolean(L, u->c == NULL || u->c->done);
  return 1;
}

static int call_cancel(lua_State *L) {
  call_ud *u = check_call(L, 1);
  if (u->c && !u->c->done && u->c->call) grpc_call_cancel(u->c->call, NULL);
  return 0;
}

static int call_tostring(lua_State *L) {
  call_ud *u = check_call(L, 1);
  if (!u->c) lua_pushliteral(L, "temporal.Call(closed)");
  else if (!u->c->done) lua_pushfstring(L, "temporal.Call(%s, in flight)", u->c->method);
  else lua_pushfstring(L, "temporal.Call(%s, %s)", u->c->method,
                       (unsigned)u->c->status < 17 ? status_names[u->c->status] : "UNKNOWN");
  return 1;
}

void tl_call_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"result", call_result}, {"done", call_done}, {"cancel", call_cancel}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__gc", call_gc}, {"__tostring", call_tostring}, {NULL, NULL}};
  /* Every Call function has the metatable as its first upvalue (check_call). */
  if (luaL_newmetatable(L, TL_CALL_MT)) {
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, metamethods, 1);
  }
  /* the anchor table: the Lua objects of the calls in flight, by luaL_ref */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key);
  }
  luaL_getmetatable(L, TL_CHANNEL_MT);
  lua_pushcclosure(L, l_unary, 3);  /* Call metatable, anchor table, Channel metatable */
  lua_setfield(L, -2, "unary");
}
