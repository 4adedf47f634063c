/*
 * Channels: one grpc_channel per client connection. Options come as one table and
 * every name is checked, so a typo is an error rather than a silently ignored setting.
 */
#include <stdlib.h>
#include <string.h>
#include <grpc/grpc_security.h>
#include "rpc.h"

tl_channel *tl_channel_check(lua_State *L, int idx) {
  tl_channel *ch = luaL_checkudata(L, idx, TL_CHANNEL_MT);
  if (!ch->channel) luaL_error(L, "channel to %s is closed", ch->target ? ch->target : "?");
  return ch;
}

static int channel_close(lua_State *L) {
  tl_channel *ch = luaL_checkudata(L, 1, TL_CHANNEL_MT);
  if (ch->channel) {
    /* Calls in flight fail now (waiting coroutines get CANCELLED naming the client),
     * then complete and are drained as usual. */
    tl_runtime_cancel_owner(L, ch, "the client was closed while the call was in flight");
    grpc_channel_destroy(ch->channel);
    ch->channel = NULL;
  }
  return 0;
}

/* The target stays until the object is collected, so "channel to X is closed" can name it. */
static int channel_gc(lua_State *L) {
  tl_channel *ch = luaL_checkudata(L, 1, TL_CHANNEL_MT);
  channel_close(L);
  free(ch->target);
  ch->target = NULL;
  return 0;
}

static int channel_tostring(lua_State *L) {
  tl_channel *ch = luaL_checkudata(L, 1, TL_CHANNEL_MT);
  if (ch->channel) lua_pushfstring(L, "temporal.Channel(%s)", ch->target);
  else lua_pushliteral(L, "temporal.Channel(closed)");
  return 1;
}

static const char *const state_names[] = {"IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE", "SHUTDOWN"};

/* channel:state([try_to_connect]) -> "IDLE" | "CONNECTING" | "READY" | ... */
static int channel_state(lua_State *L) {
  tl_channel *ch = tl_channel_check(L, 1);
  grpc_connectivity_state s = grpc_channel_check_connectivity_state(ch->channel, lua_toboolean(L, 2));
  lua_pushstring(L, (unsigned)s < 5 ? state_names[s] : "UNKNOWN");
  return 1;
}

static const char *opt_string(lua_State *L, int t, const char *field, const char *what) {
  const char *v = NULL;
  if (lua_getfield(L, t, field) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s.%s: expected a string, got %s", what, field, luaL_typename(L, -1));
    size_t len;
    v = lua_tolstring(L, -1, &len);
    /* gRPC takes C strings: a NUL would silently cut the value (never shown: it may be a secret). */
    if (strlen(v) != len) luaL_error(L, "%s.%s: contains a NUL byte", what, field);
  }
  lua_pop(L, 1);  /* the string stays alive: it is referenced by the options table */
  return v;
}

static void check_known(lua_State *L, int t, const char *const *known, const char *what) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int ok = 0;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (const char *const *k = known; *k; k++) if (strcmp(*k, lua_tostring(L, -2)) == 0) ok = 1;
    if (!ok) luaL_error(L, "%s: unknown option '%s'", what, lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2));
    lua_pop(L, 1);
  }
}

static grpc_channel_credentials *tls_credentials(lua_State *L, int t) {
  static const char *const known[] = {"server_root_ca_cert", "domain", "client_cert", "client_private_key", NULL};
  check_known(L, t, known, "tls");
  const char *roots = opt_string(L, t, "server_root_ca_cert", "tls");
  const char *cert = opt_string(L, t, "client_cert", "tls");
  const char *key = opt_string(L, t, "client_private_key", "tls");
  if ((cert == NULL) != (key == NULL))
    luaL_error(L, "tls: client_cert and client_private_key go together (mTLS needs both)");
  grpc_ssl_pem_key_cert_pair pair = { key, cert };
  return grpc_ssl_credentials_create(roots, cert ? &pair : NULL, NULL, NULL);
}

