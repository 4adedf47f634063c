/*
 * temporal-lua: the stand-alone interpreter.
 *
 * It behaves like the stock lua5.4 command (options, the 'arg' table, LUA_INIT, exit
 * status), with three differences: the temporal modules are preloaded from the binary so
 * nothing has to be installed, -e chunks and the REPL find a ready 'temporal' global, and
 * the REPL pretty-prints results and survives Ctrl-C at the prompt.
 * The REPL also completes names with Tab, has help(x), keeps spawned tasks running while
 * it waits for a line, and -o json prints results as JSON for other tools.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/select.h>
#include <sys/time.h>
#include <unistd.h>
#include <fcntl.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include <readline/readline.h>
#include <readline/history.h>

#include <grpc/grpc.h>

#include "temporal_lua.h"

#ifndef TEMPORAL_LUA_VERSION
#define TEMPORAL_LUA_VERSION "0.1.0"
#endif

#define PROGNAME "temporal-lua"
#define PROMPT1 "> "
#define PROMPT2 ">> "
#define HISTORY_FILE ".temporal_lua_history"
#define HISTORY_MAX 1000
/* Lua's syntax errors end with this when the chunk is merely unfinished. */
#define EOFMARK "<eof>"

void tl_preload(lua_State *L);

/* Errors are prefixed with the program name, except inside the REPL (as lua.c does). */
static const char *main_progname = PROGNAME;

/* -o json / --json: results (REPL, -e chunks, the script's return values) as JSON lines. */
static int main_output_json = 0;

/* --- embedded modules --------------------------------------------------------------- */

/* package.preload loader for one embedded module; receives require's (name, extra). */
static int main_load_embedded(lua_State *L) {
  const tl_embedded_module *m = lua_touserdata(L, lua_upvalueindex(1));
  int nargs = lua_gettop(L);
  const char *chunkname = lua_pushfstring(L, "@%s", m->path);
  /* "b": tools/embed.lua stores the modules precompiled (string.dump, debug info kept). */
  if (luaL_loadbufferx(L, m->source, m->len, chunkname, "b") != LUA_OK)
    return lua_error(L);
  lua_remove(L, -2);     /* chunk name */
  lua_insert(L, 1);      /* chunk below require's arguments */
  lua_call(L, nargs, 1);
  return 1;
}

/* Registers the C core and every embedded Lua module in package.preload, so require()
 * finds them before looking at package.path: the binary runs from anywhere. */
void tl_preload(lua_State *L) {
  const tl_embedded_module *m;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_temporal_core);
  lua_setfield(L, -2, "temporal.core");
  for (m = tl_embedded_modules; m->name != NULL; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, main_load_embedded, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}

/* --- running chunks ----------------------------------------------------------------- */

static lua_State *main_global_L = NULL;

