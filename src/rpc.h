/* Runtime, channel and call structures shared by runtime.c, channel.c and call.c. */
#ifndef TEMPORAL_LUA_RPC_H
#define TEMPORAL_LUA_RPC_H

#include <pthread.h>
#include <sys/types.h>
#include <grpc/grpc.h>
#include "temporal_lua.h"

typedef struct tl_call tl_call;

/* One per lua_State: where the process-wide poller delivers this state's completions
 * (a mutex-guarded done list plus an eventfd the Lua thread or a host loop waits on).
 * The completion queue and the poller thread are shared by every state of the process
 * (runtime.c); the poller touches nothing but the done list and the eventfd, under mu.
 * The Lua thread owns every other gRPC and Lua call. */
typedef struct tl_runtime {
  grpc_completion_queue *cq;        /* the shared queue */
  int efd;
  pthread_mutex_t mu;
  tl_call *done_head, *done_tail;   /* guarded by mu */
  tl_call *inflight;                /* Lua thread only */
  int ninflight;
  pid_t pid;
  int closed;
} tl_runtime;

/* One unary call; its heap memory is the completion tag, so it lives until the
 * completion is drained, whatever happens to the Lua object that started it. */
struct tl_call {
  tl_runtime *rt;
  tl_call *next, *prev;             /* runtime inflight list */
  tl_call *next_done;               /* runtime done list */
  grpc_call *call;
  const ProtobufCMessageDescriptor *output;
  grpc_metadata *send_md;
  size_t n_send_md;
  grpc_metadata_array recv_initial_md, recv_trailing_md;
  grpc_byte_buffer *send_buf, *recv_buf;
  grpc_status_code status;
  grpc_slice status_details;
  char *method;                     /* "/pkg.Service/Method", for errors */
  const void *owner;                /* the tl_channel that started it (cancel on close) */
  int decode_flags;                 /* tl_pb_decode_push flags for the response */
  int batch_ok;
  int done;                         /* completion drained */
  int orphaned;                     /* its Lua object is gone: free on completion */
};

tl_runtime *tl_runtime_get(lua_State *L);     /* raises after fork or close */
void tl_runtime_add(tl_runtime *rt, tl_call *c);
/* Cancels the calls in flight that `owner` started (a closing channel), with `why` as
 * the status message; no-op when the state's runtime is gone. */
void tl_runtime_cancel_owner(lua_State *L, const void *owner, const char *why);
void tl_call_free(tl_call *c);
/* Pushes the Lua object of a drained call (from the anchor table) and unanchors it. */
void tl_call_push_completed(lua_State *L, tl_call *c);

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
