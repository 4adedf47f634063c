-- The workflow surface of the Client (temporal.workflow) against the real server and the
-- Python worker: every contract line checked by what the server, the temporal CLI or the
-- worker saw, not only by what the Lua side returns.
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local helper = require("support.helper")
local proxies = require("support.proxies")
local temporal = require("temporal")
local errors = temporal.errors

local TQ = helper.task_queue

local function connect(opts)
  opts = opts or {}
  opts.namespace = opts.namespace or helper.namespace
  return temporal.connect(helper.address, opts)
end

local client
local function id(prefix) return helper.unique_id(prefix or "wf") end

-- Runs fn, expects it to raise; returns the error.
local function raises(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  return err
end

local function cli_describe(wid)
  return helper.cli_json("workflow", "describe", "--workflow-id", wid)
end

local function py_describe(wid, run_id)
  return helper.python_json([[
    h = client.get_workflow_handle(args["id"], run_id=args.get("run_id"))
    d = await h.describe()
    print(json.dumps({
      "status": d.status.name if d.status else None,
      "summary": await d.static_summary(),
      "details": await d.static_details(),
      "memo": await d.memo(),
      "task_queue": d.task_queue,
      "workflow_type": d.workflow_type,
    }))
  ]], { id = wid, run_id = run_id })
end

setup(function() client = connect() end)
teardown(function() if client then client:close() end end)

describe("start_workflow", function()
  it("starts on the worker and returns a handle with the ids", function()
    local wid = id("greet")
    local h = client:start_workflow("Greet", { id = wid, task_queue = TQ, args = { "World" } })
    assert.equals(wid, h.id)
    assert.is_nil(h.run_id)
    assert.is_string(h.result_run_id)
    assert.equals(h.result_run_id, h.first_execution_run_id)
    assert.matches("temporal.WorkflowHandle%(id=" .. wid:gsub("%-", "%%-"), tostring(h))
    assert.is_userdata(h)
    assert.has_error(function() h.id = "other" end, "temporal.WorkflowHandle: field 'id' cannot be set")
    assert.equals("Hello, World!", h:result())
    local d = cli_describe(wid)
    assert.equals(h.result_run_id, d.workflowExecutionInfo.execution.runId)
    assert.equals("Greet", d.workflowExecutionInfo.type.name)
  end)

  it("execute_workflow returns the result", function()
    assert.equals("Hello, Lua!", client:execute_workflow("Greet", { id = id(), task_queue = TQ, args = { "Lua" } }))
  end)

  it("passes args honouring .n so nil arguments survive (seen by the worker)", function()
    local r = client:execute_workflow("Echo", { id = id("echo"), task_queue = TQ,
      args = compat.pack(1, nil, "x", 2.5, nil) })
    assert.equals(5, #r.types)
    assert.same({ "int", "NoneType", "str", "float", "NoneType" }, { compat.unpack(r.types, 1, 5) })
    assert.equals(1, r.values[1])
    assert.equals(compat.math_type(1), compat.math_type(r.values[1]))
    assert.equals("x", r.values[3])
    -- no args at all: the workflow receives none
    local r0 = client:execute_workflow("Echo", { id = id("echo"), task_queue = TQ })
    assert.equals(0, #r0.types)
  end)

  it("sends every start option; the worker, describe and the CLI see them", function()
    local wid = id("info")
    local h = client:start_workflow("Info", {
      id = wid, task_queue = TQ, args = { "a" },
      execution_timeout = 600, run_timeout = 300, task_timeout = 7,
      id_reuse_policy = "REJECT_DUPLICATE", id_conflict_policy = "FAIL",
      retry_policy = { initial_interval = 2, backoff_coefficient = 3, maximum_interval = 20,
        maximum_attempts = 4, non_retryable_error_types = { "Bad" } },
      memo = { owner = "lua", n = 7 },
      static_summary = "a summary", static_details = "some **details**",
      priority = { priority_key = 3, fairness_key = "tenant-a", fairness_weight = 2.5 },
    })
    local r = h:result()
    assert.same({ "a" }, { compat.unpack(r.args, 1, #r.args) })
    assert.equals(wid, r.workflow_id)
    assert.equals(TQ, r.task_queue)
    assert.equals(600, r.execution_timeout)
    assert.equals(300, r.run_timeout)
    assert.equals(7, r.task_timeout)
    assert.equals("lua", r.memo.owner)
    assert.equals(7, r.memo.n)
    -- retry policy and priority as recorded in the started event
    local started = h:fetch_history()[1]
    assert.equals("WORKFLOW_EXECUTION_STARTED", started.event_type)
    local a = started.workflow_execution_started_event_attributes
    assert.equals(2, a.retry_policy.initial_interval)
    assert.equals(3, a.retry_policy.backoff_coefficient)
    assert.equals(20, a.retry_policy.maximum_interval)
    assert.equals(4, a.retry_policy.maximum_attempts)
    assert.same({ "Bad" }, a.retry_policy.non_retryable_error_types)
    assert.equals(3, a.priority.priority_key)
    assert.equals("tenant-a", a.priority.fairness_key)
    assert.near(2.5, a.priority.fairness_weight, 1e-6)
    assert.equals(client.identity, a.identity)
    -- user metadata, decoded by the Python SDK
    local py = py_describe(wid)
    assert.equals("a summary", py.summary)
    assert.equals("some **details**", py.details)
    assert.equals("COMPLETED", py.status)
    assert.equals(7, py.memo.n)
    -- REJECT_DUPLICATE: a closed workflow's id cannot be reused
    local err = raises(client.start_workflow, client, "Info", { id = wid, task_queue = TQ,
      id_reuse_policy = "REJECT_DUPLICATE" })
    assert.is_true(errors.is(err, "WorkflowAlreadyStartedError"), tostring(err))
  end)

  it("start_delay delays the first workflow task", function()
    local wid = id("delay")
    local h = client:start_workflow("Greet", { id = wid, task_queue = TQ, args = { "later" }, start_delay = 3600 })
    local d = h:describe()
    assert.equals("RUNNING", d.status)
    assert.is_true(d.execution_time - d.start_time > 3500, "execution_time is the delayed start")
    local a = h:fetch_history()[1].workflow_execution_started_event_attributes
    assert.equals(3600, a.first_workflow_task_backoff)
    h:terminate{ reason = "done with the spec" }
  end)

  it("cron_schedule is recorded (the first run waits for the schedule)", function()
    local wid = id("cron")
    local h = client:start_workflow("Greet", { id = wid, task_queue = TQ, args = { "cron" },
      cron_schedule = "0 0 1 1 *" })
    local a = h:fetch_history()[1].workflow_execution_started_event_attributes
    assert.equals("0 0 1 1 *", a.cron_schedule)
    assert.is_true(a.first_workflow_task_backoff > 0)
    h:terminate{}
  end)

  it("raises WorkflowAlreadyStartedError with the running workflow's ids", function()
    local wid = id("dup")
    local h = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ })
    local err = raises(client.start_workflow, client, "WaitForSignal", { id = wid, task_queue = TQ })
    assert.is_true(errors.is(err, "WorkflowAlreadyStartedError"), tostring(err))
    assert.equals(wid, err.workflow_id)
    assert.equals("WaitForSignal", err.workflow_type)
    assert.equals(h.result_run_id, err.run_id)
    assert.equals("ALREADY_EXISTS", err.cause.status)
    -- USE_EXISTING returns the running workflow instead
    local h2 = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ, id_conflict_policy = "USE_EXISTING" })
    assert.equals(h.result_run_id, h2.result_run_id)
    -- TERMINATE_EXISTING replaces it
    local h3 = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ, id_conflict_policy = "terminate_existing" })
    assert.not_equals(h.result_run_id, h3.result_run_id)
    assert.equals("TERMINATED", client:get_workflow_handle(wid, { run_id = h.result_run_id }):describe().status)
    h3:terminate{}
  end)

  it("signal-with-start delivers the signal with the start", function()
    local wid = id("sws")
    local h = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ,
      start_signal = "approve", start_signal_args = { "go", 1 } })
    -- it started the workflow: the handle knows the chain's first run (as Python 1.35)
    assert.is_string(h.result_run_id)
    assert.equals(h.result_run_id, h.first_execution_run_id)
    local r = h:result()
    assert.equals(1, #r)
    assert.equals("go", r[1][1])
    assert.equals(1, r[1][2])
    local events = h:fetch_history()
    assert.equals("WORKFLOW_EXECUTION_SIGNALED", events[2].event_type)
  end)

  it("rejects bad options, naming them", function()
    local function msg(opts, wf)
      return tostring(raises(client.start_workflow, client, wf or "Greet", opts))
    end
    assert.matches("start_workflow: unknown option 'task_queeu'", msg({ id = "x", task_queeu = "y" }), 1, true)
    assert.matches("option 'task_queue' is required", msg({ id = "x" }), 1, true)
    assert.matches("option 'id' is required", msg({ task_queue = TQ }), 1, true)
    assert.matches("option 'id' must be a string, got number", msg({ id = 5, task_queue = TQ }), 1, true)
    assert.matches("option 'args' must be a sequence", msg({ id = "x", task_queue = TQ, args = "a" }), 1, true)
    -- shapes the fast path's first check (core.keys_within) lets through, refused after it
    assert.matches("option 'id' must not be empty", msg({ id = "", task_queue = TQ }), 1, true)
    assert.matches("option 'task_queue' must not be empty", msg({ id = "x", task_queue = "" }), 1, true)
    assert.matches("option 'args': field n must be a non-negative integer", msg({ id = "x", task_queue = TQ, args = { n = -1 } }), 1, true)
    assert.matches("option 'args': field n must be a non-negative integer", msg({ id = "x", task_queue = TQ, args = { n = 1.5 } }), 1, true)
    assert.matches("option 'execution_timeout' must be a non-negative number",
      msg({ id = "x", task_queue = TQ, execution_timeout = -1 }), 1, true)
    assert.matches("option 'id_reuse_policy' must be one of", msg({ id = "x", task_queue = TQ, id_reuse_policy = "SOMETIMES" }), 1, true)
    assert.matches("retry_policy: unknown option 'max_attempts'",
      msg({ id = "x", task_queue = TQ, retry_policy = { max_attempts = 1 } }), 1, true)
    assert.matches("retry_policy: option 'backoff_coefficient' must be at least 1",
      msg({ id = "x", task_queue = TQ, retry_policy = { backoff_coefficient = 0.5 } }), 1, true)
    assert.matches("priority: unknown option 'key'", msg({ id = "x", task_queue = TQ, priority = { key = 1 } }), 1, true)
    assert.matches("option 'rpc_timeout' must be a", msg({ id = "x", task_queue = TQ, rpc_timeout = "1" }), 1, true)
    assert.matches("workflow must be a workflow type name", msg({ id = "x", task_queue = TQ }, 42), 1, true)
    assert.matches("options must be a table", tostring(raises(client.start_workflow, client, "Greet", "x")), 1, true)
  end)

  it("core.keys_within checks a table's keys and value types in one call", function()
    local keys_within = require("temporal.core").keys_within
    local shape = { id = "string", args = "table" }
    assert.is_true(keys_within({}, shape))
    assert.is_true(keys_within({ id = "x", args = {} }, shape))
    assert.is_false(keys_within({ id = 1 }, shape))
    assert.is_false(keys_within({ id = "x", other = "y" }, shape))
    assert.is_false(keys_within({ "x" }, shape))
    assert.is_false(keys_within(setmetatable({ id = "x" }, {}), shape))
    assert.is_false(keys_within(nil, shape))
    assert.is_false(keys_within("id", shape))
    assert.has_error(function() keys_within({}, nil) end)
  end)

  it("sends the same request from its fast path (common options, no interceptors) as from the full one", function()
    -- The full path is forced by a pass-through interceptor; the requests are taken at
    -- core.unary on their way to the server. Only the ids differ.
    local core = require("temporal.core")
    local sent = {}
    local unary = core.unary
    core.unary = function(ch, service, method, request, ...)
      if method == "StartWorkflowExecution" then sent[#sent + 1] = request end
      return unary(ch, service, method, request, ...)
    end
    local through = connect({ interceptors = { { start_workflow = function(nxt, inp) return nxt(inp) end } } })
    local tq = id("unpolled-tq")
    local handles = {}
    local ok, err = pcall(function()
      for i, extra in ipairs({
        {},
        { args = { "x", nil, n = 2 }, execution_timeout = 600, run_timeout = 300.5, task_timeout = 7,
          start_delay = 3600, id_reuse_policy = "reject_duplicate", id_conflict_policy = "Fail",
          cron_schedule = "", request_eager_start = false, rpc_timeout = 30, rpc_metadata = { ["x-fast"] = "1" } },
        { args = {}, cron_schedule = "0 0 1 1 *", request_eager_start = true, id_reuse_policy = "ALLOW_DUPLICATE_FAILED_ONLY",
          id_conflict_policy = "use_existing", execution_timeout = 0 },
      }) do
        local reqs = {}
        for _, c in ipairs({ client, through }) do
          local o = { id = id("fast" .. i), task_queue = tq }
          for k, v in pairs(extra) do o[k] = v end
          handles[#handles + 1] = c:start_workflow("Greet", o)
          local req = assert(sent[#sent])
          assert.equals(o.id, req.workflow_id)
          assert.is_string(req.request_id)
          local copy = {}
          for k, v in pairs(req) do copy[k] = v end
          copy.workflow_id, copy.request_id = nil, nil
          reqs[#reqs + 1] = copy
        end
        assert.same(reqs[2], reqs[1])
      end
    end)
    core.unary = unary
    through:close()
    for _, h in ipairs(handles) do pcall(h.terminate, h, {}) end
    assert(ok, err)
    assert.equals(6, #sent)
  end)

  it("honours rpc_timeout", function()
    -- A peer that takes the request and never answers (a frozen TCP forwarder in front of
    -- the server): the start ends at its own deadline. (A deadline too short for any round
    -- trip is no good here: gRPC then races the client's deadline against the server's
    -- answer to an expired request, and about 2% of such calls come back CANCELLED.)
    local fwd = proxies.forwarder(helper.address)
    local c = temporal.connect(fwd.address, { namespace = helper.namespace, keep_alive = false, retry_config = false })
    assert.is_string(c.workflow_service:get_system_info({}).server_version)
    fwd:freeze()
    local wid = id()
    local err = raises(client.start_workflow, c, "Greet", { id = wid, task_queue = TQ, rpc_timeout = 1 })
    fwd:stop()
    c:close()
    assert.is_true(errors.is(err, "RPCError"), tostring(err))
    assert.equals("DEADLINE_EXCEEDED", err.status)
    -- the request never reached the server
    local missing = raises(client:get_workflow_handle(wid).describe, client:get_workflow_handle(wid))
    assert.equals("NOT_FOUND", missing.status)
  end)
end)

describe("get_workflow_handle", function()
  it("makes a handle without a call, pinned to a run when asked", function()
    local wid = id("gh")
    local first = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ })
    local h = client:get_workflow_handle(wid)
    assert.equals(wid, h.id)
    assert.is_nil(h.run_id)
    local pinned = client:get_workflow_handle(wid, { run_id = first.result_run_id, first_execution_run_id = first.result_run_id })
    assert.equals(first.result_run_id, pinned.run_id)
    assert.equals(first.result_run_id, pinned.result_run_id)
    assert.equals(first.result_run_id, pinned.first_execution_run_id)
    assert.equals(first.result_run_id, pinned:describe().run_id)
    h:signal("approve")
    assert.same({ {} }, h:result())
    assert.matches("unknown option 'runid'",
      tostring(raises(client.get_workflow_handle, client, wid, { runid = "x" })), 1, true)
  end)

  it("scopes cancel to the first execution's chain", function()
    local wid = id("chain")
    local h1 = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ })
    h1:terminate{}
    local h2 = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ })
    -- a handle for the old chain must not cancel the new run
    local old = client:get_workflow_handle(wid, { first_execution_run_id = h1.result_run_id })
    local err = raises(old.cancel, old, {})
    assert.is_true(errors.is(err, "RPCError"), tostring(err))
    assert.equals("RUNNING", h2:describe().status)
    h2:terminate{}
  end)
