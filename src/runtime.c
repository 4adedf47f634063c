/*
 * The runtime: where a state's completions come from.
 *
 * Direct mode (every state starts in it): the state has its own completion queue and its
 * Lua thread, when it waits (core.wait), blocks in grpc_completion_queue_next on it -
 * as a plain C program would. The completion is taken on the thread that owns the call:
 * no other thread wakes up, no lock, no eventfd.
 *
 * Relayed mode (for good, from the moment a host asks for the pollfd - core.pollfd,
 * core.dup_pollfd, core.wake - which scheduler.set_host does at once): new calls go to
 * one process-wide completion queue that one poller thread serves for every relayed
 * state, however many lua_States load the module (skynet runs one state per service).
 * The poller hands each completion to the state that started the call - a
 * mutex-guarded done list plus that state's eventfd, which the host loop waits on.
 * Calls still in flight on the own queue at the switch are handed over the same way by a
 * drain thread, which ends (and destroys the own queue) with the last of them.
 *
 * Draining the list, freeing calls and every Lua operation happen on the state's own
 * thread (see ENGINEERING.md).
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
/* the registry slot of the state's runtime userdata (a light userdata key: no string
 * hashing on the path of every call) */
static const char runtime_key = 0;
#define PUSH_RUNTIME(L) lua_rawgetp((L), LUA_REGISTRYINDEX, &runtime_key)
/* set by core.relay_mode() before the state has a runtime: it is made relayed */
#define TL_RELAY_WANTED_KEY "temporal.relay_wanted"

/* A direct wait with no limit returns to Lua this often (seconds), with nothing, so a
 * hook armed by a signal (Ctrl-C in temporal-lua) runs: gRPC retries its own epoll_wait
 * on EINTR, so a signal alone does not end the wait. */
#define TL_DIRECT_WAIT_SLICE 0.25

/* The process-wide part: gRPC itself from the first state to the last; the shared queue
 * and its poller thread from the first relayed state to the last state. */
static struct {
  pthread_mutex_t mu;
  int users;                      /* states holding it */
  grpc_completion_queue *cq;      /* NULL until a state is relayed */
  pthread_t poller;
  pid_t pid;
} shared = { PTHREAD_MUTEX_INITIALIZER, 0, NULL, 0, 0 };

/* Hands a completion over to the state that started the call (poller and drain threads).
 * The eventfd is written under the lock: once the state has drained its last call it
 * takes the lock once more, so it never frees what this thread still touches. */
static void relay_completion(tl_call *c, int ok) {
  tl_runtime *rt = c->rt;
  c->batch_ok = ok;
  c->next_done = NULL;
  pthread_mutex_lock(&rt->mu);
  if (rt->done_tail) rt->done_tail->next_done = c; else rt->done_head = c;
  rt->done_tail = c;
  uint64_t one = 1;
  ssize_t w = write(rt->efd, &one, sizeof(one));
  (void)w;  /* EAGAIN only when the counter is saturated: it is readable then anyway */
  pthread_mutex_unlock(&rt->mu);
}

static void *poller_main(void *arg) {
  grpc_completion_queue *cq = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type == GRPC_OP_COMPLETE) relay_completion(ev.tag, ev.success);
  }
  return NULL;
}

/* Debian builds abseil without NDEBUG, so every absl::Mutex lock inside gRPC also runs
 * abseil's debug-only deadlock detector (DeadlockCheck and its lock-graph lookups, on lock
 * and on unlock): ~400 instructions a lock, ~11 locks a GetSystemInfo and ~36 a start
 * (~4k and ~13k instructions, measured with callgrind). Release builds of abseil - the
 * one inside the grpcio wheel the Python SDK runs on - never run it. It is switched off
 * (abseil's own setting, kIgnore = 0) before gRPC is first initialised. A weak reference
 * to Debian's symbol: with another abseil build (another inline namespace) it is absent
 * and nothing changes. */
extern void _ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE(int) __attribute__((weak));

static void absl_release_mode(void) {
  static int done;
  if (done) return;
  done = 1;
  if (_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE)
    _ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE(0);
}

