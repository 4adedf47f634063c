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

  -- core.encode (the encoder the calls use) writes straight from the table to wire bytes;
  -- core._encode_protobuf_c goes through a protobuf-c message and protobuf_c_message_pack,
  -- as every request did before. The two must give the same bytes for every input and the
  -- same error for a bad one: the server receives exactly what it received before.
  describe("the direct encoder", function()
    local function same(type_name, t)
      local ok1, a = pcall(core.encode, type_name, t)
      local ok2, b = pcall(core._encode_protobuf_c, type_name, t)
      assert.equals(ok2, ok1, type_name)
      assert.equals(b, a, type_name)
      return ok1
    end

    it("encodes the start request bytes the protobuf-c path encodes", function()
      local req = {
        namespace = "default", workflow_id = "order-1", workflow_type = { name = "Greet" },
        task_queue = { name = "tq" }, identity = "1234@host", request_id = core.uuid4(),
        input = { payloads = { { metadata = { encoding = "json/plain" }, data = '"World"' } } },
        workflow_id_reuse_policy = "ALLOW_DUPLICATE",
      }
      assert.is_true(same(START, req))
      local full = {
        namespace = "ns", workflow_id = "w", workflow_type = { name = "T" },
        task_queue = { name = "tq", kind = "NORMAL", normal_name = "n" },
        input = { payloads = { { metadata = { encoding = "json/plain", [""] = "", e = "" }, data = "" }, {}, { data = ("x"):rep(300) } } },
        workflow_execution_timeout = 600, workflow_run_timeout = 300.5, workflow_task_timeout = { seconds = 7, nanos = 5 },
        identity = "id", request_id = "r", workflow_id_reuse_policy = 3, workflow_id_conflict_policy = "FAIL",
        retry_policy = { initial_interval = 1, backoff_coefficient = 2.0, maximum_interval = 0, maximum_attempts = -3,
          non_retryable_error_types = { "A", "", "B" } },
        cron_schedule = "", memo = { fields = { k = { data = "v" }, e = {} } },
        search_attributes = { indexed_fields = { CustomKeywordField = { metadata = { encoding = "json/plain" }, data = '"x"' } } },
        header = { fields = {} }, request_eager_execution = false, workflow_start_delay = -1.5,
        user_metadata = { summary = { data = "s" }, details = {} },
        priority = { priority_key = 0, fairness_key = "f", fairness_weight = -0.0 },
        versioning_override = { auto_upgrade = true },
      }
      assert.is_true(same(START, full))
      for _, wid in ipairs({ "abcdefgh", "abcdefghi", "abcdefgh\u{e9}t\u{e9}", "\u{1F600}abcdefghijklmnop", ("w"):rep(200) }) do
        assert.is_true(same(START, { workflow_id = wid }), wid)
      end
      -- a body of 128 bytes and more needs a longer length prefix; past the first buffer
      for _, n in ipairs({ 100, 121, 122, 123, 127, 128, 129, 16383, 16384, 100000 }) do
        local t = { workflow_id = "w", input = { payloads = { { data = ("d"):rep(n) } } } }
        assert.is_true(same(START, t), n)
      end
    end)

    it("agrees with the protobuf-c path on every field of every message a call sends or receives", function()
      -- The message graph is found through the converter itself: an unknown field names
      -- the message type it was looked up in.
      local CANDIDATES = {
        {}, "", "x", "\u{e9}t\u{e9}", 0, 1, -1, 127, 128, 300, 2147483647, 2147483648, -2147483648,
        4294967295, 4294967296, 1099511627776, compat.maxinteger, compat.mininteger, 0.0, -0.0, 1.5, -2.25,
        1e300, 0 / 0, math.huge, true, false, { "a", "" }, { 1, 0, 300, -1 }, { 1.5, 0.0 }, { true, false },
        { k = "v", [""] = "" }, { {} }, { seconds = 1, nanos = 5 }, { seconds = -2, nanos = 7 },
        "UNSPECIFIED", "RUNNING", "NORMAL", { ["@type"] = "temporal.api.common.v1.WorkflowExecution", workflow_id = "a" },
        { "path.a", "path.b" }, { value = 3 }, { { metadata = { encoding = "json/plain" }, data = "1" } },
      }
      local types, queue = {}, {}
      local function add(name)
        if name and not types[name] then types[name] = true; queue[#queue + 1] = name end
      end
      for _, methods in pairs(core.services()) do
        for _, m in pairs(methods) do add(m.input); add(m.output) end
      end
      local checked, fields = 0, 0
      local i = 1
      while i <= #queue do
        local T = queue[i]
        i = i + 1
        local all = {}
        for _, f in ipairs(core.message_fields(T)) do
          fields = fields + 1
          local _, err = pcall(core._encode_protobuf_c, T, { [f] = { zz_no_such_field = 1 } })
          add(type(err) == "string" and err:match("unknown field 'zz_no_such_field' in ([%w_.]+)") or nil)
          for _, c in ipairs(CANDIDATES) do
            -- one field alone: same bytes or the same error
            same(T, { [f] = c })
            checked = checked + 1
            -- and all the fields a candidate fits, together (oneofs: the first member)
            local t = {}
            for k, v in pairs(all) do t[k] = v end
            t[f] = c
            if pcall(core._encode_protobuf_c, T, t) then all = t end
          end
        end
        same(T, all)
      end
      assert.is_true(#queue > 300, #queue)
      assert.is_true(fields > 1500, fields)
      assert.is_true(checked > 50000, checked)
    end)

    it("raises the protobuf-c path's errors, naming the same field path", function()
      local EV = "temporal.api.history.v1.HistoryEvent"
      for _, case in ipairs({
        { START, { workflowId = "x" } }, { START, { [1] = "x" } }, { START, { workflow_id = "a\0b" } },
        { START, { workflow_id = "a\255b" } }, { START, { workflow_id = "abcdefghij\0klmnopq" } },
        { START, { workflow_id = "abcdefghijklmnop\255" } }, { START, { workflow_id = "abcdefgh\xe9\x80" } },
        { START, { input = { payloads = { { data = 5 } } } } },
        { START, { input = { payloads = { x = {} } } } }, { START, { input = { payloads = { [2] = {} } } } },
        { START, { input = { payloads = { { metadata = { [1] = "x" } } } } } },
        { START, { input = { payloads = { { metadata = { k = 1 } } } } } },
        { START, { task_queue = { kind = "SIDEWAYS" } } }, { START, { task_queue = "tq" } },
        { START, { workflow_execution_timeout = "1" } }, { START, { workflow_run_timeout = { secs = 1 } } },
        { START, { workflow_task_timeout = 1 / 0 } }, { START, { request_eager_execution = 1 } },
        { START, { retry_policy = { maximum_attempts = 1.5 } } }, { START, { retry_policy = { backoff_coefficient = "2" } } },
        { EV, { event_id = 2 ^ 63 } }, { EV, { workflow_execution_signaled_event_attributes = {},
          workflow_execution_started_event_attributes = {} } },
        { "google.rpc.Status", { details = { { ["@type"] = "no.such.Type" } } } },
      }) do
        local ok1, e1 = pcall(core.encode, case[1], case[2])
        local ok2, e2 = pcall(core._encode_protobuf_c, case[1], case[2])
        assert.is_false(ok1)
        assert.is_false(ok2)
        assert.equals(e2, e1)
      end
      -- cycles and depth
      local f = { message = "loop" }
      f.cause = f
      local ok, err = pcall(core.encode, "temporal.api.failure.v1.Failure", f)
      assert.is_false(ok)
      assert.matches("nesting deeper than 100", err)
      local deep = { message = "0" }
      local cur = deep
      for n = 1, 100 do cur.cause = { message = tostring(n) }; cur = cur.cause end
      same("temporal.api.failure.v1.Failure", deep)
    end)
  end)

  -- Responses decode in one pass from the wire bytes (fast_message in src/pb.c), which gives
  -- up on what it does not handle simply and leaves it to the reference decoder
  -- (scan + protobuf-c unpack + walk, core._decode_reference): both must give the same
  -- table for the same bytes. The expected values are what Python's protobuf decodes from
  -- these bytes (json_format.MessageToDict, checked when this test was written).
  describe("one-pass decoding", function()
    local SW = "temporal.api.workflowservice.v1.ShutdownWorkerRequest"
    local HE = "temporal.api.history.v1.HistoryEvent"
    local function both(type_name, bytes, expected)
      local fast = core.decode(type_name, bytes)
      assert.same(expected, fast)
      assert.same(expected, core._decode_reference(type_name, bytes))
      return fast
    end

    it("appends packed and unpacked occurrences of a repeated field in wire order", function()
      local packed = core.encode(SW, { task_queue_types = { "WORKFLOW", "ACTIVITY" } })
      assert.equal("\66\2\1\2", packed)
      both(SW, packed .. "\64\3" .. packed .. "\66\0",
        { task_queue_types = { "WORKFLOW", "ACTIVITY", "NEXUS", "WORKFLOW", "ACTIVITY" } })
      both(SW, "\66\0", {})                                  -- an empty packed run: no list
    end)

    it("keeps the last occurrence of a singular field, down to a default that leaves it out", function()
      both(START, "\10\1a\10\1b", { namespace = "b" })
      both(START, "\10\1a\10\0", {})
    end)

    it("merges a submessage sent in two occurrences", function()
      both(START, "\34\3\10\1a\18\1w\34\2\16\2",
        { workflow_id = "w", task_queue = { name = "a", kind = "STICKY" } })
    end)

    it("keeps the last member of a oneof", function()
      both(HE, "\8\1\210\1\3\10\1s\130\1\2\32\2",
        { event_id = 1, activity_task_started_event_attributes = { attempt = 2 } })
    end)

    it("leaves unknown fields out", function()
      both(START, "\18\1w\184\62\5\186\62\2hi", { workflow_id = "w" })
    end)

    it("fails exactly as the reference decoder on bad bytes", function()
      local cases = {
        { START, "\10\2a" },                 -- truncated string
        { START, "\10\2\0a" },              -- NUL in a string
        { START, "\10\1\255" },             -- not UTF-8
        { START, "\8\1" },                   -- a varint where a string belongs
        { START, "\11" },                     -- a group
        { SW, "\66\1\128" },                -- a packed run cut in a varint
        { HE, "\130\1\5\32\2" },          -- a submessage longer than its message
      }
      for _, c in ipairs(cases) do
        local ok1, e1 = pcall(core.decode, c[1], c[2])
        local ok2, e2 = pcall(core._decode_reference, c[1], c[2])
        assert.is_false(ok1)
        assert.is_false(ok2)
        assert.equal(e2, e1)
      end
    end)

    it("decodes what the converter encodes the same way as the reference decoder", function()
      local t = {
        namespace = "ns", workflow_id = "wf", workflow_type = { name = "T" },
        task_queue = { name = "tq", kind = "NORMAL" },
        input = { payloads = { { metadata = { encoding = "json/plain", x = "\0\255" }, data = "\1\2\0\3" },
                               { data = "" } } },
        memo = { fields = { k = { data = "v" } } },
        workflow_execution_timeout = 1.5, workflow_run_timeout = 7,
        retry_policy = { backoff_coefficient = 2.5, maximum_attempts = -1, non_retryable_error_types = { "a", "" } },
        header = { fields = { h = {} } },
        links = { { workflow_event = { namespace = "n", event_ref = { event_id = 5, event_type = "WORKFLOW_EXECUTION_STARTED" } } } },
      }
      local b = core.encode(START, t)
      assert.same(core._decode_reference(START, b), core.decode(START, b))
      local failure = core.encode("google.rpc.Status", { code = 6, message = "m", details = {
        { ["@type"] = "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure", run_id = "r" },
        { type_url = "type.googleapis.com/no.such.Type", value = "\1\2" } } })
      local d = both("google.rpc.Status", failure, { code = 6, message = "m", details = {
        { ["@type"] = "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure", run_id = "r" },
        { type_url = "type.googleapis.com/no.such.Type", value = "\1\2" } } })
      assert.equal("r", d.details[1].run_id)
    end)
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