end)

describe("result", function()
  it("raises WorkflowFailureError with the decoded ApplicationError as cause", function()
    local h = client:start_workflow("Fail", { id = id("fail"), task_queue = TQ, args = { "it broke" } })
    local err = raises(h.result, h)
    assert.is_true(errors.is(err, "WorkflowFailureError"), tostring(err))
    assert.is_true(errors.is(err.cause, "ApplicationError"), tostring(err.cause))
    assert.equals("it broke", err.cause.message)
    assert.equals("MyError", err.cause.type)
    assert.is_true(err.cause.non_retryable)
    assert.equals(1, err.cause.details[1].detail)
    assert.matches("WorkflowFailureError", tostring(err))
    assert.matches("it broke", tostring(err))
  end)

  it("follows continue-as-new, or raises WorkflowContinuedAsNewError when told not to", function()
    local h = client:start_workflow("ContinueAsNew", { id = id("can"), task_queue = TQ, args = { 2 } })
    assert.equals("done", h:result())
    local first = client:get_workflow_handle(h.id, { run_id = h.result_run_id })
    local err = raises(first.result, first, { follow_runs = false })
    assert.is_true(errors.is(err, "WorkflowContinuedAsNewError"), tostring(err))
    assert.is_string(err.new_execution_run_id)
    assert.not_equals(h.result_run_id, err.new_execution_run_id)
    assert.equals("CONTINUED_AS_NEW", first:describe().status)
  end)

  it("follows the retry chain", function()
    local h = client:start_workflow("RetryOnce", { id = id("retry"), task_queue = TQ,
      retry_policy = { initial_interval = 1, maximum_attempts = 3 } })
    local r = h:result()
    assert.equals(2, r.attempt)
    assert.not_equals(h.result_run_id, r.run_id)
    -- the first run's history says it failed; the close-event long poll reports the retry
    -- as a continuation to the next run (as the Python SDK sees it too)
    local first = client:get_workflow_handle(h.id, { run_id = h.result_run_id })
    local events = first:fetch_history()
    local failed = events[#events].workflow_execution_failed_event_attributes
    assert.equals("Flaky", failed.failure.application_failure_info.type)
    assert.equals(r.run_id, failed.new_execution_run_id)
    local err = raises(first.result, first, { follow_runs = false })
    assert.is_true(errors.is(err, "WorkflowContinuedAsNewError"), tostring(err))
    assert.equals(r.run_id, err.new_execution_run_id)
  end)

  it("maps cancel, terminate and timeout to WorkflowFailureError causes", function()
    local h = client:start_workflow("WaitForSignal", { id = id("cancel"), task_queue = TQ })
    h:cancel{ reason = "not needed" }
    local err = raises(h.result, h)
    assert.is_true(errors.is(err, "WorkflowFailureError"), tostring(err))
    assert.is_true(errors.is(err.cause, "CancelledError"), tostring(err.cause))
    assert.equals("CANCELED", h:describe().status)
    local req
    for _, ev in ipairs(h:fetch_history()) do
      if ev.event_type == "WORKFLOW_EXECUTION_CANCEL_REQUESTED" then req = ev end
    end
    assert.equals("not needed", req.workflow_execution_cancel_requested_event_attributes.cause)
    assert.equals(client.identity, req.workflow_execution_cancel_requested_event_attributes.identity)

    h = client:start_workflow("WaitForSignal", { id = id("term"), task_queue = TQ })
    h:terminate{ reason = "enough", details = { "why", 42 } }
    err = raises(h.result, h)
    assert.is_true(errors.is(err.cause, "TerminatedError"), tostring(err.cause))
    assert.equals("enough", err.cause.message)
    assert.equals("why", err.cause.details[1])
    assert.equals(42, err.cause.details[2])
    local d = cli_describe(h.id)
    assert.matches("TERMINATED", d.workflowExecutionInfo.status)

    h = client:start_workflow("Slow", { id = id("timeout"), task_queue = TQ, args = { 30 }, execution_timeout = 1 })
    err = raises(h.result, h)
    assert.is_true(errors.is(err.cause, "TimeoutError"), tostring(err.cause))
    assert.equals("TIMED_OUT", h:describe().status)
  end)

  it("long-polls across empty pages with a short rpc_timeout per poll", function()
    local h = client:start_workflow("Slow", { id = id("slow"), task_queue = TQ, args = { 1.5 } })
    -- the server answers each 0.3 s poll with an empty page before the deadline; result()
    -- keeps polling with the page token until the close event comes
    local t0 = temporal.core.now()
    assert.equals(1.5, h:result({ rpc_timeout = 0.3 }))
    assert.is_true(temporal.core.now() - t0 >= 1.4)
  end)

  it("returns the value of a workflow that a signal finishes", function()
    local h = client:start_workflow("UpdateFails", { id = id("nil"), task_queue = TQ })
    h:signal("done")
    assert.equals("finished", h:result())
  end)
end)

describe("describe", function()
  it("decodes status, types, times, memo and raw", function()
    local wid = id("desc")
    local before = os.time()
    local h = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ, memo = { k = { 1, 2 } },
      static_summary = "sum" })
    local d = h:describe()
    assert.equals(wid, d.id)
    assert.equals(h.result_run_id, d.run_id)
    assert.equals("RUNNING", d.status)
    assert.equals("WaitForSignal", d.workflow_type)
    assert.equals(TQ, d.task_queue)
    assert.equals(helper.namespace, d.namespace)
    assert.is_true(d.start_time >= before - 5 and d.start_time <= os.time() + 5)
    assert.is_nil(d.close_time)
    assert.is_number(d.execution_time)
    assert.is_true(d.history_length >= 1)
    assert.same({ 1, 2 }, { d.memo.k[1], d.memo.k[2] })
    assert.equals("sum", d.static_summary)
    assert.is_nil(d.parent_id)
    assert.is_table(d.raw.workflow_execution_info)
    assert.is_table(d.raw_info)
    h:signal("approve")
    h:result()
    d = h:describe()
    assert.equals("COMPLETED", d.status)
    assert.is_true(d.close_time >= d.start_time)
    assert.equals(cli_describe(wid).workflowExecutionInfo.historyLength + 0, d.history_length)
  end)

  it("checks rpc options on every call", function()
    local h = client:get_workflow_handle(id("none"))
    assert.matches("describe: option 'rpc_metadata' must map strings to strings",
      tostring(raises(h.describe, h, { rpc_metadata = { x = 1 } })), 1, true)
    assert.matches("cancel: option 'rpc_timeout' must be a number",
      tostring(raises(h.cancel, h, { rpc_timeout = "soon" })), 1, true)
    assert.matches("terminate: unknown option 'reasons'", tostring(raises(h.terminate, h, { reasons = "x" })), 1, true)
    assert.matches("count_workflows: unknown option 'limit'",
      tostring(raises(client.count_workflows, client, "", { limit = 1 })), 1, true)
    -- well-formed rpc options pass through (the server does not echo metadata, so this
    -- only proves the call path accepts them)
    local running = client:start_workflow("WaitForSignal", { id = id("md"), task_queue = TQ,
      rpc_metadata = { ["x-lua-spec"] = "1" }, rpc_timeout = 20 })
    assert.equals("RUNNING", running:describe({ rpc_metadata = { ["x-lua-spec"] = "1" }, rpc_timeout = 5 }).status)
    running:terminate{ rpc_metadata = { ["x-lua-spec"] = "1" } }
  end)

  it("raises RPCError NOT_FOUND for an unknown workflow", function()
    local err = raises(function() return client:get_workflow_handle(id("none")):describe() end)
    assert.is_true(errors.is(err, "RPCError"), tostring(err))
    assert.equals("NOT_FOUND", err.status)
  end)
