-- The foundation against the real test bed: connect, raw RPCs, typed gRPC failures,
-- overlapping calls, the host-loop example and loading from stock lua5.4.
local helper = require("support.helper")
local temporal = require("temporal")
local core = temporal.core

local WS = "temporal.api.workflowservice.v1.WorkflowService"

local function json_payload(s)
  return { metadata = { encoding = "json/plain" }, data = s }
end

local function connect(opts)
  opts = opts or {}
  opts.namespace = opts.namespace or helper.namespace
  return temporal.connect(helper.address, opts)
end

local function start_raw(client, id, wf_type, input_json)
  return client.workflow_service:start_workflow_execution{
    namespace = helper.namespace,
    workflow_id = id,
    workflow_type = { name = wf_type },
    task_queue = { name = helper.task_queue },
    input = input_json and { payloads = { json_payload(input_json) } } or nil,
    request_id = helper.unique_id("req"),
    identity = client.identity,
  }
end

-- Long-polls the history until the close event; returns that event.
local function await_close(client, id, run_id)
  while true do
    local resp = client.workflow_service:get_workflow_execution_history({
      namespace = helper.namespace,
      execution = { workflow_id = id, run_id = run_id },
      wait_new_event = true,
      history_event_filter_type = "CLOSE_EVENT",
    }, { rpc_timeout = 70 })
    local events = resp.history and resp.history.events or {}
    if #events > 0 then return events[#events] end
  end
end

describe("connect", function()
  it("calls GetSystemInfo and exposes the server's answer", function()
    local client = connect()
    assert.is_userdata(client)
    assert.is_string(client.system_info.server_version)
    assert.matches("^%d+%.%d+", client.system_info.server_version)
    assert.equals(helper.namespace, client.namespace)
    assert.matches("^%d+@.+", client.identity)
    assert.matches("temporal.Client%(" .. helper.address:gsub("%.", "%%.") .. ", namespace=", tostring(client))
    -- the same call through the raw surface; the CLI sees the same server version
    local info = client.workflow_service:get_system_info{}
    assert.equals(client.system_info.server_version, info.server_version)
    assert.is_true(info.capabilities.signal_and_query_header)
    local health = client.health_service:check{ service = "temporal.api.workflowservice.v1.WorkflowService" }
    assert.equals("SERVING", health.status)
    local cli = helper.cli_json("operator", "cluster", "describe")
    assert.equals(info.server_version, cli.serverVersion)
    client:close()
  end)

  it("takes identity and rpc_metadata options, and rejects unknown ones", function()
    local client = connect({ identity = "lua-spec-identity", rpc_metadata = { ["x-spec"] = "1" } })
    assert.equals("lua-spec-identity", client.identity)
    assert.has_error(function() temporal.connect(helper.address, { namespcae = "x" }) end,
      "connect: unknown option 'namespcae'")
    assert.has_error(function() temporal.connect(helper.address, { namespace = 5 }) end,
      "namespace: expected a string, got number")
    assert.has_error(function() temporal.connect(42) end)
    client:close()
  end)

  it("fails clearly, naming the target, when nothing listens", function()
    local port = helper.free_port and helper.free_port() or 1
    local target = "127.0.0.1:" .. port
    local t0 = core.now()
    local ok, err = pcall(temporal.connect, target, { connect_timeout = 5 })
    local elapsed = core.now() - t0
    assert.is_false(ok)
    assert.is_true(temporal.errors.is(err, "RPCError"))
    assert.equals("UNAVAILABLE", err.status)
    assert.matches("cannot connect to " .. target:gsub("%.", "%%."), tostring(err))
    -- within the timeout given (the deadline is the upper bound, not a timing claim)
    assert.is_true(elapsed < 5 + 1, "took " .. elapsed .. " s")
  end)

  it("lazy connect does not contact the server until the first call", function()
    local client = temporal.connect("127.0.0.1:1", { lazy = true })
    assert.is_nil(client.system_info)
    assert.has_error(function() client.workflow_service:get_system_info({}, { rpc_timeout = 5 }) end)
    client:close()
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {})
    assert.is_false(ok)
    assert.matches("channel to 127.0.0.1:1 is closed", err)
  end)
end)