/* The hook a SIGINT installs: raising from inside Lua is the only safe way to stop it. */
static void main_stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void main_set_signal(int sig, void (*handler)(int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

/* A signal handler may not touch the Lua state; it only arms a hook that stops it at the
 * next instruction. A second Ctrl-C meanwhile kills the process (SIG_DFL again). */
static void main_on_sigint_running(int sig) {
  int flags = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  main_set_signal(sig, SIG_DFL);
  lua_sethook(main_global_L, main_stop_hook, flags, 1);
}

static void main_message(const char *msg) {
  if (main_progname != NULL) fprintf(stderr, "%s: ", main_progname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Pushes a string for the error object at idx: strings and numbers as they are, objects
 * through __tostring (temporal's error classes have one), anything else by its type. */
static const char *main_error_string(lua_State *L, int idx) {
  const char *msg = lua_tostring(L, idx);
  if (msg != NULL) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
  }
  if (luaL_callmeta(L, idx, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
    return lua_tostring(L, -1);
  return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

/* Message handler for scripts, -e and -l: the message plus a traceback, for every kind of
 * error object, so a failing script always says where it failed. */
static int main_traceback_handler(lua_State *L) {
  const char *msg = main_error_string(L, 1);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Message handler for the REPL: the message alone; the user just typed the code. */
static int main_message_handler(lua_State *L) {
  main_error_string(L, 1);
  return 1;
}

/* lua_pcall with a message handler and Ctrl-C turned into an "interrupted!" error. */
static int main_docall(lua_State *L, int narg, int nres, int traceback) {
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, traceback ? main_traceback_handler : main_message_handler);
  lua_insert(L, base);
  main_global_L = L;
  main_set_signal(SIGINT, main_on_sigint_running);
  status = lua_pcall(L, narg, nres, base);
  main_set_signal(SIGINT, SIG_DFL);
  lua_remove(L, base);
  return status;
}

/* Prints and pops the error message if status is an error. */
static int main_report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    main_message(msg != NULL ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

static void main_print_results(lua_State *L, int base);

/* Under -o json the chunk's return values are printed (as JSON lines). */
static int main_dochunk(lua_State *L, int status) {
  if (status == LUA_OK) {
    int base = lua_gettop(L) - 1;
    status = main_docall(L, 0, main_output_json ? LUA_MULTRET : 0, 1);
    if (status == LUA_OK && main_output_json) main_print_results(L, base);
  }
  return main_report(L, status);
}

static int main_dofile(lua_State *L, const char *name) {
  return main_dochunk(L, luaL_loadfile(L, name));
}

static int main_dostring(lua_State *L, const char *s, const char *name) {
  return main_dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod or -l global=mod: global = require(mod), as Lua 5.4.4 does. */
static int main_dolibrary(lua_State *L, const char *spec) {
  int status;
  const char *eq = strchr(spec, '=');
  const char *modname = eq != NULL ? eq + 1 : spec;
  if (eq != NULL) lua_pushlstring(L, spec, (size_t)(eq - spec));
  else lua_pushstring(L, spec);
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = main_docall(L, 1, 1, 1);
  if (status == LUA_OK) {
    lua_setglobal(L, lua_tostring(L, -2));
    lua_pop(L, 1);  /* global name */
  } else {
    lua_remove(L, -2);  /* global name, leaving the message */
  }
  return main_report(L, status);
}

/* Sets the global 'temporal' for -e chunks and the REPL. A module that fails to load
 * must not keep the interpreter from starting, so this only warns. */
static void main_load_temporal_global(lua_State *L) {
  static int done = 0;
  int status;
  if (done) return;
  done = 1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "temporal");
  status = main_docall(L, 1, 1, 0);
  if (status == LUA_OK) {
    lua_setglobal(L, "temporal");
  } else {
    /* The first line says why; "not found" goes on with every path it tried. */
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "?";
    fprintf(stderr, "%s: warning: global 'temporal' not set: %.*s\n", PROGNAME,
            (int)strcspn(msg, "\n"), msg);
    fflush(stderr);
    lua_pop(L, 1);
  }
}

/* --- the REPL ----------------------------------------------------------------------- */

static int main_use_readline = 0;
static char *main_history_path = NULL;
static int main_pretty_ref = LUA_NOREF;

/* Loads temporal.repl and keeps the function results are printed with: repl.pretty, or
 * repl.json under -o json. Without it results still print, through tostring. */
static void main_load_printer(lua_State *L) {
  int top = lua_gettop(L);
  if (main_pretty_ref != LUA_NOREF) return;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "temporal.repl");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK &&
      lua_getfield(L, -1, main_output_json ? "json" : "pretty") == LUA_TFUNCTION)
    main_pretty_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, top);
}

/* Ctrl-C at the prompt: the handler only records it and wakes select() through a pipe,
 * because whichever thread (gRPC runs its own) receives the signal must not touch
 * readline. */
static volatile sig_atomic_t main_prompt_interrupted = 0;
static int main_wake_pipe[2] = {-1, -1};

static void main_on_sigint_prompt(int sig) {
  int saved = errno;
  ssize_t n;
  (void)sig;
  main_prompt_interrupted = 1;
  if (main_wake_pipe[1] >= 0) {
    n = write(main_wake_pipe[1], "", 1);
    (void)n;
  }
  errno = saved;
}

static char *main_rl_line = NULL;
static int main_rl_done = 0;

/* Tasks spawned at the prompt keep running while it waits for a line: besides the
 * terminal it waits on the loaded temporal module's pollfd() for timeout() seconds (the
 * host-loop protocol) and then calls temporal.step(0). Returns 1 and sets *fd (and
 * *timeout, negative for none) when the module is loaded and has the protocol. */
static int main_idle_source(lua_State *L, int *fd, double *timeout) {
  int top = lua_gettop(L);
  int ok = 0;
  *fd = -1;
  *timeout = -1;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "temporal") == LUA_TTABLE) {
    int module = lua_gettop(L);
    if (lua_getfield(L, module, "pollfd") == LUA_TFUNCTION && lua_pcall(L, 0, 1, 0) == LUA_OK &&
        lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0 && lua_tointeger(L, -1) < FD_SETSIZE) {
      *fd = (int)lua_tointeger(L, -1);
      ok = 1;
    }
    lua_settop(L, module);
    if (ok && lua_getfield(L, module, "timeout") == LUA_TFUNCTION &&
        lua_pcall(L, 0, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TNUMBER) {
      double t = lua_tonumber(L, -1);
      if (t >= 0 && !isnan(t)) *timeout = t;
    }
  }
  lua_settop(L, top);
  return ok;
}

static void main_on_sigint_prompt(int sig);

/* temporal.step(0) while the prompt waits: the stack (prompt, unfinished chunk) is kept
 * and Ctrl-C interrupts a task that runs too long. The prompt and the line being typed are
 * taken off the screen meanwhile and drawn again afterwards, so whatever a task prints
 * (and any error) appears above the prompt instead of inside the line. */
static void main_idle_step(lua_State *L) {
  int top = lua_gettop(L);
  int status;
  char *saved_line;
  int saved_point;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "temporal") == LUA_TTABLE &&
      lua_getfield(L, -1, "step") == LUA_TFUNCTION) {
    saved_point = rl_point;
    saved_line = rl_copy_text(0, rl_end);
    rl_save_prompt();
    rl_replace_line("", 0);
    rl_redisplay();
    lua_pushinteger(L, 0);
    status = main_docall(L, 1, 0, 0);
    main_set_signal(SIGINT, main_on_sigint_prompt);
    if (status != LUA_OK) main_report(L, status);
    fflush(stdout);
    rl_restore_prompt();
    rl_replace_line(saved_line != NULL ? saved_line : "", 0);
    rl_point = saved_point <= rl_end ? saved_point : rl_end;
    free(saved_line);
    rl_forced_update_display();
  }
  lua_settop(L, top);
}

static void main_on_rl_line(char *line) {
  main_rl_line = line;
  main_rl_done = 1;
  rl_callback_handler_remove();
}

/* Reads one line with readline's callback interface, which (unlike readline()) lets a
 * Ctrl-C abandon the line cleanly and lets spawned tasks run while no key is pressed.
 * Returns 1 with *out set (malloc'd), 0 on end of input, -1 when interrupted. */
static int main_tty_readline(lua_State *L, const char *prompt, char **out) {
  char drain[64];
  int result = 1;
  main_rl_line = NULL;
  main_rl_done = 0;
  main_prompt_interrupted = 0;
  main_set_signal(SIGINT, main_on_sigint_prompt);
  rl_callback_handler_install(prompt, main_on_rl_line);
  while (!main_rl_done) {
    fd_set fds;
    int maxfd = main_wake_pipe[0] > 0 ? main_wake_pipe[0] : 0;
    int task_fd;
    double task_timeout;
    int idle = main_idle_source(L, &task_fd, &task_timeout);
    struct timeval tv, *tvp = NULL;
    int ready;
    FD_ZERO(&fds);
    FD_SET(0, &fds);
    if (main_wake_pipe[0] >= 0) FD_SET(main_wake_pipe[0], &fds);
    if (idle) {
      FD_SET(task_fd, &fds);
      if (task_fd > maxfd) maxfd = task_fd;
      if (task_timeout >= 0) {
        if (task_timeout > 86400) task_timeout = 86400;
        tv.tv_sec = (time_t)task_timeout;
        tv.tv_usec = (suseconds_t)((task_timeout - (double)tv.tv_sec) * 1e6);
        tvp = &tv;
      }
    }
    ready = select(maxfd + 1, &fds, NULL, NULL, tvp);
    if (ready < 0) {
      if (errno != EINTR) {
        rl_callback_handler_remove();
        result = 0;
        break;
      }
      FD_ZERO(&fds);  /* a signal: only the wake pipe's flag matters */
    }
    if (main_wake_pipe[0] >= 0 && FD_ISSET(main_wake_pipe[0], &fds)) {
      while (read(main_wake_pipe[0], drain, sizeof drain) > 0) {}
    }
    if (main_prompt_interrupted) {
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_echo_signal_char(SIGINT);
      rl_callback_handler_remove();
      fputc('\n', stdout);
      fflush(stdout);
      result = -1;
      break;
    }
    if (FD_ISSET(0, &fds)) rl_callback_read_char();
    if (idle && !main_rl_done && (ready == 0 || FD_ISSET(task_fd, &fds))) main_idle_step(L);
  }
  main_set_signal(SIGINT, SIG_DFL);
  if (result == 1) {
    if (main_rl_line == NULL) return 0;
    *out = main_rl_line;
  }
  return result;
}

/* Without a terminal (tests, `temporal-lua -i < file`): plain lines, prompts on stdout
 * as lua.c prints them. */
static int main_plain_readline(const char *prompt, char **out) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  fputs(prompt, stdout);
  fflush(stdout);
  n = getline(&line, &cap, stdin);
  if (n < 0) {
    free(line);
    return 0;
  }
  if (n > 0 && line[n - 1] == '\n') line[n - 1] = '\0';
  *out = line;
  return 1;
}

static void main_save_line(const char *line) {
  HIST_ENTRY *last;
  if (!main_use_readline || line[0] == '\0') return;
  last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last != NULL && strcmp(last->line, line) == 0) return;
  add_history(line);
  /* Appending line by line keeps the history even if the session is killed. */
  if (main_history_path != NULL) append_history(1, main_history_path);
}

