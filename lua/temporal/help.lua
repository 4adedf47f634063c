--- The reference at the prompt: `help(x)` shows the entry of docs/reference.md for a
-- function, a method or a handle, and the same parse tells which public names the
-- reference documents (a spec checks it against the API).
--
-- The text is docs/reference.md itself, turned into the module `temporal.reference` at
-- build time (built into temporal-lua, installed next to the other modules): there is no
-- second copy to drift.
--
--     local help = require("temporal.help")
--     help.show("client:start_workflow")          -- prints the entry
--     print(help.lookup(temporal.connect)[1].text)
-- @module temporal.help
local M = {}

-- How the reference names the receiver of each class's methods (`h:result()`), and the
-- class or module each prefix stands for.
local PREFIXES = {
  client = "Client", h = "WorkflowHandle", u = "WorkflowUpdateHandle",
  sh = "ScheduleHandle", ah = "AsyncActivityHandle", op = "WithStartWorkflowOperation",
  task = "Task", dc = "DataConverter", service = "Service", sc = "ServiceClient",
  worker = "Worker", ctx = "ActivityContext",
  channel = "temporal.core.Channel", call = "temporal.core.Call",
  temporal = "temporal", errors = "temporal.errors", converter = "temporal.converter",
  failure = "temporal.failure", envconfig = "temporal.envconfig", core = "temporal.core",
  repl = "temporal.repl", help = "temporal.help", search_attributes = "temporal.search_attributes",
  ["temporal.errors"] = "temporal.errors", ["temporal.converter"] = "temporal.converter",
  ["temporal.failure"] = "temporal.failure", ["temporal.envconfig"] = "temporal.envconfig",
  ["temporal.core"] = "temporal.core", ["temporal.repl"] = "temporal.repl",
  ["temporal.help"] = "temporal.help", ["temporal.search_attributes"] = "temporal.search_attributes",
  ["temporal.DataConverter"] = "DataConverter",
  metrics = "temporal.metrics", ["temporal.metrics"] = "temporal.metrics",
}
M.PREFIXES = PREFIXES

--- The text of docs/reference.md, or nil and a message when it was not built in.
function M.text()
  local ok, text = pcall(require, "temporal.reference")
  if ok and type(text) == "string" then return text end
  return nil, "the reference text (module temporal.reference, generated from docs/reference.md " ..
    "by the build) is not installed"
end

-- "client:start_workflow(workflow, opts)" -> "Client.start_workflow"; nil for anything
-- else (prose, examples, unknown prefixes).
local function canonical(sig)
  local prefix, sep, name = sig:match("^([%a_][%w_%.]-)([.:])([%a_][%w_]*)%s*%(")
  if not prefix then
    prefix, sep, name = sig:match("^([%a_][%w_%.]-)([.:])([%a_][%w_]*)$")
  end
  if not prefix then return nil end
  local owner = PREFIXES[prefix]
  if not owner then return nil end
  return owner .. "." .. name, sep
end

