/* Runtime, channel and call structures shared by runtime.c, channel.c and call.c. */
#ifndef TEMPORAL_LUA_RPC_H
#define TEMPORAL_LUA_RPC_H

#include <pthread.h>
#include <sys/types.h>
#include <grpc/grpc.h>
#include "temporal_lua.h"

typedef struct tl_call tl_call;

/* One per lua_State. Two ways to get its completions (runtime.c):
 * - direct (from the start): the state's own completion queue, which its Lua thread
 *   waits on itself (grpc_completion_queue_next) - no other thread, lock or eventfd on
 *   the path of a call;
 * - relayed (for good, once a host asks for the pollfd, core.wake or set_host): calls go
 *   to the process-wide queue, whose one poller thread hands each completion to its
 *   state through a mutex-guarded done list plus the state's eventfd, which a host loop
 *   waits on. Calls still in flight on the own queue at the switch are handed over the
 *   same way by a drain thread that ends with the last of them.
 * The Lua thread owns every other gRPC and Lua call. */
typedef struct tl_runtime {
  grpc_completion_queue *cq;        /* where new calls go: own, or the shared one once relayed */
  grpc_completion_queue *own;       /* the state's own queue (Lua thread only, until relayed) */
  int relayed;
  int efd;
  pthread_mutex_t mu;
  tl_call *done_head, *done_tail;   /* guarded by mu */
  tl_call *inflight;                /* Lua thread only */
  int ninflight;
  pthread_t drain;                  /* hands over the own queue's calls after the switch */
  int drain_started;
  pid_t pid;
  int acquired;                     /* holds a reference to the process-wide part */
  int closed;
  int drain_skip, drain_misses;     /* direct mode: waits left without the drain poll; empty drains in a row */
} tl_runtime;

/* One unary call; its heap memory is the completion tag, so it lives until the
 * completion is drained, whatever happens to the Lua object that started it. */
struct tl_call {
  tl_runtime *rt;
  tl_call *next, *prev;             /* runtime inflight list */
  tl_call *next_done;               /* runtime done list */
  grpc_call *call;
  const ProtobufCMessageDescriptor *output;
  grpc_metadata *send_md;           /* send_md_inline, or malloc'd when there are more */
  size_t n_send_md;
  grpc_metadata send_md_inline[4];
  int anchor;                       /* luaL_ref of its Lua object in the anchor table, in flight */
  grpc_metadata_array recv_initial_md, recv_trailing_md;
  grpc_byte_buffer *send_buf, *recv_buf;
  grpc_status_code status;
  grpc_slice status_details;
  const char *method;               /* "/pkg.Service/Method" (tl_method_path), for errors */
  const void *owner;                /* the tl_channel that started it (cancel on close) */
  int decode_flags;                 /* tl_pb_decode_push flags for the response */
  int batch_ok;
  int done;                         /* completion drained */
  int orphaned;                     /* its Lua object is gone: free on completion */
  int direct;                       /* started on the state's own queue */
  int trailing_copied;              /* recv_trailing_md holds our own copies (see tl_call_completed) */
};

tl_runtime *tl_runtime_get(lua_State *L);     /* raises after fork or close */
void tl_runtime_add(tl_runtime *rt, tl_call *c);
/* Cancels the calls in flight that `owner` started (a closing channel), with `why` as
 * the status message; no-op when the state's runtime is gone. */
void tl_runtime_cancel_owner(lua_State *L, const void *owner, const char *why);
void tl_call_free(tl_call *c);
/* At the completion, before the grpc_call is released: keeps what call:result() reads
 * of the call object's own memory (the trailing metadata of a failure). */
void tl_call_completed(tl_call *c);
/* Pushes the table that anchors the Lua objects of the calls in flight. */
void tl_call_push_anchors(lua_State *L);
/* Pushes the Lua object of a drained call (from the anchor table at `anchors`) and
 * unanchors it. */
void tl_call_push_completed(lua_State *L, tl_call *c, int anchors);

#define TL_CHANNEL_MT "temporal.Channel"
typedef struct {
  grpc_channel *channel;
  char *target;
} tl_channel;
tl_channel *tl_channel_check(lua_State *L, int idx);

/* Decodes grpc-status-details-bin bytes into the failure table on top of the stack:
 * sets details (a list), or details_error when the bytes do not decode. Never raises
 * for bad bytes. */
void tl_push_status_details(lua_State *L, const uint8_t *data, size_t len, int flags);

#endif
