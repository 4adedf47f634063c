/*
 * The one converter between Lua values and protobuf-c messages, driven by the
 * generated descriptors: no per-message code anywhere.
 *
 * Lua shape of a message:
 *  - a table keyed by the proto field names (snake_case); unknown keys are errors;
 *  - scalars as Lua numbers (64-bit integers exact), booleans and strings; bytes as
 *    Lua strings; enums by name (full "EVENT_TYPE_X" or short "X") or number, decoded
 *    to the short name; repeated fields as sequences; maps as tables;
 *  - a oneof is whichever one of its fields is set (two set is an error);
 *  - well-known types: Timestamp and Duration as seconds (number; a {seconds=,nanos=}
 *    table is accepted too), wrappers as their scalar, Empty as {}, FieldMask as a
 *    list of paths, Any as a table of the packed message plus ["@type"] = full name.
 * Decoding leaves out fields that hold their default (proto3 has no presence for
 * scalars), so absent and zero read the same: nil.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "temporal_lua.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/field_mask.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

#define TL_ARENA_MT "temporal.arena"
#define TL_PB_MAX_DEPTH 100

/* ------------------------------------------------------------------ arena */

struct tl_arena_block {
  tl_arena_block *next;
  size_t size, used;
  max_align_t data[];
};

static void *arena_alloc_cb(void *data, size_t n) { return tl_arena_alloc(data, n); }
static void arena_free_cb(void *data, void *p) { (void)data; (void)p; }

void tl_arena_scoped(lua_State *L, tl_arena *a, void *buf, size_t size) {
  memset(a, 0, sizeof(*a));
  a->allocator.alloc = arena_alloc_cb;
  a->allocator.free = arena_free_cb;
  a->allocator.allocator_data = a;
  a->L = L;
  a->buf = buf;
  a->size = size;
  lua_pushnil(L);
  a->anchor = lua_gettop(L);
}

void *tl_arena_alloc(tl_arena *a, size_t n) {
  n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  if (n == 0) n = sizeof(max_align_t);
  if (a->L) {
    if (a->size - a->used < n) {
      /* Another block: a userdata that keeps the previous ones (its user value) and
       * takes their place in the anchor slot. May raise (memory): nothing leaks. */
      lua_State *L = a->L;
      size_t size = a->size * 2;
      if (size < n) size = n;
      luaL_checkstack(L, 3, "protobuf conversion");
      char *b = lua_newuserdatauv(L, size, 1);
      lua_pushvalue(L, a->anchor);
      lua_setiuservalue(L, -2, 1);
      lua_replace(L, a->anchor);
      a->buf = b;
      a->size = size;
      a->used = 0;
    }
    void *p = a->buf + a->used;
    a->used += n;
    return p;
  }
  tl_arena_block *b = a->blocks;
  if (!b || b->size - b->used < n) {
    size_t size = 8192;
    if (a->total > size) size = a->total;  /* grow geometrically */
    if (size < n) size = n;
    b = malloc(sizeof(*b) + size);
    if (!b) return NULL;
    b->size = size; b->used = 0; b->next = a->blocks;
    a->blocks = b;
    a->total += size;
  }
  void *p = (char *)b->data + b->used;
  b->used += n;
  return p;
}

void tl_arena_reset(tl_arena *a) {
  while (a->blocks) {
    tl_arena_block *next = a->blocks->next;
    free(a->blocks);
    a->blocks = next;
  }
  a->total = 0;
}

static int arena_gc(lua_State *L) {
  tl_arena_reset(luaL_checkudata(L, 1, TL_ARENA_MT));
  return 0;
}

tl_arena *tl_arena_new(lua_State *L) {
  tl_arena *a = lua_newuserdatauv(L, sizeof(*a), 0);
  memset(a, 0, sizeof(*a));
  a->allocator.alloc = arena_alloc_cb;
  a->allocator.free = arena_free_cb;
  a->allocator.allocator_data = a;
  if (luaL_newmetatable(L, TL_ARENA_MT)) {
    lua_pushcfunction(L, arena_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, arena_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  return a;
}

static void *arena_need(lua_State *L, tl_arena *a, size_t n) {
  void *p = tl_arena_alloc(a, n);
  if (!p) luaL_error(L, "out of memory converting a protobuf message");
  return p;
}

/* ------------------------------------------------------------------ paths for errors */

/* The path of the value being converted ("request.input.payloads[2].data"), kept as a
 * chain of frames on the C stack so the happy path costs nothing. */
typedef struct path_frame {
  const struct path_frame *parent;
  const char *name;   /* field name, or NULL for an index */
  lua_Integer index;
} path_frame;

static void path_push(lua_State *L, const path_frame *f) {
  if (!f) { lua_pushliteral(L, "value"); return; }
  const path_frame *chain[TL_PB_MAX_DEPTH * 2 + 4];
  int n = 0;
  for (; f && n < (int)(sizeof(chain) / sizeof(chain[0])); f = f->parent) chain[n++] = f;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = n - 1; i >= 0; i--) {
    if (chain[i]->name) {
      if (i != n - 1) luaL_addchar(&b, '.');
      luaL_addstring(&b, chain[i]->name);
    } else {
      char tmp[32];
      snprintf(tmp, sizeof(tmp), "[%lld]", (long long)chain[i]->index);
      luaL_addstring(&b, tmp);
    }
  }
  luaL_pushresult(&b);
}

static int path_error(lua_State *L, const path_frame *f, const char *fmt, ...) {
  va_list ap;
  path_push(L, f);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
  return lua_error(L);
}

/* ------------------------------------------------------------------ UTF-8 */

int tl_utf8_valid(const char *s, size_t len);
int tl_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s, *e = p + len;
  while (p < e) {
    unsigned c = *p;
    if (c < 0x80) { p++; continue; }
    int n; unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
    else return 0;
    if (e - p <= n) return 0;
    for (int i = 1; i <= n; i++) {
      if ((p[i] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    p += n + 1;
  }
  return 1;
}

/* ------------------------------------------------------------------ wire pre-scan */

/* protobuf-c unpacks nested messages by recursion and checks nothing about strings, so
 * every untrusted byte string is walked once before it is unpacked: nesting is bounded
 * (a few thousand nested levels overflow the C stack inside protobuf_c_message_unpack,
 * before any depth check of ours could run), and every string field must be valid UTF-8
 * without NUL bytes (protobuf-c stores strings NUL-terminated: an embedded NUL would
 * silently truncate the value). The walk allocates nothing and recurses only as deep as
 * the limit allows. Any payloads are scanned when they are unpacked (wkt_to_lua). */

typedef enum { SCAN_OK, SCAN_MALFORMED, SCAN_INVALID } scan_status;

typedef struct scan_frame {
  const struct scan_frame *parent;
  const ProtobufCMessageDescriptor *d;       /* the message whose bytes are [start, end) */
  const uint8_t *start;
  const ProtobufCFieldDescriptor *fd;         /* the field being read, or NULL */
  const uint8_t *field_at;                    /* where that field's tag starts */
} scan_frame;

typedef struct {
  char error[512];   /* "path: reason" when the scan fails */
} scan_ctx;

static int scan_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    if (shift < 64) v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) { *out = v; return 1; }
  }
  return 0;
}

/* Reads one tag and skips its value; value and vlen point at a length-delimited payload. */
static int scan_field(const uint8_t **p, const uint8_t *end, uint32_t *number, unsigned *wire,
                      const uint8_t **value, size_t *vlen) {
  uint64_t tag, n;
  if (!scan_varint(p, end, &tag)) return 0;
  *number = (uint32_t)(tag >> 3);
  *wire = (unsigned)(tag & 7);
  if (tag >> 3 == 0 || tag >> 3 > 0x1fffffff) return 0;
  switch (*wire) {
  case 0: return scan_varint(p, end, &n);
  case 1: if (end - *p < 8) return 0; *p += 8; return 1;
  case 5: if (end - *p < 4) return 0; *p += 4; return 1;
  case 2:
    if (!scan_varint(p, end, &n) || n > (uint64_t)(end - *p)) return 0;
    *value = *p; *vlen = (size_t)n; *p += n;
    return 1;
  default: return 0;  /* groups: protobuf-c does not support them either */
  }
}

/* Index of the occurrence of field `number` that starts at `at`, for paths in errors. */
static long scan_index(const scan_frame *f) {
  const uint8_t *p = f->start;
  long idx = 0;
  uint32_t number; unsigned wire; const uint8_t *v; size_t vlen;
  while (p < f->field_at) {
    const uint8_t *here = p;
    if (!scan_field(&p, f->field_at, &number, &wire, &v, &vlen)) break;
    if (here != f->field_at && number == f->fd->id) idx++;
  }
  return idx + 1;
}

/* Appends to ctx->error, truncating (never overflowing) when it is full. */
static void scan_append(scan_ctx *ctx, size_t *len, const char *fmt, ...) {
  if (*len >= sizeof(ctx->error) - 1) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(ctx->error + *len, sizeof(ctx->error) - *len, fmt, ap);
  va_end(ap);
  if (n > 0) *len += (size_t)n;
  if (*len > sizeof(ctx->error) - 1) *len = sizeof(ctx->error) - 1;
}

static scan_status scan_fail(scan_ctx *ctx, const scan_frame *f, scan_status st, const char *reason) {
  const scan_frame *chain[TL_PB_MAX_DEPTH + 2];
  int n = 0;
  for (; f && n < (int)(sizeof(chain) / sizeof(chain[0])); f = f->parent) if (f->fd) chain[n++] = f;
  size_t len = 0;
  ctx->error[0] = '\0';
  for (int i = n - 1; i >= 0; i--) {
    if (n > 10 && i == n - 5) {  /* deep paths: the first levels and the last ones */
      scan_append(ctx, &len, ".(%d more levels)", n - 8);
      i = 3;
    }
    const scan_frame *c = chain[i];
    scan_append(ctx, &len, "%s%s", i == n - 1 ? "" : ".", c->fd->name);
    if (c->fd->label == PROTOBUF_C_LABEL_REPEATED) scan_append(ctx, &len, "[%ld]", scan_index(c));
  }
  scan_append(ctx, &len, "%s%s", n ? ": " : "", reason);
  return st;
}