/* Pushes the next line; returns 1, or 0 at end of input, or -1 if Ctrl-C dropped it. */
static int main_pushline(lua_State *L, int firstline) {
  char *line = NULL;
  const char *prompt;
  int status;
  lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2");
  prompt = lua_tostring(L, -1);
  if (prompt == NULL) prompt = firstline ? PROMPT1 : PROMPT2;
  status = main_use_readline ? main_tty_readline(L, prompt, &line)
                             : main_plain_readline(prompt, &line);
  lua_pop(L, 1);
  if (status != 1) return status;
  if (firstline && line[0] == '=')  /* "=expr", kept by lua.c for 5.2 habits */
    lua_pushfstring(L, "return %s", line + 1);
  else
    lua_pushstring(L, line);
  free(line);
  return 1;
}

/* Is the error on top an unfinished chunk? Then pop it. */
static int main_incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    size_t marklen = sizeof(EOFMARK) - 1;
    if (len >= marklen && strcmp(msg + len - marklen, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* First try the line as an expression so its values get printed. */
static int main_addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2);
    main_save_line(line);
  } else {
    lua_pop(L, 2);
  }
  return status;
}

/* Then as statements, reading continuation lines while the chunk is unfinished.
 * Returns -2 if Ctrl-C abandoned the chunk. */