end)

describe("signal and query", function()
  it("signal sends varargs (nils kept); the workflow records them", function()
    local h = client:start_workflow("WaitForSignal", { id = id("sig"), task_queue = TQ })
    h:signal_with_options("approve", { args = { "first" }, rpc_timeout = 10 })
    h:signal("approve", 1, nil, "three")
    local status = h:query("status")
    assert.is_true(status.approved)
    local r = h:result()
    assert.equals(2, #r)
    assert.equals("first", r[1][1])
    assert.equals(1, r[2][1])
    assert.not_equals("three", r[2][2])  -- the nil kept its place
    assert.equals("three", r[2][3])
    assert.matches("unknown option 'timeout'",
      tostring(raises(h.signal_with_options, h, "approve", { timeout = 1 })), 1, true)
  end)

  it("query raises WorkflowQueryFailedError and WorkflowQueryRejectedError", function()
    local h = client:start_workflow("UpdateFails", { id = id("qf"), task_queue = TQ })
    local err = raises(h.query, h, "boom_query")
    assert.is_true(errors.is(err, "WorkflowQueryFailedError"), tostring(err))
    assert.matches("query handler failed", err.message)
    err = raises(h.query, h, "no_such_query")
    assert.is_true(errors.is(err, "WorkflowQueryFailedError"), tostring(err))
    h:signal("done")
    h:result()
    -- a closed workflow: rejected when NOT_OPEN is asked for, answered otherwise
    err = raises(h.query_with_options, h, "boom_query", { reject_condition = "NOT_OPEN" })
    assert.is_true(errors.is(err, "WorkflowQueryRejectedError"), tostring(err))
    assert.equals("COMPLETED", err.status)
  end)

  it("query passes arguments and returns the decoded result", function()
    local h = client:start_workflow("WaitForSignal", { id = id("q"), task_queue = TQ })
    assert.same({ approved = false, total = 0, updates = 0 },
      (function(s) return { approved = s.approved, total = s.total, updates = s.updates } end)(h:query("status")))
    h:terminate{}
  end)
end)

describe("updates", function()
  it("execute_update returns the result; the query sees the state", function()
    local h = client:start_workflow("WaitForSignal", { id = id("upd"), task_queue = TQ })
    assert.equals(5, h:execute_update("add", { args = { 5 } }))
    assert.equals(12, h:execute_update("add", { args = { 7 }, rpc_timeout = 30 }))
    assert.equals(2, h:query("status").updates)
    h:terminate{}
  end)

  it("start_update returns a handle; get_update_handle finds the same update", function()
    local h = client:start_workflow("WaitForSignal", { id = id("upd"), task_queue = TQ })
    local u = h:start_update("add", { args = { 3 }, id = "u1", wait_for_stage = "accepted" })
    assert.equals("u1", u.id)
    assert.equals(h.id, u.workflow_id)
    assert.equals(h.result_run_id, u.workflow_run_id)
    assert.equals(3, u:result())
    assert.equals(3, h:get_update_handle("u1"):result())
    -- the same id again is the same update (not applied twice)
    local again = h:start_update("add", { args = { 3 }, id = "u1", wait_for_stage = "COMPLETED" })
    assert.equals(3, again:result())
    assert.equals(1, h:query("status").updates)
    assert.matches("ADMITTED is not supported",
      tostring(raises(h.start_update, h, "add", { wait_for_stage = "ADMITTED" })), 1, true)
    assert.matches("option 'wait_for_stage' must be one of",
      tostring(raises(h.start_update, h, "add", { wait_for_stage = "soon" })), 1, true)
    h:terminate{}
  end)

  it("raises WorkflowUpdateFailedError for a rejected or failed update", function()
    local h = client:start_workflow("WaitForSignal", { id = id("rej"), task_queue = TQ })
    local err = raises(h.execute_update, h, "add", { args = { -1 } })
    assert.is_true(errors.is(err, "WorkflowUpdateFailedError"), tostring(err))
    assert.is_true(errors.is(err.cause, "ApplicationError"), tostring(err.cause))
    assert.matches("rejects negative numbers", err.cause.message)
    assert.equals(0, h:query("status").updates)
    h:terminate{}

    h = client:start_workflow("UpdateFails", { id = id("boom"), task_queue = TQ })
    err = raises(h.execute_update, h, "boom", { args = { "kaput" } })
    assert.is_true(errors.is(err, "WorkflowUpdateFailedError"), tostring(err))
    assert.equals("BoomError", err.cause.type)
    assert.equals("kaput", err.cause.message)
    h:signal("done")
    h:result()
  end)

  it("raises WorkflowUpdateRPCTimeoutOrCancelledError when no worker accepts in time", function()
    local h = client:start_workflow("WaitForSignal", { id = id("noworker"), task_queue = id("nobody-tq") })
    local err = raises(h.start_update, h, "add", { args = { 1 }, rpc_timeout = 1 })
    assert.is_true(errors.is(err, "WorkflowUpdateRPCTimeoutOrCancelledError"), tostring(err))
    assert.is_true(errors.is(err, "RPCTimeoutOrCancelledError"))
    assert.equals("DEADLINE_EXCEEDED", err.cause.status)
    local u = h:get_update_handle("never")
    err = raises(u.result, u, { rpc_timeout = 1 })
    assert.is_true(errors.is(err, "WorkflowUpdateRPCTimeoutOrCancelledError") or errors.is(err, "RPCError"), tostring(err))
    h:terminate{}
  end)
end)

describe("update-with-start", function()
  it("starts the workflow and runs the update in one call", function()
    local wid = id("uws")
    local op = temporal.WithStartWorkflowOperation("WaitForSignal", { id = wid, task_queue = TQ,
      id_conflict_policy = "USE_EXISTING" })
    assert.equals(4, client:execute_update_with_start_workflow("add", { args = { 4 }, start_workflow_operation = op }))
    local h = op:workflow_handle()
    assert.equals(wid, h.id)
    assert.is_string(h.result_run_id)
    assert.equals(1, h:query("status").updates)
    -- again: the running workflow is used
    local op2 = temporal.WithStartWorkflowOperation("WaitForSignal", { id = wid, task_queue = TQ,
      id_conflict_policy = "USE_EXISTING" })
    local u = client:start_update_with_start_workflow("add", { args = { 6 }, start_workflow_operation = op2,
      id = "second", wait_for_stage = "ACCEPTED" })
    assert.equals("second", u.id)
    assert.equals(10, u:result())
    assert.equals(h.result_run_id, op2:workflow_handle().result_run_id)
    assert.matches("already been used", tostring(raises(client.start_update_with_start_workflow, client, "add",
      { start_workflow_operation = op2 })))
    h:terminate{}
  end)

  it("raises WorkflowAlreadyStartedError with id_conflict_policy FAIL", function()
    local wid = id("uwsfail")
    local h = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ })
    local op = temporal.WithStartWorkflowOperation("WaitForSignal", { id = wid, task_queue = TQ,
      id_conflict_policy = "FAIL" })
    local err = raises(client.execute_update_with_start_workflow, client, "add", { args = { 1 }, start_workflow_operation = op })
    assert.is_true(errors.is(err, "WorkflowAlreadyStartedError"), tostring(err))
    assert.equals(h.result_run_id, err.run_id)
    assert.equals(err, select(2, pcall(op.workflow_handle, op)))
    h:terminate{}
  end)

  it("requires id_conflict_policy and a real operation", function()
    assert.matches("option 'id_conflict_policy' is required", tostring(raises(temporal.WithStartWorkflowOperation,
      "WaitForSignal", { id = "x", task_queue = TQ })))
    assert.matches("unknown option 'start_signal'", tostring(raises(temporal.WithStartWorkflowOperation,
      "WaitForSignal", { id = "x", task_queue = TQ, id_conflict_policy = "FAIL", start_signal = "s" })))
    assert.matches("start_workflow_operation' must be", tostring(raises(client.start_update_with_start_workflow,
      client, "add", { start_workflow_operation = {} })))
  end)