static scan_status scan_message(scan_ctx *ctx, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                                const uint8_t *end, int depth, const scan_frame *parent) {
  scan_frame f = { parent, d, p, NULL, NULL };
  if (depth > TL_PB_MAX_DEPTH) {
    char reason[64];
    snprintf(reason, sizeof(reason), "messages nested deeper than %d", TL_PB_MAX_DEPTH);
    return scan_fail(ctx, parent, SCAN_INVALID, reason);
  }
  int is_any = d == &google__protobuf__any__descriptor;
  const uint8_t *type_url = NULL, *value = NULL, *value_at = NULL;
  size_t type_url_len = 0, value_len = 0;
  while (p < end) {
    uint32_t number; unsigned wire; const uint8_t *v = NULL; size_t vlen = 0;
    f.field_at = p;
    f.fd = NULL;
    if (!scan_field(&p, end, &number, &wire, &v, &vlen)) return scan_fail(ctx, &f, SCAN_MALFORMED, "malformed wire data");
    if (wire != 2) continue;
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, number);
    if (!fd) continue;  /* unknown fields stay opaque bytes */
    f.fd = fd;
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
      scan_status st = scan_message(ctx, fd->descriptor, v, v + vlen, depth + 1, &f);
      if (st != SCAN_OK) return st;
    } else if (fd->type == PROTOBUF_C_TYPE_STRING) {
      if (memchr(v, 0, vlen)) return scan_fail(ctx, &f, SCAN_INVALID, "string contains a NUL byte");
      if (!tl_utf8_valid((const char *)v, vlen)) return scan_fail(ctx, &f, SCAN_INVALID, "string is not valid UTF-8");
      if (is_any) { type_url = v; type_url_len = vlen; }  /* the last one wins, as in unpacking */
    } else if (is_any && fd->type == PROTOBUF_C_TYPE_BYTES) {
      value = v; value_len = vlen; value_at = f.field_at;
    }
  }
  if (is_any && type_url && value) {
    /* The packed message, when its type is known, is scanned as if it were nested here
     * (so errors carry the whole path); a malformed one stays opaque, as decoding does. */
    char name[256];
    const uint8_t *slash = type_url + type_url_len;
    while (slash > type_url && slash[-1] != '/') slash--;
    size_t nlen = (size_t)(type_url + type_url_len - slash);
    const ProtobufCMessageDescriptor *inner = NULL;
    if (nlen < sizeof(name)) {
      memcpy(name, slash, nlen);
      name[nlen] = '\0';
      inner = tl_message_by_name(name);
    }
    if (inner) {
      f.fd = protobuf_c_message_descriptor_get_field_by_name(d, "value");
      f.field_at = value_at;
      scan_status st = scan_message(ctx, inner, value, value + value_len, depth + 1, &f);
      if (st == SCAN_INVALID) return st;
    }
  }
  return SCAN_OK;
}

/* Scans bytes of message type d that will be unpacked at nesting level depth; raises a
 * Lua error on malformed bytes (when strict) or on invalid content. Returns the status. */
static scan_status scan_or_raise(lua_State *L, const ProtobufCMessageDescriptor *d, const uint8_t *data,
                                 size_t len, int depth, int strict, const char *what) {
  scan_ctx ctx;
  if (!data) data = (const uint8_t *)"";  /* empty bytes (an empty Any value) */
  scan_status st = scan_message(&ctx, d, data, data + len, depth, NULL);
  if (st == SCAN_INVALID) luaL_error(L, "invalid %s%s: %s", d->name, what, ctx.error);
  if (st == SCAN_MALFORMED && strict)
    luaL_error(L, "malformed %s message (%I bytes)%s: %s", d->name, (lua_Integer)len, what, ctx.error);
  return st;
}

/* ------------------------------------------------------------------ enums */

/* Length of the common prefix of an enum's names ("EVENT_TYPE_"), taken from the
 * zero value "<PREFIX>UNSPECIFIED" that every Temporal enum has; 0 when absent. */
static size_t enum_prefix_len(const ProtobufCEnumDescriptor *ed) {
  for (unsigned i = 0; i < ed->n_values; i++) {
    if (ed->values[i].value == 0) {
      const char *n = ed->values[i].name;
      size_t len = strlen(n);
      if (len > 11 && strcmp(n + len - 11, "UNSPECIFIED") == 0) return len - 11;
      return 0;
    }
  }
  return 0;
}

static const ProtobufCEnumValue *enum_by_name(const ProtobufCEnumDescriptor *ed, const char *name) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(ed, name);
  if (v) return v;
  size_t plen = enum_prefix_len(ed);
  if (plen == 0) return NULL;
  for (unsigned i = 0; i < ed->n_values; i++)
    if (strcmp(ed->values[i].name + plen, name) == 0) return &ed->values[i];
  return NULL;
}

static void push_enum(lua_State *L, const ProtobufCEnumDescriptor *ed, int value) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(ed, value);
  if (!v) { lua_pushinteger(L, value); return; }  /* a value newer than our protos */
  lua_pushstring(L, v->name + enum_prefix_len(ed));
}

/* ------------------------------------------------------------------ Lua -> message */

static ProtobufCMessage *message_from_lua(lua_State *L, int idx, const ProtobufCMessageDescriptor *d,
                                          tl_arena *a, const path_frame *path, int depth);

static const char *type_name_at(lua_State *L, int idx) { return luaL_typename(L, idx); }

static lua_Integer check_integer(lua_State *L, int idx, const path_frame *path, lua_Integer lo, lua_Integer hi) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, idx, &isnum);
  if (!isnum || (lua_type(L, idx) != LUA_TNUMBER && !tl_isboxedint(L, idx))) {
    if (lua_type(L, idx) == LUA_TNUMBER) path_error(L, path, "expected an integer, got %s", lua_tostring(L, idx));
    path_error(L, path, "expected an integer, got %s", type_name_at(L, idx));
  }
  if (v < lo || v > hi) path_error(L, path, "integer %I out of range", v);
  return v;
}

static double check_number(lua_State *L, int idx, const path_frame *path) {
  if (lua_type(L, idx) != LUA_TNUMBER) path_error(L, path, "expected a number, got %s", type_name_at(L, idx));
  return lua_tonumber(L, idx);
}

static const char *check_string(lua_State *L, int idx, const path_frame *path, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING) path_error(L, path, "expected a string, got %s", type_name_at(L, idx));
  return lua_tolstring(L, idx, len);
}

static void seconds_of_number(double v, int duration, int64_t *sec, int32_t *nanos);

/* Seconds (number) or {seconds=, nanos=} into a Timestamp/Duration-shaped pair. */
static void seconds_from_lua(lua_State *L, int idx, const path_frame *path, int64_t *sec, int32_t *nanos) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (lua_isinteger(L, idx)) { *sec = lua_tointeger(L, idx); *nanos = 0; return; }
    double v = lua_tonumber(L, idx);
    if (!isfinite(v) || fabs(v) > 9.2e18) path_error(L, path, "seconds value %f out of range", v);
    seconds_of_number(v, 0, sec, nanos);
    return;
  }
  if (lua_type(L, idx) != LUA_TTABLE) path_error(L, path, "expected seconds (a number), got %s", type_name_at(L, idx));
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  *sec = 0; *nanos = 0;
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    path_frame f = { path, k ? k : "?", 0 };
    if (k && strcmp(k, "seconds") == 0) *sec = check_integer(L, -1, &f, LUA_MININTEGER, LUA_MAXINTEGER);
    /* Any int32: what a server sent (even out of the documented range) re-encodes as is. */
    else if (k && strcmp(k, "nanos") == 0) *nanos = (int32_t)check_integer(L, -1, &f, INT32_MIN, INT32_MAX);
    else path_error(L, path, "unknown field '%s' (expected seconds, nanos)", k ? k : luaL_typename(L, -2));
    lua_pop(L, 1);
  }
}

/* Writes one scalar/enum/string/bytes/message value at idx into dst (the storage of one
 * element of the field's type). */
static void value_from_lua(lua_State *L, int idx, const ProtobufCFieldDescriptor *fd, void *dst,
                           tl_arena *a, const path_frame *path, int depth) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    *(int32_t *)dst = (int32_t)check_integer(L, idx, path, INT32_MIN, INT32_MAX); break;
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
    *(uint32_t *)dst = (uint32_t)check_integer(L, idx, path, 0, UINT32_MAX); break;
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    *(int64_t *)dst = check_integer(L, idx, path, LUA_MININTEGER, LUA_MAXINTEGER); break;
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
    /* Values above math.maxinteger are the negative integers decoding gives them. */
    *(uint64_t *)dst = (uint64_t)check_integer(L, idx, path, LUA_MININTEGER, LUA_MAXINTEGER); break;
  case PROTOBUF_C_TYPE_FLOAT: *(float *)dst = (float)check_number(L, idx, path); break;
  case PROTOBUF_C_TYPE_DOUBLE: *(double *)dst = check_number(L, idx, path); break;
  case PROTOBUF_C_TYPE_BOOL:
    if (lua_type(L, idx) != LUA_TBOOLEAN) path_error(L, path, "expected a boolean, got %s", type_name_at(L, idx));
    *(protobuf_c_boolean *)dst = lua_toboolean(L, idx); break;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumDescriptor *ed = fd->descriptor;
    if (lua_type(L, idx) == LUA_TSTRING) {
      const ProtobufCEnumValue *v = enum_by_name(ed, lua_tostring(L, idx));
      if (!v) path_error(L, path, "unknown %s value '%s'", ed->name, lua_tostring(L, idx));
      *(int *)dst = v->value;
    } else if (lua_type(L, idx) == LUA_TNUMBER) {
      *(int *)dst = (int)check_integer(L, idx, path, INT32_MIN, INT32_MAX);
    } else {
      path_error(L, path, "expected a %s name, got %s", ed->name, type_name_at(L, idx));
    }
    break;
  }
  case PROTOBUF_C_TYPE_STRING: {
    size_t len;
    const char *s = check_string(L, idx, path, &len);
    if (strlen(s) != len) path_error(L, path, "string contains a NUL byte");
    if (!tl_utf8_valid(s, len)) path_error(L, path, "string is not valid UTF-8");
    /* Lua strings are NUL-terminated and stay alive while the source table is on the
     * stack, which outlives packing: no copy needed. */
    *(const char **)dst = s;
    break;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    size_t len;
    const char *s = check_string(L, idx, path, &len);
    ((ProtobufCBinaryData *)dst)->data = (uint8_t *)s;
    ((ProtobufCBinaryData *)dst)->len = len;
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE:
    *(ProtobufCMessage **)dst = message_from_lua(L, idx, fd->descriptor, a, path, depth + 1);
    break;
  }
}