static int main_multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *chunk = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, chunk, len, "=stdin");
    int more;
    if (!main_incomplete(L, status)) {
      main_save_line(chunk);
      return status;
    }
    more = main_pushline(L, 0);
    if (more < 0) return -2;
    if (more == 0) {
      /* Report the unfinished chunk as the syntax error it is. */
      main_save_line(chunk);
      return luaL_loadbuffer(L, chunk, len, "=stdin");
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Leaves the compiled chunk (or an error message) alone on the stack. Returns its status,
 * -1 at end of input, -2 when there is nothing to run. */
static int main_loadline(lua_State *L) {
  int status;
  lua_settop(L, 0);
  status = main_pushline(L, 1);
  if (status == 0) return -1;
  if (status < 0) return -2;
  if ((status = main_addreturn(L)) != LUA_OK) status = main_multiline(L);
  if (status == -2) {
    lua_settop(L, 0);
    return -2;
  }
  lua_remove(L, 1);
  return status;
}

/* Prints the values above base, each through repl.pretty separated by tabs (or under
 * -o json through repl.json, one per line), and pops them. */
static void main_print_results(lua_State *L, int base) {
  int n = lua_gettop(L) - base;
  int i;
  luaL_Buffer b;
  if (n <= 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  main_load_printer(L);
  for (i = base + 1; i <= base + n; i++) {
    int ok = 0;
    if (main_pretty_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, main_pretty_ref);
      lua_pushvalue(L, i);
      ok = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING;
      if (!ok) lua_pop(L, 1);
    }
    if (!ok) luaL_tolstring(L, i, NULL);
    lua_replace(L, i);
  }
  luaL_buffinit(L, &b);
  for (i = base + 1; i <= base + n; i++) {
    if (i > base + 1) luaL_addchar(&b, main_output_json ? '\n' : '\t');
    lua_pushvalue(L, i);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  fputs(lua_tostring(L, -1), stdout);
  fflush(stdout);
  lua_settop(L, base);
}

/* Lets background work spawned by the chunk (workers, polls) make progress: calls
 * temporal.step(0) when the module is loaded and has one. */
static void main_step_temporal(lua_State *L) {
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "temporal") == LUA_TTABLE &&
      lua_getfield(L, -1, "step") == LUA_TFUNCTION) {
    lua_pushinteger(L, 0);
    main_report(L, main_docall(L, 1, 0, 0));
  }
  lua_settop(L, 0);
}

