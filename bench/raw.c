/*
 * bench/raw.c: the physical limit. The same unary calls temporal-lua makes (GetSystemInfo,
 * StartWorkflowExecution with the request bytes and metadata temporal-lua sends, captured by
 * bench/workload.lua's request_template workload), straight on the gRPC C core with the same
 * channel arguments (those of connect() with default options): no Lua, no protobuf conversion, no poller thread. One thread keeps
 * `concurrency` calls in flight on one completion queue and blocks in
 * grpc_completion_queue_next itself.
 *
 *   bench-raw calls|cold_start --target 127.0.0.1:7233 --path /pkg.Service/Method
 *             [--request-hex HEX] [--md key=value]... [--timeout S] [--count N]
 *             [--concurrency C] [--id-at OFF --id-len LEN --id-base N] [--rid-at OFF]
 *             [--server-pid P] [--worker-pid P] [--max-recv BYTES]
 *
 * `calls` prints one JSON object (the fields bench/workload.lua reports for its workloads);
 * `cold_start` makes one call and prints CLOCK_MONOTONIC seconds after it returns.
 * --id-at/--id-len: a run of digits in the request (the workflow id's tail) rewritten per
 * call with id-base + index; --rid-at: a request_id uuid whose last 12 hex digits are
 * rewritten likewise, so every start is a distinct workflow of otherwise identical bytes.
 */
#include <grpc/grpc.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <grpc/support/alloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* What temporal-lua does before its first grpc_init (src/runtime.c): Debian's abseil is
 * built without NDEBUG and runs its debug-only mutex deadlock detector on every lock
 * inside gRPC; temporal-lua switches it off, so the floor program does too (a weak
 * reference: absent with another abseil build, nothing changes then). */
extern void _ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE(int) __attribute__((weak));

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double process_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long clk_tck;

/* utime+stime (and each) of /proc/<pid>/stat in seconds; 0 when unreadable */
static int proc_cpu(const char *pid, double *user, double *sys) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  p += 2;
  unsigned long long u = 0, s = 0;
  /* fields after ")": state(3) ... utime(14) stime(15) */
  for (int field = 3; field <= 15 && *p; field++) {
    if (field == 14) u = strtoull(p, NULL, 10);
    if (field == 15) s = strtoull(p, NULL, 10);
    p = strchr(p, ' ');
    if (!p) break;
    p++;
  }
  *user = (double)u / clk_tck;
  *sys = (double)s / clk_tck;
  return 1;
}

static double machine_cpu(void) {
  FILE *f = fopen("/proc/stat", "r");
  unsigned long long v[8] = {0};
  if (!f) return 0;
  if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
             &v[6], &v[7]) != 8) v[0] = 0;
  fclose(f);
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / clk_tck;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = 0;
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &kib) == 1) break;
  fclose(f);
  return kib;
}

typedef struct {
  double wall, cpu, user, sys, machine, server, worker;
  int has_server, has_worker;
} sides;

static const char *server_pid, *worker_pid;

static void take(sides *t) {
  double u, s;
  t->cpu = process_cpu();
  t->wall = mono();
  t->machine = machine_cpu();
  proc_cpu("self", &t->user, &t->sys);
  t->has_server = server_pid && proc_cpu(server_pid, &u, &s);
  t->server = t->has_server ? u + s : 0;
  t->has_worker = worker_pid && proc_cpu(worker_pid, &u, &s);
  t->worker = t->has_worker ? u + s : 0;
}

typedef struct call {
  grpc_call *call;
  grpc_byte_buffer *send, *recv;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status;
  grpc_slice details;
  double t0;
  long index;
} call;

static grpc_channel *channel;
static grpc_completion_queue *cq;
static grpc_slice path;
static uint8_t *request;
static size_t request_len;
static grpc_metadata md[16];
static size_t n_md;
static double timeout = 30;
static long id_at = -1, id_len = 0, rid_at = -1;
static unsigned long long id_base = 0;

static void put_digits(uint8_t *at, long len, unsigned long long v, int hex) {
  for (long i = len - 1; i >= 0; i--) {
    unsigned d = (unsigned)(v % (hex ? 16 : 10));
    at[i] = (uint8_t)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= hex ? 16 : 10;
  }
}

