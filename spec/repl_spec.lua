-- temporal-lua's REPL on a pseudo-terminal against the real test bed: Tab completion of
-- globals, fields, handle methods and raw RPCs; help(x) from docs/reference.md; tasks
-- spawned at the prompt that keep running while nobody types.
local helper = require("support.helper")
local pty = require("support.pty")

local BIN = helper.temporal_lua or "build/temporal-lua"
if BIN:sub(1, 1) ~= "/" then BIN = (os.getenv("PWD") or ".") .. "/" .. BIN end

local function has(s, needle) return s:find(needle, 1, true) ~= nil end

local function env()
  local history = os.tmpname()
  return { "TEMPORAL_LUA_HISTORY=" .. history, "TERM=dumb" }, history
end

local function connect_line()
  return ("c = temporal.connect(%q, { namespace = %q })\r"):format(helper.address, helper.namespace)
end

describe("temporal-lua REPL", function()
  it("Tab completes a raw service method, and the completed line runs the RPC", function()
    local e, history = env()
    local screen = pty.run({ BIN }, {
      { wait = "> ", send = connect_line() },
      { wait = "> ", send = "c.workflow_service:get_sys\t" },
      { wait = "get_system_info", send = "({}).capabilities ~= nil\r" },
      { wait = "true", send = "\4" },
    }, e)
    os.remove(history)
    assert.truthy(has(screen, "c.workflow_service:get_system_info"), screen)
    -- the completed line was evaluated: the server answered
    assert.truthy(screen:match("get_system_info%(%{%}%)%.capabilities ~= nil[^\n]*\n[^\n]*true"), screen)
  end)

  it("Tab lists the methods of a WorkflowHandle and globals and fields", function()
    local e, history = env()
    local screen = pty.run({ BIN }, {
      { wait = "> ", send = connect_line() },
      { wait = "> ", send = "h = c:get_workflow_handle('no-such-wf')\r" },
      { wait = "> ", send = "h:signal\t\t" },
      { wait = "signal_with_options", send = "\21" }, -- Ctrl-U: drop the line
      { send = "temporal.err\t" },
      { wait = "temporal.errors", send = ".is\t" },
      { wait = "errors.is", send = "\21'done-' .. 'typing'\r" },
      { wait = "done-typing", send = "\4" },
    }, e)
    os.remove(history)
    assert.truthy(has(screen, "h:signal_with_options"), screen)
    assert.truthy(has(screen, "h:signal "), screen)
    assert.truthy(has(screen, "temporal.errors.is"), screen)
  end)

  it("help(x) prints the reference entry of a function, a method name and a handle", function()
    local e, history = env()
    local screen = pty.run({ BIN }, {
      { wait = "> ", send = "help(temporal.connect)\r" },
      { wait = "Opens a connection", send = connect_line() },
      { wait = "> ", send = "help(c.start_workflow)\r" },
      { wait = "Starts a workflow execution", send = "help('h:result')\r" },
      { wait = "Waits for the workflow to close", send = "help(c.workflow_service.get_system_info)\r" },
      { wait = "GetSystemInfoResponse", send = "help('nothing_like_this')\r" },
      { wait = "no reference entry", send = "\4" },
    }, e)
    os.remove(history)
    assert.truthy(has(screen, "### `temporal.connect([target[, opts]])`"), screen)
    assert.truthy(has(screen, "#### `client:start_workflow(workflow, opts)`"), screen)
    assert.truthy(has(screen, "#### `h:result([opts])`"), screen)
    assert.truthy(has(screen, "temporal.api.workflowservice.v1.WorkflowService.GetSystemInfo"), screen)
    assert.truthy(has(screen, "help: no reference entry for 'nothing_like_this'"), screen)
  end)

  it("what a task prints while a line is half typed appears above the prompt; the line survives", function()
    local e, history = env()
    local screen = pty.run({ BIN }, {
      { wait = "> ", send = "t = temporal.spawn(function() temporal.sleep(0.5); print('from' .. ' the task') end)\r" },
      { wait = "> ", send = "'half" },
      { wait = "from the task", send = " typed'\r" },
      { wait = '"half typed"', send = "\4" },
    }, e)
    os.remove(history)
    assert.truthy(has(screen, "from the task"), screen)
    assert.truthy(has(screen, '"half typed"'), screen)
  end)

  it("a task spawned at the prompt completes its RPC while no line is typed", function()
    local e, history = env()
    local id = helper.unique_id("repl-idle")
    local out, seen = os.tmpname(), os.tmpname()
    os.remove(out)
    os.remove(seen)
    local signal = ("%s workflow signal --address %s --namespace %s --workflow-id %s --name approve --input '\"idle\"'")
      :format(pty.quote(helper.cli_path), helper.address, helper.namespace, id)
    local screen = pty.run({ BIN }, {
      { wait = "> ", send = connect_line() },
      { wait = "> ", send = ("h = c:start_workflow('WaitForSignal', { id = %q, task_queue = %q })\r")
        :format(id, helper.task_queue) },
      -- the task long-polls the result, then writes it to a file
      { wait = "> ", send = ("t = temporal.spawn(function() local r = h:result(); " ..
        "local f = io.open(%q, 'w'); f:write(require('temporal.repl').json(r)); f:close(); return r end)\r")
        :format(out) },
      { send = "'armed'\r" },
      -- nobody types from here: the workflow completes because the CLI signals it, and the
      -- task must see the result while the prompt waits
      { wait = '"armed"', sh = signal },
      -- the file, as it is the moment it appears (or nothing if it never does while idle)
      { wait_file = out, sh = "cp " .. pty.quote(out) .. " " .. pty.quote(seen), send = "t:done(), t.status\r" },
      { wait = "done", send = "\4" },
    }, e)
    os.remove(history)
    local f = io.open(seen)
    local written = f and f:read("a")
    if f then f:close() end
    os.remove(out)
    os.remove(seen)
    assert.equal('[["idle"]]', written, screen)
    assert.truthy(has(screen, 'true\t"done"'), screen)
    -- and the server agrees the workflow completed
    local d = helper.cli_json("workflow", "describe", "--workflow-id", id)
    assert.equal("WORKFLOW_EXECUTION_STATUS_COMPLETED", d.workflowExecutionInfo.status)
  end)
end)