/* The length of the list (a Lua sequence) at idx for a repeated field: a sequence only,
 * other keys mean the caller passed a map or a message by mistake. Both encoders use it. */
static lua_Integer list_length(lua_State *L, int idx, const path_frame *path) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  lua_Integer keys = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING)
        path_error(L, path, "expected a list, found key '%s'", lua_tostring(L, -1));
      path_error(L, path, "expected a list (keys 1..n without holes)");
    }
    keys++;
    lua_pop(L, 1);
  }
  if (keys != n) path_error(L, path, "expected a list (keys 1..n without holes)");
  return n;
}

static size_t value_size(const ProtobufCFieldDescriptor *fd) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_ENUM: return 4;
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: return 8;
  case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
  case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
  }
  return 0;
}

static int is_map_entry(const ProtobufCFieldDescriptor *fd) {
  if (fd->label != PROTOBUF_C_LABEL_REPEATED || fd->type != PROTOBUF_C_TYPE_MESSAGE) return 0;
  const ProtobufCMessageDescriptor *d = fd->descriptor;
  size_t n = strlen(d->short_name);
  return d->n_fields == 2 && n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 &&
         strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0;
}

static void repeated_from_lua(lua_State *L, int idx, const ProtobufCFieldDescriptor *fd, ProtobufCMessage *msg,
                              tl_arena *a, const path_frame *path, int depth) {
  if (lua_type(L, idx) != LUA_TTABLE) path_error(L, path, "expected a table, got %s", type_name_at(L, idx));
  idx = lua_absindex(L, idx);
  size_t *count = (size_t *)((char *)msg + fd->quantifier_offset);
  void **array = (void **)((char *)msg + fd->offset);
  size_t elem = value_size(fd);
  if (is_map_entry(fd)) {
    const ProtobufCMessageDescriptor *ed = fd->descriptor;
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { n++; lua_pop(L, 1); }
    ProtobufCMessage **entries = arena_need(L, a, (n ? n : 1) * sizeof(*entries));
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      ProtobufCMessage *e = arena_need(L, a, ed->sizeof_message);
      protobuf_c_message_init(ed, e);
      char keybuf[64];
      const char *keyname = keybuf;
      if (lua_type(L, -2) == LUA_TSTRING) keyname = lua_tostring(L, -2);
      else snprintf(keybuf, sizeof(keybuf), "%s", luaL_typename(L, -2));
      path_frame kf = { path, keyname, 0 };
      value_from_lua(L, -2, &ed->fields[0], (char *)e + ed->fields[0].offset, a, &kf, depth);
      value_from_lua(L, -1, &ed->fields[1], (char *)e + ed->fields[1].offset, a, &kf, depth);
      entries[i++] = e;
      lua_pop(L, 1);
    }
    *count = n;
    *array = entries;
    return;
  }
  lua_Integer n = list_length(L, idx, path);
  char *items = arena_need(L, a, (n ? (size_t)n : 1) * elem);
  for (lua_Integer i = 1; i <= n; i++) {
    path_frame f = { path, NULL, i };
    lua_rawgeti(L, idx, i);
    value_from_lua(L, -1, fd, items + (size_t)(i - 1) * elem, a, &f, depth);
    lua_pop(L, 1);
  }
  *count = (size_t)n;
  *array = items;
}

/* Well-known types with a Lua shape of their own; returns 1 when handled. */
static int wkt_from_lua(lua_State *L, int idx, const ProtobufCMessageDescriptor *d, ProtobufCMessage *msg,
                        tl_arena *a, const path_frame *path, int depth) {
  if (d == &google__protobuf__timestamp__descriptor) {
    Google__Protobuf__Timestamp *t = (void *)msg;
    seconds_from_lua(L, idx, path, &t->seconds, &t->nanos);
    return 1;
  }
  if (d == &google__protobuf__duration__descriptor) {
    Google__Protobuf__Duration *t = (void *)msg;
    seconds_from_lua(L, idx, path, &t->seconds, &t->nanos);
    if (t->seconds < 0 && t->nanos > 0) { t->seconds++; t->nanos -= 1000000000; }
    return 1;
  }
  if (strncmp(d->name, "google.protobuf.", 16) == 0 && d->n_fields == 1 &&
      strcmp(d->fields[0].name, "value") == 0 && lua_type(L, idx) != LUA_TTABLE) {
    value_from_lua(L, idx, &d->fields[0], (char *)msg + d->fields[0].offset, a, path, depth);
    return 1;
  }
  if (d == &google__protobuf__field_mask__descriptor && lua_type(L, idx) == LUA_TTABLE &&
      lua_rawlen(L, idx) > 0) {
    repeated_from_lua(L, idx, &d->fields[0], msg, a, path, depth);
    return 1;
  }
  if (d == &google__protobuf__any__descriptor && lua_type(L, idx) == LUA_TTABLE) {
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, idx, "@type") != LUA_TSTRING) { lua_pop(L, 1); return 0; }
    const char *type = lua_tostring(L, -1);
    const ProtobufCMessageDescriptor *inner = tl_message_by_name(type);
    if (!inner) path_error(L, path, "unknown message type '%s' in Any", type);
    /* Copy the table without "@type" and convert it as the named message. */
    lua_createtable(L, 0, 8);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "@type") == 0) { lua_pop(L, 1); continue; }
      lua_pushvalue(L, -2); lua_insert(L, -2); lua_rawset(L, -4);
    }
    ProtobufCMessage *m = message_from_lua(L, -1, inner, a, path, depth + 1);
    Google__Protobuf__Any *any = (void *)msg;
    size_t n = protobuf_c_message_get_packed_size(m);
    any->value.data = arena_need(L, a, n ? n : 1);
    any->value.len = protobuf_c_message_pack(m, any->value.data);
    size_t tl = strlen(type) + 21;
    any->type_url = arena_need(L, a, tl);
    snprintf(any->type_url, tl, "type.googleapis.com/%s", type);
    lua_pop(L, 2);  /* keep the copied table alive until here: its strings back m */
    return 1;
  }
  return 0;
}

static const ProtobufCFieldDescriptor *enc_field(const ProtobufCMessageDescriptor *d, const char *name);

/* The field of d named by the key under the value on top of the stack (a table walk's
 * key), or an error naming the key: through the encoder's cache (cached) or protobuf-c's
 * own lookup (the reference path). */
static const ProtobufCFieldDescriptor *key_field(lua_State *L, const ProtobufCMessageDescriptor *d,
                                                 const path_frame *path, int cached) {
  if (lua_type(L, -2) != LUA_TSTRING) {
    lua_pop(L, 1);
    path_error(L, path, "unexpected %s key in %s (fields are named by strings)", luaL_typename(L, -1), d->name);
  }
  const char *name = lua_tostring(L, -2);
  const ProtobufCFieldDescriptor *fd =
      cached ? enc_field(d, name) : protobuf_c_message_descriptor_get_field_by_name(d, name);
  if (!fd) path_error(L, path, "unknown field '%s' in %s", name, d->name);
  return fd;
}

static ProtobufCMessage *message_from_lua(lua_State *L, int idx, const ProtobufCMessageDescriptor *d,
                                          tl_arena *a, const path_frame *path, int depth) {
  if (depth > TL_PB_MAX_DEPTH) path_error(L, path, "nesting deeper than %d", TL_PB_MAX_DEPTH);
  luaL_checkstack(L, 8, "protobuf conversion");
  idx = lua_absindex(L, idx);
  ProtobufCMessage *msg = arena_need(L, a, d->sizeof_message);
  protobuf_c_message_init(d, msg);
  if (wkt_from_lua(L, idx, d, msg, a, path, depth)) return msg;
  if (lua_type(L, idx) != LUA_TTABLE)
    path_error(L, path, "expected a table (%s), got %s", d->name, type_name_at(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const ProtobufCFieldDescriptor *fd = key_field(L, d, path, 0);
    path_frame f = { path, fd->name, 0 };
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
      repeated_from_lua(L, -1, fd, msg, a, &f, depth);
    } else {
      if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = (uint32_t *)((char *)msg + fd->quantifier_offset);
        if (*which != 0 && *which != fd->id) {
          const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(d, *which);
          path_error(L, path, "fields '%s' and '%s' are alternatives (oneof): set only one", other->name, fd->name);
        }
        *which = fd->id;
      } else if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->type != PROTOBUF_C_TYPE_MESSAGE &&
                 fd->type != PROTOBUF_C_TYPE_STRING) {
        *(protobuf_c_boolean *)((char *)msg + fd->quantifier_offset) = 1;
      }
      value_from_lua(L, -1, fd, (char *)msg + fd->offset, a, &f, depth);
    }
    lua_pop(L, 1);
  }
  return msg;
}

ProtobufCMessage *tl_pb_from_lua(lua_State *L, int idx, const ProtobufCMessageDescriptor *d, tl_arena *a) {
  path_frame root = { NULL, "request", 0 };
  return message_from_lua(L, idx, d, a, &root, 0);
}

/* ------------------------------------------------------------------ Lua -> wire bytes */

/* The encoder the calls use: straight from the Lua table to wire bytes, no protobuf-c
 * message in between. It writes the very bytes tl_pb_from_lua + protobuf_c_message_pack
 * write (fields in descriptor order; proto3 fields holding their zero value left out;
 * oneof members, list items and map entries always written; map entries in table
 * order) and takes the same input with the same errors. Per message it walks the table
 * once (lua_next), in table order, writing each field as it comes - field names looked
 * up in a per-thread cache instead of protobuf-c's binary search by strcmp - then puts
 * the fields in field order. Well-known types with a Lua shape of their own
 * (wrappers, FieldMask, Any), and messages with proto2 labels, go through the protobuf-c
 * path for that submessage. */

typedef struct {
  lua_State *L;
  uint8_t *buf;
  size_t size, used;
  int anchor;   /* stack slot of the heap block beyond the caller's buffer (a userdata) */
} pb_enc;

static void enc_grow(pb_enc *e, size_t n) {
  lua_State *L = e->L;
  size_t size = e->size * 2;
  if (size < e->used + n) size = e->used + n;
  uint8_t *b = lua_newuserdatauv(L, size, 0);
  memcpy(b, e->buf, e->used);
  lua_replace(L, e->anchor);
  e->buf = b;
  e->size = size;
}