static void start(call *c, long index) {
  memset(c, 0, sizeof *c);
  c->index = index;
  c->t0 = mono();
  if (id_at >= 0) put_digits(request + id_at, id_len, id_base + (unsigned long long)index, 0);
  if (rid_at >= 0) put_digits(request + rid_at + 24, 12, id_base + (unsigned long long)index, 1);
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)request, request_len);
  c->send = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  grpc_metadata_array_init(&c->initial_md);
  grpc_metadata_array_init(&c->trailing_md);
  gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_micros((int64_t)(timeout * 1e6), GPR_TIMESPAN));
  c->call = grpc_channel_create_call(channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path, NULL, deadline, NULL);
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = n_md;
  ops[0].data.send_initial_metadata.metadata = md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = c->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &c->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
  ops[5].data.recv_status_on_client.status = &c->status;
  ops[5].data.recv_status_on_client.status_details = &c->details;
  if (grpc_call_start_batch(c->call, ops, 6, c, NULL) != GRPC_CALL_OK) {
    fprintf(stderr, "bench-raw: grpc_call_start_batch refused the call\n");
    exit(1);
  }
}

/* Waits for one completion; returns the finished call (its status checked) */
static call *finish(void) {
  grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
    fprintf(stderr, "bench-raw: completion type %d success %d\n", (int)ev.type, ev.success);
    exit(1);
  }
  call *c = ev.tag;
  if (c->status != GRPC_STATUS_OK) {
    char *msg = grpc_slice_to_c_string(c->details);
    fprintf(stderr, "bench-raw: call %ld failed: status %d: %s\n", c->index, (int)c->status, msg);
    gpr_free(msg);
    exit(1);
  }
  return c;
}

static void release(call *c) {
  grpc_byte_buffer_destroy(c->send);
  if (c->recv) grpc_byte_buffer_destroy(c->recv);
  grpc_metadata_array_destroy(&c->initial_md);
  grpc_metadata_array_destroy(&c->trailing_md);
  grpc_slice_unref(c->details);
  grpc_call_unref(c->call);
}

