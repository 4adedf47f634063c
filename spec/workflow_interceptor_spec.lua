-- Interceptors around the workflow operations, checked from the other side: the headers
-- an interceptor adds are read back from the server's history (raw events, and the
-- temporal CLI's view of them), the arguments it changes from what the Python worker got.
local helper = require("support.helper")
local temporal = require("temporal")

local TQ = helper.task_queue

local function connect(interceptors)
  return temporal.connect(helper.address, { namespace = helper.namespace, interceptors = interceptors })
end

local function json_payload(text)
  return { metadata = { encoding = "json/plain" }, data = text }
end

-- An interceptor entry that adds header `key` (a JSON payload of `text`), lets `edit`
-- change the input further, then calls on.
local function add_header(key, text, edit)
  return function(next, input)
    input.header[key] = json_payload(text)
    if edit then edit(input) end
    return next(input)
  end
end

-- The first event of `event_type` in the run's history, read by a client without
-- interceptors: its attributes table.
local plain
local function event_attributes(wid, event_type)
  local attrs = event_type:lower() .. "_event_attributes"
  for _, ev in ipairs(plain:get_workflow_handle(wid):fetch_history()) do
    if ev.event_type == event_type then return ev[attrs] end
  end
  error("no " .. event_type .. " event in the history of " .. wid)
end