static inline uint8_t *enc_need(pb_enc *e, size_t n) {
  if (e->size - e->used < n) enc_grow(e, n);
  return e->buf + e->used;
}

static inline size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) { p[n++] = (uint8_t)(v | 0x80); v >>= 7; }
  p[n++] = (uint8_t)v;
  return n;
}

static inline void enc_varint(pb_enc *e, uint64_t v) {
  uint8_t *p = enc_need(e, 10);
  e->used += put_varint(p, v);
}

static inline void enc_tag(pb_enc *e, const ProtobufCFieldDescriptor *fd, unsigned wire) {
  enc_varint(e, ((uint64_t)fd->id << 3) | wire);
}

static inline void enc_bytes(pb_enc *e, const char *s, size_t len) {
  uint8_t *p = enc_need(e, len + 10);
  size_t n = put_varint(p, len);
  memcpy(p + n, s, len);
  e->used += n + len;
}

/* A length-delimited body: reserve one length byte, write the body, then fix the length
 * (moving the body when the length needs more bytes). */
static inline size_t enc_open(pb_enc *e) {
  enc_need(e, 1);
  return e->used++;
}

static void enc_close(pb_enc *e, size_t at) {
  size_t len = e->used - at - 1;
  if (len < 0x80) { e->buf[at] = (uint8_t)len; return; }
  uint8_t tmp[10];
  size_t k = put_varint(tmp, len);
  enc_need(e, k - 1);
  memmove(e->buf + at + k, e->buf + at + 1, len);
  memcpy(e->buf + at, tmp, k);
  e->used += k - 1;
}

static void enc_message(pb_enc *e, int idx, const ProtobufCMessageDescriptor *d, const path_frame *path, int depth);

/* 1 when s[0..len) is ASCII without a NUL (so valid UTF-8): eight bytes at a time. */
static inline int ascii_without_nul(const char *s, size_t len) {
  const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    if ((w & highs) || ((w - ones) & ~w & highs)) return 0;
  }
  for (; i < len; i++)
    if ((unsigned char)s[i] >= 0x80 || s[i] == 0) return 0;
  return 1;
}

/* One value of field fd from the Lua value at idx (checked as value_from_lua checks it).
 * tag: write the field's tag first (0 inside a packed list). skip_zero: leave out a zero
 * value (a proto3 field that is neither a oneof member nor a list item). */
static void enc_value(pb_enc *e, int idx, const ProtobufCFieldDescriptor *fd, int tag, int skip_zero,
                      const path_frame *path, int depth) {
  lua_State *L = e->L;
  uint64_t v;
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32:
    v = (uint64_t)(int64_t)(int32_t)check_integer(L, idx, path, INT32_MIN, INT32_MAX); break;
  case PROTOBUF_C_TYPE_SINT32: {
    int32_t x = (int32_t)check_integer(L, idx, path, INT32_MIN, INT32_MAX);
    v = x < 0 ? (uint32_t)(-(uint32_t)x * 2 - 1) : (uint32_t)x * 2;
    break;
  }
  case PROTOBUF_C_TYPE_UINT32:
    v = (uint32_t)check_integer(L, idx, path, 0, UINT32_MAX); break;
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_UINT64:
    v = (uint64_t)check_integer(L, idx, path, LUA_MININTEGER, LUA_MAXINTEGER); break;
  case PROTOBUF_C_TYPE_SINT64: {
    int64_t x = check_integer(L, idx, path, LUA_MININTEGER, LUA_MAXINTEGER);
    v = x < 0 ? -(uint64_t)x * 2 - 1 : (uint64_t)x * 2;
    break;
  }
  case PROTOBUF_C_TYPE_SFIXED32: case PROTOBUF_C_TYPE_FIXED32: {
    uint32_t x = fd->type == PROTOBUF_C_TYPE_FIXED32
      ? (uint32_t)check_integer(L, idx, path, 0, UINT32_MAX)
      : (uint32_t)(int32_t)check_integer(L, idx, path, INT32_MIN, INT32_MAX);
    if (skip_zero && x == 0) return;
    if (tag) enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_32BIT);
    memcpy(enc_need(e, 4), &x, 4);  /* little-endian hosts only, as protobuf-c here */
    e->used += 4;
    return;
  }
  case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_FIXED64: {
    uint64_t x = (uint64_t)check_integer(L, idx, path, LUA_MININTEGER, LUA_MAXINTEGER);
    if (skip_zero && x == 0) return;
    if (tag) enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_64BIT);
    memcpy(enc_need(e, 8), &x, 8);
    e->used += 8;
    return;
  }
  case PROTOBUF_C_TYPE_FLOAT: {
    float x = (float)check_number(L, idx, path);
    if (skip_zero && x == 0) return;
    if (tag) enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_32BIT);
    memcpy(enc_need(e, 4), &x, 4);
    e->used += 4;
    return;
  }
  case PROTOBUF_C_TYPE_DOUBLE: {
    double x = check_number(L, idx, path);
    if (skip_zero && x == 0) return;
    if (tag) enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_64BIT);
    memcpy(enc_need(e, 8), &x, 8);
    e->used += 8;
    return;
  }
  case PROTOBUF_C_TYPE_BOOL:
    if (lua_type(L, idx) != LUA_TBOOLEAN) path_error(L, path, "expected a boolean, got %s", type_name_at(L, idx));
    v = (uint64_t)lua_toboolean(L, idx);
    break;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumDescriptor *ed = fd->descriptor;
    int x = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
      const ProtobufCEnumValue *ev = enum_by_name(ed, lua_tostring(L, idx));
      if (!ev) path_error(L, path, "unknown %s value '%s'", ed->name, lua_tostring(L, idx));
      x = ev->value;
    } else if (lua_type(L, idx) == LUA_TNUMBER) {
      x = (int)check_integer(L, idx, path, INT32_MIN, INT32_MAX);
    } else {
      path_error(L, path, "expected a %s name, got %s", ed->name, type_name_at(L, idx));
    }
    v = (uint64_t)(int64_t)x;
    break;
  }
  case PROTOBUF_C_TYPE_STRING: {
    size_t len;
    const char *s = check_string(L, idx, path, &len);
    if (!ascii_without_nul(s, len)) {
      if (memchr(s, 0, len)) path_error(L, path, "string contains a NUL byte");
      if (!tl_utf8_valid(s, len)) path_error(L, path, "string is not valid UTF-8");
    }
    if (skip_zero && len == 0) return;
    if (tag) enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    enc_bytes(e, s, len);
    return;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    size_t len;
    const char *s = check_string(L, idx, path, &len);
    if (skip_zero && len == 0) return;
    if (tag) enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    enc_bytes(e, s, len);
    return;
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    /* a message given is written, even with no field set (protobuf-c: a non-NULL pointer) */
    if (tag) enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    size_t at = enc_open(e);
    enc_message(e, idx, fd->descriptor, path, depth + 1);
    enc_close(e, at);
    return;
  }
  default:
    return;
  }
  if (skip_zero && v == 0) return;
  if (tag) enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_VARINT);
  enc_varint(e, v);
}

/* A repeated field (list or map) from the value at idx, checked as repeated_from_lua. */
static void enc_repeated(pb_enc *e, int idx, const ProtobufCFieldDescriptor *fd, const path_frame *path, int depth) {
  lua_State *L = e->L;
  if (lua_type(L, idx) != LUA_TTABLE) path_error(L, path, "expected a table, got %s", type_name_at(L, idx));
  idx = lua_absindex(L, idx);
  if (is_map_entry(fd)) {
    const ProtobufCMessageDescriptor *ed = fd->descriptor;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      char keybuf[64];
      const char *keyname = keybuf;
      if (lua_type(L, -2) == LUA_TSTRING) keyname = lua_tostring(L, -2);
      else snprintf(keybuf, sizeof(keybuf), "%s", luaL_typename(L, -2));
      path_frame kf = { path, keyname, 0 };
      enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
      size_t at = enc_open(e);
      enc_value(e, -2, &ed->fields[0], 1, 1, &kf, depth);
      enc_value(e, -1, &ed->fields[1], 1, 1, &kf, depth);
      enc_close(e, at);
      lua_pop(L, 1);
    }
    return;
  }
  lua_Integer n = list_length(L, idx, path);
  if (n == 0) return;
  int packed = (fd->flags & PROTOBUF_C_FIELD_FLAG_PACKED) != 0;
  size_t at = 0;
  if (packed) {
    enc_tag(e, fd, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    at = enc_open(e);
  }
  for (lua_Integer i = 1; i <= n; i++) {
    path_frame f = { path, NULL, i };
    lua_rawgeti(L, idx, i);
    enc_value(e, -1, fd, !packed, 0, &f, depth);
    lua_pop(L, 1);
  }
  if (packed) enc_close(e, at);
}

/* Well-known types (other than Timestamp/Duration) in a Lua shape of their own: Any,
 * FieldMask, a wrapper given as its scalar. The protobuf-c path converts them. */
static int wkt_needs_protobuf_c(lua_State *L, int idx, const ProtobufCMessageDescriptor *d) {
  if (d == &google__protobuf__any__descriptor || d == &google__protobuf__field_mask__descriptor) return 1;
  return d->n_fields == 1 && strcmp(d->fields[0].name, "value") == 0 && lua_type(L, idx) != LUA_TTABLE;
}

static void enc_via_protobuf_c(pb_enc *e, int idx, const ProtobufCMessageDescriptor *d, const path_frame *path, int depth) {
  lua_State *L = e->L;
  idx = lua_absindex(L, idx);
  max_align_t abuf[512 / sizeof(max_align_t)];
  tl_arena a;
  tl_arena_scoped(L, &a, abuf, sizeof(abuf));
  ProtobufCMessage *m = message_from_lua(L, idx, d, &a, path, depth);
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = enc_need(e, n);
  e->used += protobuf_c_message_pack(m, p);
  lua_pop(L, 1);  /* the arena's anchor */
}

/* Seconds (or { seconds =, nanos = }) as a Timestamp/Duration body. */
static void enc_seconds(pb_enc *e, int idx, int duration, const path_frame *path) {
  int64_t sec;
  int32_t nanos;
  seconds_from_lua(e->L, idx, path, &sec, &nanos);
  if (duration && sec < 0 && nanos > 0) { sec++; nanos -= 1000000000; }
  if (sec != 0) { enc_varint(e, 1 << 3); enc_varint(e, (uint64_t)sec); }
  if (nanos != 0) { enc_varint(e, 2 << 3); enc_varint(e, (uint64_t)(int64_t)nanos); }
}