/* --- tab completion ------------------------------------------------------------------ */

/* Completion asks repl.complete(word, line, start) for the candidates; readline then
 * inserts their common prefix or lists them. */
static lua_State *main_completion_L = NULL;
static int main_complete_ref = LUA_NOREF;
static char **main_matches = NULL;
static size_t main_match_count = 0, main_match_next = 0;

static void main_free_matches(void) {
  size_t i;
  for (i = 0; i < main_match_count; i++) free(main_matches[i]);
  free(main_matches);
  main_matches = NULL;
  main_match_count = main_match_next = 0;
}

static char *main_match_generator(const char *text, int state) {
  (void)text;
  if (state == 0) main_match_next = 0;
  if (main_match_next < main_match_count) return strdup(main_matches[main_match_next++]);
  return NULL;
}

static char **main_attempt_completion(const char *text, int start, int end) {
  lua_State *L = main_completion_L;
  int top;
  (void)end;
  rl_attempted_completion_over = 1;  /* never fall back to file names */
  rl_completion_append_character = '\0';
  main_free_matches();
  if (L == NULL || main_complete_ref == LUA_NOREF) return NULL;
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, main_complete_ref);
  lua_pushstring(L, text);
  lua_pushstring(L, rl_line_buffer);
  lua_pushinteger(L, start);
  if (lua_pcall(L, 3, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE) {
    size_t n = (size_t)lua_rawlen(L, -1), i;
    main_matches = calloc(n + 1, sizeof *main_matches);
    for (i = 0; main_matches != NULL && i < n; i++) {
      const char *m;
      lua_rawgeti(L, -1, (lua_Integer)i + 1);
      m = lua_tostring(L, -1);
      if (m != NULL && (main_matches[main_match_count] = strdup(m)) != NULL) main_match_count++;
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  if (main_match_count == 0) return NULL;
  return rl_completion_matches(text, main_match_generator);
}

static void main_history_open(void) {
  const char *env = getenv("TEMPORAL_LUA_HISTORY");
  const char *home = getenv("HOME");
  if (env != NULL && env[0] != '\0') {
    main_history_path = strdup(env);
  } else if (home != NULL && home[0] != '\0') {
    size_t len = strlen(home) + sizeof(HISTORY_FILE) + 1;
    main_history_path = malloc(len);
    if (main_history_path != NULL) snprintf(main_history_path, len, "%s/%s", home, HISTORY_FILE);
  }
  stifle_history(HISTORY_MAX);
  if (main_history_path != NULL && read_history(main_history_path) != 0) {
    /* append_history() needs an existing file; a failure here just means no history. */
    int fd = open(main_history_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) close(fd);
  }
}

static void main_history_close(void) {
  if (main_history_path != NULL) {
    history_truncate_file(main_history_path, HISTORY_MAX);
    free(main_history_path);
    main_history_path = NULL;
  }
}

static void main_repl(lua_State *L) {
  int status;
  const char *saved_progname = main_progname;
  main_load_temporal_global(L);
  main_load_printer(L);
  /* repl.complete for Tab, and the global help (unless the user has one). */
  lua_settop(L, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "temporal.repl");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE) {
    if (lua_getfield(L, 1, "complete") == LUA_TFUNCTION)
      main_complete_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
      lua_pop(L, 1);
    if (lua_getglobal(L, "help") == LUA_TNIL && lua_getfield(L, 1, "help") == LUA_TFUNCTION)
      lua_setglobal(L, "help");
  }
  lua_settop(L, 0);

  main_use_readline = isatty(0);
  if (main_use_readline) {
    rl_readline_name = PROGNAME;
    rl_catch_signals = 0;  /* SIGINT is ours: see main_tty_readline */
    /* Words run over '.' and ':' so `client.workflow_service:get_<Tab>` is one word. */
    rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";
    rl_attempted_completion_function = main_attempt_completion;
    main_completion_L = L;
    if (pipe(main_wake_pipe) == 0) {
      fcntl(main_wake_pipe[0], F_SETFL, O_NONBLOCK);
      fcntl(main_wake_pipe[1], F_SETFL, O_NONBLOCK);
    } else {
      main_wake_pipe[0] = main_wake_pipe[1] = -1;
    }
    main_history_open();
  }

  main_progname = NULL;
  while ((status = main_loadline(L)) != -1) {
    if (status == -2) continue;
    if (status == LUA_OK) status = main_docall(L, 0, LUA_MULTRET, 0);
    if (status == LUA_OK) main_print_results(L, 0);
    else main_report(L, status);
    main_step_temporal(L);
  }
  lua_settop(L, 0);
  fputc('\n', stdout);
  fflush(stdout);
  main_progname = saved_progname;

  if (main_use_readline) {
    main_history_close();
    main_free_matches();
    main_completion_L = NULL;
    if (main_wake_pipe[0] >= 0) {
      close(main_wake_pipe[0]);
      close(main_wake_pipe[1]);
      main_wake_pipe[0] = main_wake_pipe[1] = -1;
    }
  }
}

/* --- command line ------------------------------------------------------------------- */

static void main_print_version(void) {
  const char *lua_release = LUA_RELEASE;
  if (strncmp(lua_release, "Lua ", 4) == 0) lua_release += 4;
  printf("%s %s (Lua %s, gRPC core %s)\n", PROGNAME, TEMPORAL_LUA_VERSION, lua_release,
         grpc_version_string());
  fflush(stdout);
}

static void main_usage(FILE *out) {
  fprintf(out,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -o json   print results as JSON, one value per line: what -e chunks and the\n"
          "            script return, and the REPL's results (--json is the same)\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  -h        show this help (also --help)\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n"
          "The global 'temporal' is set for -e and the interactive mode. At the prompt, Tab\n"
          "completes names, fields and methods, and help(x) shows the reference of a\n"
          "function or method (help() lists the topics).\n",
          PROGNAME);
  fflush(out);
}

/* Set by main_collectargs when an option's value (not its name) is at fault. */
static const char *main_bad_value = NULL;

static void main_print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", PROGNAME);
  if (main_bad_value != NULL)
    fprintf(stderr, "'%s': unknown output format '%s' (expected json)\n", "-o", main_bad_value);
  else if (badoption[1] == 'e' || badoption[1] == 'l' || badoption[1] == 'o')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  main_usage(stderr);
}