/* Takes a reference to the process-wide part (gRPC initialised with the first state). */
static const char *shared_acquire(void) {
  const char *err = NULL;
  pthread_mutex_lock(&shared.mu);
  if (shared.users > 0 && shared.pid != getpid()) {
    err = "temporal: gRPC objects do not survive fork(); load the module in a process that did not inherit it";
  } else {
    if (shared.users == 0) {
      absl_release_mode();
      grpc_init();
      shared.pid = getpid();
    }
    shared.users++;
  }
  pthread_mutex_unlock(&shared.mu);
  return err;
}

/* The shared queue, starting it and its poller for the first relayed state; NULL when
 * the thread cannot be started. */
static grpc_completion_queue *shared_relay_cq(void) {
  pthread_mutex_lock(&shared.mu);
  if (!shared.cq) {
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&shared.poller, NULL, poller_main, cq) == 0) {
      shared.cq = cq;
    } else {
      grpc_completion_queue_shutdown(cq);
      grpc_completion_queue_destroy(cq);
    }
  }
  grpc_completion_queue *cq = shared.cq;
  pthread_mutex_unlock(&shared.mu);
  return cq;
}

/* Drops a state's reference; the last one stops the poller and shuts gRPC down. Every
 * call of the state must be drained already. */
static void shared_release(void) {
  pthread_mutex_lock(&shared.mu);
  if (--shared.users == 0) {
    if (shared.cq) {
      grpc_completion_queue_shutdown(shared.cq);
      pthread_join(shared.poller, NULL);
      grpc_completion_queue_destroy(shared.cq);
      shared.cq = NULL;
    }
    /* Blocking: gRPC's own threads are gone when the last state has closed (plain
     * grpc_shutdown leaves that to a detached thread that may outlive lua_close). */
    grpc_shutdown_blocking();
  }
  pthread_mutex_unlock(&shared.mu);
}

/* Shuts a queue down and destroys it once every event (none may be pending) is out. */
static void destroy_cq(grpc_completion_queue *cq) {
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {}
  grpc_completion_queue_destroy(cq);
}

/* The drain thread: relays the completions of the calls that were in flight on a state's
 * own queue when it switched to relayed mode, then destroys that queue. It never touches
 * the state after relaying the last of them (the state joins it before it goes away). */
typedef struct { grpc_completion_queue *cq; int pending; } drain_job;