/* Field lookups by name, cached per thread: a slot holds (descriptor, the address of a
 * Lua string's bytes) -> field index. A hit is checked against the field's own name, so
 * a slot left by a string since collected (its address reused by another string) can
 * only miss. The slot keyed (d, NULL) holds whether d goes the protobuf-c way. */
typedef struct { const void *d; const char *name; int index; } enc_slot;
#define ENC_SLOTS 256
static __thread enc_slot enc_cache[ENC_SLOTS];

static inline enc_slot *enc_slot_of(const void *d, const char *name) {
  uintptr_t h = ((uintptr_t)d >> 3) * 0x9E3779B1u + ((uintptr_t)name >> 3);
  return &enc_cache[(h ^ (h >> 11)) & (ENC_SLOTS - 1)];
}

static const ProtobufCFieldDescriptor *enc_field(const ProtobufCMessageDescriptor *d, const char *name) {
  enc_slot *slot = enc_slot_of(d, name);
  if (slot->d == d && slot->name == name && strcmp(d->fields[slot->index].name, name) == 0)
    return &d->fields[slot->index];
  const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(d, name);
  if (fd) { slot->d = d; slot->name = name; slot->index = (int)(fd - d->fields); }
  return fd;
}

/* Proto2 labels (descriptor.proto only, never a Temporal message: there an absent
 * required field is packed as zero) or more fields than a segment index holds. */
static int enc_needs_protobuf_c(const ProtobufCMessageDescriptor *d) {
  enc_slot *slot = enc_slot_of(d, NULL);
  if (slot->d == d && slot->name == NULL) return slot->index;
  int other = d->n_fields > 255;
  for (unsigned i = 0; i < d->n_fields; i++)
    other |= d->fields[i].label == PROTOBUF_C_LABEL_REQUIRED || d->fields[i].label == PROTOBUF_C_LABEL_OPTIONAL;
  slot->d = d; slot->name = NULL; slot->index = other;
  return other;
}

/* One field of a message at idx, value on top of the stack. */
static void enc_field_value(pb_enc *e, const ProtobufCFieldDescriptor *fd, const path_frame *path, int depth) {
  path_frame f = { path, fd->name, 0 };
  if (fd->label == PROTOBUF_C_LABEL_REPEATED) enc_repeated(e, -1, fd, &f, depth);
  else enc_value(e, -1, fd, 1, !(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF), &f, depth);
}

#define ENC_SEGMENTS 64

static void enc_message(pb_enc *e, int idx, const ProtobufCMessageDescriptor *d, const path_frame *path, int depth) {
  lua_State *L = e->L;
  if (depth > TL_PB_MAX_DEPTH) path_error(L, path, "nesting deeper than %d", TL_PB_MAX_DEPTH);
  luaL_checkstack(L, 8, "protobuf conversion");
  idx = lua_absindex(L, idx);
  if (d == &google__protobuf__timestamp__descriptor || d == &google__protobuf__duration__descriptor) {
    enc_seconds(e, idx, d == &google__protobuf__duration__descriptor, path);
    return;
  }
  if ((strncmp(d->name, "google.protobuf.", 16) == 0 && wkt_needs_protobuf_c(L, idx, d)) || enc_needs_protobuf_c(d)) {
    enc_via_protobuf_c(e, idx, d, path, depth);
    return;
  }
  if (lua_type(L, idx) != LUA_TTABLE)
    path_error(L, path, "expected a table (%s), got %s", d->name, type_name_at(L, idx));
  /* One walk in table order - the checks and errors of message_from_lua, in its order -
   * writing each field as a segment; then the segments put in field order (the order
   * protobuf-c packs in). */
  size_t start = e->used;
  uint8_t field[ENC_SEGMENTS];
  size_t end[ENC_SEGMENTS];
  unsigned n = 0;
  int sorted = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const ProtobufCFieldDescriptor *fd = key_field(L, d, path, 1);
    unsigned fi = (unsigned)(fd - d->fields);
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      for (unsigned k = 0; k < n; k++) {
        const ProtobufCFieldDescriptor *other = &d->fields[field[k]];
        if ((other->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && other->quantifier_offset == fd->quantifier_offset)
          path_error(L, path, "fields '%s' and '%s' are alternatives (oneof): set only one", other->name, fd->name);
      }
    }
    if (n == ENC_SEGMENTS) {
      /* More fields set than segments: this message again, field by field in field order. */
      lua_pop(L, 2);
      e->used = start;
      for (unsigned k = 0; k < d->n_fields; k++) {
        lua_pushstring(L, d->fields[k].name);
        if (lua_rawget(L, idx) != LUA_TNIL) enc_field_value(e, &d->fields[k], path, depth);
        lua_pop(L, 1);
      }
      return;
    }
    enc_field_value(e, fd, path, depth);
    if (n > 0 && fi < field[n - 1]) sorted = 0;
    field[n] = (uint8_t)fi;
    end[n] = e->used;
    n++;
    lua_pop(L, 1);
  }
  if (sorted) return;
  /* Reorder: the body is copied past its end in field order, then moved back. */
  size_t len = e->used - start;
  enc_need(e, len);
  uint8_t *body = e->buf + start, *out = e->buf + e->used;
  uint8_t order[ENC_SEGMENTS];
  for (unsigned k = 0; k < n; k++) {
    unsigned m = k;
    while (m > 0 && field[order[m - 1]] > field[k]) { order[m] = order[m - 1]; m--; }
    order[m] = (uint8_t)k;
  }
  size_t o = 0;
  for (unsigned k = 0; k < n; k++) {
    unsigned s = order[k];
    size_t from = (s == 0 ? start : end[s - 1]) - start, to = end[s] - start;
    memcpy(out + o, body + from, to - from);
    o += to - from;
  }
  memcpy(body, out, len);
}

const uint8_t *tl_pb_encode(lua_State *L, int idx, const ProtobufCMessageDescriptor *d, void *buf, size_t size,
                            size_t *len, const char *root_name) {
  idx = lua_absindex(L, idx);
  pb_enc e = { L, buf, size, 0, 0 };
  lua_pushnil(L);
  e.anchor = lua_gettop(L);
  path_frame root = { NULL, root_name, 0 };
  enc_message(&e, idx, d, &root, 0);
  *len = e.used;
  return e.buf;
}

/* ------------------------------------------------------------------ message -> Lua */

static void message_to_lua(lua_State *L, const ProtobufCMessage *msg, int flags, int depth);

/* The (seconds, nanos) pair seconds_from_lua makes of v, normalised as for type d. */
static void seconds_of_number(double v, int duration, int64_t *sec, int32_t *nanos) {
  double whole = floor(v);
  int64_t s = (int64_t)whole;
  int64_t ns = (int64_t)llround((v - whole) * 1e9);
  if (ns >= 1000000000) { s++; ns -= 1000000000; }
  if (duration && s < 0 && ns > 0) { s++; ns -= 1000000000; }
  *sec = s; *nanos = (int32_t)ns;
}

/* A Timestamp or Duration: whole seconds as an integer. With TL_PB_EXACT_TIMES, a float
 * only when it converts back to exactly these seconds and nanos (durations under about 97
 * days, rarely a timestamp), otherwise { seconds = s, nanos = n }, which encoding accepts:
 * a decoded message re-encodes to the same value. Without the flag (the facade's epoch
 * seconds), always a float. */
static void push_seconds(lua_State *L, int64_t sec, int32_t nanos, int duration, int flags) {
  if (nanos == 0) { lua_pushinteger(L, sec); return; }
  double v = (double)sec + nanos / 1e9;
  if (flags & TL_PB_EXACT_TIMES) {
    int64_t s2 = 0; int32_t n2 = 0;
    if (isfinite(v) && fabs(v) < 9.2e18) seconds_of_number(v, duration, &s2, &n2);
    if (!isfinite(v) || fabs(v) >= 9.2e18 || s2 != sec || n2 != nanos) {
      lua_createtable(L, 0, 2);
      lua_pushinteger(L, sec);
      lua_setfield(L, -2, "seconds");
      lua_pushinteger(L, nanos);
      lua_setfield(L, -2, "nanos");
      return;
    }
  }
  lua_pushnumber(L, v);
}

/* The Lua value of a message field that is absent where a value must appear (a map entry
 * without its value): the message's default, converted as any other. */
static void push_default_message(lua_State *L, const ProtobufCMessageDescriptor *d, int flags, int depth) {
  ProtobufCMessage *m = lua_newuserdatauv(L, d->sizeof_message, 0);
  protobuf_c_message_init(d, m);
  message_to_lua(L, m, flags, depth + 1);
  lua_remove(L, -2);
}

static void value_to_lua(lua_State *L, const ProtobufCFieldDescriptor *fd, const void *src, int flags, int depth) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    lua_pushinteger(L, *(const int32_t *)src); break;
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: lua_pushinteger(L, *(const uint32_t *)src); break;
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    lua_pushinteger(L, *(const int64_t *)src); break;
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
    /* Above math.maxinteger this wraps to a negative integer (compare with math.ult). */
    lua_pushinteger(L, (lua_Integer) * (const uint64_t *)src); break;
  case PROTOBUF_C_TYPE_FLOAT: lua_pushnumber(L, *(const float *)src); break;
  case PROTOBUF_C_TYPE_DOUBLE: lua_pushnumber(L, *(const double *)src); break;
  case PROTOBUF_C_TYPE_BOOL: lua_pushboolean(L, *(const protobuf_c_boolean *)src); break;
  case PROTOBUF_C_TYPE_ENUM: push_enum(L, fd->descriptor, *(const int *)src); break;
  /* Strings were checked by the pre-scan: valid UTF-8 without NUL bytes. */
  case PROTOBUF_C_TYPE_STRING: lua_pushstring(L, *(char *const *)src ? *(char *const *)src : ""); break;
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *b = src;
    lua_pushlstring(L, (const char *)b->data, b->len);
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE:
    if (*(ProtobufCMessage *const *)src) message_to_lua(L, *(ProtobufCMessage *const *)src, flags, depth + 1);
    else push_default_message(L, fd->descriptor, flags, depth);
    break;
  }
}