#define HAS_ERROR 1
#define HAS_I 2
#define HAS_V 4
#define HAS_E 8
#define HAS_NOENV 16
#define HAS_HELP 32

/* Scans the options that matter before any Lua runs. *first gets the script's index
 * (0 if none) or, on error, the bad option's. */
static int main_collectargs(char **argv, int *first) {
  int args = 0;
  int i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;
    switch (argv[i][1]) {
      case '-':
        if (strcmp(argv[i], "--help") == 0) {
          args |= HAS_HELP;
          break;
        }
        if (strcmp(argv[i], "--json") == 0) {
          main_output_json = 1;
          break;
        }
        if (argv[i][2] != '\0') return HAS_ERROR;
        *first = argv[i + 1] != NULL ? i + 1 : 0;
        return args;
      case 'h':
        if (argv[i][2] != '\0') return HAS_ERROR;
        args |= HAS_HELP;
        break;
      case 'o': {
        const char *format = argv[i] + 2;
        if (*format == '\0') {
          format = argv[++i];
          if (format == NULL || format[0] == '-') return HAS_ERROR;
        }
        if (strcmp(format, "json") != 0) {
          main_bad_value = format;
          return HAS_ERROR;
        }
        main_output_json = 1;
        break;
      }
      case '\0':
        return args;  /* the script is "-": stdin */
      case 'E':
        if (argv[i][2] != '\0') return HAS_ERROR;
        args |= HAS_NOENV;
        break;
      case 'W':
        if (argv[i][2] != '\0') return HAS_ERROR;
        break;
      case 'i':
        args |= HAS_I;  /* -i implies -v */
        /* FALLTHROUGH */
      case 'v':
        if (argv[i][2] != '\0') return HAS_ERROR;
        args |= HAS_V;
        break;
      case 'e':
        args |= HAS_E;
        /* FALLTHROUGH */
      case 'l':
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return HAS_ERROR;
        }
        break;
      default:
        return HAS_ERROR;
    }
  }
  *first = 0;
  return args;
}

/* Runs -e, -l and -W in order; returns 0 if one failed. */
static int main_runargs(lua_State *L, char **argv, int n) {
  int i;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    if (option == 'e' || option == 'l') {
      const char *extra = argv[i] + 2;
      int status;
      if (*extra == '\0') extra = argv[++i];
      status = option == 'e' ? main_dostring(L, extra, "=(command line)")
                             : main_dolibrary(L, extra);
      if (status != LUA_OK) return 0;
    } else if (option == 'W') {
      lua_warning(L, "@on", 0);
    } else if (option == 'o' && argv[i][2] == '\0') {
      i++;  /* the format, taken by main_collectargs */
    }
  }
  return 1;
}

