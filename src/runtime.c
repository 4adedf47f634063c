/*
 * The runtime: one completion queue per lua_State, a poller thread blocked on it, and
 * an eventfd the Lua thread (or a host event loop) waits on. The poller only appends
 * (tag, ok) to a mutex-guarded list and bumps the eventfd; draining the list, freeing
 * calls and every Lua operation happen on the Lua thread (see ENGINEERING.md).
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "rpc.h"

#define TL_RUNTIME_MT "temporal.Runtime"
#define TL_RUNTIME_KEY "temporal.runtime"

static void *poller_main(void *arg) {
  tl_runtime *rt = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(rt->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    tl_call *c = ev.tag;
    c->batch_ok = ev.success;
    c->next_done = NULL;
    pthread_mutex_lock(&rt->mu);
    if (rt->done_tail) rt->done_tail->next_done = c; else rt->done_head = c;
    rt->done_tail = c;
    pthread_mutex_unlock(&rt->mu);
    uint64_t one = 1;
    ssize_t w = write(rt->efd, &one, sizeof(one));
    (void)w;  /* EAGAIN only when the counter is saturated: it is readable then anyway */
  }
  return NULL;
}

void tl_runtime_add(tl_runtime *rt, tl_call *c) {
  c->rt = rt;
  c->prev = NULL;
  c->next = rt->inflight;
  if (rt->inflight) rt->inflight->prev = c;
  rt->inflight = c;
  rt->ninflight++;
}

static void runtime_remove(tl_runtime *rt, tl_call *c) {
  if (c->prev) c->prev->next = c->next; else rt->inflight = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
  rt->ninflight--;
}

/* Takes the done list; marks each call done and releases its grpc_call. */
static tl_call *take_done(tl_runtime *rt) {
  uint64_t v;
  ssize_t r = read(rt->efd, &v, sizeof(v));
  (void)r;
  pthread_mutex_lock(&rt->mu);
  tl_call *list = rt->done_head;
  rt->done_head = rt->done_tail = NULL;
  pthread_mutex_unlock(&rt->mu);
  for (tl_call *c = list; c; c = c->next_done) {
    runtime_remove(rt, c);
    c->done = 1;
    grpc_call_unref(c->call);
    c->call = NULL;
  }
  return list;
}

static int wait_readable(int fd, double timeout) {
  int ms;
  if (timeout < 0) ms = -1;
  else if (timeout * 1000 >= INT_MAX) ms = INT_MAX;
  else ms = (int)ceil(timeout * 1000);
  struct pollfd p = { fd, POLLIN, 0 };
  return poll(&p, 1, ms);  /* EINTR returns early: the caller loops, a Lua hook may run */
}

static tl_runtime *check_runtime(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, TL_RUNTIME_MT);
}

tl_runtime *tl_runtime_get(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, TL_RUNTIME_KEY);
  tl_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!rt || rt->closed) luaL_error(L, "temporal runtime is closed");
  if (rt->pid != getpid())
    luaL_error(L, "temporal: gRPC objects do not survive fork(); create clients in the child after forking");
  return rt;
}

static void runtime_shutdown(tl_runtime *rt) {
  if (rt->closed) return;
  rt->closed = 1;
  if (rt->pid != getpid()) {  /* a forked child: the parent owns the gRPC state */
    close(rt->efd);
    return;
  }
  for (tl_call *c = rt->inflight; c; c = c->next) grpc_call_cancel(c->call, NULL);
  /* Every accepted batch completes, also after cancel: drain before freeing. */
  while (rt->ninflight > 0) {
    wait_readable(rt->efd, 1.0);
    tl_call *list = take_done(rt);
    while (list) {
      tl_call *next = list->next_done;
      if (list->orphaned) tl_call_free(list);
      list = next;
    }
  }
  grpc_completion_queue_shutdown(rt->cq);
  pthread_join(rt->poller, NULL);
  grpc_completion_queue_destroy(rt->cq);
  close(rt->efd);
  pthread_mutex_destroy(&rt->mu);
  grpc_shutdown();
}

static int runtime_gc(lua_State *L) {
  runtime_shutdown(check_runtime(L, 1));
  return 0;
}

/* core.wait([timeout]) -> list of completed call objects.
 * timeout: seconds to wait for a completion; 0 polls; nil waits until one arrives. */
static int l_wait(lua_State *L) {
  tl_runtime *rt = tl_runtime_get(L);
  double timeout = luaL_optnumber(L, 1, -1);
  pthread_mutex_lock(&rt->mu);
  int ready = rt->done_head != NULL;
  pthread_mutex_unlock(&rt->mu);
  /* With nothing in flight, a finite timeout is a plain sleep; an endless one returns. */
  if (!ready && timeout != 0 && (timeout > 0 || rt->ninflight > 0)) wait_readable(rt->efd, timeout);
  tl_call *list = take_done(rt);
  lua_newtable(L);
  lua_Integer n = 0;
  while (list) {
    tl_call *next = list->next_done;
    if (list->orphaned) tl_call_free(list);
    else { tl_call_push_completed(L, list); lua_rawseti(L, -2, ++n); }
    list = next;
  }
  return 1;
}

/* core.pollfd() -> the eventfd that becomes readable when completions are waiting */
static int l_pollfd(lua_State *L) {
  lua_pushinteger(L, tl_runtime_get(L)->efd);
  return 1;
}

static int l_inflight(lua_State *L) {
  lua_pushinteger(L, tl_runtime_get(L)->ninflight);
  return 1;
}

/* core.now() -> monotonic seconds (for timers and deadlines) */
static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
  return 1;
}

static int l_grpc_version(lua_State *L) {
  lua_pushstring(L, grpc_version_string());
  return 1;
}

/* gRPC's threads outlive lua_close; keep this library mapped so they never run
 * unmapped code (dlclose from package's CLIBS finalizer would unmap it). */
static void pin_library(void) {
  Dl_info info;
  if (dladdr((void *)pin_library, &info) && info.dli_fname) {
    void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    (void)h;  /* the handle is deliberately never closed */
  }
}

void tl_runtime_open(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, TL_RUNTIME_KEY) == LUA_TNIL) {
    lua_pop(L, 1);
    pin_library();
    tl_runtime *rt = lua_newuserdatauv(L, sizeof(*rt), 0);
    memset(rt, 0, sizeof(*rt));
    rt->closed = 1;  /* until fully set up, the finalizer has nothing to undo */
    luaL_newmetatable(L, TL_RUNTIME_MT);
    lua_pushcfunction(L, runtime_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    rt->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (rt->efd < 0) luaL_error(L, "temporal: eventfd failed: %s", strerror(errno));
    grpc_init();
    rt->cq = grpc_completion_queue_create_for_next(NULL);
    pthread_mutex_init(&rt->mu, NULL);
    rt->pid = getpid();
    int err = pthread_create(&rt->poller, NULL, poller_main, rt);
    if (err) {
      grpc_completion_queue_shutdown(rt->cq);
      grpc_completion_queue_destroy(rt->cq);
      grpc_shutdown();
      close(rt->efd);
      luaL_error(L, "temporal: cannot start the poller thread: %s", strerror(err));
    }
    rt->closed = 0;
    lua_setfield(L, LUA_REGISTRYINDEX, TL_RUNTIME_KEY);
  } else {
    lua_pop(L, 1);
  }
  static const luaL_Reg fns[] = {
    {"wait", l_wait}, {"pollfd", l_pollfd}, {"inflight", l_inflight},
    {"grpc_version", l_grpc_version}, {"now", l_now}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