local function code_spans(line)
  local spans = {}
  for span in line:gmatch("`([^`]+)`") do spans[#spans + 1] = span end
  return spans
end

-- The code spans a list item or table cell begins with: "`a(x)` / `b(y)` — what".
local function leading_spans(s)
  local spans, pos = {}, 1
  while true do
    local _, b, span = s:find("^%s*[/,]?%s*`([^`]+)`", pos)
    if not b then break end
    spans[#spans + 1] = span
    pos = b + 1
  end
  return spans
end

local entries_cache

--- Parses the reference into entries: every heading with its section (up to the next
-- heading), and every list item or table row that begins with a signature in backticks.
-- Each entry is `{ title =, text =, names = { "Client.start_workflow", ... }, heading = bool }`.
-- @treturn table list of entries, in document order
function M.entries(text)
  if text == nil and entries_cache then return entries_cache end
  local src = text or assert(M.text())
  local lines = {}
  for line in (src .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local entries = {}
  local fenced = false
  local open = {} -- open heading entries by level
  local function close_from(level)
    for l = level, 6 do
      local e = open[l]
      if e then
        e.text = table.concat(e.lines, "\n"):gsub("%s+$", "")
        e.lines = nil
        open[l] = nil
      end
    end
  end
  local item -- the list item being collected
  local function end_item()
    if item then
      item.text = table.concat(item.lines, "\n")
      item.lines = nil
      item = nil
    end
  end
  for _, line in ipairs(lines) do
    if line:match("^```") then fenced = not fenced end
    local hashes, title = line:match("^(#+)%s+(.-)%s*$")
    if hashes and not fenced then
      end_item()
      local level = #hashes
      close_from(level)
      local e = { title = title, lines = { line }, names = {}, heading = true, level = level }
      for _, span in ipairs(code_spans(title)) do
        local name = canonical(span)
        if name then e.names[#e.names + 1] = name end
      end
      entries[#entries + 1] = e
      open[level] = e
    else
      for l = 1, 6 do
        if open[l] then open[l].lines[#open[l].lines + 1] = line end
      end
      if not fenced then
        local first = line:match("^%s*[-*]%s+`([^`]+)`") or line:match("^|%s*`([^`]+)`")
        if first then
          end_item()
          local names = {}
          local head = line:match("^%s*[-*]%s+(.*)") or line:match("^|([^|]*)|") or line
          for _, span in ipairs(leading_spans(head)) do
            local name = canonical(span)
            if name then names[#names + 1] = name end
          end
          if #names > 0 then
            item = { title = first, lines = { line }, names = names, heading = false }
            entries[#entries + 1] = item
            if line:match("^|") then end_item() end
          end
        elseif item and line:match("^%s%s+%S") then
          item.lines[#item.lines + 1] = line
        else
          end_item()
        end
      end
    end
  end
  end_item()
  close_from(1)
  if text == nil then entries_cache = entries end
  return entries
end

--- Every name the reference documents in backticks outside the examples (headings, list
-- items, table rows, prose): a map from the canonical name ("Client.start_workflow",
-- "temporal.connect", "temporal.null") to `"call"` when it is written as a call
-- (`x.f(...)`, `x:f(...)`) and `"field"` otherwise. `.name(...)` right after a
-- `owner.name(...)` (as in a table of constructors) belongs to that owner.
function M.documented_names(text)
  local src = text or assert(M.text())
  -- the prose without the fenced examples (code spans may run over a line break)
  local prose, fenced = {}, false
  for line in (src .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^```") then
      fenced = not fenced
    elseif not fenced then
      prose[#prose + 1] = line
    end
  end
  local names = {}
  local last_owner
  for span in table.concat(prose, "\n"):gmatch("`([^`]+)`") do
    local name = canonical(span)
    local is_call = span:match("^[%w_.:]+%s*%(") ~= nil
    if not name and last_owner then
      local short = span:match("^%.([%a_][%w_]*)%s*%(")
      if short then name, is_call = last_owner .. "." .. short, true end
    end
    if name then
      if is_call then
        names[name] = "call"
        last_owner = name:match("^(.*)%.")
      elseif names[name] == nil then
        names[name] = "field"
      end
    end
  end
  return names
end

-- Method tables behind a metatable: its __index table, or the table of functions a
-- closure __index looks methods up in (the handles keep their fields in a state table).
local function methods_of_metatable(mt)
  if type(mt) ~= "table" then return nil end
  local index = rawget(mt, "__index")
  if type(index) == "table" then return index end
  if type(index) == "function" then
    for i = 1, 255 do
      local name, v = debug.getupvalue(index, i)
      if name == nil then break end
      if type(v) == "table" and next(v) ~= nil then
        local all_functions = true
        for k, f in pairs(v) do
          if type(k) ~= "string" or type(f) ~= "function" then all_functions = false; break end
        end
        if all_functions then return v end
      end
    end
  end
  return nil
end
M.methods_of_metatable = methods_of_metatable

--- The public classes: `{ name =, metatable =, methods = { name = fn } }`, public
-- methods only (names starting with `_` are private).
function M.classes()
  local temporal = require("temporal")
  local list = {}
  local function add(name, mt)
    local methods = {}
    for k, f in pairs(methods_of_metatable(mt) or {}) do
      if type(k) == "string" and type(f) == "function" and not k:match("^_") and not k:match("^__") then
        methods[k] = f
      end
    end
    list[#list + 1] = { name = name, metatable = mt, methods = methods }
  end
  -- every capitalized table of the temporal module is a class (Client, WorkflowHandle,
  -- ..., and whatever is added later)
  local names = {}
  for name, v in pairs(temporal) do
    if type(name) == "string" and name:match("^%u") and type(v) == "table" then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do add(name, temporal[name]) end
  local ok, workflow = pcall(require, "temporal.workflow")
  if ok and type(workflow.WithStartWorkflowOperation_mt) == "table" then
    add("WithStartWorkflowOperation", workflow.WithStartWorkflowOperation_mt)
  end
  -- the C core's channel and call objects
  local registry = debug.getregistry()
  if type(registry["temporal.Channel"]) == "table" then add("temporal.core.Channel", registry["temporal.Channel"]) end
  if type(registry["temporal.Call"]) == "table" then add("temporal.core.Call", registry["temporal.Call"]) end
  -- tasks: the metatable of the objects temporal.spawn returns, found without spawning
  local scheduler = require("temporal.scheduler")
  local task_mt = type(scheduler.Task) == "table" and scheduler.Task or nil
  for i = 1, 255 do
    if task_mt or type(scheduler.spawn) ~= "function" then break end
    local name, v = debug.getupvalue(scheduler.spawn, i)
    if name == nil then break end
    if type(v) == "table" and (name == "Task" or rawget(v, "__name") == "temporal.Task") then task_mt = v end
  end
  if task_mt then add("Task", task_mt) end
  return list
end

--- The public modules: `{ name =, table = }`: `temporal`, every lower-case table field
-- of it (its sub-modules: errors, converter, ..., and whatever is added later), and
-- `temporal.repl` and `temporal.help`.
function M.modules()
  local temporal = require("temporal")
  local list = { { name = "temporal", table = temporal } }
  local names = {}
  for name, v in pairs(temporal) do
    if type(name) == "string" and name:match("^%l") and type(v) == "table" then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do list[#list + 1] = { name = "temporal." .. name, table = temporal[name] } end
  list[#list + 1] = { name = "temporal.repl", table = require("temporal.repl") }
  list[#list + 1] = { name = "temporal.help", table = M }
  return list
end

--- Every public function and method, as a map canonical name -> the function.
function M.api()
  local api = {}
  for _, m in ipairs(M.modules()) do
    for k, v in pairs(m.table) do
      if type(k) == "string" and not k:match("^_") and type(v) == "function" then
        api[m.name .. "." .. k] = v
      end
    end
  end
  for _, c in ipairs(M.classes()) do
    for k, f in pairs(c.methods) do api[c.name .. "." .. k] = f end
  end
  return api
end

local function find_entries(name)
  local found = {}
  for _, e in ipairs(M.entries()) do
    for _, n in ipairs(e.names) do
      if n == name then found[#found + 1] = e; break end
    end
  end
  -- a heading's section already holds the list items under it
  local headings = {}
  for _, e in ipairs(found) do if e.heading then headings[#headings + 1] = e end end
  return #headings > 0 and headings or found
end

-- The canonical name of a function value, found among the public API.
local function name_of_function(fn)
  local best
  for name, f in pairs(M.api()) do
    if f == fn and (best == nil or #name < #best or (#name == #best and name < best)) then
      best = name
    end
  end
  return best
end

local function class_of_value(v)
  local mt = getmetatable(v)
  if mt == nil then return nil end
  for _, c in ipairs(M.classes()) do
    if c.metatable == mt then return c end
  end
  if type(v) == "table" and rawget(v, "_service") and rawget(v, "_client") then
    return { name = "Service" }
  end
  return nil
end

-- A raw service method: the generic entry plus the RPC it calls and its message types.
local function service_entry(service, method)
  local client = require("temporal.client")
  local proto = client.methods_of(service)[method]
  if not proto then return nil, ("%s has no method '%s'"):format(service, method) end
  local desc = require("temporal.core").services()[service][proto]
  local found = { {
    title = method,
    text = ("service:%s([request[, opts]]) calls %s.%s\n  request:  %s\n  response: %s")
      :format(method, service, proto, desc.input, desc.output),
  } }
  for _, e in ipairs(find_entries("Service.method")) do found[#found + 1] = e end
  return found, service .. "." .. proto
end

local function service_of_name(field)
  return require("temporal.client").SERVICES[field]
end

-- Resolves what help() was given to a list of entries (or nil, why).
local resolve

function resolve(x)
  if type(x) == "function" then
    -- raw service methods are closures made on first use, holding their service object
    local svc, method
    for i = 1, 255 do
      local n, v = debug.getupvalue(x, i)
      if n == nil then break end
      if n == "svc" and type(v) == "table" and rawget(v, "_service") then svc = v end
      if n == "k" and type(v) == "string" then method = v end
    end
    if svc and method then return service_entry(svc._service, method) end
    local name = name_of_function(x)
    if not name then return nil, "no reference entry for this function (not a public temporal function)" end
    local found = find_entries(name)
    if #found == 0 then return nil, "no reference entry for " .. name end
    return found, name
  end
  if type(x) == "string" then
    -- "workflow_service:get_system_info", "client.workflow_service:get_system_info"
    local field, method = x:match("([%a_][%w_]*)[.:]([%a_][%w_]*)%s*%(?[^.:]*$")
    if field and service_of_name(field) then return service_entry(service_of_name(field), method) end
    if service_of_name(x) then return find_entries("Service.method"), x end
    local name = canonical(x)
    if not name then
      -- bare names: "connect", "start_workflow", "Client.start_workflow", "WorkflowHandle"
      local candidates = {}
      local wanted = x:gsub("%(.*$", "")
      for n in pairs(M.api()) do
        if n == wanted or n:match("%.([%a_][%w_]*)$") == wanted then candidates[#candidates + 1] = n end
      end
      table.sort(candidates)
      if #candidates == 0 then
        for _, e in ipairs(M.entries()) do
          if e.heading and (e.title == x or e.title:lower():find(x:lower(), 1, true)) then return { e }, e.title end
        end
        return nil, ("no reference entry for '%s'"):format(x)
      end
      local found = {}
      for _, n in ipairs(candidates) do
        for _, e in ipairs(find_entries(n)) do found[#found + 1] = e end
      end
      if #found == 0 then return nil, ("no reference entry for '%s'"):format(x) end
      return found, table.concat(candidates, ", ")
    end
    local found = find_entries(name)
    if #found == 0 then
      -- a raw service method: service:<snake_name>
      return nil, ("no reference entry for '%s'"):format(x)
    end
    return found, name
  end
  if type(x) == "table" then
    -- a module (temporal.errors, ...) or a class metatable (temporal.WorkflowHandle)
    for _, m in ipairs(M.modules()) do
      if rawequal(m.table, x) then
        if m.name == "temporal" then return resolve("The `temporal` module") end
        local found = {}
        for _, e in ipairs(M.entries()) do
          for _, n in ipairs(e.names) do
            if n:sub(1, #m.name + 1) == m.name .. "." then found[#found + 1] = e; break end
          end
        end
        return found, m.name
      end
    end
  end
  local class = class_of_value(x)
  for _, c in ipairs(M.classes()) do
    if rawequal(c.metatable, x) then class = c end
  end
  if class then
    if class.name == "Service" then return find_entries("Service.method"), "Service" end
    local found = {}
    for _, e in ipairs(M.entries()) do
      for _, n in ipairs(e.names) do
        if n:match("^(.*)%.") == class.name then found[#found + 1] = e; break end
      end
    end
    return found, class.name
  end
  return nil, ("no reference entry for a %s value"):format(type(x))
end

-- Removes list items whose heading section is also in the list.
local function dedupe(found)
  local out, seen = {}, {}
  for _, e in ipairs(found) do
    if not seen[e] then
      seen[e] = true
      local inside = false
      for _, other in ipairs(found) do
        if other ~= e and other.heading and not e.heading and other.text:find(e.text, 1, true) then inside = true end
      end
      if not inside then out[#out + 1] = e end
    end
  end
  return out
end

--- The reference entries for `x`: a function or method value (`temporal.connect`,
-- `client.start_workflow`), a name (`"client:start_workflow"`, `"h:result"`,
-- `"start_workflow"`, `"temporal.connect"`, a section title), or a handle / client (all
-- entries of its class).
-- @return list of entries (`title`, `text`), or nil and a message
function M.lookup(x)
  local found, why = resolve(x)
  if not found then return nil, why end
  return dedupe(found), why
end

--- The text `help(x)` prints. Without `x`: how to use help and the reference's sections.
function M.render(x, ...)
  local ok, text_or_err = pcall(M.text)
  if not ok or text_or_err == nil then return "help: " .. select(2, M.text()) end
  if select("#", ...) == 0 and x == nil then
    local out = { "help(x) shows the reference entry of a function or method:",
      "  help(temporal.connect)   help(client.start_workflow)   help('h:result')",
      "  help(handle)             help('workflow_service')      help('Schedules')",
      "Sections of the reference:" }
    for _, e in ipairs(M.entries()) do
      if e.heading and e.level == 2 then out[#out + 1] = "  " .. e.title end
    end
    return table.concat(out, "\n")
  end
  local found, why = M.lookup(x)
  if not found then return "help: " .. why end
  local parts = {}
  for _, e in ipairs(found) do parts[#parts + 1] = e.text end
  return table.concat(parts, "\n\n")
end

--- Prints `render(x)`.
function M.show(...)
  print(M.render(...))
end

return M
