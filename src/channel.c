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
    /* In-flight calls hold their own reference to the channel and still complete. */
    grpc_channel_destroy(ch->channel);
    ch->channel = NULL;
  }
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
    v = lua_tostring(L, -1);
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

/* core.channel(target, opts) -> Channel
 * opts: tls (false | true | table), max_receive_message_length (bytes),
 * keep_alive_time / keep_alive_timeout (seconds; 0 = off), http_proxy ("host:port"),
 * use_proxy_env (boolean, default false), authority (":authority" override). */
static int l_channel(lua_State *L) {
  const char *target = luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  else { lua_newtable(L); lua_replace(L, 2); }
  static const char *const known[] = {"tls", "max_receive_message_length", "keep_alive_time",
                                      "keep_alive_timeout", "http_proxy", "use_proxy_env", "authority", NULL};
  check_known(L, 2, known, "channel");
  tl_runtime_get(L);  /* fails clearly after fork */

  grpc_arg args[8];
  int n = 0;
  lua_getfield(L, 2, "max_receive_message_length");
  lua_Integer maxrecv = luaL_optinteger(L, -1, 128 * 1024 * 1024);
  lua_pop(L, 1);
  if (maxrecv > INT32_MAX || maxrecv < -1) luaL_error(L, "max_receive_message_length: out of range");
  args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH; args[n++].value.integer = (int)maxrecv;
  lua_getfield(L, 2, "keep_alive_time");
  double ka = luaL_optnumber(L, -1, 0);
  lua_getfield(L, 2, "keep_alive_timeout");
  double kat = luaL_optnumber(L, -1, 15);
  lua_pop(L, 2);
  if (ka > 0) {
    args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_KEEPALIVE_TIME_MS; args[n++].value.integer = (int)(ka * 1000);
    args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS; args[n++].value.integer = (int)(kat * 1000);
    args[n].type = GRPC_ARG_INTEGER; args[n].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS; args[n++].value.integer = 1;
  }
  const char *proxy = opt_string(L, 2, "http_proxy", "channel");
  lua_getfield(L, 2, "use_proxy_env");
  int use_env = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (proxy) {
    args[n].type = GRPC_ARG_STRING; args[n].key = "grpc.http_proxy"; args[n++].value.string = (char *)proxy;
  } else if (!use_env) {
    /* http_proxy/https_proxy/grpc_proxy would otherwise apply silently. */
    args[n].type = GRPC_ARG_INTEGER; args[n].key = "grpc.enable_http_proxy"; args[n++].value.integer = 0;
  }
  const char *authority = opt_string(L, 2, "authority", "channel");
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
  ch->channel = grpc_channel_create(target, creds, &cargs);
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
    lua_pushcfunction(L, channel_close);
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