/* Whether a singular field holds its default and can be left out. */
static int is_default(const ProtobufCFieldDescriptor *fd, const void *src) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_ENUM:
    return *(const int32_t *)src == 0;
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
    return *(const int64_t *)src == 0;
  case PROTOBUF_C_TYPE_FLOAT: return *(const float *)src == 0 && !signbit(*(const float *)src);
  case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)src == 0 && !signbit(*(const double *)src);
  case PROTOBUF_C_TYPE_BOOL: return !*(const protobuf_c_boolean *)src;
  case PROTOBUF_C_TYPE_STRING: return *(char *const *)src == NULL || **(char *const *)src == '\0';
  case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)src)->len == 0;
  case PROTOBUF_C_TYPE_MESSAGE: return *(ProtobufCMessage *const *)src == NULL;
  }
  return 0;
}

static int wkt_to_lua(lua_State *L, const ProtobufCMessage *msg, int flags, int depth) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  if (d == &google__protobuf__timestamp__descriptor) {
    const Google__Protobuf__Timestamp *t = (const void *)msg;
    push_seconds(L, t->seconds, t->nanos, 0, flags);
    return 1;
  }
  if (d == &google__protobuf__duration__descriptor) {
    const Google__Protobuf__Duration *t = (const void *)msg;
    push_seconds(L, t->seconds, t->nanos, 1, flags);
    return 1;
  }
  if (d == &google__protobuf__field_mask__descriptor) {
    const Google__Protobuf__FieldMask *m = (const void *)msg;
    lua_createtable(L, (int)m->n_paths, 0);
    for (size_t i = 0; i < m->n_paths; i++) { lua_pushstring(L, m->paths[i]); lua_rawseti(L, -2, (lua_Integer)i + 1); }
    return 1;
  }
  if (strncmp(d->name, "google.protobuf.", 16) == 0 && d->n_fields == 1 && strcmp(d->fields[0].name, "value") == 0) {
    value_to_lua(L, &d->fields[0], (const char *)msg + d->fields[0].offset, flags, depth);
    return 1;
  }
  if (d == &google__protobuf__any__descriptor) {
    const Google__Protobuf__Any *any = (const void *)msg;
    const char *type = any->type_url ? strrchr(any->type_url, '/') : NULL;
    type = type ? type + 1 : any->type_url;
    const ProtobufCMessageDescriptor *inner = type ? tl_message_by_name(type) : NULL;
    if (depth + 1 > TL_PB_MAX_DEPTH) luaL_error(L, "protobuf message nested deeper than %d", TL_PB_MAX_DEPTH);
    ProtobufCMessage *m = NULL;
    if (inner &&
        scan_or_raise(L, inner, any->value.data, any->value.len, depth + 1, 0, " (packed in an Any)") == SCAN_OK) {
      /* Unpacked into an arena owned by a userdata: an error raised while converting (a
       * limit, memory) frees it with the userdata instead of leaking every level. */
      tl_arena *a = tl_arena_new(L);
      m = protobuf_c_message_unpack(inner, &a->allocator, any->value.len, any->value.data);
      if (!m) lua_pop(L, 1);
    }
    if (!m) {  /* unknown or malformed: hand over the raw parts */
      lua_createtable(L, 0, 2);
      lua_pushstring(L, any->type_url ? any->type_url : "");
      lua_setfield(L, -2, "type_url");
      lua_pushlstring(L, (const char *)any->value.data, any->value.len);
      lua_setfield(L, -2, "value");
      return 1;
    }
    message_to_lua(L, m, flags, depth + 1);
    lua_pushstring(L, inner->name);
    lua_setfield(L, -2, "@type");
    tl_arena_reset(lua_touserdata(L, -2));
    lua_remove(L, -2);
    return 1;
  }
  return 0;
}

/* Whether field fd of the message at base shows in its Lua table: repeated fields with
 * items, a chosen oneof member (even holding its default), a set optional scalar, any
 * other singular field that does not hold its default (a present submessage). */
static int field_shown(const ProtobufCFieldDescriptor *fd, const char *base) {
  if (fd->label == PROTOBUF_C_LABEL_REPEATED) return *(const size_t *)(base + fd->quantifier_offset) != 0;
  if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    if (*(const uint32_t *)(base + fd->quantifier_offset) != fd->id) return 0;
  } else if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->type != PROTOBUF_C_TYPE_MESSAGE &&
             fd->type != PROTOBUF_C_TYPE_STRING) {
    if (!*(const protobuf_c_boolean *)(base + fd->quantifier_offset)) return 0;
  } else if (is_default(fd, base + fd->offset)) {
    return 0;
  }
  return !(fd->type == PROTOBUF_C_TYPE_MESSAGE && *(ProtobufCMessage *const *)(base + fd->offset) == NULL);
}

static void message_to_lua(lua_State *L, const ProtobufCMessage *msg, int flags, int depth) {
  if (depth > TL_PB_MAX_DEPTH) luaL_error(L, "protobuf message nested deeper than %d", TL_PB_MAX_DEPTH);
  luaL_checkstack(L, 8, "protobuf conversion");
  if (wkt_to_lua(L, msg, flags, depth)) return;
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  const char *base = (const char *)msg;
  /* Sized for the fields it gets: no rehash while they go in. */
  int shown = 0;
  for (unsigned i = 0; i < d->n_fields; i++) shown += field_shown(&d->fields[i], base);
  lua_createtable(L, 0, shown);
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *fd = &d->fields[i];
    if (!field_shown(fd, base)) continue;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + fd->quantifier_offset);
      const char *items = *(char *const *)(base + fd->offset);
      if (is_map_entry(fd)) {
        const ProtobufCMessageDescriptor *ed = fd->descriptor;
        lua_createtable(L, 0, (int)n);
        for (size_t j = 0; j < n; j++) {
          const char *e = ((char *const *)items)[j];
          value_to_lua(L, &ed->fields[0], e + ed->fields[0].offset, flags, depth);
          value_to_lua(L, &ed->fields[1], e + ed->fields[1].offset, flags, depth);
          lua_rawset(L, -3);
        }
      } else {
        size_t elem = value_size(fd);
        lua_createtable(L, (int)n, 0);
        for (size_t j = 0; j < n; j++) {
          value_to_lua(L, fd, items + j * elem, flags, depth);
          lua_rawseti(L, -2, (lua_Integer)j + 1);
        }
      }
    } else {
      value_to_lua(L, fd, base + fd->offset, flags, depth);
    }
    lua_setfield(L, -2, fd->name);
  }
}

void tl_pb_to_lua(lua_State *L, const ProtobufCMessage *msg, int flags) { message_to_lua(L, msg, flags, 0); }

/* ------------------------------------------------------------------ bytes -> Lua in one pass */

/* The decoder every response takes: straight from the wire bytes to Lua tables, driven by
 * the descriptors, with no pre-scan, no unpacked copy and no second walk. It produces
 * exactly what the reference path below it (scan_or_raise, protobuf_c_message_unpack,
 * message_to_lua) does, and only handles what is common and simple; on anything else it
 * gives up (returns 0, its partial tables dropped) and the reference path decodes the
 * whole message again, with its exact results and errors:
 *  - bytes protobuf-c would refuse or our scan would flag: malformed wire data, a wire
 *    type that does not fit the field, tags or length prefixes longer than protobuf-c
 *    reads, strings that are not valid UTF-8 or hold a NUL, nesting beyond the limit;
 *  - a singular field that occurs twice in one message (last one wins, submessages merge)
 *    or two members of one oneof; map entries without their key or value;
 *  - proto2 labels (required/optional), messages with more than 256 fields, an Any that
 *    packs a well-known type.
 * Repeated fields may occur any number of times, packed and unpacked, interleaved. */

#define FAST_MAX_FIELDS 256
#define FAST_MAX_ONEOFS 8

typedef struct {
  uint64_t v;          /* varint value, or the fixed32/fixed64 bits */
  const uint8_t *p;    /* length-delimited: the bytes; varint: its first byte */
  size_t len;          /* their length (varint: its byte count) */
} fast_val;

/* One field of the message at *pp: its number, wire type and value; 0 when protobuf-c or
 * the scan would not take it as it is. */
static int fast_field_slow(const uint8_t **pp, const uint8_t *end, uint32_t *number, unsigned *wire, fast_val *val);

static inline int fast_field(const uint8_t **pp, const uint8_t *end, uint32_t *number, unsigned *wire, fast_val *val) {
  const uint8_t *p = *pp;
  /* the common shapes first: a one-byte tag, then a one-byte varint or length */
  if (*p >= 8 && *p < 0x80 && end - p >= 2 && p[1] < 0x80) {
    unsigned w = *p & 7;
    if (w == 0) {
      *number = *p >> 3; *wire = 0;
      val->v = p[1]; val->p = p + 1; val->len = 1;
      *pp = p + 2;
      return 1;
    }
    if (w == 2 && (size_t)(end - p - 2) >= p[1]) {
      *number = *p >> 3; *wire = 2;
      val->p = p + 2; val->len = p[1];
      *pp = p + 2 + p[1];
      return 1;
    }
  }
  return fast_field_slow(pp, end, number, wire, val);
}

static int fast_field_slow(const uint8_t **pp, const uint8_t *end, uint32_t *number, unsigned *wire, fast_val *val) {
  const uint8_t *p = *pp;
  /* the tag: at most 5 bytes (protobuf-c's limit), a number in 1..2^29-1 */
  if ((*p & 0xf8) == 0) return 0;
  uint64_t tag = 0;
  int i = 0;
  for (;; i++) {
    if (i == 5 || p + i >= end) return 0;
    tag |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) break;
  }
  p += i + 1;
  if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return 0;
  *number = (uint32_t)(tag >> 3);
  *wire = (unsigned)(tag & 7);
  switch (*wire) {
  case 0: {
    uint64_t v = 0;
    const uint8_t *s = p;
    for (i = 0;; i++) {
      if (i == 10 || p >= end) return 0;
      uint8_t b = *p++;
      v |= (uint64_t)(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) break;
    }
    val->v = v; val->p = s; val->len = (size_t)(p - s);
    break;
  }
  case 1:
    if (end - p < 8) return 0;
    memcpy(&val->v, p, 8);  /* little-endian host (x86-64, aarch64) */
    p += 8;
    break;
  case 5: {
    uint32_t w;
    if (end - p < 4) return 0;
    memcpy(&w, p, 4);
    val->v = w;
    p += 4;
    break;
  }
  case 2: {
    uint64_t n = 0;
    for (i = 0;; i++) {
      if (i == 5 || p >= end) return 0;  /* protobuf-c reads at most 5 length bytes */
      uint8_t b = *p++;
      n |= (uint64_t)(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) break;
    }
    if (n > (uint64_t)(end - p) || n > 0x7fffffff) return 0;
    val->p = p; val->len = (size_t)n;
    p += n;
    break;
  }
  default: return 0;  /* groups and invalid wire types */
  }
  *pp = p;
  return 1;
}

