-- The temporal-lua interpreter: lua5.4-compatible command line, preloaded modules, the
-- REPL (piped and on a pseudo-terminal) and the pretty printer. Needs no Temporal server.
-- The binary: $TEMPORAL_LUA, default build/temporal-lua (relative to the repository).

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local repl = require("temporal.repl")

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local BIN = os.getenv("TEMPORAL_LUA") or "build/temporal-lua"
if BIN:sub(1, 1) ~= "/" then BIN = (os.getenv("PWD") or ".") .. "/" .. BIN end

local function write_file(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local tmpfiles = {}
local function tmpname(content)
  local name = os.tmpname()
  tmpfiles[#tmpfiles + 1] = name
  if content then write_file(name, content) end
  return name
end

-- Runs BIN with args (a list); opts.stdin (string, else /dev/null), opts.env (a list of
-- "NAME=value"; LUA_INIT* always cleared), opts.cwd. Returns {out, err, code}.
local function run(args, opts)
  opts = opts or {}
  local parts = { "env -u LUA_INIT -u LUA_INIT_5_4" }
  for _, e in ipairs(opts.env or {}) do parts[#parts + 1] = shquote(e) end
  parts[#parts + 1] = shquote(BIN)
  for _, a in ipairs(args) do parts[#parts + 1] = shquote(a) end
  local errfile = tmpname()
  parts[#parts + 1] = "2>" .. errfile
  parts[#parts + 1] = "<" .. (opts.stdin and tmpname(opts.stdin) or "/dev/null")
  local cmd = table.concat(parts, " ")
  if opts.cwd then cmd = "cd " .. shquote(opts.cwd) .. " && " .. cmd end
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return { out = out, err = read_file(errfile) or "", code = code }
end

-- Drives BIN on a pseudo-terminal with util-linux `script`. steps: a list of
-- {wait = text, send = keys}; each waits (up to ~10 s) for text in the output so far,
-- then types keys. Returns everything the terminal showed.
local function run_pty(steps, env)
  local typescript = tmpname("")
  local feeder = { "out=" .. shquote(typescript),
    'w() { i=0; while ! grep -qF -- "$1" "$out"; do i=$((i+1)); [ $i -gt 100 ] && return; sleep 0.1; done; }',
    "(" }
  for _, step in ipairs(steps) do
    if step.wait then feeder[#feeder + 1] = "w " .. shquote(step.wait) .. ";" end
    feeder[#feeder + 1] = "printf '%s' " .. shquote(step.send) .. ";"
  end
  feeder[#feeder + 1] = "sleep 0.5) | env " .. table.concat(env or {}, " ") ..
    " script -qfec " .. shquote(shquote(BIN)) .. " \"$out\" >/dev/null 2>&1"
  local p = assert(io.popen(table.concat(feeder, "\n"), "r"))
  p:read("a")
  p:close()
  return read_file(typescript) or ""
end

local function has(s, needle)
  return s:find(needle, 1, true) ~= nil
end

describe("temporal-lua", function()
  teardown(function()
    for _, f in ipairs(tmpfiles) do os.remove(f) end
  end)

  describe("command line", function()
    it("passes script arguments as ... and in arg like lua5.4", function()
      local script = tmpname([[
        print("dots", ...)
        print("arg", arg[-3], arg[-2], arg[-1], arg[0], arg[1], arg[2], #arg)
      ]])
      local r = run({ "-e", "x=1", script, "a b", "c" })
      assert.equal(0, r.code)
      assert.truthy(has(r.out, "dots\ta b\tc\n"))
      assert.truthy(has(r.out, ("arg\t%s\t-e\tx=1\t%s\ta b\tc\t2\n"):format(BIN, script)))
    end)

    it("without a script puts the interpreter at arg[0] and options after it", function()
      local r = run({ "-e", "print(arg[0], arg[1], arg[2], arg[-1])" })
      assert.equal(BIN .. "\t-e\tprint(arg[0], arg[1], arg[2], arg[-1])\tnil\n", r.out)
    end)

    it("runs -e chunks in order, then the script", function()
      local script = tmpname("print('script', x)")
      local r = run({ "-e", "x = 1", "-e", "print('e', x); x = 2", script })
      assert.equal("e\t1\nscript\t2\n", r.out)
    end)

    it("-l mod sets the global mod, -l g=mod sets g", function()
      local r = run({ "-l", "temporal.repl", "-l", "r=temporal.repl", "-e",
        "print(rawequal(r, package.loaded['temporal.repl']), r.quote('q'))" })
      assert.equal(0, r.code)
      assert.equal('true\t"q"\n', r.out)
    end)

    it("-l with a missing module fails with require's message", function()
      local r = run({ "-l", "no_such_module_xyz", "-e", "print('not reached')" })
      assert.equal(1, r.code)
      assert.equal("", r.out)
      assert.truthy(has(r.err, "temporal-lua: module 'no_such_module_xyz' not found"))
    end)

    it("- runs stdin as the script with its arguments", function()
      local r = run({ "-", "x", "y" }, { stdin = "print('stdin', arg[0], ...)" })
      assert.equal(0, r.code)
      assert.equal("stdin\t-\tx\ty\n", r.out)
    end)

    it("with no arguments and stdin not a terminal runs stdin as a script", function()
      local r = run({}, { stdin = "print(1 + 41)" })
      assert.equal("42\n", r.out)
    end)

    it("-- stops option handling", function()
      local script = tmpname("print(...)")
      local r = run({ "--", script, "-e" })
      assert.equal("-e\n", r.out)
    end)

    it("-v prints temporal-lua, Lua and gRPC versions", function()
      local r = run({ "-v" })
      assert.equal(0, r.code)
      assert.truthy(r.out:match("^temporal%-lua %S+ %(Lua 5%.4%.%d+, gRPC core %d+%.%d+[%.%d]*%)\n$"),
        r.out)
    end)

    it("rejects an unknown option with usage and status 1", function()
      local r = run({ "-x" })
      assert.equal(1, r.code)
      assert.truthy(has(r.err, "temporal-lua: unrecognized option '-x'"))
      assert.truthy(has(r.err, "usage: temporal-lua [options] [script [args]]"))
    end)

    it("-e without its argument is an error", function()
      local r = run({ "-e" })
      assert.equal(1, r.code)
      assert.truthy(has(r.err, "'-e' needs argument"))
    end)

    it("runs LUA_INIT first, and -E skips it", function()
      local r = run({ "-e", "print('main')" }, { env = { "LUA_INIT=print('init')" } })
      assert.equal("init\nmain\n", r.out)
      local script = tmpname("print('from file')")
      r = run({ "-e", "print('main')" }, { env = { "LUA_INIT=@" .. script } })
      assert.equal("from file\nmain\n", r.out)
      r = run({ "-E", "-e", "print('main')" }, { env = { "LUA_INIT=print('init')" } })
      assert.equal("main\n", r.out)
    end)

    it("-E ignores LUA_PATH", function()
      local r = run({ "-e", "print(package.path)" }, { env = { "LUA_PATH=/from/env/?.lua" } })
      assert.equal("/from/env/?.lua\n", r.out)
      r = run({ "-E", "-e", "print(package.path)" }, { env = { "LUA_PATH=/from/env/?.lua" } })
      assert.falsy(has(r.out, "/from/env"))
    end)

    it("-W turns warnings on", function()
      assert.equal("", (run({ "-e", "warn('quiet')" }).err:gsub("temporal%-lua: warning:[^\n]*\n", "")))
      assert.truthy(has(run({ "-W", "-e", "warn('loud')" }).err, "Lua warning: loud"))
    end)
  end)

  describe("help and JSON output", function()
    it("-h and --help print the usage to stdout and exit 0", function()
      for _, flag in ipairs({ "-h", "--help" }) do
        local r = run({ flag })
        assert.equal(0, r.code)
        assert.equal("", r.err)
        assert.truthy(has(r.out, "usage: temporal-lua [options] [script [args]]"), r.out)
        assert.truthy(has(r.out, "-o json"), r.out)
        assert.truthy(has(r.out, "help(x)"), r.out)
      end
    end)

    it("-o json prints what -e chunks return, one JSON value per line", function()
      local r = run({ "-o", "json", "-e", "return {b = {1, 2}, a = 'x'}, 'two', math.mininteger, nil",
        "-e", "return math.maxinteger" })
      assert.equal(0, r.code, r.err)
      assert.equal('{"a":"x","b":[1,2]}\n"two"\n-9223372036854775808\nnull\n9223372036854775807\n', r.out)
    end)

    it("--json prints the script's return values; bytes are base64, objects named", function()
      local script = tmpname("return { raw = '\\255\\0\\1', empty = temporal.object{}, list = {} }")
      local r = run({ "--json", "-e", "temporal = require('temporal')", script })
      assert.equal(0, r.code, r.err)
      assert.equal('{"empty":{},"list":[],"raw":"/wAB"}\n', r.out)
    end)

    it("-o json prints the REPL's results as JSON", function()
      local r = run({ "-i", "-o", "json" }, { stdin = "{ id = 'wf', n = 1.5 }\n" })
      assert.equal(0, r.code, r.err)
      assert.truthy(has(r.out, '> {"id":"wf","n":1.5}\n'), r.out)
    end)

    it("rejects other formats and a missing format", function()
      local r = run({ "-o", "yaml", "-e", "print(1)" })
      assert.equal(1, r.code)
      assert.equal("", r.out)
      assert.truthy(has(r.err, "temporal-lua: '-o': unknown output format 'yaml' (expected json)"), r.err)
      r = run({ "-o" })
      assert.equal(1, r.code)
      assert.truthy(has(r.err, "'-o' needs argument"), r.err)
    end)

    it("repl.json shows handles by their fields and marks cycles", function()
      local r = run({ "-e", [[
        local repl = require("temporal.repl")
        local c = temporal.connect("127.0.0.1:1", { lazy = true, namespace = "ns1" })
        local h = c:get_workflow_handle("wf-9", { run_id = "r1" })
        local t = { name = "loop" }; t.self = t
        print(repl.json(h))
        print(repl.json(t))
        print(repl.json({ f = print, n = 0/0 }))
      ]] })
      assert.equal(0, r.code, r.err)
      local lines = {}
      for line in r.out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.truthy(lines[1]:find('"id":"wf-9"', 1, true), lines[1])
      assert.truthy(lines[1]:find('"run_id":"r1"', 1, true), lines[1])
      assert.falsy(lines[1]:find('_client', 1, true), lines[1])
      assert.equal('{"name":"loop","self":"<cycle>"}', lines[2])
      assert.truthy(lines[3]:match('^{"n":"[-]?nan"}$'), lines[3])
    end)
  end)

  describe("errors", function()
    it("a raising script exits 1 with the message and a traceback", function()
      local script = tmpname("local function inner() error('boom') end\ninner()\n")
      local r = run({ script })
      assert.equal(1, r.code)
      assert.truthy(has(r.err, "temporal-lua: " .. script .. ":1: boom"), r.err)
      assert.truthy(has(r.err, "stack traceback:"))
      assert.truthy(has(r.err, "in local 'inner'"))
    end)

    it("an error object with __tostring prints through it", function()
      local r = run({ "-e", "error(setmetatable({}, {__tostring = function() return 'MyError: bad' end}))" })
      assert.equal(1, r.code)
      assert.truthy(has(r.err, "temporal-lua: MyError: bad\n"), r.err)
    end)

    it("any other error object is named by its type", function()
      local r = run({ "-e", "error({})" })
      assert.equal(1, r.code)
      assert.truthy(has(r.err, "temporal-lua: (error object is a table value)"))
    end)

    it("a syntax error exits 1", function()
      local r = run({ "-e", "x = = 1" })
      assert.equal(1, r.code)
      assert.truthy(has(r.err, "temporal-lua: (command line):1:"))
    end)

    it("os.exit sets the status and a script that returns normally exits 0", function()
      assert.equal(3, run({ "-e", "os.exit(3)" }).code)
      assert.equal(0, run({ "-e", "return 1" }).code)
    end)

    it("an error stops the chunks after it", function()
      local r = run({ "-e", "print('one')", "-e", "error('two')", "-e", "print('three')" })
      assert.equal(1, r.code)
      assert.equal("one\n", r.out)
    end)
  end)

  describe("embedded modules", function()
    it("preloads temporal.core and the Lua modules", function()
      local r = run({ "-e", "print(type(package.preload['temporal.core']), type(package.preload['temporal.repl']))" })
      assert.equal("function\tfunction\n", r.out)
    end)

    it("loads them from the binary, not from disk, with their source path as chunk name", function()
      local r = run({ "-E", "-e",
        "print(debug.getinfo(require('temporal.repl').pretty, 'S').source)" }, { cwd = "/" })
      assert.equal("@lua/temporal/repl.lua\n", r.out)
    end)

    it("sets the global temporal for -e chunks", function()
      local r = run({ "-e", "print(rawequal(temporal, require('temporal')))" })
      assert.equal("true\n", r.out, r.err)
    end)

    it("does not set it for scripts, which stay plain Lua", function()
      local script = tmpname("print(rawget(_G, 'temporal'))")
      assert.equal("nil\n", run({ script }).out)
    end)
  end)

  describe("REPL on piped stdin (-i)", function()
    local function repl_run(input)
      return run({ "-i" }, { stdin = input })
    end

    it("prints the version banner and evaluates expressions", function()
      local r = repl_run("1 + 1\n'text'\n")
      assert.equal(0, r.code)
      assert.truthy(r.out:match("^temporal%-lua %S+ %(Lua"))
      assert.truthy(has(r.out, "> 2\n"))
      assert.truthy(has(r.out, '> "text"\n'))
    end)

    it("runs statements and keeps locals-free state between lines", function()
      local r = repl_run("x = 20\nx * 2 + 2\n")
      assert.truthy(has(r.out, "> > 42\n"))
    end)

    it("prints several results separated by tabs", function()
      local r = repl_run("1, 'a\\nb', nil, true\n")
      assert.truthy(has(r.out, '> 1\t"a\\nb"\tnil\ttrue\n'))
    end)

    it("pretty-prints nested tables with sorted keys", function()
      local r = repl_run("{3, 4, z = 1, a = {b = {1, 2}}, [10] = 'ten'}\n")
      assert.truthy(has(r.out, '{3, 4, [10] = "ten", a = {b = {1, 2}}, z = 1}\n'), r.out)
    end)

    it("marks cycles instead of looping", function()
      local r = repl_run("t = {name = 'loop'}; t.self = t\nt\n")
      assert.truthy(has(r.out, '{name = "loop", self = <cycle>}\n'), r.out)
    end)

    it("spreads long tables over indented lines", function()
      local r = repl_run("{long = string.rep('x', 70), n = {1, 2}}\n")
      assert.truthy(has(r.out, '{\n  long = "' .. ("x"):rep(70) .. '",\n  n = {1, 2},\n}\n'), r.out)
    end)

    it("reports an error and goes on", function()
      local r = repl_run("error('oops')\nerror(setmetatable({}, {__tostring = function() return 'Obj' end}))\n'still here'\n")
      assert.equal(0, r.code)
      assert.truthy(has(r.err, "stdin:1: oops\n"))
      assert.truthy(has(r.err, "Obj\n"))
      assert.falsy(has(r.err, "stack traceback"))
      assert.truthy(has(r.out, '"still here"\n'))
    end)

    it("reports syntax errors and goes on", function()
      local r = repl_run("x = = 1\n5\n")
      assert.truthy(has(r.err, "stdin:1: unexpected symbol near '='"))
      assert.truthy(has(r.out, "5\n"))
    end)

    it("continues an unfinished chunk with the >> prompt", function()
      local r = repl_run("for i = 1, 2 do\nprint(i * 10)\nend\n")
      assert.truthy(has(r.out, "> >> >> 10\n20\n"), r.out)
    end)

    it("reports a chunk left unfinished at end of input", function()
      local r = repl_run("function f(\n")
      assert.equal(0, r.code)
      assert.truthy(has(r.err, "<eof>"))
    end)

    it("accepts =expr like lua5.4", function()
      assert.truthy(has(repl_run("=6*7\n").out, "> 42\n"))
    end)

    it("calls temporal.step(0) after each chunk", function()
      local r = repl_run("package.loaded.temporal = {step = function(t) steps = (steps or 0) + 1; last = t end}\nsteps, last\n")
      assert.truthy(has(r.out, "> 1\t0\n"), r.out)
    end)

    it("runs the script first when one is given", function()
      local script = tmpname("greeting = 'hi from script'")
      local r = run({ "-i", script }, { stdin = "greeting\n" })
      assert.truthy(has(r.out, '> "hi from script"\n'))
    end)

    it("has the global temporal", function()
      local r = repl_run("rawequal(temporal, require('temporal'))\n")
      assert.truthy(has(r.out, "> true\n"), r.out .. r.err)
    end)
  end)

  describe("REPL on a terminal", function()
    local history
    before_each(function()
      history = tmpname("")
      os.remove(history)
    end)
    local function env() return { "TEMPORAL_LUA_HISTORY=" .. history } end

    it("shows the prompt, evaluates a line and exits on Ctrl-D", function()
      local screen = run_pty({
        { wait = "> ", send = "6 * 7\r" },
        { wait = "42", send = "\4" },
      }, env())
      assert.truthy(has(screen, "temporal-lua "), screen)
      assert.truthy(has(screen, "> "), screen)
      assert.truthy(screen:match("6 %* 7.-\n[^\n]-42"), screen)
    end)

    it("continues unfinished chunks and saves history", function()
      local screen = run_pty({
        { wait = "> ", send = "x = 1 +\r" },
        { wait = ">> ", send = "2\r" },
        { send = "x * 100\r" },
        { wait = "300", send = "\4" },
      }, env())
      assert.truthy(has(screen, "300"), screen)
      local saved = read_file(history) or ""
      assert.truthy(has(saved, "x * 100"), saved)
    end)

    it("Ctrl-C at the prompt drops the line and the session goes on", function()
      local screen = run_pty({
        { wait = "> ", send = "1 +" },
        { wait = "1 +", send = "\3" },
        { wait = "^C", send = "'fresh'\r" },
        { wait = '"fresh"', send = "\4" },
      }, env())
      assert.truthy(has(screen, '"fresh"'), screen)
      assert.falsy(has(screen, "unexpected symbol"), screen)
    end)

    it("Ctrl-C interrupts a running chunk", function()
      local screen = run_pty({
        { wait = "> ", send = "print('spin' .. 'ning') while true do end\r" },
        { wait = "spinning", send = "\3" },
        { wait = "interrupted!", send = "'alive'\r" },
        { wait = '"alive"', send = "\4" },
      }, env())
      assert.truthy(has(screen, "interrupted!"), screen)
      assert.truthy(has(screen, '"alive"'), screen)
    end)
  end)

  describe("temporal.repl.pretty", function()
    local pretty = repl.pretty

    it("shows scalars like Lua source", function()
      assert.equal("42", pretty(42))
      assert.equal("1.5", pretty(1.5))
      assert.equal("nil", pretty(nil))
      assert.equal("true", pretty(true))
      assert.equal('"a\\"b\\\\c\\n\\t\\0001"', pretty('a"b\\c\n\t\0' .. "1"))
      assert.equal('"héllo"', pretty("héllo"))
    end)

    it("shows the sequence part without keys", function()
      assert.equal("{}", pretty({}))
      assert.equal('{1, "two", 3}', pretty({ 1, "two", 3 }))
      assert.equal("{1, [3] = 3}", pretty({ 1, nil, 3 }))
    end)

    it("sorts keys: numbers, then strings, then the rest", function()
      assert.equal('{[-1] = 1, [2.5] = 2, ["a b"] = 4, b = 3, ["end"] = 5, [true] = 6}',
        pretty({ b = 3, [2.5] = 2, ["a b"] = 4, [-1] = 1, ["end"] = 5, [true] = 6 }))
    end)

    it("marks cycles but repeats shared tables", function()
      local t = {}
      t.me = t
      t.list = { t }
      assert.equal("{list = {<cycle>}, me = <cycle>}", pretty(t))
      local shared = { 1 }
      assert.equal("{{1}, {1}}", pretty({ shared, shared }))
    end)

    it("stops at the depth limit", function()
      local deep = { a = { b = { c = { d = {} } } } }
      assert.equal("{a = {b = {...}}}", pretty(deep, { depth = 2 }))
      assert.equal("{a = {b = {c = {d = {}}}}}", pretty(deep))
    end)

    it("breaks wide tables over indented lines", function()
      local s = pretty({ name = ("n"):rep(30), inner = { ("v"):rep(30), ("w"):rep(30) } }, { width = 60 })
      assert.equal('{\n  inner = {\n    "' .. ("v"):rep(30) .. '",\n    "' .. ("w"):rep(30) ..
        '",\n  },\n  name = "' .. ("n"):rep(30) .. '",\n}', s)
      assert.equal("{\n    1,\n    2,\n}", pretty({ 1, 2 }, { width = 4, indent = "    " }))
    end)

    it("uses __tostring for objects, also inside tables", function()
      local obj = setmetatable({ secret = 1 }, { __tostring = function() return "Handle(wf-1)" end })
      assert.equal("Handle(wf-1)", pretty(obj))
      assert.equal("{h = Handle(wf-1)}", pretty({ h = obj }))
      local broken = setmetatable({}, { __tostring = function() error("nope") end })
      assert.truthy(pretty(broken):match("^<table: __tostring failed"))
    end)

    it("shows table contents raw, ignoring __index and __pairs", function()
      local t = setmetatable({ x = 1 }, { __index = { y = 2 }, __pairs = function() error("no") end })
      assert.equal("{x = 1}", pretty(t))
    end)

    it("shows functions and other values by tostring", function()
      assert.truthy(pretty(print):match("^builtin: ") or pretty(print):match("^function: "))
      assert.truthy(pretty(io.stdout):match("^file %("))
    end)

    it("prints long tables in full", function()
      local big = {}
      for i = 1, 500 do big[i] = i end
      local s = pretty(big)
      assert.truthy(has(s, "\n  500,\n}"))
    end)

    it("rejects options that are not a table", function()
      assert.has_error(function() pretty(1, "x") end, "bad argument #2 to 'pretty' (table expected)")
    end)

    it("format_results joins with tabs", function()
      assert.equal('1\t"a"\tnil', repl.format_results(1, "a", nil))
    end)

    it("run() is a plain REPL over any files", function()
      local input = tmpname("1 + 2\nfor i = 1, 2 do\nx = i\nend\nx\nerror('bad')\n")
      local outname, errname = tmpname(), tmpname()
      local inf, outf, errf = io.open(input), io.open(outname, "w"), io.open(errname, "w")
      repl.run({ input = inf, output = outf, errors = errf, env = setmetatable({}, { __index = _G }) })
      inf:close(); outf:close(); errf:close()
      assert.equal("> 3\n> >> >> > 2\n> > \n", read_file(outname))
      assert.equal("stdin:1: bad\n", read_file(errname))
    end)
  end)
end)