static uint8_t *from_hex(const char *hex, size_t *len) {
  size_t n = strlen(hex) / 2;
  uint8_t *out = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
  *len = n;
  return out;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench-raw calls|cold_start --target HOST:PORT --path /Service/Method ...\n");
    return 2;
  }
  const char *workload = argv[1], *target = NULL, *path_s = NULL;
  long count = 1, concurrency = 1, max_recv = 128L * 1024 * 1024, print_latencies = 1;
  request = from_hex("", &request_len);
  clk_tck = sysconf(_SC_CLK_TCK);
  for (int i = 2; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--target")) target = v;
    else if (!strcmp(k, "--path")) path_s = v;
    else if (!strcmp(k, "--request-hex")) { free(request); request = from_hex(v, &request_len); }
    else if (!strcmp(k, "--md") && n_md < 16) {
      const char *eq = strchr(v, '=');
      if (!eq) { fprintf(stderr, "bench-raw: --md wants key=value\n"); return 2; }
      md[n_md].key = grpc_slice_from_copied_buffer(v, (size_t)(eq - v));
      md[n_md].value = grpc_slice_from_copied_string(eq + 1);
      n_md++;
    }
    else if (!strcmp(k, "--timeout")) timeout = atof(v);
    else if (!strcmp(k, "--count")) count = atol(v);
    else if (!strcmp(k, "--concurrency")) concurrency = atol(v);
    else if (!strcmp(k, "--id-at")) id_at = atol(v);
    else if (!strcmp(k, "--id-len")) id_len = atol(v);
    else if (!strcmp(k, "--id-base")) id_base = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--rid-at")) rid_at = atol(v);
    else if (!strcmp(k, "--server-pid")) server_pid = v;
    else if (!strcmp(k, "--worker-pid")) worker_pid = v;
    else if (!strcmp(k, "--max-recv")) max_recv = atol(v);
    else if (!strcmp(k, "--latencies")) print_latencies = atol(v);
    else { fprintf(stderr, "bench-raw: unknown option %s\n", k); return 2; }
  }
  if (!target || !path_s) { fprintf(stderr, "bench-raw: --target and --path are required\n"); return 2; }
  if ((id_at >= 0 && (size_t)(id_at + id_len) > request_len) || (rid_at >= 0 && (size_t)rid_at + 36 > request_len)) {
    fprintf(stderr, "bench-raw: --id-at/--rid-at outside the request\n");
    return 2;
  }
  if (concurrency < 1) concurrency = 1;
  if (concurrency > count) concurrency = count;

  if (_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE)
    _ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE(0);
  grpc_init();
  /* temporal-lua's channel arguments for a plaintext target with default options
   * (src/channel.c): max receive size, reconnect backoff, no proxy from the environment. */
  grpc_arg args[7];
  args[0].type = GRPC_ARG_INTEGER; args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH; args[0].value.integer = (int)max_recv;
  args[1].type = GRPC_ARG_INTEGER; args[1].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS; args[1].value.integer = 100;
  args[2].type = GRPC_ARG_INTEGER; args[2].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS; args[2].value.integer = 5000;
  args[3].type = GRPC_ARG_INTEGER; args[3].key = "grpc.enable_http_proxy"; args[3].value.integer = 0;
  /* connect()'s default keep_alive: interval 30 s, timeout 15 s */
  args[4].type = GRPC_ARG_INTEGER; args[4].key = GRPC_ARG_KEEPALIVE_TIME_MS; args[4].value.integer = 30000;
  args[5].type = GRPC_ARG_INTEGER; args[5].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS; args[5].value.integer = 15000;
  args[6].type = GRPC_ARG_INTEGER; args[6].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS; args[6].value.integer = 1;
  grpc_channel_args cargs = {7, args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  channel = grpc_channel_create(target, creds, &cargs);
  grpc_channel_credentials_release(creds);
  cq = grpc_completion_queue_create_for_next(NULL);
  path = grpc_slice_from_copied_string(path_s);

  call *calls = calloc((size_t)concurrency, sizeof *calls);
  double *lat = calloc((size_t)count, sizeof *lat);
  /* The first call connects (temporal-lua's connect makes its GetSystemInfo): not measured
   * in `calls`; in cold_start it is the measured call. */
  start(&calls[0], 0);
  release(finish());
  if (!strcmp(workload, "cold_start")) {
    printf("%.6f", mono());
    fflush(stdout);
  } else {
    long rss_connected = rss_kib();
    sides a, b;
    take(&a);
    long next = 0, done = 0;
    for (; next < concurrency; next++) start(&calls[next], next + 1);
    while (done < count) {
      call *c = finish();
      lat[c->index - 1] = mono() - c->t0;
      release(c);
      done++;
      if (next < count) { start(c, next + 1); next++; }
    }
    take(&b);
    printf("{\"calls\":%ld,\"concurrency\":%ld,\"wall\":%.9f,\"client_cpu\":%.9f,\"client_user\":%.6f,"
           "\"client_sys\":%.6f,\"machine_cpu\":%.6f,\"rss_connected_kib\":%ld,\"rss_end_kib\":%ld",
           count, concurrency, b.wall - a.wall, b.cpu - a.cpu, b.user - a.user, b.sys - a.sys,
           b.machine - a.machine, rss_connected, rss_kib());
    if (a.has_server && b.has_server) printf(",\"server_cpu\":%.6f", b.server - a.server);
    if (a.has_worker && b.has_worker) printf(",\"worker_cpu\":%.6f", b.worker - a.worker);
    /* --latencies 0 (the callgrind phase): none printed, so formatting them is not counted
     * as part of the calls. */
    printf(",\"latencies\":[");
    for (long i = 0; print_latencies && i < count; i++) printf("%s%.9f", i ? "," : "", lat[i]);
    printf("]}\n");
    fflush(stdout);
  }
  free(calls);
  free(lat);
  grpc_slice_unref(path);
  for (size_t i = 0; i < n_md; i++) { grpc_slice_unref(md[i].key); grpc_slice_unref(md[i].value); }
  grpc_channel_destroy(channel);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {}
  grpc_completion_queue_destroy(cq);
  grpc_shutdown();
  free(request);
  return 0;
}