/* The wire type a value of this type comes in (unpacked). */
static unsigned fast_wire_of(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_SFIXED32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT: return 5;
  case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE: return 1;
  case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_BYTES: case PROTOBUF_C_TYPE_MESSAGE: return 2;
  default: return 0;
  }
}

/* Valid UTF-8 without NUL bytes (the scan's rule for strings), ASCII words at a time. */
static int fast_string_ok(const uint8_t *s, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    if ((w & 0x8080808080808080ULL) || ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL)) break;
  }
  for (; i < n; i++) {
    if (s[i] == 0) return 0;
    if (s[i] & 0x80) break;
  }
  if (i == n) return 1;
  return !memchr(s + i, 0, n - i) && tl_utf8_valid((const char *)s + i, n - i);
}

/* The scalar value of type t (not a message) as protobuf-c would store it, in storage
 * shaped as value_to_lua reads it. */
typedef union { int32_t i32; uint32_t u32; int64_t i64; uint64_t u64; float f; double d; protobuf_c_boolean b; } fast_scalar;

static void fast_scalar_of(ProtobufCType t, const fast_val *v, fast_scalar *out) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SFIXED32: case PROTOBUF_C_TYPE_ENUM:
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
    out->u32 = (uint32_t)v->v; break;
  case PROTOBUF_C_TYPE_SINT32: {
    uint32_t u = (uint32_t)v->v;
    out->i32 = (int32_t)((u >> 1) ^ (0u - (u & 1)));
    break;
  }
  case PROTOBUF_C_TYPE_SINT64:
    out->i64 = (int64_t)((v->v >> 1) ^ (0ull - (v->v & 1)));
    break;
  case PROTOBUF_C_TYPE_FLOAT: { uint32_t w = (uint32_t)v->v; memcpy(&out->f, &w, 4); break; }
  case PROTOBUF_C_TYPE_DOUBLE: memcpy(&out->d, &v->v, 8); break;
  case PROTOBUF_C_TYPE_BOOL: {
    /* protobuf-c: true when any of the varint's payload bits is set */
    int b = 0;
    for (size_t i = 0; i < v->len; i++) b |= v->p[i] & 0x7f;
    out->b = b != 0;
    break;
  }
  default: out->u64 = v->v; break;
  }
}

/* Pushes a scalar, string or bytes value (no message); 0: give up (a bad string). */
static int fast_push_value(lua_State *L, const ProtobufCFieldDescriptor *fd, const fast_val *v, int flags) {
  if (fd->type == PROTOBUF_C_TYPE_STRING) {
    if (!fast_string_ok(v->p, v->len)) return 0;
    lua_pushlstring(L, (const char *)v->p, v->len);
    return 1;
  }
  if (fd->type == PROTOBUF_C_TYPE_BYTES) { lua_pushlstring(L, (const char *)v->p, v->len); return 1; }
  fast_scalar s;
  fast_scalar_of(fd->type, v, &s);
  value_to_lua(L, fd, &s, flags, 0);
  return 1;
}

/* Whether a singular value holds its field's default (is_default's rule). */
static int fast_is_default(const ProtobufCFieldDescriptor *fd, const fast_val *v) {
  if (fd->type == PROTOBUF_C_TYPE_STRING || fd->type == PROTOBUF_C_TYPE_BYTES) return v->len == 0;
  fast_scalar s;
  memset(&s, 0, sizeof(s));
  fast_scalar_of(fd->type, v, &s);
  return is_default(fd, &s);
}

/* Field names as Lua strings, cached by field number (tl_field_base) in a registry table
 * (passed down as the stack index `keys`): a key costs an integer lookup, not hashing its
 * name. */
static char fast_keys_anchor;

static void fast_push_key(lua_State *L, int keys, int base, const ProtobufCFieldDescriptor *fd, unsigned i) {
  if (base && lua_rawgeti(L, keys, base + (lua_Integer)i) == LUA_TSTRING) return;
  if (base) lua_pop(L, 1);
  lua_pushstring(L, fd->name);
  if (base) {
    lua_pushvalue(L, -1);
    lua_rawseti(L, keys, base + (lua_Integer)i);
  }
}

typedef enum { FAST_PLAIN, FAST_SECONDS, FAST_WRAPPER, FAST_FIELD_MASK, FAST_ANY } fast_kind;

/* How message_to_lua shows messages of type d (wkt_to_lua's cases). */
static fast_kind fast_kind_of(const ProtobufCMessageDescriptor *d) {
  if (d->n_fields == 2) {
    if (d == &google__protobuf__timestamp__descriptor || d == &google__protobuf__duration__descriptor) return FAST_SECONDS;
    if (d == &google__protobuf__any__descriptor) return FAST_ANY;
  } else if (d->n_fields == 1) {
    if (d == &google__protobuf__field_mask__descriptor) return FAST_FIELD_MASK;
    if (strncmp(d->name, "google.protobuf.", 16) == 0 && strcmp(d->fields[0].name, "value") == 0) return FAST_WRAPPER;
  }
  return FAST_PLAIN;
}

static int fast_message(lua_State *L, const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                        int flags, int depth, int keys);

/* A well-known type, shown as wkt_to_lua shows it. */
static int fast_wkt(lua_State *L, fast_kind kind, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                    const uint8_t *end, int flags, int depth, int keys) {
  fast_val vals[2];
  unsigned seen = 0;
  if (kind == FAST_FIELD_MASK) lua_createtable(L, 0, 0);
  lua_Integer n = 0;
  while (p < end) {
    uint32_t number; unsigned wire; fast_val v;
    if (!fast_field(&p, end, &number, &wire, &v)) return 0;
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, number);
    if (!fd) continue;
    unsigned i = (unsigned)(fd - d->fields);
    if (wire != fast_wire_of(fd->type)) return 0;
    if (kind == FAST_FIELD_MASK) {  /* repeated string paths */
      if (!fast_string_ok(v.p, v.len)) return 0;
      lua_pushlstring(L, (const char *)v.p, v.len);
      lua_rawseti(L, -2, ++n);
      continue;
    }
    if (seen & (1u << i)) return 0;
    seen |= 1u << i;
    vals[i] = v;
  }
  switch (kind) {
  case FAST_FIELD_MASK: return 1;
  case FAST_SECONDS: {
    int64_t sec = (seen & 1) ? (int64_t)vals[0].v : 0;
    int32_t nanos = (seen & 2) ? (int32_t)(uint32_t)vals[1].v : 0;
    push_seconds(L, sec, nanos, d == &google__protobuf__duration__descriptor, flags);
    return 1;
  }
  case FAST_WRAPPER:
    if (seen) return fast_push_value(L, &d->fields[0], &vals[0], flags);
    {
      fast_scalar zero;
      memset(&zero, 0, sizeof(zero));
      if (d->fields[0].type == PROTOBUF_C_TYPE_STRING || d->fields[0].type == PROTOBUF_C_TYPE_BYTES) lua_pushliteral(L, "");
      else value_to_lua(L, &d->fields[0], &zero, flags, depth);
    }
    return 1;
  case FAST_ANY: {
    /* type_url (1) and value (2): the packed message by name, or the raw parts (the
     * reference raises past the depth limit even for those) */
    if (depth + 1 > TL_PB_MAX_DEPTH) return 0;
    const uint8_t *url = (seen & 1) ? vals[0].p : NULL, *val = (seen & 2) ? vals[1].p : NULL;
    size_t url_len = (seen & 1) ? vals[0].len : 0, val_len = (seen & 2) ? vals[1].len : 0;
    if (url && !fast_string_ok(url, url_len)) return 0;
    const ProtobufCMessageDescriptor *inner = NULL;
    if (url) {
      const uint8_t *slash = url + url_len;
      while (slash > url && slash[-1] != '/') slash--;
      size_t nlen = (size_t)(url + url_len - slash);
      char name[256];
      if (nlen < sizeof(name)) {
        memcpy(name, slash, nlen);
        name[nlen] = '\0';
        inner = tl_message_by_name(name);
      }
    }
    if (!inner) {
      lua_createtable(L, 0, 2);
      lua_pushlstring(L, url ? (const char *)url : "", url_len);
      lua_setfield(L, -2, "type_url");
      lua_pushlstring(L, val ? (const char *)val : "", val_len);
      lua_setfield(L, -2, "value");
      return 1;
    }
    if (fast_kind_of(inner) != FAST_PLAIN) return 0;  /* message_to_lua's result is no table */
    if (!val) val = (const uint8_t *)"";
    if (!fast_message(L, inner, val, val + val_len, flags, depth + 1, keys)) return 0;
    lua_pushstring(L, inner->name);
    lua_setfield(L, -2, "@type");
    return 1;
  }
  default: return 0;
  }
}

/* A map entry: pushes its key and value; 0: give up (either missing, or bad). */
static int fast_map_entry(lua_State *L, const ProtobufCMessageDescriptor *ed, const uint8_t *p, const uint8_t *end,
                          int flags, int depth, int keys) {
  if (depth > TL_PB_MAX_DEPTH) return 0;
  const uint8_t *at[2] = { NULL, NULL };
  fast_val vals[2];
  while (p < end) {
    uint32_t number; unsigned wire; fast_val v;
    if (!fast_field(&p, end, &number, &wire, &v)) return 0;
    unsigned i;
    if (number == ed->fields[0].id) i = 0;
    else if (number == ed->fields[1].id) i = 1;
    else continue;
    if (at[i] || wire != fast_wire_of(ed->fields[i].type)) return 0;
    at[i] = p;
    vals[i] = v;
  }
  if (!at[0] || !at[1]) return 0;
  for (int i = 0; i < 2; i++) {
    const ProtobufCFieldDescriptor *fd = &ed->fields[i];
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
      if (!fast_message(L, fd->descriptor, vals[i].p, vals[i].p + vals[i].len, flags, depth + 1, keys)) return 0;
    } else if (!fast_push_value(L, fd, &vals[i], flags)) {
      return 0;
    }
  }
  return 1;
}