-- A "*" interceptor that records every operation: name and a copy of its input.
local function recorder()
  local calls = {}
  local icpt = { ["*"] = function(next, input, name)
    local copy = {}
    for k, v in pairs(input) do copy[k] = v end
    calls[#calls + 1] = { name = name, input = copy }
    return next(input)
  end }
  return icpt, calls
end

local function calls_named(calls, name)
  local out = {}
  for _, c in ipairs(calls) do if c.name == name then out[#out + 1] = c.input end end
  return out
end

setup(function() plain = connect() end)
teardown(function() if plain then plain:close() end end)

describe("workflow interceptors", function()
  it("start_workflow: a header and changed arguments and id reach the server and the worker", function()
    local seen
    local client = connect({ { start_workflow = function(next, input)
      seen = { workflow = input.workflow, id = input.id, task_queue = input.task_queue, args = input.args }
      input.header["trace-id"] = json_payload('"abc-123"')
      input.args = { "changed", input.args[2] * 10 }
      input.id = input.id .. "-icpt"
      input.rpc_metadata["x-spec"] = "start"
      return next(input)
    end } })
    local wid = helper.unique_id("icpt-start")
    local caller_md = { ["x-caller"] = "yes" }
    local h = client:start_workflow("Echo", { id = wid, task_queue = TQ, args = { "original", 4 },
      rpc_metadata = caller_md })
    assert.same({ workflow = "Echo", id = wid, task_queue = TQ, args = { "original", 4 } }, seen)
    assert.same({ ["x-caller"] = "yes" }, caller_md)   -- the interceptor edited a copy
    assert.equals(wid .. "-icpt", h.id)
    -- what the worker received
    assert.same({ values = { "changed", 40 }, types = { "str", "int" } }, h:result())
    -- the header in the started event: raw history, and the CLI's
    local started = event_attributes(h.id, "WORKFLOW_EXECUTION_STARTED")
    local field = started.header.fields["trace-id"]
    assert.equals('"abc-123"', field.data)
    assert.equals("json/plain", field.metadata.encoding)
    local cli = helper.cli_json("workflow", "show", "--workflow-id", h.id)
    local cli_started = cli.events[1].workflowExecutionStartedEventAttributes
    assert.is_table(cli_started.header.fields["trace-id"])
    -- the id the caller gave was never used
    assert.equals(0, plain:count_workflows(("WorkflowId = '%s'"):format(wid)).count)
    client:close()
  end)

  it("signal-with-start goes through start_workflow with start_signal in the input", function()
    local icpt, calls = recorder()
    local client = connect({ icpt, { start_workflow = add_header("via", '"sws"', function(input)
      input.start_signal_args = { "from-interceptor" }
    end) } })
    local wid = helper.unique_id("icpt-sws")
    local h = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ,
      start_signal = "approve", start_signal_args = { "given" } })
    assert.equals(1, #calls)
    assert.equals("start_workflow", calls[1].name)
    assert.equals("approve", calls[1].input.start_signal)
    assert.same({ { "from-interceptor" } }, h:result())
    assert.equals('"sws"', event_attributes(wid, "WORKFLOW_EXECUTION_STARTED").header.fields.via.data)
    client:close()
  end)

  it("every workflow operation reaches the interceptors with its name and input", function()
    local icpt, calls = recorder()
    local client = connect({ icpt, {
      signal_workflow = add_header("sig", '"signal-header"'),
      start_workflow_update = add_header("upd", '"update-header"'),
    } })
    local wid = helper.unique_id("icpt-ops")
    local h = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ })
    assert.same({ approved = false, signals = {}, total = 0, updates = 0 }, h:query("status"))
    assert.equals(2, h:execute_update("add", { args = { 2 }, id = "upd-1" }))
    h:signal("approve", "x", 1)
    assert.same({ { "x", 1 } }, h:result())
    local d = h:describe()
    assert.equals("COMPLETED", d.status)

    local query = ("WorkflowId = '%s'"):format(wid)
    helper.eventually(function() return plain:count_workflows(query).count == 1 end, 10, 0.2)
    local listed = {}
    for wf in client:list_workflows(query, { limit = 5 }) do listed[#listed + 1] = wf.id end
    assert.same({ wid }, listed)
    assert.equals(1, client:count_workflows(query).count)

    local h2 = client:start_workflow("WaitForSignal", { id = wid .. "-c", task_queue = TQ })
    h2:cancel({ reason = "spec cancel" })
    local h3 = client:start_workflow("WaitForSignal", { id = wid .. "-t", task_queue = TQ })
    h3:terminate({ reason = "spec terminate", details = { "d" } })

    local names = {}
    for _, c in ipairs(calls) do
      if names[#names] ~= c.name then names[#names + 1] = c.name end
      assert.is_table(c.input.header)
      assert.is_table(c.input.rpc_metadata)
    end
    assert.same({
      "start_workflow", "query_workflow", "start_workflow_update", "signal_workflow",
      "fetch_workflow_history_events", "describe_workflow", "list_workflows", "count_workflows",
      "start_workflow", "cancel_workflow", "start_workflow", "terminate_workflow",
    }, names)

    local q = calls_named(calls, "query_workflow")[1]
    assert.equals(wid, q.id)
    assert.equals("status", q.query)
    local u = calls_named(calls, "start_workflow_update")[1]
    assert.equals(wid, u.id)
    assert.equals("add", u.update)
    assert.equals("upd-1", u.update_id)
    assert.equals("COMPLETED", u.wait_for_stage)
    assert.same({ 2 }, u.args)
    local sig = calls_named(calls, "signal_workflow")[1]
    assert.equals(wid, sig.id)
    assert.equals("approve", sig.signal)
    assert.equals("x", sig.args[1])
    local hist = calls_named(calls, "fetch_workflow_history_events")[1]
    assert.equals(wid, hist.id)
    assert.equals("CLOSE_EVENT", hist.event_filter_type)
    assert.equals(wid, calls_named(calls, "describe_workflow")[1].id)
    local l = calls_named(calls, "list_workflows")[1]
    assert.equals(query, l.query)
    assert.equals(5, l.limit)
    assert.equals(query, calls_named(calls, "count_workflows")[1].query)
    local c = calls_named(calls, "cancel_workflow")[1]
    assert.equals(wid .. "-c", c.id)
    assert.equals("spec cancel", c.reason)
    local t = calls_named(calls, "terminate_workflow")[1]
    assert.equals(wid .. "-t", t.id)
    assert.equals("spec terminate", t.reason)
    assert.same({ "d" }, t.details)

    -- the headers in the history: the signal's and the update's
    local signaled = event_attributes(wid, "WORKFLOW_EXECUTION_SIGNALED")
    assert.equals('"signal-header"', signaled.header.fields.sig.data)
    local accepted = event_attributes(wid, "WORKFLOW_EXECUTION_UPDATE_ACCEPTED")
    assert.equals('"update-header"', accepted.accepted_request.input.header.fields.upd.data)
    -- cancel and terminate took effect
    assert.equals("TERMINATED", plain:get_workflow_handle(wid .. "-t"):describe().status)
    helper.eventually(function()
      return plain:get_workflow_handle(wid .. "-c"):describe().status == "CANCELED"
    end, 10, 0.1)
    client:close()
  end)

  it("update-with-start: one operation, the header on both the start and the update", function()
    local icpt, calls = recorder()
    local client = connect({ icpt, { start_update_with_start_workflow = add_header("uws", '"both"',
      function(input) input.args = { 7 } end) } })
    local wid = helper.unique_id("icpt-uws")
    local op = temporal.WithStartWorkflowOperation("WaitForSignal", { id = wid, task_queue = TQ,
      id_conflict_policy = "USE_EXISTING" })
    assert.equals(7, client:execute_update_with_start_workflow("add",
      { args = { 1 }, id = "uws-1", start_workflow_operation = op }))
    assert.equals("start_update_with_start_workflow", calls[1].name)
    assert.equals("add", calls[1].input.update)
    assert.equals("uws-1", calls[1].input.update_id)
    assert.is_nil(calls[1].input.id)
    assert.equals(op, calls[1].input.start_workflow_operation)
    assert.equals('"both"', event_attributes(wid, "WORKFLOW_EXECUTION_STARTED").header.fields.uws.data)
    local accepted = event_attributes(wid, "WORKFLOW_EXECUTION_UPDATE_ACCEPTED")
    assert.equals('"both"', accepted.accepted_request.input.header.fields.uws.data)
    op:workflow_handle():terminate()
    client:close()
  end)
end)