/* arg[0] is the script, arguments after it positive, the interpreter and its options
 * negative; without a script everything is positive after arg[0] = interpreter. */
static void main_createargtable(lua_State *L, char **argv, int argc, int script) {
  int i;
  lua_createtable(L, argc - (script + 1), script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int main_pushargs(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static int main_handle_script(lua_State *L, char **argv) {
  int status;
  int base = lua_gettop(L);
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = main_pushargs(L);
    status = main_docall(L, n, LUA_MULTRET, 1);
    if (status == LUA_OK && main_output_json) main_print_results(L, base);
  }
  return main_report(L, status);
}

static int main_handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT" LUA_VERSUFFIX;
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return main_dofile(L, init + 1);
  return main_dostring(L, init, name);
}

static int main_pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = 0;
  int args = argc > 0 ? main_collectargs(argv, &script) : 0;
  int optlim = script > 0 ? script : argc;
  luaL_checkversion(L);
  if (args == HAS_ERROR) {
    main_print_usage(argv[script]);
    return 0;
  }
  if (args & HAS_HELP) {
    main_usage(stdout);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (args & HAS_V) main_print_version();
  if (args & HAS_NOENV) {
    /* package reads this to ignore LUA_PATH and LUA_CPATH */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  tl_preload(L);
  if (argc > 0) main_createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(args & HAS_NOENV) && main_handle_luainit(L) != LUA_OK) return 0;
  if (args & HAS_E) main_load_temporal_global(L);
  if (!main_runargs(L, argv, optlim)) return 0;
  if (script > 0 && main_handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & HAS_I) {
    main_repl(L);
  } else if (script < 1 && !(args & (HAS_E | HAS_V))) {
    if (isatty(0)) {
      main_print_version();
      main_repl(L);
    } else {
      main_dofile(L, NULL);  /* stdin as a script, like lua5.4 */
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* --- the state's allocator ----------------------------------------------------------- */

/* Lua's objects are small (a string, a table and its slots, a userdata: 24 to 256 bytes)
 * and come and go in bursts (a decoded payload, a collection sweeping thousands at once),
 * where glibc's malloc spends a fifth of the time of a payload conversion consolidating
 * free chunks. temporal-lua gives its state a small-block pool instead, as CPython's
 * pymalloc does: blocks of up to 256 bytes in 16-byte size classes, carved from 64 KiB
 * chunks and kept on one free list per class; larger blocks go to malloc. Lua passes the
 * old size with every free and resize, so blocks need no header. The chunks are released
 * when the state is closed. Under ASan or valgrind, or with TEMPORAL_LUA_MALLOC=libc,
 * every block comes from malloc so those tools see each one (TEMPORAL_LUA_MALLOC=pool
 * keeps the pool under valgrind, for callgrind). */
#define POOL_MAX 256
#define POOL_CLASSES (POOL_MAX / 16)
#define POOL_CHUNK (64 * 1024)

typedef struct main_pool_chunk {
  struct main_pool_chunk *next;
  void *align; /* blocks start 16 bytes in */
} main_pool_chunk;

typedef struct {
  void *free[POOL_CLASSES]; /* free lists, class c holds blocks of 16 * (c + 1) bytes */
  char *cur, *end;          /* the unused rest of the newest chunk */
  main_pool_chunk *chunks;
} main_pool;

static main_pool main_the_pool;

static void *main_pool_get(main_pool *p, size_t n) {
  size_t c = (n - 1) >> 4, size = (c + 1) << 4;
  void *b = p->free[c];
  if (b != NULL) {
    p->free[c] = *(void **)b;
    return b;
  }
  if ((size_t)(p->end - p->cur) < size) {
    main_pool_chunk *chunk = malloc(POOL_CHUNK);
    if (chunk == NULL) return NULL;
    while (p->end - p->cur >= 16) { /* the old chunk's rest: 16-byte blocks */
      *(void **)p->cur = p->free[0];
      p->free[0] = p->cur;
      p->cur += 16;
    }
    chunk->next = p->chunks;
    p->chunks = chunk;
    p->cur = (char *)chunk + sizeof *chunk;
    p->end = (char *)chunk + POOL_CHUNK;
  }
  b = p->cur;
  p->cur += size;
  return b;
}

static void main_pool_put(main_pool *p, void *b, size_t n) {
  size_t c = (n - 1) >> 4;
  *(void **)b = p->free[c];
  p->free[c] = b;
}

static void main_pool_release(main_pool *p) {
  while (p->chunks != NULL) {
    main_pool_chunk *next = p->chunks->next;
    free(p->chunks);
    p->chunks = next;
  }
  memset(p, 0, sizeof *p);
}

static void *main_pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  main_pool *p = ud;
  void *block;
  if (ptr == NULL) osize = 0; /* then osize is the kind of object, not a size */
  if (nsize == 0) {
    if (ptr != NULL) {
      if (osize - 1 < POOL_MAX) main_pool_put(p, ptr, osize);
      else free(ptr);
    }
    return NULL;
  }
  if (ptr != NULL && osize - 1 >= POOL_MAX && nsize > POOL_MAX) return realloc(ptr, nsize);
  if (ptr != NULL && osize - 1 < POOL_MAX && nsize <= POOL_MAX && (osize - 1) >> 4 == (nsize - 1) >> 4)
    return ptr; /* same size class */
  block = nsize <= POOL_MAX ? main_pool_get(p, nsize) : malloc(nsize);
  if (block == NULL) return nsize <= osize ? ptr : NULL; /* Lua counts on shrinking to succeed */
  if (ptr != NULL) {
    memcpy(block, ptr, osize < nsize ? osize : nsize);
    if (osize - 1 < POOL_MAX) main_pool_put(p, ptr, osize);
    else free(ptr);
  }
  return block;
}

static void *main_libc_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static int main_use_pool(void) {
  const char *m = getenv("TEMPORAL_LUA_MALLOC"), *preload = getenv("LD_PRELOAD");
#if defined(__SANITIZE_ADDRESS__)
  return 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return 0;
#endif
#endif
  if (m != NULL && strcmp(m, "libc") == 0) return 0;
  if (m != NULL && strcmp(m, "pool") == 0) return 1; /* e.g. to count instructions under callgrind */
  if (preload != NULL && strstr(preload, "vgpreload") != NULL) return 0; /* valgrind */
  return 1;
}

static int main_panic(lua_State *L) {
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error object is not a string";
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg);
  fflush(stderr);
  return 0; /* abort */
}

/* Warnings as luaL_newstate sets them up (lua.c's behaviour): off until "@on". */
static void main_warn_off(void *ud, const char *msg, int tocont);
static void main_warn_on(void *ud, const char *msg, int tocont);
static void main_warn_cont(void *ud, const char *msg, int tocont);

static int main_warn_control(lua_State *L, const char *msg, int tocont) {
  if (tocont || *msg++ != '@') return 0;
  if (strcmp(msg, "off") == 0) lua_setwarnf(L, main_warn_off, L);
  else if (strcmp(msg, "on") == 0) lua_setwarnf(L, main_warn_on, L);
  return 1;
}

static void main_warn_off(void *ud, const char *msg, int tocont) {
  main_warn_control((lua_State *)ud, msg, tocont);
}

static void main_warn_cont(void *ud, const char *msg, int tocont) {
  lua_State *L = ud;
  fprintf(stderr, "%s", msg);
  fflush(stderr);
  if (tocont) {
    lua_setwarnf(L, main_warn_cont, L);
  } else {
    fprintf(stderr, "\n");
    fflush(stderr);
    lua_setwarnf(L, main_warn_on, L);
  }
}

static void main_warn_on(void *ud, const char *msg, int tocont) {
  if (main_warn_control((lua_State *)ud, msg, tocont)) return;
  fprintf(stderr, "Lua warning: ");
  fflush(stderr);
  main_warn_cont(ud, msg, tocont);
}

static lua_State *main_newstate(int pool) {
  lua_State *L = pool ? lua_newstate(main_pool_alloc, &main_the_pool) : lua_newstate(main_libc_alloc, NULL);
  if (L != NULL) {
    lua_atpanic(L, main_panic);
    lua_setwarnf(L, main_warn_off, L);
  }
  return L;
}

int main(int argc, char **argv) {
  int status, result, pool = main_use_pool();
  lua_State *L = main_newstate(pool);
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", PROGNAME);
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP);  /* no collections while the state is built */
  lua_pushcfunction(L, main_pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  result = lua_toboolean(L, -1);
  main_report(L, status);
  lua_close(L);
  if (pool) main_pool_release(&main_the_pool);
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
