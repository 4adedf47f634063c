-- The descriptor-driven converter (temporal.core encode/decode): pure unit specs.
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local core = require("temporal.core")

local function roundtrip(type_name, value)
  return core.decode(type_name, core.encode(type_name, value))
end

local START = "temporal.api.workflowservice.v1.StartWorkflowExecutionRequest"

describe("protobuf converter", function()
  it("round-trips scalars, nested messages, repeated fields and maps", function()
    local t = roundtrip(START, {
      namespace = "ns", workflow_id = "wf", workflow_type = { name = "T" },
      task_queue = { name = "tq", kind = "NORMAL" },
      input = { payloads = { { metadata = { encoding = "json/plain", x = "\0\255" }, data = "\1\2\0\3" },
                             { data = "" } } },
      memo = { fields = { k = { data = "v" } } },
    })
    assert.equals("ns", t.namespace)
    assert.equals("T", t.workflow_type.name)
    assert.equals("NORMAL", t.task_queue.kind)
    assert.equals(2, #t.input.payloads)
    assert.equals("\1\2\0\3", t.input.payloads[1].data)        -- bytes keep NULs
    assert.equals("\0\255", t.input.payloads[1].metadata.x)
    assert.same({}, t.input.payloads[2])                          -- all defaults: left out
    assert.equals("v", t.memo.fields.k.data)
  end)

  it("keeps 64-bit integers exact", function()
    local H = "temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryRequest"
    for _, v in ipairs({ compat.maxinteger, compat.mininteger, 9007199254740993, -1 }) do
      local t = roundtrip("temporal.api.history.v1.HistoryEvent", { event_id = v })
      assert.equals(v, t.event_id)
      assert.equals("integer", compat.math_type(t.event_id))
    end
    assert.equals(2147483647, roundtrip(H, { maximum_page_size = 2147483647 }).maximum_page_size)
    assert.has_error(function() core.encode(H, { maximum_page_size = 2147483648 }) end,
      "GetWorkflowExecutionHistoryRequest.maximum_page_size: integer 2147483648 out of range")
    assert.has_error(function() core.encode(H, { maximum_page_size = 1.5 }) end,
      "GetWorkflowExecutionHistoryRequest.maximum_page_size: expected an integer, got 1.5")
  end)

  it("takes enums by full or short name or number, and decodes the short name", function()
    local a = roundtrip(START, { workflow_id_reuse_policy = "WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE" })
    local b = roundtrip(START, { workflow_id_reuse_policy = "REJECT_DUPLICATE" })
    local c = roundtrip(START, { workflow_id_reuse_policy = 3 })
    assert.equals("REJECT_DUPLICATE", a.workflow_id_reuse_policy)
    assert.equals("REJECT_DUPLICATE", b.workflow_id_reuse_policy)
    assert.equals("REJECT_DUPLICATE", c.workflow_id_reuse_policy)
    -- a number the protos do not know (a newer server) survives as a number
    assert.equals(99, roundtrip(START, { workflow_id_reuse_policy = 99 }).workflow_id_reuse_policy)
  end)

  it("converts Timestamp and Duration to and from seconds", function()
    local t = roundtrip(START, { workflow_execution_timeout = 90, workflow_run_timeout = 1.25,
                                 workflow_task_timeout = { seconds = 10, nanos = 5e8 } })
    assert.equals(90, t.workflow_execution_timeout)
    assert.equals("integer", compat.math_type(t.workflow_execution_timeout))
    assert.equals(1.25, t.workflow_run_timeout)
    assert.equals(10.5, t.workflow_task_timeout)
    local ev = roundtrip("temporal.api.history.v1.HistoryEvent", { event_time = 1700000000.5 })
    assert.equals(1700000000.5, ev.event_time)
  end)

  it("handles oneofs: one member set, two members refused", function()
    local EV = "temporal.api.history.v1.HistoryEvent"
    local t = roundtrip(EV, { event_type = "WORKFLOW_EXECUTION_SIGNALED",
      workflow_execution_signaled_event_attributes = { signal_name = "s" } })
    assert.equals("s", t.workflow_execution_signaled_event_attributes.signal_name)
    -- a chosen member with all-default content is still present
    local e = roundtrip(EV, { workflow_execution_signaled_event_attributes = {} })
    assert.same({}, e.workflow_execution_signaled_event_attributes)
    assert.has_error(function()
      core.encode(EV, { workflow_execution_signaled_event_attributes = {}, workflow_execution_started_event_attributes = {} })
    end)
  end)

  it("packs and unpacks Any by type name", function()
    local S = "google.rpc.Status"
    local t = roundtrip(S, { code = 6, message = "m", details = {
      { ["@type"] = "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
        start_request_id = "r", run_id = "x" },
      { type_url = "type.googleapis.com/unknown.Type", value = "\1\2" },
    } })
    assert.equals("temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure", t.details[1]["@type"])
    assert.equals("x", t.details[1].run_id)
    assert.equals("type.googleapis.com/unknown.Type", t.details[2].type_url)
    assert.equals("\1\2", t.details[2].value)
    assert.has_error(function() core.encode(S, { details = { { ["@type"] = "no.such.Type" } } }) end,
      "Status.details[1]: unknown message type 'no.such.Type' in Any")
  end)

  it("names the field path in every input error", function()
    assert.has_error(function() core.encode(START, { workflowId = "x" }) end,
      "StartWorkflowExecutionRequest: unknown field 'workflowId' in " .. START)
    assert.has_error(function() core.encode(START, { input = { payloads = { { data = 5 } } } }) end,
      "StartWorkflowExecutionRequest.input.payloads[1].data: expected a string, got number")
    assert.has_error(function() core.encode(START, { input = { payloads = { x = {} } } }) end,
      "StartWorkflowExecutionRequest.input.payloads: expected a list, found key 'x'")
    assert.has_error(function() core.encode(START, { workflow_id = "a\255b" }) end,
      "StartWorkflowExecutionRequest.workflow_id: string is not valid UTF-8")
    assert.has_error(function() core.encode(START, { workflow_id = "a\0b" }) end,
      "StartWorkflowExecutionRequest.workflow_id: string contains a NUL byte")
    assert.has_error(function() core.encode(START, { task_queue = { kind = "SIDEWAYS" } }) end,
      "StartWorkflowExecutionRequest.task_queue.kind: unknown temporal.api.enums.v1.TaskQueueKind value 'SIDEWAYS'")
    assert.has_error(function() core.encode(START, { [1] = "x" }) end)
    assert.has_error(function() core.encode("no.such.Message", {}) end, "unknown protobuf message type 'no.such.Message'")
  end)

  it("refuses cycles and absurd depth instead of crashing", function()
    local F = "temporal.api.failure.v1.Failure"
    local f = { message = "loop" }
    f.cause = f
    assert.has_error(function() core.encode(F, f) end)
    local ok, err = pcall(core.encode, F, f)
    assert.is_false(ok)
    assert.matches("nesting deeper than 100", err)
    local deep = { message = "0" }
    local cur = deep
    for i = 1, 90 do cur.cause = { message = tostring(i) }; cur = cur.cause end
    local t = roundtrip(F, deep)                 -- 90 levels are fine
    assert.equals("1", t.cause.message)
  end)

  it("rejects malformed bytes on decode", function()
    assert.has_error(function() core.decode(START, "\255\255\255\255") end)
  end)

  it("lists every WorkflowService, OperatorService and Health method", function()
    local s = core.services()
    local n = 0
    for _ in pairs(s["temporal.api.workflowservice.v1.WorkflowService"]) do n = n + 1 end
    assert.is_true(n >= 100)
    assert.equals("temporal.api.workflowservice.v1.StartWorkflowExecutionRequest",
      s["temporal.api.workflowservice.v1.WorkflowService"].StartWorkflowExecution.input)
    assert.is_table(s["temporal.api.operatorservice.v1.OperatorService"].ListSearchAttributes)
    assert.is_table(s["grpc.health.v1.Health"].Check)
  end)
end)