/* How many table keys the fields at [p, end) make at most (runs of one number count once):
 * sizes the table so that no rehash happens while they go in. */
static int fast_count_keys(const uint8_t *p, const uint8_t *end, unsigned max) {
  unsigned n = 0;
  uint32_t last = 0;
  while (p < end && n < max) {
    uint32_t number; unsigned wire; fast_val v;
    if (!fast_field(&p, end, &number, &wire, &v)) break;
    if (number != last) n++;
    last = number;
  }
  return (int)n;
}

/* Elements in a packed run of type t; -1: protobuf-c would refuse it. */
static long fast_packed_count(ProtobufCType t, const uint8_t *p, size_t len) {
  switch (fast_wire_of(t)) {
  case 5: return len % 4 ? -1 : (long)(len / 4);
  case 1: return len % 8 ? -1 : (long)(len / 8);
  default: {
    if (t == PROTOBUF_C_TYPE_BOOL) {
      for (size_t i = 0; i < len; i++) if (p[i] > 1) return -1;
      return (long)len;
    }
    long n = 0;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
      if (++run > 10) return -1;
      if (!(p[i] & 0x80)) { n++; run = 0; }
    }
    return run ? -1 : n;
  }
  }
}

static int fast_message(lua_State *L, const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                        int flags, int depth, int keys) {
  if (depth > TL_PB_MAX_DEPTH) return 0;
  luaL_checkstack(L, 8, "protobuf conversion");
  fast_kind kind = fast_kind_of(d);
  if (kind != FAST_PLAIN) return fast_wkt(L, kind, d, p, end, flags, depth, keys);
  if (d->n_fields > FAST_MAX_FIELDS) return 0;
  int base = tl_field_base(d);
  lua_createtable(L, 0, fast_count_keys(p, end, d->n_fields));
  int tbl = lua_gettop(L);
  uint64_t seen[FAST_MAX_FIELDS / 64];
  memset(seen, 0, ((d->n_fields + 63) / 64) * sizeof(seen[0]));
  unsigned oneofs[FAST_MAX_ONEOFS];
  int n_oneofs = 0;
  const ProtobufCFieldDescriptor *open = NULL;  /* the repeated field whose table is at tbl + 1 */
  int open_map = 0;
  lua_Integer open_n = 0;
  unsigned hint = 0;
  while (p < end) {
    uint32_t number; unsigned wire; fast_val v;
    if (!fast_field(&p, end, &number, &wire, &v)) return 0;
    const ProtobufCFieldDescriptor *fd;
    if (hint < d->n_fields && d->fields[hint].id == number) fd = &d->fields[hint];
    else if (hint + 1 < d->n_fields && d->fields[hint + 1].id == number) fd = &d->fields[++hint];
    else {
      fd = protobuf_c_message_descriptor_get_field(d, number);
      if (!fd) continue;  /* unknown: left out */
      hint = (unsigned)(fd - d->fields);
    }
    unsigned bit = hint;
    int was_seen = (seen[bit >> 6] >> (bit & 63)) & 1;
    seen[bit >> 6] |= 1ull << (bit & 63);
    unsigned want = fast_wire_of(fd->type);
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
      long packed = -1;
      if (wire != want) {
        if (wire != 2 || want == 2) return 0;
        packed = fast_packed_count(fd->type, v.p, v.len);
        if (packed < 0) return 0;
        if (packed == 0) { if (!was_seen) seen[bit >> 6] &= ~(1ull << (bit & 63)); continue; }
      }
      if (open != fd) {
        lua_settop(L, tbl);
        open = fd;
        open_map = fd->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(fd);
        fast_push_key(L, keys, base, fd, hint);
        if (was_seen) {
          lua_rawget(L, tbl);
          open_n = open_map ? 0 : (lua_Integer)lua_rawlen(L, -1);
        } else {
          lua_createtable(L, open_map ? 0 : (packed > 0 ? (int)packed : 1), open_map ? 1 : 0);
          lua_pushvalue(L, -1);
          lua_insert(L, -3);
          lua_rawset(L, tbl);
          open_n = 0;
        }
      }
      if (open_map) {
        if (!fast_map_entry(L, fd->descriptor, v.p, v.p + v.len, flags, depth + 1, keys)) return 0;
        lua_rawset(L, tbl + 1);
      } else if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (!fast_message(L, fd->descriptor, v.p, v.p + v.len, flags, depth + 1, keys)) return 0;
        lua_rawseti(L, tbl + 1, ++open_n);
      } else if (packed < 0) {
        if (!fast_push_value(L, fd, &v, flags)) return 0;
        lua_rawseti(L, tbl + 1, ++open_n);
      } else {
        const uint8_t *q = v.p, *qend = v.p + v.len;
        unsigned ew = want;
        while (q < qend) {
          fast_val e;
          if (ew == 5) { uint32_t w; memcpy(&w, q, 4); e.v = w; q += 4; }
          else if (ew == 1) { memcpy(&e.v, q, 8); q += 8; }
          else {
            uint64_t x = 0;
            int i = 0;
            e.p = q;
            for (;; i++) {
              uint8_t b = *q++;
              if (i < 10) x |= (uint64_t)(b & 0x7f) << (7 * i);
              if (!(b & 0x80)) break;
            }
            e.v = x;
            e.len = (size_t)(q - e.p);
          }
          fast_push_value(L, fd, &e, flags);
          lua_rawseti(L, tbl + 1, ++open_n);
        }
      }
      continue;
    }
    /* singular */
    if (fd->label != PROTOBUF_C_LABEL_NONE || was_seen || wire != want) return 0;
    int oneof = (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
    if (oneof) {
      for (int i = 0; i < n_oneofs; i++) if (oneofs[i] == fd->quantifier_offset) return 0;
      if (n_oneofs == FAST_MAX_ONEOFS) return 0;
      oneofs[n_oneofs++] = fd->quantifier_offset;
    }
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
      fast_push_key(L, keys, base, fd, hint);
      if (!fast_message(L, fd->descriptor, v.p, v.p + v.len, flags, depth + 1, keys)) return 0;
    } else {
      if (fd->type == PROTOBUF_C_TYPE_STRING && !fast_string_ok(v.p, v.len)) return 0;
      if (!oneof && fast_is_default(fd, &v)) continue;
      fast_push_key(L, keys, base, fd, hint);
      if (!fast_push_value(L, fd, &v, flags)) return 0;
    }
    lua_rawset(L, tbl);
  }
  lua_settop(L, tbl);
  return 1;
}


/* The reference decoder: what fast_message must match, and what decodes whatever it gives
 * up on. */
static void decode_push_reference(lua_State *L, const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                                  int flags) {
  scan_or_raise(L, d, data, len, 0, 1, "");
  max_align_t buf[2048 / sizeof(max_align_t)];
  tl_arena a;
  tl_arena_scoped(L, &a, buf, sizeof(buf));
  ProtobufCMessage *m = protobuf_c_message_unpack(d, &a.allocator, len, data);
  if (!m) luaL_error(L, "malformed %s message (%I bytes)", d->name, (lua_Integer)len);
  message_to_lua(L, m, flags, 0);
  lua_remove(L, -2);  /* the anchor: m's memory is not used any more */
}

void tl_pb_decode_push(lua_State *L, const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len, int flags) {
  int top = lua_gettop(L);
  if (!data) data = (const uint8_t *)"";
  luaL_checkstack(L, 4, "protobuf conversion");
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &fast_keys_anchor) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &fast_keys_anchor);
  }
  int keys = top + 1;
  if (fast_message(L, d, data, data + len, flags, 0, keys)) { lua_remove(L, keys); return; }
  lua_settop(L, top);
  decode_push_reference(L, d, data, len, flags);
}

/* ------------------------------------------------------------------ Lua functions */

static const ProtobufCMessageDescriptor *check_type(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  const ProtobufCMessageDescriptor *d = tl_message_by_name(name);
  if (!d) luaL_error(L, "unknown protobuf message type '%s'", name);
  return d;
}

/* core.encode(type_name, table) -> bytes */
static int l_encode(lua_State *L) {
  const ProtobufCMessageDescriptor *d = check_type(L, 1);
  luaL_checkany(L, 2);
  max_align_t buf[1024 / sizeof(max_align_t)];
  size_t n;
  const uint8_t *bytes = tl_pb_encode(L, 2, d, buf, sizeof(buf), &n, d->short_name);
  lua_pushlstring(L, (const char *)bytes, n);
  return 1;
}

/* core._encode_protobuf_c(type_name, table) -> bytes: the same through a protobuf-c
 * message and protobuf_c_message_pack (what tl_pb_encode must equal; for the specs). */
static int l_encode_protobuf_c(lua_State *L) {
  const ProtobufCMessageDescriptor *d = check_type(L, 1);
  luaL_checkany(L, 2);
  tl_arena *a = tl_arena_new(L);
  path_frame root = { NULL, d->short_name, 0 };
  ProtobufCMessage *m = message_from_lua(L, 2, d, a, &root, 0);
  size_t n = protobuf_c_message_get_packed_size(m);
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, n);
  protobuf_c_message_pack(m, out);
  luaL_pushresultsize(&b, n);
  tl_arena_reset(a);
  return 1;
}

/* core._decode_reference(type_name, bytes[, exact]) -> table: the reference decoder alone,
 * for the specs and the fuzzer that hold the one-pass decoder to it. */
static int l_decode_reference(lua_State *L) {
  const ProtobufCMessageDescriptor *d = check_type(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  decode_push_reference(L, d, (const uint8_t *)s, len, lua_isnoneornil(L, 3) || lua_toboolean(L, 3) ? TL_PB_EXACT_TIMES : 0);
  return 1;
}

/* core.decode(type_name, bytes) -> table */
static int l_decode(lua_State *L) {
  const ProtobufCMessageDescriptor *d = check_type(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  tl_pb_decode_push(L, d, (const uint8_t *)s, len, TL_PB_EXACT_TIMES);
  return 1;
}

void tl_pb_open(lua_State *L) {
  lua_pushcfunction(L, l_encode);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, l_encode_protobuf_c);
  lua_setfield(L, -2, "_encode_protobuf_c");
  lua_pushcfunction(L, l_decode);
  lua_setfield(L, -2, "decode");
  lua_pushcfunction(L, l_decode_reference);
  lua_setfield(L, -2, "_decode_reference");
}