describe("raw workflow service", function()
  local client
  setup(function() client = connect() end)
  teardown(function() client:close() end)

  it("starts a workflow the Python worker completes, seen through raw history", function()
    local id = helper.unique_id("raw-greet")
    local started = start_raw(client, id, "Greet", '"World"')
    assert.is_string(started.run_id)
    local close = await_close(client, id, started.run_id)
    assert.equals("WORKFLOW_EXECUTION_COMPLETED", close.event_type)
    local result = close.workflow_execution_completed_event_attributes.result.payloads[1]
    assert.equals("json/plain", result.metadata.encoding)
    assert.equals('"Hello, World!"', result.data)
    -- the full history, also raw: started, tasks, the activity, completed
    local hist = client.workflow_service:get_workflow_execution_history{
      namespace = helper.namespace, execution = { workflow_id = id, run_id = started.run_id },
    }
    local types = {}
    for _, e in ipairs(hist.history.events) do types[#types + 1] = e.event_type end
    assert.equals("WORKFLOW_EXECUTION_STARTED", types[1])
    assert.equals("WORKFLOW_EXECUTION_COMPLETED", types[#types])
    assert.truthy(table.concat(types, ","):find("ACTIVITY_TASK_COMPLETED", 1, true))
    local attrs = hist.history.events[1].workflow_execution_started_event_attributes
    assert.equals("Greet", attrs.workflow_type.name)
    assert.equals(helper.task_queue, attrs.task_queue.name)
    assert.equals('"World"', attrs.input.payloads[1].data)
    assert.equals(client.identity, attrs.identity)
    -- the other side: the CLI shows the same result
    local desc = helper.cli_json("workflow", "describe", "--workflow-id", id)
    assert.equals("WORKFLOW_EXECUTION_STATUS_COMPLETED", desc.workflowExecutionInfo.status)
  end)

  it("starting the same id twice raises ALREADY_EXISTS with the decoded failure", function()
    local id = helper.unique_id("raw-twice")
    local first = start_raw(client, id, "WaitForSignal")
    local ok, err = pcall(start_raw, client, id, "WaitForSignal")
    assert.is_false(ok)
    assert.is_true(temporal.errors.is(err, "RPCError"))
    assert.equals("ALREADY_EXISTS", err.status)
    assert.equals(6, err.code)
    local detail = temporal.errors.detail(err, "WorkflowExecutionAlreadyStartedFailure")
    assert.is_table(detail)
    assert.equals("temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure", detail["@type"])
    assert.equals(first.run_id, detail.run_id)
    assert.is_string(detail.start_request_id)
    assert.matches("ALREADY_EXISTS", tostring(err))
    client.workflow_service:terminate_workflow_execution{
      namespace = helper.namespace, workflow_execution = { workflow_id = id }, reason = "spec done" }
  end)

  it("rejects bad requests before sending, naming the field", function()
    assert.has_error(function() client.workflow_service:start_workflow_execution{ workflowId = "x" } end,
      "request: unknown field 'workflowId' in temporal.api.workflowservice.v1.StartWorkflowExecutionRequest")
    assert.has_error(function()
      client.workflow_service:start_workflow_execution{ workflow_type = { name = 7 } }
    end, "request.workflow_type.name: expected a string, got number")
    assert.has_error(function()
      client.workflow_service:start_workflow_execution{ workflow_id_reuse_policy = "SOMETIMES" }
    end, "request.workflow_id_reuse_policy: unknown temporal.api.enums.v1.WorkflowIdReusePolicy value 'SOMETIMES'")
    assert.has_error(function() client.workflow_service:get_system_info({}, { timeout = 1 }) end,
      "get_system_info: unknown option 'timeout'")
    assert.is_nil(client.workflow_service.no_such_method)
  end)

  it("maps NOT_FOUND and carries per-call metadata", function()
    local ok, err = pcall(function()
      return client.workflow_service:describe_workflow_execution({
        namespace = helper.namespace, execution = { workflow_id = helper.unique_id("missing") },
      }, { rpc_metadata = { ["x-lua-spec"] = "yes" }, rpc_timeout = 10 })
    end)
    assert.is_false(ok)
    assert.equals("NOT_FOUND", err.status)
    assert.equals("/" .. WS .. "/DescribeWorkflowExecution", err.method)
  end)

  it("reaches the operator service", function()
    local sa = client.operator_service:list_search_attributes{ namespace = helper.namespace }
    assert.equals("KEYWORD", sa.custom_attributes.CustomKeyword)
    assert.equals("INT", sa.custom_attributes.CustomInt)
  end)
end)

describe("concurrency", function()
  it("keeps many calls in flight at once on one channel", function()
    local client = connect()
    local n = 8
    local ids, runs = {}, {}
    for i = 1, n do
      ids[i] = helper.unique_id("overlap-" .. i)
      runs[i] = start_raw(client, ids[i], "WaitForSignal").run_id
    end
    -- one long poll per workflow, each in its own task
    local order = {}
    local tasks = {}
    for i = 1, n do
      tasks[i] = temporal.spawn(function()
        local ev = await_close(client, ids[i], runs[i])
        order[#order + 1] = i
        return ev.event_type
      end)
    end
    -- run the tasks until every long poll is on the wire together
    local t0 = core.now()
    while core.inflight() < n and core.now() - t0 < 30 do temporal.step(0.05) end
    assert.equals(n, core.inflight())
    assert.equals(0, #order)
    -- release them in reverse order: no poll can have blocked another
    for i = n, 1, -1 do
      client.workflow_service:signal_workflow_execution{
        namespace = helper.namespace, workflow_execution = { workflow_id = ids[i] },
        signal_name = "approve", request_id = helper.unique_id("sig"),
      }
    end
    for i = 1, n do assert.equals("WORKFLOW_EXECUTION_COMPLETED", tasks[i]:wait()) end
    assert.equals(n, #order)
    assert.equals(0, core.inflight())
    client:close()
  end)

  it("spawned tasks overlap sleeps; errors surface through wait", function()
    local t0 = core.now()
    local a = temporal.spawn(function() temporal.sleep(0.3); return "a" end)
    local b = temporal.spawn(function() temporal.sleep(0.3); return "b" end)
    assert.equals("a", a:wait())
    assert.equals("b", b:wait())
    -- both slept 0.3 s at once: far from the 0.6 s in sequence (a bound, not a benchmark)
    assert.is_true(core.now() - t0 < 0.55)
    local bad = temporal.spawn(function() error({ code = 42 }) end)
    local ok, err = pcall(bad.wait, bad)
    assert.is_false(ok)
    assert.equals(42, err.code)
  end)
end)

describe("host loop integration", function()
  it("a C program with its own loop drives the client through pollfd/step #lua54", function()
    local ok, out, err = helper.run({ "build/host_loop", helper.address, helper.namespace })
    assert.is_true(ok, err)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    for i = 1, 5 do
      assert.truthy(out:find(("task %d: server %%d"):format(i)) or out:find("task " .. i .. ": server", 1, true))
    end
    assert.matches("namespace " .. helper.namespace, out)
    assert.matches("frames: %d+, frames with completions: [1-9]", lines[#lines])
  end)

  it("exposes the protocol from Lua", function()
    assert.is_number(temporal.pollfd())
    assert.equals("r", temporal.events())
    assert.is_nil(temporal.timeout())
    local t = temporal.spawn(function() temporal.sleep(0.2) end)
    temporal.step(0)
    local to = temporal.timeout()
    assert.is_true(to > 0 and to <= 0.2)
    t:wait()
  end)
end)

describe("stock lua5.4", function()
  it("loads the module with require and runs a call #lua54", function()
    local code = ("local t = require('temporal'); local c = t.connect(%q); print(t.VERSION, c.workflow_service:get_system_info{}.server_version)")
      :format(helper.address)
    local ok, out, err = helper.run({ "lua5.4", "-e", code })
    assert.is_true(ok, err)
    assert.matches("^%d+%.%d+%.%d+\t%d+%.%d+", out)
  end)
end)

describe("temporal-lua", function()
  it("makes RPCs at the REPL prompt and keeps going after an RPC error", function()
    local input = table.concat({
      ("c = temporal.connect(%q)"):format(helper.address),
      "c.workflow_service:get_system_info{}.server_version",
      ("c.workflow_service:describe_workflow_execution{ namespace = %q, execution = { workflow_id = 'nope' } }"):format(helper.namespace),
      "t = temporal.spawn(function() return c.workflow_service:describe_namespace{ namespace = 'default' }.namespace_info.name end)",
      "t:wait()",
      "",
    }, "\n")
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(input)
    f:close()
    local p = assert(io.popen(("%s -i < %s 2>&1"):format(helper.temporal_lua or "build/temporal-lua", path)))
    local out = p:read("a")
    p:close()
    os.remove(path)
    assert.matches('"%d+%.%d+%.%d+"', out)                  -- the server version, printed as a string
    assert.matches("RPCError: DescribeWorkflowExecution: NOT_FOUND", out)
    assert.matches('"default"', out)                        -- the spawned task's result after the error
  end)
end)
