-- Hardening: hostile server bytes and bad input never crash, leak or silently change a
-- value. Hostile replies come from spec/support/hostile_server.py (the adversary: a peer
-- that answers every call with the bytes a compromised server or proxy could send); the
-- rest runs against the real test bed. Cases that used to crash the process run in a
-- child process, so a crash fails one spec instead of the whole run.
local helper = require("support.helper")
local hostile = require("support.hostile")
local temporal = require("temporal")
local core = temporal.core

local WS = "temporal.api.workflowservice.v1."
local FAILURE = "temporal.api.failure.v1.Failure"
local STATUS = "google.rpc.Status"

local function varint(n)
  local t = {}
  repeat
    local c = n & 0x7f
    n = n >> 7
    if n > 0 then c = c | 0x80 end
    t[#t + 1] = string.char(c)
  until n == 0
  return table.concat(t)
end

-- The wire tag of a message field (repeated or not), read off an encoding of it empty.
local function tag(type_name, field, repeated)
  local b = core.encode(type_name, { [field] = repeated and { {} } or {} })
  return b:sub(1, -2)
end

local function wrap(t, inner) return t .. varint(#inner) .. inner end

-- A Failure with `levels` nested causes (what a hostile server sends: ~15 KB for 5000).
local function deep_failure(levels)
  local cause = tag(FAILURE, "cause")
  local s = core.encode(FAILURE, { message = "leaf" })
  for _ = 1, levels do s = wrap(cause, s) end
  return s
end

-- GetWorkflowExecutionHistoryResponse whose one event carries `failure_bytes`.
local function history_with_failure(failure_bytes)
  local attrs = wrap(tag("temporal.api.history.v1.WorkflowExecutionFailedEventAttributes", "failure"), failure_bytes)
  local event = wrap(tag("temporal.api.history.v1.HistoryEvent", "workflow_execution_failed_event_attributes"), attrs)
  local history = wrap(tag("temporal.api.history.v1.History", "events", true), event)
  return wrap(tag(WS .. "GetWorkflowExecutionHistoryResponse", "history"), history)
end

-- Runs a Lua script in a child lua5.4 with the same module paths; returns ok, stdout, stderr.
local function child(script, ...)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local argv = { "lua5.4", path, ... }
  local ok, out, err = helper.run(argv)
  os.remove(path)
  return ok, out, err
end

local function history_call(address)
  return ([[
local temporal = require("temporal")
local c = temporal.connect(%q, { lazy = true })
local ok, err = pcall(c.workflow_service.get_workflow_execution_history, c.workflow_service,
  { namespace = "default", execution = { workflow_id = "x" } })
print(ok, tostring(err))
]]):format(address)
end

describe("hostile bytes", function()
  local server
  local deep = deep_failure(5000)
  local replies = {
    deep_response = { body = history_with_failure(deep) },
    deep_details = { status = 3, message = "bad request",
      -- 1000 levels: gRPC caps the size of trailers; deep enough to cross our limit
      details = core.encode(STATUS, { code = 3, message = "m" }) .. wrap(tag(STATUS, "details", true),
        wrap("\10", "type.googleapis.com/" .. FAILURE) .. wrap("\18", deep_failure(1000))) },
    malformed_details = { status = 14, message = "unavailable for now", details = "\255\255\255\255" },
    bad_utf8 = { body = history_with_failure((core.encode(FAILURE, { cause = { message = "OK" } })
      :gsub("OK", "O\xff"))) },
    nul = { body = history_with_failure(core.encode(FAILURE, { message = "OK" }):gsub("OK", "O\0")) },
  }
  local order = { "deep_response", "deep_details", "malformed_details", "bad_utf8", "nul" }
  local address = {}

  setup(function()
    local list = {}
    for i, name in ipairs(order) do list[i] = replies[name] end
    server = hostile.start(list)
    for i, name in ipairs(order) do address[name] = server.address[i] end
  end)
  teardown(function() if server then server:stop() end end)

  it("a response nested thousands of levels deep is an error, not a crash", function()
    assert.is_true(#deep < 40000)
    local ok, out, err = child(history_call(address.deep_response))
    assert.is_true(ok, err)
    assert.matches("^false", out)
    assert.matches("history.events[1].workflow_execution_failed_event_attributes.failure.(", out, 1, true)
    assert.matches("messages nested deeper than 100", out, 1, true)
  end)

  it("nesting is bounded in core.decode and binary/protobuf payloads too", function()
    local ok, out, err = child(([[
local temporal = require("temporal")
local deep = %q
print(pcall(temporal.core.decode, %q, deep))
local dc = temporal.converter.default
print(pcall(dc.from_payload, dc, { metadata = { encoding = "binary/protobuf", messageType = %q }, data = deep }))
]]):format(deep, FAILURE, FAILURE))
    assert.is_true(ok, err)
    local a, b = out:match("^([^\n]*)\n([^\n]*)")
    assert.matches("^false\tinvalid temporal.api.failure.v1.Failure: cause.cause.cause.cause.%(93 more levels%)", a)
    assert.matches("nested deeper than 100", a)
    assert.matches("^false\t.*nested deeper than 100", b)
    -- and what the limit allows still decodes
    local fine = core.decode(FAILURE, deep_failure(99))
    local n = 0
    while fine.cause do fine, n = fine.cause, n + 1 end
    assert.equal(99, n)
    assert.equal("leaf", fine.message)
  end)

  it("deeply nested status details keep the RPCError, its status, code and message", function()
    local ok, out, err = child(([[
local temporal = require("temporal")
local c = temporal.connect(%q, { lazy = true })
local ok, e = pcall(c.workflow_service.get_system_info, c.workflow_service, {})
print(ok, temporal.errors.is(e, "RPCError"), e.status, e.code, e.grpc_message, #e.details, e.details_error)
]]):format(address.deep_details))
    assert.is_true(ok, err)
    assert.matches("^false\ttrue\tINVALID_ARGUMENT\t3\tbad request\t0\t", out)
    assert.matches("grpc-status-details-bin: invalid google.rpc.Status: details[1].value.cause", out, 1, true)
  end)

  it("malformed status details still give an RPCError that is retried and matched", function()
    local c = temporal.connect(address.malformed_details, { lazy = true,
      retry_config = { initial_interval = 0.01, max_interval = 0.01, max_retries = 3 } })
    local ok, e = pcall(c.workflow_service.get_system_info, c.workflow_service, {}, { retry = true })
    assert.is_false(ok)
    assert.is_true(temporal.errors.is(e, "RPCError"))
    assert.equal("UNAVAILABLE", e.status)
    assert.equal(14, e.code)
    assert.equal("unavailable for now", e.grpc_message)
    assert.same({}, e.details)
    assert.matches("malformed google.rpc.Status", e.details_error, 1, true)
    assert.is_true(e.attempts > 1)   -- UNAVAILABLE is retryable
    c:close()
  end)

  it("invalid UTF-8 or a NUL in a server string is an error naming the field", function()
    local c = temporal.connect(address.bad_utf8, { lazy = true })
    local ok, e = pcall(c.workflow_service.get_workflow_execution_history, c.workflow_service,
      { namespace = "default", execution = { workflow_id = "x" } })
    assert.is_false(ok)
    assert.matches("history.events[1].workflow_execution_failed_event_attributes.failure.cause.message: "
      .. "string is not valid UTF-8",
      tostring(e), 1, true)
    c:close()
    c = temporal.connect(address.nul, { lazy = true })
    ok, e = pcall(c.workflow_service.get_workflow_execution_history, c.workflow_service,
      { namespace = "default", execution = { workflow_id = "x" } })
    assert.is_false(ok)
    assert.matches("failure.message: string contains a NUL byte", tostring(e), 1, true)
    c:close()
    -- the same through core.decode, with repeated fields indexed
    local bytes = core.encode(WS .. "ListNamespacesResponse", { namespaces = {
      { namespace_info = { name = "ok" } }, { namespace_info = { name = "AB" } } } }):gsub("AB", "A\xc3")
    ok, e = pcall(core.decode, WS .. "ListNamespacesResponse", bytes)
    assert.is_false(ok)
    assert.matches("namespaces[2].namespace_info.name: string is not valid UTF-8", e, 1, true)
  end)

  it("an Any nested past the depth limit leaks nothing (valgrind)", function()
    -- Status > Any(Status > Any(Status > ...)): 60 levels of Any, 120 messages deep
    local s = core.encode(STATUS, { message = "leaf" })
    for _ = 1, 60 do
      -- Any: type_url is field 1, value field 2
      s = wrap(tag(STATUS, "details", true), wrap("\10", "type.googleapis.com/" .. STATUS) .. wrap("\18", s))
    end
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(([[
local core = require("temporal.core")
for _ = 1, 20 do assert(not pcall(core.decode, %q, %q)) end
print("script ok")
]]):format(STATUS, s))
    f:close()
    local ok, out, err = helper.run({ "valgrind", "--error-exitcode=9", "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite", "lua5.4", path })
    os.remove(path)
    assert.is_true(ok, err)
    assert.matches("script ok", out)
    assert.matches("definitely lost: 0 bytes", err)
  end)
end)

describe("raw messages round-trip exactly", function()
  it("a map entry without a value decodes to an empty message", function()
    -- Memo { fields { key: "a" } }: the entry has no value field at all
    local memo = "temporal.api.common.v1.Memo"
    local bytes = wrap("\10", wrap("\10", "a"))  -- fields (1) { key (1): "a" }
    local m = core.decode(memo, bytes)
    assert.same({ a = {} }, m.fields)
    assert.same(m, core.decode(memo, core.encode(memo, m)))
  end)

  it("Timestamps and Durations keep their nanoseconds", function()
    local info = "temporal.api.workflow.v1.WorkflowExecutionInfo"
    local bytes = core.encode(info, {
      start_time = { seconds = 1732934052, nanos = 123456789 },
      execution_time = { seconds = 1732934052, nanos = 500000000 },
      close_time = { seconds = 1732934053 },
      execution_duration = { seconds = 8294400, nanos = 1 },
      history_length = 3,
    })
    local m = core.decode(info, bytes)
    assert.same({ seconds = 1732934052, nanos = 123456789 }, m.start_time)
    assert.equal(1732934052.5, m.execution_time)   -- a float when it is exact
    assert.equal(1732934053, m.close_time)
    assert.equal(math.type(m.close_time), "integer")
    assert.equal(core.encode(info, m), bytes)
    -- negative durations and out-of-float-range seconds too
    for _, d in ipairs({ { seconds = -1, nanos = -5 }, { seconds = 1 << 60, nanos = 7 },
      { seconds = 0, nanos = 1 } }) do
      local b = core.encode("google.protobuf.Duration", d)
      assert.equal(b, core.encode("google.protobuf.Duration", core.decode("google.protobuf.Duration", b)))
    end
  end)

  it("a raw describe from the real server keeps the start time's nanoseconds", function()
    local client = temporal.connect(helper.address, { namespace = helper.namespace })
    local id = helper.unique_id("hardening-ts")
    client:start_workflow("Greet", { id = id, task_queue = helper.task_queue, args = { "x" } })
    local resp = client.workflow_service:describe_workflow_execution{
      namespace = helper.namespace, execution = { workflow_id = id } }
    local st = resp.workflow_execution_info.start_time
    local cli = helper.cli_json("workflow", "describe", "--workflow-id", id)
    local cli_start = cli.workflowExecutionInfo.startTime    -- RFC 3339 with nanoseconds
    local frac = cli_start:match("%.(%d+)Z$") or ""
    local nanos = tonumber((frac .. "000000000"):sub(1, 9))
    local seconds = type(st) == "table" and st.seconds or math.floor(st)
    local got = type(st) == "table" and st.nanos or math.floor((st - seconds) * 1e9 + 0.5)
    assert.equal(nanos, got)
    local resp_type = WS .. "DescribeWorkflowExecutionResponse"
    assert.same(resp, core.decode(resp_type, core.encode(resp_type, resp)))
    client:close()
  end)
end)

describe("options that used to mean something else", function()
  it("rpc_timeout 1e300 is a long wait, not an immediate DEADLINE_EXCEEDED", function()
    local client = temporal.connect(helper.address, { namespace = helper.namespace, connect_timeout = 1e300 })
    local info = client.workflow_service:get_system_info({}, { rpc_timeout = 1e300 })
    assert.is_string(info.server_version)
    client:close()
  end)

  it("NaN, negative and infinite timeouts and keep-alives are errors naming the option", function()
    local function fails(pattern, fn)
      local ok, e = pcall(fn)
      assert.is_false(ok)
      assert.matches(pattern, tostring(e), 1, true)
    end
    local lazy = function(o) o.lazy = true; return function() return temporal.connect("127.0.0.1:1", o) end end
    local ct = "connect_timeout: expected a non-negative number of seconds (math.huge: none), got"
    fails(ct, lazy({ connect_timeout = 0 / 0 }))
    fails(ct .. " -1", lazy({ connect_timeout = -1 }))
    fails("keep_alive.interval: expected seconds in (0, 2147483]", lazy({ keep_alive = { interval = math.huge } }))
    fails("keep_alive.interval: expected seconds in (0, 2147483]", lazy({ keep_alive = { interval = 0 / 0 } }))
    fails("keep_alive.interval: expected seconds in (0, 2147483]", lazy({ keep_alive = { interval = -1 } }))
    fails("keep_alive.timeout: expected seconds in (0, 2147483]", lazy({ keep_alive = { timeout = 1e300 } }))
    fails("max_receive_message_length: expected an integer", lazy({ max_receive_message_length = 1.5 }))
    fails("history_events: option 'page_size' must be a positive integer, got 1.5", function()
      return temporal.connect("127.0.0.1:1", { lazy = true }):get_workflow_handle("x"):history_events({ page_size = 1.5 })
    end)
    fails("connect: target contains a NUL byte", function()
      return temporal.connect("127.0.0.1:7233\0evil", { lazy = true }) end)
    local c = temporal.connect("127.0.0.1:1", { lazy = true })
    fails("rpc_timeout: expected a non-negative number of seconds (math.huge: none), got", function()
      return c.workflow_service:get_system_info({}, { rpc_timeout = 0 / 0 }) end)
    fails("rpc_timeout: expected a non-negative number of seconds (math.huge: none), got -5", function()
      return c.workflow_service:get_system_info({}, { rpc_timeout = -5 }) end)
    fails("must be at least 1", function()
      return c:start_workflow("W", { id = "x", task_queue = "q", retry_policy = { backoff_coefficient = 0 / 0 } }) end)
    fails("retry_policy.backoff_coefficient: must be at least 1", function()
      return c:create_schedule("s", { spec = { cron_expressions = { "0 3 * * *" } },
        action = { workflow = "W", id = "x", task_queue = "q", retry_policy = { backoff_coefficient = 0 / 0 } } }) end)
    -- the core checks its own arguments too
    fails("bad argument #5 to 'unary' (timeout must be a non-negative number", function()
      return core.unary(c.channel, "temporal.api.workflowservice.v1.WorkflowService", "GetSystemInfo", {}, -1) end)
    fails("channel.keep_alive_time: expected seconds", function()
      return core.channel("127.0.0.1:1", { keep_alive_time = math.huge }) end)
    fails("target contains a NUL byte", function() return core.channel("127.0.0.1:1\0x", {}) end)
    fails("channel.http_proxy: contains a NUL byte", function()
      return core.channel("127.0.0.1:1", { http_proxy = "127.0.0.1:2\0x" }) end)
    c:close()
  end)

  it("an argument count cannot ask for unbounded work or drop values", function()
    local dc = temporal.converter.default
    local c = temporal.connect("127.0.0.1:1", { lazy = true })
    for _, args in ipairs({ { n = 10 ^ 12 }, { n = 1000000000000 }, { n = -1 }, { n = 1.5 } }) do
      local ok, e = pcall(c.start_workflow, c, "W", { id = "x", task_queue = "q", args = args })
      assert.is_false(ok)
      assert.matches("n", tostring(e))
      ok, e = pcall(dc.to_payloads, dc, args)
      assert.is_false(ok)
      assert.matches("args.n: expected an integer count in 0..100000", tostring(e), 1, true)
    end
    local ok, e = pcall(dc.to_payloads, dc, { 1, 2, 3, n = 2 })
    assert.is_false(ok)
    assert.matches("found key 3", e, 1, true)
    assert.equal(3, #dc:to_payloads(table.pack(1, nil, nil)))
    c:close()
  end)

  it("client methods called without a client name the mistake", function()
    local c = temporal.connect("127.0.0.1:1", { lazy = true })
    local names = {}
    for name, fn in pairs(require("temporal.client").methods) do
      if type(fn) == "function" and name:sub(1, 1) ~= "_" then names[#names + 1] = name end
    end
    assert.is_true(#names > 20)
    for _, name in ipairs(names) do
      for _, bad in ipairs({ false, io.stdout, {}, "x" }) do
        local ok, e = pcall(c[name], bad or nil, "x", {})
        assert.is_false(ok, name)
        assert.matches(name .. ": call it with ':' on a temporal.Client", tostring(e), 1, true)
      end
    end
    local sc = c.service_client
    for _, name in ipairs({ "close", "check_health", "config" }) do
      local ok, e = pcall(sc[name], io.stdout)
      assert.is_false(ok)
      assert.matches(name .. ": call it with ':' on a temporal.ServiceClient", tostring(e), 1, true)
    end
    local ok, e = pcall(core.handle_state, io.stdout)
    assert.is_false(ok)
    assert.matches("temporal handle", e, 1, true)
    c:close()
  end)

  it("secrets never reach error messages or tostring", function()
    local secret = "s3cr3t-key-\1"
    local c = temporal.connect("127.0.0.1:1", { lazy = true, api_key = secret, tls = false })
    local ok, e = pcall(c.workflow_service.get_system_info, c.workflow_service, {})
    assert.is_false(ok)
    assert.matches("rpc_metadata['authorization']", tostring(e), 1, true)
    assert.is_nil(tostring(e):find("s3cr3t", 1, true))
    assert.is_nil(tostring(c):find("s3cr3t", 1, true))
    ok, e = pcall(core.channel, "127.0.0.1:1", { http_proxy = "127.0.0.1:2", http_proxy_user = "u",
      http_proxy_password = "s3cr3t\0" })
    assert.is_false(ok)
    assert.is_nil(tostring(e):find("s3cr3t", 1, true))
    c:close()
  end)

  it("a data converter and typed search attribute values are checked up front", function()
    local ok, e = pcall(temporal.connect, "127.0.0.1:1", { lazy = true, data_converter = {} })
    assert.is_false(ok)
    assert.matches("data_converter: expected a temporal.DataConverter", e, 1, true)
    local c = temporal.connect("127.0.0.1:1", { lazy = true })
    ok, e = pcall(c.with, c, { data_converter = {} })
    assert.is_false(ok)
    assert.matches("data_converter: expected a temporal.DataConverter", e, 1, true)
    c:close()
    local sa = temporal.search_attributes
    for _, case in ipairs({
      { sa.double, 0 / 0, "expected a finite number" }, { sa.double, math.huge, "expected a finite number" },
      { sa.datetime, 0 / 0, "search_attributes.datetime: expected epoch seconds" },
      { sa.datetime, 1e300, "search_attributes.datetime: expected epoch seconds" },
      { sa.datetime, "yesterday", "or an RFC 3339 string, got 'yesterday'" },
      { sa.keyword, "\xff", "expected a UTF-8 string" },
      { sa.keyword_list, { "a", x = "b" }, "found key x" },
    }) do
      local ok2, e2 = pcall(case[1], case[2])
      assert.is_false(ok2)
      assert.matches(case[3], e2, 1, true)
    end
    assert.equal("2024-01-02T03:04:05Z", sa.datetime("2024-01-02T03:04:05Z").value)
  end)
end)
