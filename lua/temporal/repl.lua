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
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
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
      local results = table.pack(xpcall(fn, error_message))
      if results[1] then
        if results.n > 1 then
          output:write(repl.format_results(table.unpack(results, 2, results.n)), "\n")
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

return repl
