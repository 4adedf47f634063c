/*
 * Lookup of the generated descriptors by full name. protobuf-c has no registry, so the
 * build lists every descriptor in registry.inc (tools/genproto.sh) and this file sorts
 * them once for binary search: needed to unpack google.protobuf.Any and to find the
 * services whose methods become the raw RPC surface.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "temporal_lua.h"
#include "all.h"

#define X_Message(d) &d,
#define X_Enum(d)
#define X_Service(d)
static const ProtobufCMessageDescriptor *messages[] = {
#include "registry.inc"
};
#undef X_Message
#undef X_Service
#define X_Message(d)
#define X_Service(d) &d,
static const ProtobufCServiceDescriptor *services[] = {
#include "registry.inc"
};
#undef X_Message
#undef X_Enum
#undef X_Service

#define N_MESSAGES (sizeof(messages) / sizeof(messages[0]))
#define N_SERVICES (sizeof(services) / sizeof(services[0]))
_Static_assert(N_MESSAGES * 2 <= 2048, "FIELD_BASE_SLOTS too small");

static int sorted;

static int cmp_message(const void *a, const void *b) {
  return strcmp((*(const ProtobufCMessageDescriptor *const *)a)->name,
                (*(const ProtobufCMessageDescriptor *const *)b)->name);
}

/* Called from luaopen, which runs on the Lua thread before any lookup. */
static void ensure_sorted(void) {
  if (sorted) return;
  qsort(messages, N_MESSAGES, sizeof(messages[0]), cmp_message);
  sorted = 1;
}

const ProtobufCMessageDescriptor *tl_message_by_name(const char *name) {
  size_t lo = 0, hi = N_MESSAGES;
  ensure_sorted();
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(name, messages[mid]->name);
    if (c == 0) return messages[mid];
    if (c < 0) hi = mid; else lo = mid + 1;
  }
  return NULL;
}

/* Every field of every message numbered 1..n (the message's fields after the previous
 * message's), found by descriptor pointer in an open-addressing table built once: the
 * decoder's cache of field names as Lua strings is indexed by these numbers. */
#define FIELD_BASE_SLOTS 2048   /* a power of two, over twice the number of messages */
static struct { const ProtobufCMessageDescriptor *d; int base; } field_bases[FIELD_BASE_SLOTS];
static pthread_once_t field_bases_once = PTHREAD_ONCE_INIT;

static size_t field_base_slot(const ProtobufCMessageDescriptor *d) {
  return (size_t)(((uintptr_t)d >> 3) * 0x9E3779B97F4A7C15ull >> 53) & (FIELD_BASE_SLOTS - 1);
}

static void build_field_bases(void) {
  int next = 1;
  for (size_t i = 0; i < N_MESSAGES; i++) {
    size_t slot = field_base_slot(messages[i]);
    while (field_bases[slot].d) slot = (slot + 1) & (FIELD_BASE_SLOTS - 1);
    field_bases[slot].d = messages[i];
    field_bases[slot].base = next;
    next += (int)messages[i]->n_fields;
  }
}

int tl_field_base(const ProtobufCMessageDescriptor *d) {
  pthread_once(&field_bases_once, build_field_bases);
  for (size_t slot = field_base_slot(d);; slot = (slot + 1) & (FIELD_BASE_SLOTS - 1)) {
    if (field_bases[slot].d == d) return field_bases[slot].base;
    if (!field_bases[slot].d) return 0;
  }
}

const ProtobufCServiceDescriptor *tl_service_by_name(const char *name) {
  for (size_t i = 0; i < N_SERVICES; i++)
    if (strcmp(services[i]->name, name) == 0) return services[i];
  return NULL;
}

/* "/pkg.Service/Method" of every method, built once per process and kept (never freed):
 * a call's :path and its name in errors, without formatting or allocating per call. */
static char **method_paths[N_SERVICES];
static pthread_once_t method_paths_once = PTHREAD_ONCE_INIT;

static void build_method_paths(void) {
  for (size_t i = 0; i < N_SERVICES; i++) {
    const ProtobufCServiceDescriptor *s = services[i];
    char **paths = calloc(s->n_methods ? s->n_methods : 1, sizeof(*paths));
    if (!paths) return;
    for (unsigned m = 0; m < s->n_methods; m++) {
      size_t len = strlen(s->name) + strlen(s->methods[m].name) + 3;
      if (!(paths[m] = malloc(len))) return;  /* the path stays NULL: the caller raises */
      snprintf(paths[m], len, "/%s/%s", s->name, s->methods[m].name);
    }
    method_paths[i] = paths;
  }
}

const char *tl_method_path(const ProtobufCServiceDescriptor *sd, const ProtobufCMethodDescriptor *md) {
  pthread_once(&method_paths_once, build_method_paths);
  for (size_t i = 0; i < N_SERVICES; i++)
    if (services[i] == sd) return method_paths[i] ? method_paths[i][md - sd->methods] : NULL;
  return NULL;
}

/* core.services() -> { [full service name] = { MethodName = { input=, output= }, ... } } */
static int l_services(lua_State *L) {
  lua_createtable(L, 0, (int)N_SERVICES);
  for (size_t i = 0; i < N_SERVICES; i++) {
    const ProtobufCServiceDescriptor *s = services[i];
    lua_createtable(L, 0, (int)s->n_methods);
    for (unsigned m = 0; m < s->n_methods; m++) {
      lua_createtable(L, 0, 2);
      lua_pushstring(L, s->methods[m].input->name);
      lua_setfield(L, -2, "input");
      lua_pushstring(L, s->methods[m].output->name);
      lua_setfield(L, -2, "output");
      lua_setfield(L, -2, s->methods[m].name);
    }
    lua_setfield(L, -2, s->name);
  }
  return 1;
}

/* core.message_fields(type) -> list of field names (for docs, completion and tests) */
static int l_message_fields(lua_State *L) {
  const ProtobufCMessageDescriptor *d = tl_message_by_name(luaL_checkstring(L, 1));
  if (!d) return luaL_error(L, "unknown protobuf message type '%s'", lua_tostring(L, 1));
  lua_createtable(L, (int)d->n_fields, 0);
  for (unsigned i = 0; i < d->n_fields; i++) {
    lua_pushstring(L, d->fields[i].name);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

void tl_registry_open(lua_State *L) {
  ensure_sorted();
  lua_pushcfunction(L, l_services);
  lua_setfield(L, -2, "services");
  lua_pushcfunction(L, l_message_fields);
  lua_setfield(L, -2, "message_fields");
}
