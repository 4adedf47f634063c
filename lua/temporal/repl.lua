--- Interactive helpers: the pretty printer behind temporal-lua's prompt, and a plain
-- read-eval-print loop for stock lua5.4.
--
-- Pure Lua with no dependency, so it works embedded in temporal-lua and from any Lua 5.4.
--
--     local repl = require("temporal.repl")
--     print(repl.pretty({ id = "wf-1", tags = { "a", "b" } }))
--     --> {id = "wf-1", tags = {"a", "b"}}
--     repl.run()  -- a REPL on io.stdin/io.stdout (no line editing)
-- @module temporal.repl
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local repl = {}

local DEFAULTS = {
  indent = "  ", -- one nesting level of a multi-line table
  depth = 8,     -- tables nested deeper show as {...}
  width = 80,    -- a table is kept on one line when it fits in this many columns
}

local KEYWORDS = {}
for word in ([[and break do else elseif end false for function goto if in local nil not
  or repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[word] = true
end

local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v",
}

--- Quotes a string the way Lua source would spell it: escapes for quotes, backslashes and
-- control bytes (newlines as \n, not %q's backslash-newline); other bytes, UTF-8
-- included, as they are.
-- @tparam string s
-- @treturn string
function repl.quote(s)
  return '"' .. (s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or ("\\%03d"):format(c:byte())
  end)) .. '"'
end

-- tostring through __tostring, without letting a broken metamethod break the printer.
local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return ("<%s: __tostring failed: %s>"):format(type(v), tostring(s))
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

local function scalar(v)
  if type(v) == "string" then return repl.quote(v) end
  return safe_tostring(v)
end

local function format_key(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  return "[" .. scalar(k) .. "]"
end

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

-- Numbers first (in order), then strings (alphabetically), then everything else.
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  local oa, ob = TYPE_ORDER[ta] or 4, TYPE_ORDER[tb] or 4
  if oa ~= ob then return oa < ob end
  if ta == "number" or ta == "string" then
    if ta == tb then return a < b end
  end
  if ta ~= tb then return ta < tb end
  return safe_tostring(a) < safe_tostring(b)
end

local render

local function render_table(t, opts, level, column, path)
  if path[t] then return "<cycle>" end
  if next(t) == nil then return "{}" end
  if level >= opts.depth then return "{...}" end
  path[t] = true
  local items = {}
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local inner_column = #opts.indent * (level + 1)
  for i = 1, n do
    items[#items + 1] = render(rawget(t, i), opts, level + 1, inner_column, path)
  end
  local keys = {}
  for k in next, t do
    if not (compat.math_type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  for _, k in ipairs(keys) do
    local prefix = format_key(k) .. " = "
    items[#items + 1] = prefix .. render(rawget(t, k), opts, level + 1, inner_column + #prefix, path)
  end
  path[t] = nil

  local one_line = "{" .. table.concat(items, ", ") .. "}"
  if column + #one_line <= opts.width and not one_line:find("\n", 1, true) then
    return one_line
  end
  local pad = opts.indent:rep(level + 1)
  return "{\n" .. pad .. table.concat(items, ",\n" .. pad) .. ",\n" .. opts.indent:rep(level) .. "}"
end

function render(v, opts, level, column, path)
  if type(v) == "table" and not has_tostring(v) then
    return render_table(v, opts, level, column, path)
  end
  return scalar(v)
end

--- Renders a value for people to read.
--
-- Strings are quoted (see `quote`). Tables are shown nested: the sequence part 1..n first
-- without keys, then the other keys sorted (numbers, then strings, then the rest); a
-- table that fits in `width` columns stays on one line, a longer one takes one line per
-- entry. A table met again inside itself shows as `<cycle>`; tables nested deeper than
-- `depth` as `{...}`. Tables and userdata with a `__tostring` metamethod, like temporal's
-- handles and errors, show as their `tostring`. Fields are read raw (no `__index`,
-- `__pairs`). Nothing is truncated.
-- @param value anything
-- @tparam[opt] table opts `indent` (default two spaces), `depth` (default 8),
--   `width` (default 80)
-- @treturn string
-- @usage repl.pretty({ 1, 2, x = { y = true } })  --> {1, 2, x = {y = true}}
function repl.pretty(value, opts)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  if opts ~= nil then
    if type(opts) ~= "table" then error("bad argument #2 to 'pretty' (table expected)", 2) end
    for k, v in pairs(opts) do o[k] = v end
  end
  return render(value, o, 0, 0, {})
end

--- Renders several values (such as one chunk's results), tab-separated like `print`.
-- @return string
function repl.format_results(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = repl.pretty((select(i, ...))) end
  return table.concat(out, "\t")
end

local function error_message(e)
  if type(e) == "string" or type(e) == "number" then return tostring(e) end
  if has_tostring(e) then return safe_tostring(e) end
  return ("(error object is a %s value)"):format(type(e))
end

--- Runs a plain read-eval-print loop, for stock lua5.4 (temporal-lua has its own with
-- line editing and history). Each line is tried as an expression first, then as
-- statements; an unfinished chunk asks for more lines with `>> `. Results print through
-- `pretty`, errors as their message, and the loop goes on until end of input.
-- @tparam[opt] table opts `input` (file, default io.stdin), `output` (default
--   io.stdout), `errors` (default io.stderr), `env` (default _G), `after` (function
--   called after each chunk, e.g. to step background work)
-- @usage lua5.4 -e 'require("temporal.repl").run()'
function repl.run(opts)
  opts = opts or {}
  local input = opts.input or io.stdin
  local output = opts.output or io.stdout
  local errors = opts.errors or io.stderr
  local env = opts.env or _G
  local function prompt(p)
    output:write(p)
    output:flush()
  end
  while true do
    prompt("> ")
    local chunk = input:read("l")
    if chunk == nil then break end
    if chunk:sub(1, 1) == "=" then chunk = "return " .. chunk:sub(2) end
    local fn, err = load("return " .. chunk .. ";", "=stdin", "t", env)
    if not fn then
      while true do
        fn, err = load(chunk, "=stdin", "t", env)
        if fn or not err:find("<eof>$") then break end
        prompt(">> ")
        local more = input:read("l")
        if more == nil then break end
        chunk = chunk .. "\n" .. more
      end
    end
    if fn then
      local results = compat.pack(xpcall(fn, error_message))
      if results[1] then
        if results.n > 1 then
          output:write(repl.format_results(compat.unpack(results, 2, results.n)), "\n")
        end
      else
        errors:write(results[2], "\n")
      end
    else
      errors:write(err, "\n")
    end
    if opts.after then
      local ok, e = pcall(opts.after)
      if not ok then errors:write(error_message(e), "\n") end
    end
  end
  output:write("\n")
end

-- ------------------------------------------------------------------ JSON for other tools

local function is_utf8(s) return compat.utf8_len(s) ~= nil end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 3, 0, -1 do
      local k = compat.band(compat.rshift(n, 6 * j), 63)
      chars[#chars + 1] = B64:sub(k + 1, k + 1)
    end
    if not b then chars[3], chars[4] = "=", "=" elseif not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

-- A copy of v that core.json_encode takes: strings that are not UTF-8 as base64 (as the
-- protobuf JSON mapping writes bytes), handles as their fields, error objects as their
-- fields, functions and other userdata as their tostring, cycles as "<cycle>".
local function plain(v, core, path, is_state)
  local t = type(v)
  if t == "string" then return is_utf8(v) and v or base64(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    return v
  end
  if t == "boolean" or t == "nil" then return v end
  if rawequal(v, core.json_null) then return v end
  if t == "userdata" then
    local ok, state = pcall(core.handle_state, v)
    if ok and type(state) == "table" then v, t, is_state = state, "table", true else return safe_tostring(v) end
  end
  if t ~= "table" then return safe_tostring(v) end
  if path[v] then return "<cycle>" end
  path[v] = true
  local mt = getmetatable(v)
  local n = 0
  while rawget(v, n + 1) ~= nil do n = n + 1 end
  local only_sequence = true
  for k in next, v do
    if not (compat.math_type(k) == "integer" and k >= 1 and k <= n) then only_sequence = false; break end
  end
  local out
  if only_sequence and not (mt == core.json_object_mt and n == 0) then
    out = setmetatable({}, core.json_array_mt)
    for i = 1, n do out[i] = plain(rawget(v, i), core, path) end
  else
    out = setmetatable({}, core.json_object_mt)
    for k, x in next, v do
      -- private fields of handles and objects (_client, ...) stay out
      local private = type(k) == "string" and k:sub(1, 1) == "_" and (mt ~= nil or is_state)
      if not private and type(x) ~= "function" then
        out[type(k) == "string" and k or safe_tostring(k)] = plain(x, core, path)
      end
    end
  end
  path[v] = nil
  return out
end

--- Renders a value as one line of JSON, for scripts that hand results to other tools
-- (`temporal-lua -o json` prints results with it). Tables with only 1..n keys are
-- arrays (an empty table is `[]`, `temporal.object{}` is `{}`), other tables objects with
-- string keys; strings that are not valid UTF-8 (bytes) become base64 as in the protobuf
-- JSON mapping; integers stay exact; handles (Client, WorkflowHandle, ...) show their
-- public fields, error objects their fields (`class`, `message`, `cause`, ...); functions
-- and other userdata their `tostring`; NaN and infinities their `tostring`; a table met
-- again inside itself `"<cycle>"`.
-- @param value anything
-- @treturn string
-- @usage repl.json({ id = "wf-1", n = 3 })  --> {"id":"wf-1","n":3}
function repl.json(value)
  local core = require("temporal.core")
  return core.json_encode(plain(value, core, {}), { max_depth = 1000 })
end

-- ------------------------------------------------------------------ completion

local function sorted_keys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- The names reachable from v: { name = "field" | "method" }. Reads tables raw and follows
-- __index tables; for handles, their state fields and their class's methods; for raw
-- service objects, the RPC names. Calls no __index function, so completing has no side
-- effect.
local function members(v)
  local out = {}
  local help = require("temporal.help")
  local function add_table(t, kind)
    for k, x in next, t do
      if type(k) == "string" and k:match("^[%a_][%w_]*$") and out[k] == nil then
        out[k] = (kind == "method" or type(x) == "function") and "method" or "field"
      end
    end
  end
  local t = type(v)
  if t == "table" then
    local svc = rawget(v, "_service")
    if type(svc) == "string" and rawget(v, "_client") then
      for name in pairs(require("temporal.client").methods_of(svc)) do
        if name:match("^[%l_][%l%d_]*$") then out[name] = "method" end
      end
      return out
    end
    add_table(v, "field")
  elseif t == "userdata" then
    local ok, state = pcall(require("temporal.core").handle_state, v)
    if ok and type(state) == "table" then add_table(state, "field") end
  elseif t == "string" then
    add_table(string, "method")
    return out
  else
    return out
  end
  local mt, seen = getmetatable(v), {}
  while type(mt) == "table" and not seen[mt] do
    seen[mt] = true
    local methods = help.methods_of_metatable(mt)
    if methods then add_table(methods, "method") end
    local index = rawget(mt, "__index")
    mt = type(index) == "table" and getmetatable(index) or nil
  end
  for k in pairs(out) do
    if k:match("^_") then out[k] = nil end -- private
  end
  return out
end

local KEYWORD_LIST = sorted_keys(KEYWORDS)

--- The completions of `word` (the text before the cursor back to a space or bracket),
-- as temporal-lua's Tab uses them: global names and keywords; after `a.b.` the fields
-- and methods of that value; after `a.b:` its methods (handles: the class's methods;
-- `client.workflow_service:` every RPC in snake_case). Each completion is the whole word.
-- @tparam string word
-- @tparam[opt] table env where names start (default _G)
-- @treturn table sorted list of strings
function repl.complete(word, line, start, env)
  if type(line) == "table" and env == nil then env = line end
  env = type(env) == "table" and env or _G
  local base, sep, partial = word:match("^(.*)([.:])([%a_]?[%w_]*)$")
  local candidates = {}
  if not base then
    if not word:match("^[%a_]?[%w_]*$") then return {} end
    for k in next, env do
      if type(k) == "string" and k:sub(1, #word) == word and k:match("^[%a_][%w_]*$") then
        candidates[#candidates + 1] = k
      end
    end
    for _, k in ipairs(KEYWORD_LIST) do
      if k:sub(1, #word) == word then candidates[#candidates + 1] = k end
    end
    table.sort(candidates)
    return candidates
  end
  -- resolve base: name(.name)* with no calls
  if not base:match("^[%a_][%w_]*$") and not base:match("^[%a_][%w_]*[%.%w_]*[%w_]$") then return {} end
  local v = rawget(env, base:match("^[%a_][%w_]*"))
  for name in base:gmatch("%.([%a_][%w_]*)") do
    local m = members(v)
    if m[name] == nil then return {} end
    if type(v) == "table" then
      v = rawget(v, name)
      if v == nil then return {} end
    else
      local ok, state = pcall(require("temporal.core").handle_state, v)
      if not ok or type(state) ~= "table" then return {} end
      v = rawget(state, name)
    end
  end
  if v == nil then return {} end
  for name, kind in pairs(members(v)) do
    if name:sub(1, #partial) == partial and (sep == "." or kind == "method") then
      candidates[#candidates + 1] = base .. sep .. name
    end
  end
  table.sort(candidates)
  return candidates
end

--- Prints the reference entry of a function, method or handle (see `temporal.help`):
-- `help(temporal.connect)`, `help(client.start_workflow)`, `help("h:result")`,
-- `help(handle)`; `help()` lists the topics.
function repl.help(...)
  require("temporal.help").show(...)
end

return repl