static void *drain_main(void *arg) {
  drain_job job = *(drain_job *)arg;
  free(arg);
  while (job.pending > 0) {
    grpc_event ev = grpc_completion_queue_next(job.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    relay_completion(ev.tag, ev.success);
    job.pending--;
  }
  destroy_cq(job.cq);
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

static void mark_done(tl_runtime *rt, tl_call *c) {
  runtime_remove(rt, c);
  c->done = 1;
  tl_call_completed(c);
  grpc_call_unref(c->call);
  c->call = NULL;
}

/* Relayed: takes the done list; marks each call done and releases its grpc_call. */
static tl_call *take_done(tl_runtime *rt) {
  uint64_t v;
  ssize_t r = read(rt->efd, &v, sizeof(v));
  (void)r;
  pthread_mutex_lock(&rt->mu);
  tl_call *list = rt->done_head;
  rt->done_head = rt->done_tail = NULL;
  pthread_mutex_unlock(&rt->mu);
  for (tl_call *c = list; c; c = c->next_done) mark_done(rt, c);
  return list;
}

/* seconds from now on the monotonic clock; negative: now (poll) */
static gpr_timespec deadline_in(double seconds) {
  if (!(seconds > 0)) return gpr_inf_past(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_micros((int64_t)(seconds * 1e6), GPR_TIMESPAN));
}

/* After the completion it waited for, take_direct polls once more for whatever else is
 * queued already. Where gRPC's queue is empty, that poll is a whole round of gRPC's poller
 * (an epoll_wait(0) and its bookkeeping: ~5k instructions, as much as the wait itself) for
 * nothing - the case when responses arrive one at a time (a server slower than this
 * thread): one such poll per call. So after two such polls in a row the next waits skip
 * it, 1, 2, 4 .. TL_DRAIN_SKIP_MAX of them between two tries; a try that finds a
 * completion ends the skipping. A skipped completion is not lost: it stays queued, and
 * the next wait takes it from the queue without polling. */
#define TL_DRAIN_SKIP_MAX 16

static int drain_wanted(tl_runtime *rt) {
  if (rt->drain_skip == 0) return 1;
  rt->drain_skip--;
  return 0;
}

static void drain_result(tl_runtime *rt, int found) {
  if (found) {
    rt->drain_misses = 0;
  } else if (++rt->drain_misses >= 2) {
    int gap = rt->drain_misses - 2 < 4 ? 1 << (rt->drain_misses - 2) : TL_DRAIN_SKIP_MAX;
    rt->drain_skip = gap;
    if (rt->drain_misses > 6) rt->drain_misses = 6;
  }
}

/* Direct: waits on the own queue until `deadline` for a completion, then takes whatever
 * else is there already (see drain_wanted); returns them as a list, each marked done. */
static tl_call *take_direct(tl_runtime *rt, gpr_timespec deadline) {
  tl_call *head = NULL, *tail = NULL;
  int n = 0, draining = 0;
  grpc_event ev = grpc_completion_queue_next(rt->own, deadline, NULL);
  while (ev.type == GRPC_OP_COMPLETE) {
    tl_call *c = ev.tag;
    c->batch_ok = ev.success;
    c->next_done = NULL;
    if (tail) tail->next_done = c; else head = c;
    tail = c;
    mark_done(rt, c);
    n++;
    if (rt->ninflight == 0) break;  /* nothing more can be there */
    if (n == 1 && !(draining = drain_wanted(rt))) break;
    ev = grpc_completion_queue_next(rt->own, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
  }
  if (draining) drain_result(rt, n > 1);
  return head;
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

static tl_runtime *runtime_create(lua_State *L);

/* The state's runtime, created on first use (a connect, a call, a wait), not when the module
 * loads: a process that loads temporal and then forks (nginx's master runs init_by_lua*
 * before forking its workers) has started no thread. */
tl_runtime *tl_runtime_get(lua_State *L) {
  PUSH_RUNTIME(L);
  tl_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!rt) rt = runtime_create(L);
  if (rt->pid != getpid())
    luaL_error(L, "temporal: this state's runtime was created in process %d, which forked into this "
               "one (%d); gRPC's threads do not survive fork(): make the first connect or call in the "
               "child (in nginx: init_worker_by_lua* or a handler, not init_by_lua*)",
               (int)rt->pid, (int)getpid());
  if (rt->closed) luaL_error(L, "temporal runtime is closed");
  return rt;
}

/* From direct to relayed mode (once; idempotent). The own queue's calls still in flight
 * go on to a drain thread; with none, the queue is destroyed now. Raises (and stays
 * direct) when a thread cannot be started. */
static void runtime_relay(lua_State *L, tl_runtime *rt) {
  if (rt->relayed) return;
  grpc_completion_queue *cq = shared_relay_cq();
  if (!cq) luaL_error(L, "temporal: cannot start the poller thread");
  int pending = 0;
  for (tl_call *c = rt->inflight; c; c = c->next)
    if (c->direct) pending++;
  if (pending > 0) {
    drain_job *job = malloc(sizeof(*job));
    if (!job) luaL_error(L, "out of memory");
    job->cq = rt->own;
    job->pending = pending;
    if (pthread_create(&rt->drain, NULL, drain_main, job) != 0) {
      free(job);
      luaL_error(L, "temporal: cannot start the thread that hands over the calls in flight");
    }
    rt->drain_started = 1;
  } else {
    destroy_cq(rt->own);
  }
  rt->own = NULL;
  rt->cq = cq;
  rt->relayed = 1;
}

static void free_orphans(tl_call *list) {
  while (list) {
    tl_call *next = list->next_done;
    if (list->orphaned) tl_call_free(list);
    list = next;
  }
}

static void runtime_shutdown(tl_runtime *rt) {
  if (rt->closed) return;
  rt->closed = 1;
  if (rt->pid != getpid()) {  /* a forked child: the parent owns the gRPC state */
    close(rt->efd);
    return;
  }
  if (!rt->acquired) {  /* never got gRPC */
    close(rt->efd);
    pthread_mutex_destroy(&rt->mu);
    return;
  }
  for (tl_call *c = rt->inflight; c; c = c->next) grpc_call_cancel(c->call, NULL);
  /* Every accepted batch completes, also after cancel: drain before freeing. */
  while (rt->ninflight > 0) {
    if (rt->relayed) {
      wait_readable(rt->efd, 1.0);
      free_orphans(take_done(rt));
    } else {
      free_orphans(take_direct(rt, deadline_in(1.0)));
    }
  }
  if (rt->own) destroy_cq(rt->own);
  rt->own = NULL;
  /* The poller and the drain thread wrote our eventfd under mu: once we hold mu they are
   * done with this state; the drain thread ends on its own after its last call. */
  pthread_mutex_lock(&rt->mu);
  pthread_mutex_unlock(&rt->mu);
  if (rt->drain_started) pthread_join(rt->drain, NULL);
  rt->drain_started = 0;
  close(rt->efd);
  pthread_mutex_destroy(&rt->mu);
  rt->cq = NULL;
  rt->acquired = 0;
  shared_release();
}

void tl_runtime_cancel_owner(lua_State *L, const void *owner, const char *why) {
  PUSH_RUNTIME(L);
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
 * arrives (and returns at once when nothing is in flight). It may return early with an
 * empty list (a signal; a direct wait returns every TL_DIRECT_WAIT_SLICE seconds): the
 * callers loop. */
static int l_wait(lua_State *L) {
  tl_runtime *rt = tl_runtime_get(L);
  double timeout = luaL_optnumber(L, 1, -1);
  if (timeout != timeout) return luaL_argerror(L, 1, "timeout is NaN");
  if (timeout == HUGE_VAL) timeout = -1;
  tl_call *list;
  if (!rt->relayed) {
    /* With nothing in flight, a finite timeout is a plain sleep; an endless one returns. */
    if (timeout < 0 && rt->ninflight == 0) list = NULL;
    else list = take_direct(rt, deadline_in(timeout < 0 || timeout > TL_DIRECT_WAIT_SLICE ? TL_DIRECT_WAIT_SLICE : timeout));
  } else {
    pthread_mutex_lock(&rt->mu);
    int ready = rt->done_head != NULL;
    pthread_mutex_unlock(&rt->mu);
    if (!ready && timeout != 0 && (timeout > 0 || rt->ninflight > 0)) wait_readable(rt->efd, timeout);
    list = take_done(rt);
  }
  lua_newtable(L);
  tl_call_push_anchors(L);
  lua_Integer n = 0;
  while (list) {
    tl_call *next = list->next_done;
    if (list->orphaned) tl_call_free(list);
    else { tl_call_push_completed(L, list, -1); lua_rawseti(L, -3, ++n); }
    list = next;
  }
  lua_pop(L, 1);
  return 1;
}

/* The runtime of a host: completions through the pollfd from now on. */
static tl_runtime *relayed_runtime(lua_State *L) {
  tl_runtime *rt = tl_runtime_get(L);
  runtime_relay(L, rt);
  return rt;
}

/* core.wake(): makes pollfd() readable, so a host loop waiting on it runs a step
 * (work became ready outside one). */
static int l_wake(lua_State *L) {
  uint64_t one = 1;
  ssize_t w = write(relayed_runtime(L)->efd, &one, sizeof(one));
  (void)w;
  return 0;
}

/* core.runtime_info() -> { states = n, poller_threads = 0 | 1, relayed = bool }: the
 * process-wide runtime (its poller runs once a state is relayed) and this state's mode */
static int l_runtime_info(lua_State *L) {
  /* no runtime yet (nothing used): reported, not created */
  PUSH_RUNTIME(L);
  tl_runtime *rt = lua_isnil(L, -1) ? NULL : tl_runtime_get(L);
  lua_pop(L, 1);
  pthread_mutex_lock(&shared.mu);
  int users = shared.users;
  int poller = shared.cq != NULL;
  pthread_mutex_unlock(&shared.mu);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, users);
  lua_setfield(L, -2, "states");
  lua_pushinteger(L, poller);
  lua_setfield(L, -2, "poller_threads");
  lua_pushboolean(L, rt && rt->relayed);
  lua_setfield(L, -2, "relayed");
  return 1;
}

/* core.pollfd() -> the eventfd that becomes readable when completions are waiting (the
 * state is relayed from now on) */
static int l_pollfd(lua_State *L) {
  lua_pushinteger(L, relayed_runtime(L)->efd);
  return 1;
}

/* core.dup_pollfd() -> a duplicate of the pollfd that the caller owns and closes: for a
 * host that takes over the descriptor it watches (skynet's socket.bind closes it). */
static int l_dup_pollfd(lua_State *L) {
  int fd = fcntl(relayed_runtime(L)->efd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return luaL_error(L, "dup_pollfd: %s", strerror(errno));
  lua_pushinteger(L, fd);
  return 1;
}

/* core.relay_mode(): the relayed mode for this state, now, or - before its runtime exists -
 * from its creation on (a host installed where no runtime may be made yet: nginx's
 * init_by_lua*). */
static int l_relay_mode(lua_State *L) {
  PUSH_RUNTIME(L);
  int exists = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (exists) {
    relayed_runtime(L);
  } else {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, TL_RELAY_WANTED_KEY);
  }
  return 0;
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

/* nginx's Lua module runs init_by_lua* in the master process, which then forks the
 * workers: a runtime made there would reach every worker with its threads gone. */
static void refuse_nginx_master(lua_State *L) {
  int top = lua_gettop(L);
  lua_getglobal(L, "ngx");
  int phase = 0;
  if (lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, "get_phase") == LUA_TFUNCTION &&
      lua_pcall(L, 0, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
    phase = strcmp(lua_tostring(L, -1), "init") == 0;
  lua_settop(L, top);
  if (phase)
    luaL_error(L, "temporal: nginx cannot yield in phase init (init_by_lua*, the master process), "
               "and a runtime made there would not survive the fork to the workers: connect in "
               "init_worker_by_lua* (lazy = true) or in a handler, and make calls from "
               "rewrite/access/content_by_lua* or an ngx.timer.at callback");
}

static tl_runtime *runtime_create(lua_State *L) {
  refuse_nginx_master(L);
  tl_runtime *rt = lua_newuserdatauv(L, sizeof(*rt), 0);
  memset(rt, 0, sizeof(*rt));
  rt->closed = 1;  /* until fully set up, the finalizer has nothing to undo */
  luaL_setmetatable(L, TL_RUNTIME_MT);
  rt->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (rt->efd < 0) luaL_error(L, "temporal: eventfd failed: %s", strerror(errno));
  pthread_mutex_init(&rt->mu, NULL);
  rt->pid = getpid();
  rt->closed = 0;  /* from here the finalizer closes the eventfd */
  const char *err = shared_acquire();
  if (err) luaL_error(L, "%s", err);
  rt->acquired = 1;
  rt->own = rt->cq = grpc_completion_queue_create_for_next(NULL);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &runtime_key);
  if (lua_getfield(L, LUA_REGISTRYINDEX, TL_RELAY_WANTED_KEY) != LUA_TNIL) runtime_relay(L, rt);
  lua_pop(L, 1);
  return rt;
}

void tl_runtime_open(lua_State *L) {
  pin_library();
  if (luaL_newmetatable(L, TL_RUNTIME_MT)) {
    lua_pushcfunction(L, runtime_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"wait", l_wait}, {"pollfd", l_pollfd}, {"dup_pollfd", l_dup_pollfd}, {"inflight", l_inflight}, {"wake", l_wake},
    {"runtime_info", l_runtime_info}, {"grpc_version", l_grpc_version}, {"now", l_now},
    {"relay_mode", l_relay_mode}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
