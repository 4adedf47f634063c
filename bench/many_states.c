/*
 * Many lua_States, few threads: creates N states in one process, each loading the
 * `temporal` module and connecting its own client to the same target (a GetSystemInfo
 * call each), then makes one more call in every state with all of them open. Prints the
 * process's threads, the sockets it holds, the runtime's state count and the memory per
 * state, so a spec can check that threads and connections do not grow with states.
 *
 *   build/many_states <address> <namespace> <n>
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static long status_field(const char *name) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(name);
  while (f && fgets(line, sizeof(line), f))
    if (strncmp(line, name, n) == 0 && line[n] == ':') { v = atol(line + n + 1); break; }
  if (f) fclose(f);
  return v;
}

/* sockets and eventfds among this process's open descriptors */
static void count_fds(int *sockets, int *eventfds) {
  *sockets = *eventfds = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  char path[300], target[128];
  while (d && (de = readdir(d))) {
    snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
    ssize_t len = readlink(path, target, sizeof(target) - 1);
    if (len <= 0) continue;
    target[len] = '\0';
    if (strncmp(target, "socket:", 7) == 0) (*sockets)++;
    if (strstr(target, "eventfd")) (*eventfds)++;
  }
  if (d) closedir(d);
}

static void check(lua_State *L, int status, const char *what) {
  if (status != LUA_OK) {
    fprintf(stderr, "many_states: %s: %s\n", what, luaL_tolstring(L, -1, NULL));  /* errors may be tables */
    exit(1);
  }
}

static const char *connect_chunk =
  "local address, namespace = ...\n"
  "local temporal = require('temporal')\n"
  "client = temporal.connect(address, { namespace = namespace })\n"
  "return temporal.core.runtime_info().states\n";

static const char *call_chunk =
  "return client.workflow_service:get_system_info{}.server_version\n";

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: %s address namespace n\n", argv[0]); return 2; }
  int n = atoi(argv[3]);
  lua_State **states = calloc(n, sizeof(*states));
  long threads0 = status_field("Threads"), rss0 = status_field("VmRSS");
  long threads1 = 0, rss1 = 0;
  long states_seen = 0;
  for (int i = 0; i < n; i++) {
    lua_State *L = states[i] = luaL_newstate();
    luaL_openlibs(L);
    check(L, luaL_loadstring(L, connect_chunk), "load");
    lua_pushstring(L, argv[1]);
    lua_pushstring(L, argv[2]);
    check(L, lua_pcall(L, 2, 1, 0), "connect");
    states_seen = (long)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (i == 0) { threads1 = status_field("Threads"); rss1 = status_field("VmRSS"); }
  }
  long threads_n = status_field("Threads"), rss_n = status_field("VmRSS");
  int sockets, eventfds;
  count_fds(&sockets, &eventfds);
  int ok = 0;
  for (int i = 0; i < n; i++) {
    check(states[i], luaL_loadstring(states[i], call_chunk), "load");
    check(states[i], lua_pcall(states[i], 0, 1, 0), "call");
    ok += lua_isstring(states[i], -1);
    lua_pop(states[i], 1);
  }
  long threads_after_calls = status_field("Threads");
  printf("states %d, runtime states %ld, calls ok %d\n", n, states_seen, ok);
  printf("threads: %ld before any state, %ld with 1, %ld with %d, %ld after a call in each\n",
         threads0, threads1, threads_n, n, threads_after_calls);
  printf("sockets %d, eventfds %d\n", sockets, eventfds);
  printf("rss KiB: %ld before, %ld with 1, %ld with %d; per extra state %.1f KiB\n",
         rss0, rss1, rss_n, n, n > 1 ? (double)(rss_n - rss1) / (n - 1) : 0.0);
  for (int i = 0; i < n; i++) lua_close(states[i]);
  /* The last close calls grpc_shutdown_blocking, but a channel holds its own gRPC init
   * reference until its final unref, which may still run on one of gRPC's threads: then
   * that unref is the last shutdown, and gRPC's threads end on their own a little later
   * (seen under valgrind on a loaded machine). Threads that end are not leaked; wait for
   * them, bounded (20 s), and report both counts. */
  long threads_closed = status_field("Threads"), threads_end = threads_closed;
  for (int waited = 0; threads_end > 1 && waited < 2000; waited++) {
    usleep(10000);
    threads_end = status_field("Threads");
  }
  printf("threads right after closing all: %ld\n", threads_closed);
  printf("threads after closing all: %ld\n", threads_end);
  free(states);
  return ok == n ? 0 : 1;
}
