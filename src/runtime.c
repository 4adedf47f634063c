/*
 * The runtime. One completion queue and one poller thread serve the whole process,
 * however many lua_States load the module (skynet runs one state per service): the
 * poller blocks on the queue and hands each completion to the state that started the
 * call - a mutex-guarded done list plus that state's eventfd, which its Lua thread (or
 * a host event loop) waits on. Draining the list, freeing calls and every Lua operation
 * happen on the state's own thread (see ENGINEERING.md).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
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

/* The process-wide part: created with the first state, torn down with the last. */
static struct {
  pthread_mutex_t mu;
  int users;                      /* states holding it */
  grpc_completion_queue *cq;
  pthread_t poller;
  pid_t pid;
} shared = { PTHREAD_MUTEX_INITIALIZER, 0, NULL, 0, 0 };

static void *poller_main(void *arg) {
  grpc_completion_queue *cq = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    tl_call *c = ev.tag;
    tl_runtime *rt = c->rt;
    c->batch_ok = ev.success;
    c->next_done = NULL;
    /* The eventfd is written under the lock: once the state has drained its last call it
     * takes the lock once more, so it never frees what the poller still touches. */
    pthread_mutex_lock(&rt->mu);
    if (rt->done_tail) rt->done_tail->next_done = c; else rt->done_head = c;
    rt->done_tail = c;
    uint64_t one = 1;
    ssize_t w = write(rt->efd, &one, sizeof(one));
    (void)w;  /* EAGAIN only when the counter is saturated: it is readable then anyway */
    pthread_mutex_unlock(&rt->mu);
  }
  return NULL;
}

/* Takes a reference to the shared queue and poller (starting them for the first state). */
static const char *shared_acquire(grpc_completion_queue **cq) {
  const char *err = NULL;
  pthread_mutex_lock(&shared.mu);
  if (shared.users > 0 && shared.pid != getpid()) {
    err = "temporal: gRPC objects do not survive fork(); load the module in a process that did not inherit it";
  } else if (shared.users == 0) {
    grpc_init();
    shared.cq = grpc_completion_queue_create_for_next(NULL);
    shared.pid = getpid();
    int e = pthread_create(&shared.poller, NULL, poller_main, shared.cq);
    if (e) {
      grpc_completion_queue_shutdown(shared.cq);
      grpc_completion_queue_destroy(shared.cq);
      shared.cq = NULL;
      grpc_shutdown();
      err = "temporal: cannot start the poller thread";
    }
  }
  if (!err) {
    shared.users++;
    *cq = shared.cq;
  }
  pthread_mutex_unlock(&shared.mu);
  return err;
}

/* Drops a state's reference; the last one stops the poller and shuts gRPC down. Every
 * call of the state must be drained already. */
static void shared_release(void) {
  pthread_mutex_lock(&shared.mu);
  if (--shared.users == 0) {
    grpc_completion_queue_shutdown(shared.cq);
    pthread_join(shared.poller, NULL);
    grpc_completion_queue_destroy(shared.cq);
    shared.cq = NULL;
    /* Blocking: gRPC's own threads are gone when the last state has closed (plain
     * grpc_shutdown leaves that to a detached thread that may outlive lua_close). */
    grpc_shutdown_blocking();
  }
  pthread_mutex_unlock(&shared.mu);
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

/* timeout: seconds, negative (or NaN, or beyond INT_MAX ms) for no limit */
static int wait_readable(int fd, double timeout) {
  int ms;
  if (!(timeout >= 0) || timeout * 1000 >= INT_MAX) ms = -1;
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
  if (!rt->cq) {  /* never got the shared queue */
    close(rt->efd);
    pthread_mutex_destroy(&rt->mu);
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
  /* The poller wrote our eventfd under mu: once we hold mu it is done with this state. */
  pthread_mutex_lock(&rt->mu);
  pthread_mutex_unlock(&rt->mu);
  close(rt->efd);
  pthread_mutex_destroy(&rt->mu);
  rt->cq = NULL;
  shared_release();
}

void tl_runtime_cancel_owner(lua_State *L, const void *owner, const char *why) {
  lua_getfield(L, LUA_REGISTRYINDEX, TL_RUNTIME_KEY);
  tl_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!rt || rt->closed || rt->pid != getpid()) return;
  for (tl_call *c = rt->inflight; c; c = c->next)
    if (c->owner == owner && c->call) grpc_call_cancel_with_status(c->call, GRPC_STATUS_CANCELLED, why, NULL);
}

static int runtime_gc(lua_State *L) {
  runtime_shutdown(check_runtime(L, 1));
  return 0;
}

/* core.wait([timeout]) -> list of completed call objects.
 * timeout: seconds to wait for a completion; 0 polls; nil or math.huge waits until one
 * arrives (and returns at once when nothing is in flight). */
static int l_wait(lua_State *L) {
  tl_runtime *rt = tl_runtime_get(L);
  double timeout = luaL_optnumber(L, 1, -1);
  if (timeout != timeout) return luaL_argerror(L, 1, "timeout is NaN");
  if (timeout == HUGE_VAL) timeout = -1;
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

/* core.wake(): makes pollfd() readable, so a host loop waiting on it runs a step
 * (work became ready outside one). */
static int l_wake(lua_State *L) {
  uint64_t one = 1;
  ssize_t w = write(tl_runtime_get(L)->efd, &one, sizeof(one));
  (void)w;
  return 0;
}

/* core.runtime_info() -> { states = n, poller_threads = 1 }: the process-wide runtime */
static int l_runtime_info(lua_State *L) {
  pthread_mutex_lock(&shared.mu);
  int users = shared.users;
  pthread_mutex_unlock(&shared.mu);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, users);
  lua_setfield(L, -2, "states");
  lua_pushinteger(L, users > 0 ? 1 : 0);
  lua_setfield(L, -2, "poller_threads");
  return 1;
}

/* core.pollfd() -> the eventfd that becomes readable when completions are waiting */
static int l_pollfd(lua_State *L) {
  lua_pushinteger(L, tl_runtime_get(L)->efd);
  return 1;
}

/* core.dup_pollfd() -> a duplicate of the pollfd that the caller owns and closes: for a
 * host that takes over the descriptor it watches (skynet's socket.bind closes it). */
static int l_dup_pollfd(lua_State *L) {
  int fd = fcntl(tl_runtime_get(L)->efd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return luaL_error(L, "dup_pollfd: %s", strerror(errno));
  lua_pushinteger(L, fd);
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
    pthread_mutex_init(&rt->mu, NULL);
    rt->pid = getpid();
    rt->closed = 0;  /* from here the finalizer closes the eventfd */
    const char *err = shared_acquire(&rt->cq);
    if (err) luaL_error(L, "%s", err);
    lua_setfield(L, LUA_REGISTRYINDEX, TL_RUNTIME_KEY);
  } else {
    lua_pop(L, 1);
  }
  static const luaL_Reg fns[] = {
    {"wait", l_wait}, {"pollfd", l_pollfd}, {"dup_pollfd", l_dup_pollfd}, {"inflight", l_inflight}, {"wake", l_wake},
    {"runtime_info", l_runtime_info}, {"grpc_version", l_grpc_version}, {"now", l_now},
    {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