/* Pushes "Proxy-Authorization:Basic <base64(user:password)>" (RFC 7617). It lives on the
 * Lua stack, so a later error cannot leak it; the password is a Lua string already. */
static const char *push_proxy_auth(lua_State *L, const char *user, const char *password) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  lua_pushfstring(L, "%s:%s", user, password);
  size_t len;
  const unsigned char *in = (const unsigned char *)lua_tolstring(L, -1, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "Proxy-Authorization:Basic ");
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = in[i] << 16;
    if (i + 1 < len) v |= in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    luaL_addchar(&b, tbl[(v >> 18) & 63]);
    luaL_addchar(&b, tbl[(v >> 12) & 63]);
    luaL_addchar(&b, i + 1 < len ? tbl[(v >> 6) & 63] : '=');
    luaL_addchar(&b, i + 2 < len ? tbl[v & 63] : '=');
  }
  luaL_pushresult(&b);
  lua_remove(L, -2);
  return lua_tostring(L, -1);
}

/* A number of seconds for an int milliseconds channel argument: NaN, negative (or zero
 * unless zero_ok) and values past INT_MAX ms are errors, never undefined conversions. */
static double opt_seconds_ms(lua_State *L, int t, const char *field, double dflt, int zero_ok) {
  double v = dflt;
  if (lua_getfield(L, t, field) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "channel.%s: expected a number, got %s", field, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
    if (!(v > 0 || (zero_ok && v == 0)) || v * 1000 > INT32_MAX)
      luaL_error(L, "channel.%s: expected seconds in %s..%d, got %f", field, zero_ok ? "0" : "(0", INT32_MAX / 1000, v);
  }
  lua_pop(L, 1);
  return v;
}

/* core.channel(target, opts) -> Channel
 * opts: tls (false | true | table), max_receive_message_length (bytes),
 * keep_alive_time / keep_alive_timeout (seconds; 0 = off), http_proxy ("host:port"),
 * http_proxy_user / http_proxy_password (Basic auth for the proxy's CONNECT),
 * use_proxy_env (boolean, default false), authority (":authority" override). */
