-- docs/reference.md against the public API: every public function and method is
-- documented, and every function or method the reference names (written as a call)
-- exists. The reference text is the build's temporal.reference (docs/reference.md as a
-- module); the API is what require("temporal") and its classes expose (temporal.help).
-- Needs no server.
local help = require("temporal.help")

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

describe("docs/reference.md", function()
  local api, documented

  setup(function()
    api = help.api()
    documented = help.documented_names()
  end)

  it("is what the build made into temporal.reference (help shows this very file)", function()
    assert.equal(read_file("docs/reference.md"), help.text())
  end)

  it("documents every public function and method", function()
    local missing = {}
    for name in pairs(api) do
      if documented[name] == nil then missing[#missing + 1] = name end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("names no function or method that does not exist", function()
    -- class names shown as tostring output (`temporal.Task(running)`) are not calls, and
    -- `service:method(...)` stands for every raw RPC
    local classes = {}
    for _, c in ipairs(help.classes()) do classes["temporal." .. c.name] = true end
    classes["temporal.Task"] = true
    local unknown = {}
    for name, kind in pairs(documented) do
      if kind == "call" and api[name] == nil and not classes[name] and name ~= "Service.method" then
        unknown[#unknown + 1] = name
      end
    end
    table.sort(unknown)
    assert.same({}, unknown)
  end)

  it("names only module fields that exist", function()
    local unknown = {}
    for _, name in ipairs(sorted(documented)) do
      local module, field = name:match("^(temporal[%w_.]-)%.([%a_][%w_]*)$")
      if documented[name] == "field" and module then
        local ok, t = pcall(require, module)
        local exists = ok and type(t) == "table" and t[field] ~= nil
        -- a sub-module named as a field: temporal.retry is require("temporal.retry")
        exists = exists or pcall(require, name)
        if not exists then unknown[#unknown + 1] = name end
      end
    end
    assert.same({}, unknown)
  end)

  it("covers the classes the checks rely on", function()
    -- guards the two checks above: if introspection found nothing they would pass vacuously
    local names = {}
    for _, c in ipairs(help.classes()) do names[c.name] = true end
    for _, name in ipairs({ "AsyncActivityHandle", "Client", "DataConverter", "ScheduleHandle", "Task",
        "WithStartWorkflowOperation", "WorkflowHandle", "WorkflowUpdateHandle",
        "temporal.core.Call", "temporal.core.Channel" }) do
      assert.is_true(names[name], name)
    end
    assert.is_function(api["Client.start_workflow"])
    assert.is_function(api["WorkflowHandle.result"])
    assert.is_function(api["ScheduleHandle.pause"])
    assert.is_function(api["temporal.connect"])
    assert.equal("call", documented["Client.start_workflow"])
    assert.equal("call", documented["temporal.search_attributes.keyword_list"])
  end)

  it("help.render finds entries by function, name, handle, module and raw RPC", function()
    local temporal = require("temporal")
    local function first_line(x) return (help.render(x):match("^[^\n]*")) end
    assert.equal("### `temporal.connect([target[, opts]])`", first_line(temporal.connect))
    assert.equal("#### `client:start_workflow(workflow, opts)`", first_line(temporal.Client and
      help.api()["Client.start_workflow"]))
    assert.equal("#### `h:result([opts])`", first_line("h:result"))
    assert.equal("### `sh:pause([note][, opts])` / `sh:unpause([note][, opts])`", first_line("sh:unpause"))
    assert.equal("- `errors.raise(class, fields[, level])` — `error(errors.new(class, fields), level)`.",
      first_line(temporal.errors.raise))
    assert.equal("## The `temporal` module", first_line(temporal))
    local c = temporal.connect("127.0.0.1:1", { lazy = true })
    local h = c:get_workflow_handle("wf")
    local all = help.render(h)
    assert.truthy(all:find("#### `h:signal(name, ...)`", 1, true))
    assert.truthy(all:find("#### `h:result([opts])`", 1, true))
    assert.truthy(help.render(c.workflow_service.start_workflow_execution):find(
      "calls temporal.api.workflowservice.v1.WorkflowService.StartWorkflowExecution", 1, true))
    assert.equal("help: no reference entry for 'no_such_name'", help.render("no_such_name"))
    assert.equal("help: no reference entry for a number value", help.render(42))
    c:close()
  end)

  it("the parse catches an undocumented method and a documented ghost", function()
    local text = "### `client:start_workflow(workflow, opts)`\n\n- `h:frobnicate(x)` — no such thing\n" ..
      "```lua\nclient:not_in_prose()\n```\n"
    local names = help.documented_names(text)
    assert.equal("call", names["Client.start_workflow"])
    assert.equal("call", names["WorkflowHandle.frobnicate"])
    assert.is_nil(names["Client.not_in_prose"]) -- examples do not count
    assert.is_nil(api["WorkflowHandle.frobnicate"])
  end)
end)