end)

describe("history", function()
  it("fetch_history returns the events; history_events iterates with wait_new_event", function()
    local h = client:start_workflow("WaitForSignal", { id = id("hist"), task_queue = TQ })
    local events = h:fetch_history()
    assert.equals("WORKFLOW_EXECUTION_STARTED", events[1].event_type)
    assert.equals(1, events[1].event_id)
    -- a task follows the history live while the main chunk signals
    local seen = {}
    local follower = temporal.spawn(function()
      for ev in h:history_events{ wait_new_event = true } do seen[#seen + 1] = ev.event_type end
    end)
    temporal.sleep(0.5)
    h:signal("approve", "x")
    follower:wait()
    assert.equals("WORKFLOW_EXECUTION_STARTED", seen[1])
    assert.equals("WORKFLOW_EXECUTION_COMPLETED", seen[#seen])
    local signaled = false
    for _, t in ipairs(seen) do signaled = signaled or t == "WORKFLOW_EXECUTION_SIGNALED" end
    assert.is_true(signaled)
    -- same as the CLI's count
    local cli = helper.cli_json("workflow", "show", "--workflow-id", h.id)
    assert.equals(#cli.events, #h:fetch_history())
    local close = h:fetch_history{ event_filter_type = "CLOSE_EVENT" }
    assert.equals(1, #close)
    assert.equals("WORKFLOW_EXECUTION_COMPLETED", close[1].event_type)
    -- small pages are joined
    assert.equals(#seen, #h:fetch_history{ page_size = 2 })
  end)
end)

describe("list and count", function()
  it("lists the workflows a query selects, with limit, and counts them", function()
    local ids = {}
    for i = 1, 3 do
      ids[i] = id("list")
      client:execute_workflow("Greet", { id = ids[i], task_queue = TQ, args = { "l" .. i },
        memo = { i = i } })
    end
    local q = ("WorkflowId = '%s' OR WorkflowId = '%s' OR WorkflowId = '%s'"):format(ids[1], ids[2], ids[3])
    local found = helper.eventually(function()
      local t = {}
      for wf in client:list_workflows(q, { page_size = 2 }) do t[wf.id] = wf end
      local n = 0
      for _, wf in pairs(t) do if wf.status == "COMPLETED" then n = n + 1 end end
      return n == 3 and t
    end, 20)
    local wf = found[ids[2]]
    assert.equals("Greet", wf.workflow_type)
    assert.equals(TQ, wf.task_queue)
    assert.equals(2, wf.memo.i)
    assert.is_string(wf.run_id)
    assert.is_number(wf.close_time)
    local limited = 0
    for _ in client:list_workflows(q, { limit = 2 }) do limited = limited + 1 end
    assert.equals(2, limited)
    local c = helper.eventually(function()
      local r = client:count_workflows(q)
      return r.count == 3 and r
    end, 20)
    assert.same({}, c.groups)
    local g = client:count_workflows(q .. " GROUP BY ExecutionStatus")
    assert.equals(3, g.count)
    assert.equals(1, #g.groups)
    assert.equals(3, g.groups[1].count)
    assert.equals("Completed", g.groups[1].group_values[1])
    assert.matches("unknown option 'max'", tostring(raises(client.list_workflows, client, q, { max = 1 })), 1, true)
  end)
end)

describe("inside tasks", function()
  it("runs many workflows concurrently from tasks", function()
    local tasks = {}
    for i = 1, 5 do
      tasks[i] = temporal.spawn(function()
        return client:execute_workflow("Greet", { id = id("task"), task_queue = TQ, args = { "t" .. i } })
      end)
    end
    for i = 1, 5 do assert.equals("Hello, t" .. i .. "!", tasks[i]:wait()) end
  end)
end)

describe("search attributes", function()
  it("sends typed search attributes the worker, describe, list and the CLI see as typed", function()
    local sa = temporal.search_attributes
    local wid = id("sa")
    local when = 1767225600  -- 2026-01-01T00:00:00Z
    local h = client:start_workflow("Info", { id = wid, task_queue = TQ, search_attributes = {
      CustomKeyword = sa.keyword("blue"), CustomText = sa.text("free text"), CustomInt = sa.int(42),
      CustomDouble = sa.double(1.5), CustomBool = sa.bool(true), CustomDatetime = sa.datetime(when),
      CustomKeywordList = sa.keyword_list({ "a", "b" }),
    } })
    -- the Python workflow's own view of its typed search attributes
    local seen = h:result().search_attributes
    assert.equals("blue", seen.CustomKeyword)
    assert.equals("free text", seen.CustomText)
    assert.equals(42, seen.CustomInt)
    assert.equals("integer", compat.math_type(seen.CustomInt))
    assert.equals(1.5, seen.CustomDouble)
    assert.equals(true, seen.CustomBool)
    assert.matches("^2026%-01%-01T00:00:00", seen.CustomDatetime)
    assert.same({ "a", "b" }, seen.CustomKeywordList)
    -- describe decodes them back to Lua values
    local d = h:describe()
    assert.equals("blue", d.search_attributes.CustomKeyword)
    assert.equals(42, d.search_attributes.CustomInt)
    assert.equals(when, d.search_attributes.CustomDatetime)
    assert.same({ "a", "b" }, d.search_attributes.CustomKeywordList)
    -- the server indexed them with their types: a typed visibility query finds the run
    local found = helper.eventually(function()
      local next_run = client:list_workflows(("WorkflowId = '%s' AND CustomInt = 42 AND CustomKeyword = 'blue' AND CustomBool = true"):format(wid))
      return next_run()
    end, 20)
    assert.equals(wid, found.id)
    assert.equals(1.5, found.search_attributes.CustomDouble)
    -- untyped values are refused with a pointer to the helpers
    local err = raises(client.start_workflow, client, "Info",
      { id = id("sa-bad"), task_queue = TQ, search_attributes = { CustomKeyword = "blue" } })
    assert.matches("CustomKeyword", tostring(err))
  end)
end)