static int l_channel(lua_State *L) {
  size_t target_len;
  const char *target = luaL_checklstring(L, 1, &target_len);
  if (strlen(target) != target_len) luaL_argerror(L, 1, "target contains a NUL byte");
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  else { lua_newtable(L); lua_replace(L, 2); }
  static const char *const known[] = {"tls", "max_receive_message_length", "keep_alive_time",
                                      "keep_alive_timeout", "http_proxy", "http_proxy_user",
                                      "http_proxy_password", "use_proxy_env", "authority", NULL};
  check_known(L, 2, known, "channel");
  tl_runtime_get(L);  /* fails clearly after fork */

  grpc_arg args[16];
  int n = 0;
  lua_Integer maxrecv = 128 * 1024 * 1024;
  if (lua_getfield(L, 2, "max_receive_message_length") != LUA_TNIL) {
    int isint = 0;
    if (lua_type(L, -1) == LUA_TNUMBER) maxrecv = lua_tointegerx(L, -1, &isint);
    if (!isint)
      luaL_error(L, "max_receive_message_length: expected an integer number of bytes, got %s",
                 lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  if (maxrecv > INT32_MAX || maxrecv < -1) luaL_error(L, "max_receive_message_length: out of range (-1..%d)", INT32_MAX);
  args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH; args[n++].value.integer = (int)maxrecv;
  double ka = opt_seconds_ms(L, 2, "keep_alive_time", 0, 1);
  double kat = opt_seconds_ms(L, 2, "keep_alive_timeout", 15, 0);
  if (ka > 0) {
    args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_KEEPALIVE_TIME_MS; args[n++].value.integer = (int)(ka * 1000);
    args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS; args[n++].value.integer = (int)(kat * 1000);
    args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS; args[n++].value.integer = 1;
  }
  /* A downed server must be retried soon after it is back: gRPC's default reconnect backoff
   * grows to 120 s, far past the client's retry budget (10 s), so calls would keep failing
   * with UNAVAILABLE long after the server recovered. */
  args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS; args[n++].value.integer = 100;
  args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS; args[n++].value.integer = 5000;
  const char *proxy = opt_string(L, 2, "http_proxy", "channel");
  const char *proxy_user = opt_string(L, 2, "http_proxy_user", "channel");
  const char *proxy_password = opt_string(L, 2, "http_proxy_password", "channel");
  if ((proxy_user == NULL) != (proxy_password == NULL))
    luaL_error(L, "http_proxy: basic auth needs both a user and a password");
  if (proxy_user && !proxy) luaL_error(L, "http_proxy: basic auth given without a proxy");
  if (proxy_user && strchr(proxy_user, ':')) luaL_error(L, "http_proxy: the basic auth user cannot contain ':'");
  lua_getfield(L, 2, "use_proxy_env");
  int use_env = lua_toboolean(L, -1);
  lua_pop(L, 1);
  const char *authority = opt_string(L, 2, "authority", "channel");
  const char *connect_to = target;
  if (proxy) {
    /* The explicit proxy is wired as gRPC's own proxy mapper would (connect to the proxy,
     * CONNECT to the target), but by hand: the mapper would skip it for any host in the
     * no_proxy environment variable. */
    const char *server = strncmp(target, "dns:///", 7) == 0 ? target + 7 : target;
    args[n].type = GRPC_ARG_STRING; args[n].key = "grpc.http_connect_server"; args[n++].value.string = (char *)server;
    if (proxy_user) {
      args[n].type = GRPC_ARG_STRING; args[n].key = "grpc.http_connect_headers";
      args[n++].value.string = (char *)push_proxy_auth(L, proxy_user, proxy_password);
    }
    if (!authority) authority = server;  /* :authority and the TLS name stay the target's */
    connect_to = proxy;
  }
  if (proxy || !use_env) {
    /* http_proxy/https_proxy/grpc_proxy would otherwise apply silently. */
    args[n].type = GRPC_ARG_INTEGER; args[n].key = "grpc.enable_http_proxy"; args[n++].value.integer = 0;
  }
  if (authority) { args[n].type = GRPC_ARG_STRING; args[n].key = GRPC_ARG_DEFAULT_AUTHORITY; args[n++].value.string = (char *)authority; }

  grpc_channel_credentials *creds;
  int tls_type = lua_getfield(L, 2, "tls");
  if (tls_type == LUA_TTABLE) {
    const char *domain = opt_string(L, lua_gettop(L), "domain", "tls");
    if (domain) { args[n].type = GRPC_ARG_STRING; args[n].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG; args[n++].value.string = (char *)domain; }
    creds = tls_credentials(L, lua_gettop(L));
  } else if (tls_type == LUA_TBOOLEAN && lua_toboolean(L, -1)) {
    creds = grpc_ssl_credentials_create(NULL, NULL, NULL, NULL);
  } else if (tls_type == LUA_TNIL || tls_type == LUA_TBOOLEAN) {
    creds = grpc_insecure_credentials_create();
  } else {
    return luaL_error(L, "tls: expected a boolean or a table, got %s", luaL_typename(L, -1));
  }
  lua_pop(L, 1);

  tl_channel *ch = lua_newuserdatauv(L, sizeof(*ch), 0);
  ch->channel = NULL;
  ch->target = NULL;
  luaL_setmetatable(L, TL_CHANNEL_MT);
  grpc_channel_args cargs = { (size_t)n, args };
  ch->target = strdup(target);
  ch->channel = grpc_channel_create(connect_to, creds, &cargs);
  grpc_channel_credentials_release(creds);
  if (!ch->channel || !ch->target) return luaL_error(L, "cannot create a channel to %s", target);
  return 1;
}

void tl_channel_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", channel_close}, {"state", channel_state}, {NULL, NULL}};
  if (luaL_newmetatable(L, TL_CHANNEL_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, channel_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, channel_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, channel_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_channel);
  lua_setfield(L, -2, "channel");
}
