/*
 * The socket relay: for hosts that can only wait on sockets they connect themselves
 * (nginx's cosockets), a thread that turns "the pollfd is readable, or a timeout passed"
 * into one byte on a UNIX stream socket.
 *
 * core.relay(pollfd, path) listens on the UNIX socket `path` (replacing a stale file) and
 * starts the thread; the host connects to it (one connection at a time; a new one after
 * the previous closed). On a connection the host writes a line with a timeout in
 * milliseconds ("250\n", "-1\n" for none); the relay answers one byte ("w") as soon as
 * the pollfd is readable or the timeout passed, then reads the next line. It never reads
 * the pollfd itself (temporal.step drains it), so a wakeup cannot be lost: the host asks
 * again only after its step. relay:close() (also __gc) stops and joins the thread, closes
 * everything and removes the socket file.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "temporal_lua.h"

#define TL_RELAY_MT "temporal.Relay"

typedef struct {
  int pollfd;       /* a duplicate of the runtime's pollfd, ours to close */
  int listen_fd;
  int stop[2];      /* a pipe: writing to stop[1] ends the thread */
  pthread_t thread;
  int running;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} tl_relay;

/* Waits until fd is readable or stop is signalled; returns 1 readable, 0 stop/error. */
static int relay_wait_readable(tl_relay *r, int fd) {
  for (;;) {
    struct pollfd p[2] = { { fd, POLLIN, 0 }, { r->stop[0], POLLIN, 0 } };
    int n = poll(p, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || p[1].revents) return 0;
    if (p[0].revents) return 1;
  }
}

/* Serves one connection until it closes (returns 1) or the relay stops (returns 0). */
static int relay_serve(tl_relay *r, int conn) {
  char line[32];
  size_t len = 0;
  for (;;) {
    if (!relay_wait_readable(r, conn)) return 0;
    ssize_t n = read(conn, line + len, sizeof(line) - 1 - len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return 1;  /* the host closed its end */
    len += (size_t)n;
    line[len] = '\0';
    char *nl = strchr(line, '\n');
    if (!nl) {
      if (len >= sizeof(line) - 1) return 1;  /* not our protocol: drop the connection */
      continue;
    }
    long ms = strtol(line, NULL, 10);
    len -= (size_t)(nl + 1 - line);
    memmove(line, nl + 1, len);
    /* Wait for the pollfd, the timeout, the stop pipe, or the host going away. */
    for (;;) {
      struct pollfd p[3] = { { r->pollfd, POLLIN, 0 }, { r->stop[0], POLLIN, 0 }, { conn, POLLIN, 0 } };
      int k = poll(p, 3, ms < 0 ? -1 : (ms > 86400000 ? 86400000 : (int)ms));
      if (k < 0 && errno == EINTR) continue;
      if (k < 0 || p[1].revents) return 0;
      if (p[2].revents && !p[0].revents && k > 0) {
        /* data or EOF from the host before we answered: EOF ends the connection */
        char peek;
        ssize_t m = recv(conn, &peek, 1, MSG_PEEK | MSG_DONTWAIT);
        if (m == 0 || (m < 0 && errno != EAGAIN && errno != EINTR)) return 1;
      }
      break;
    }
    ssize_t w;
    do w = write(conn, "w", 1); while (w < 0 && errno == EINTR);
    if (w != 1) return 1;
  }
}

static void *relay_main(void *arg) {
  tl_relay *r = arg;
  for (;;) {
    if (!relay_wait_readable(r, r->listen_fd)) break;
    int conn = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      break;
    }
    int more = relay_serve(r, conn);
    close(conn);
    if (!more) break;
  }
  return NULL;
}

static void relay_close(tl_relay *r) {
  if (r->running) {
    ssize_t w = write(r->stop[1], "x", 1);
    (void)w;
    pthread_join(r->thread, NULL);
    r->running = 0;
  }
  if (r->listen_fd >= 0) {
    close(r->listen_fd);
    r->listen_fd = -1;
    unlink(r->path);
  }
  for (int i = 0; i < 2; i++) if (r->stop[i] >= 0) { close(r->stop[i]); r->stop[i] = -1; }
  if (r->pollfd >= 0) { close(r->pollfd); r->pollfd = -1; }
}

static tl_relay *check_relay(lua_State *L) {
  return luaL_checkudata(L, 1, TL_RELAY_MT);
}

static int relay_gc(lua_State *L) {
  relay_close(check_relay(L));
  return 0;
}

/* relay:close(): stops the thread and removes the socket file (idempotent). */
static int l_relay_close(lua_State *L) {
  relay_close(check_relay(L));
  return 0;
}

static int relay_index(lua_State *L) {
  tl_relay *r = check_relay(L);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "path") == 0) lua_pushstring(L, r->path);
  else if (strcmp(k, "close") == 0) lua_pushcfunction(L, l_relay_close);
  else if (strcmp(k, "running") == 0) lua_pushboolean(L, r->running);
  else lua_pushnil(L);
  return 1;
}

static int relay_tostring(lua_State *L) {
  tl_relay *r = check_relay(L);
  lua_pushfstring(L, "temporal.Relay(%s, %s)", r->path, r->running ? "running" : "closed");
  return 1;
}

/* core.relay(pollfd, path) -> relay (see the top of this file) */
static int l_relay(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  tl_relay *r = lua_newuserdatauv(L, sizeof(*r), 0);
  memset(r, 0, sizeof(*r));
  r->pollfd = r->listen_fd = r->stop[0] = r->stop[1] = -1;
  luaL_setmetatable(L, TL_RELAY_MT);
  if (len == 0 || len >= sizeof(r->path)) return luaL_error(L, "relay: socket path must be 1 to %d bytes", (int)sizeof(r->path) - 1);
  memcpy(r->path, path, len + 1);
  const char *what = NULL;
  int err = 0;
  if ((r->pollfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) what = "pollfd";
  else if (pipe2(r->stop, O_CLOEXEC) != 0) what = "pipe";
  else if ((r->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) what = "socket";
  else {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, r->path, len + 1);
    unlink(r->path);  /* a stale file from a worker that died */
    if (bind(r->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) what = "bind";
    else if (listen(r->listen_fd, 8) != 0) what = "listen";
    else if ((err = pthread_create(&r->thread, NULL, relay_main, r)) != 0) what = "thread";
    else r->running = 1;
  }
  if (what) {
    if (!err) err = errno;
    relay_close(r);
    return luaL_error(L, "relay %s: %s: %s", r->path, what, strerror(err));
  }
  return 1;
}

void tl_relay_open(lua_State *L) {
  if (luaL_newmetatable(L, TL_RELAY_MT)) {
    lua_pushcfunction(L, relay_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, relay_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, relay_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_relay);
  lua_setfield(L, -2, "relay");
}
