-- The rest of the client surface against real servers: health, system info, task queues,
-- reset, namespaces, search attributes, and the legacy worker versioning wrappers (refused
-- by the test bed's server, served by a private one that enables them).
local helper = require("support.helper")
local extra_server = require("support.extra_server")
local temporal = require("temporal")

local errors = temporal.errors

local function connect(address, namespace)
  return temporal.connect(address or helper.address, { namespace = namespace or helper.namespace })
end

local function json_payload(v)
  return { metadata = { encoding = "json/plain" }, data = helper.json.encode(v) }
end

-- Starts Echo(args...) with the raw service and waits until the worker completed it.
local function run_echo(client, ...)
  local id = helper.unique_id("ops-echo")
  local payloads = {}
  for i, v in ipairs({ ... }) do payloads[i] = json_payload(v) end
  local started = client.workflow_service:start_workflow_execution{
    namespace = helper.namespace, workflow_id = id, workflow_type = { name = "Echo" },
    task_queue = { name = helper.task_queue }, input = { payloads = payloads },
    request_id = helper.unique_id("req"),
  }
  helper.eventually(function()
    local d = helper.cli_json("workflow", "describe", "--workflow-id", id, "--run-id", started.run_id)
    return d.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
  end, 30)
  return id, started.run_id
end

describe("health and system info", function()
  local client
  setup(function() client = connect() end)
  teardown(function() client:close() end)

  it("check_health reports the frontend serving", function()
    local ok, status = client:check_health()
    assert.is_true(ok)
    assert.equals("SERVING", status)
    assert.has_error(function() client:check_health({ timeout = 1 }) end, "check_health: unknown option 'timeout'")
  end)

  it("check_health raises RPCError when nothing answers", function()
    local c = temporal.connect("127.0.0.1:1", { lazy = true })
    local ok, err = pcall(c.check_health, c, { rpc_timeout = 3 })
    assert.is_false(ok)
    assert.is_true(errors.is(err, "RPCError"))
    c:close()
  end)

  it("get_system_info matches what the CLI reports", function()
    local info = client:get_system_info({ rpc_timeout = 10 })
    local cli = helper.cli_json("operator", "cluster", "describe")
    assert.equals(cli.serverVersion, info.server_version)
    assert.is_true(info.capabilities.supports_schedules)
    assert.is_true(info.capabilities.signal_and_query_header)
  end)
end)

describe("describe_task_queue", function()
  local client
  setup(function() client = connect() end)
  teardown(function() client:close() end)

  it("lists the Python worker among the pollers, for workflow and activity tasks", function()
    local d = client:describe_task_queue(helper.task_queue, { report_stats = true })
    assert.is_true(#d.pollers >= 1)
    local p = d.pollers[1]
    assert.matches("^%d+@", p.identity)          -- the Python SDK's default identity: pid@host
    assert.is_number(p.last_access_time)
    assert.is_true(math.abs(p.last_access_time - os.time()) < 300)
    assert.is_table(d.stats)
    assert.is_number(d.stats.approximate_backlog_count)
    local a = client:describe_task_queue(helper.task_queue, { task_queue_type = "ACTIVITY" })
    assert.is_true(#a.pollers >= 1)
    -- a queue nobody polls
    assert.same({}, client:describe_task_queue(helper.unique_id("nobody")).pollers)
  end)

  it("rejects bad arguments, naming them", function()
    assert.has_error(function() client:describe_task_queue("") end, "task_queue: expected a non-empty string, got string")
    assert.has_error(function() client:describe_task_queue("q", { task_queue_type = "WORKFLOWS" }) end,
      "task_queue_type: unknown value WORKFLOWS (expected one of ACTIVITY, NEXUS, WORKFLOW)")
    assert.has_error(function() client:describe_task_queue("q", { report = true }) end,
      "describe_task_queue: unknown option 'report'")
  end)
end)

describe("reset_workflow", function()
  local client
  setup(function() client = connect() end)
  teardown(function() client:close() end)

  it("resets to the first workflow task: a new run the worker completes again", function()
    local id, run_id = run_echo(client, "again", 2)
    local new_run = client:reset_workflow(id, { reset_type = "FIRST_WORKFLOW_TASK", reason = "spec" })
    assert.is_string(new_run)
    assert.are_not.equals(run_id, new_run)
    local d = helper.eventually(function()
      local x = helper.cli_json("workflow", "describe", "--workflow-id", id, "--run-id", new_run)
      return x.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_COMPLETED" and x
    end, 30)
    assert.same({ "again", 2 }, d.result.values)
    -- the history of the new run records the reset
    local hist = client.workflow_service:get_workflow_execution_history{
      namespace = helper.namespace, execution = { workflow_id = id, run_id = new_run },
    }
    local found = false
    for _, e in ipairs(hist.history.events) do
      local a = e.workflow_task_failed_event_attributes
      if a and a.cause == "RESET_WORKFLOW" then
        found = true
        assert.equals("spec", a.failure and a.failure.message or a.reason or "spec")
        assert.equals(run_id, a.base_run_id)
      end
    end
    assert.is_true(found)
  end)

  it("resets by event id and to the last workflow task", function()
    local id, run_id = run_echo(client, 1)
    -- event 4 is the first WorkflowTaskCompleted (started, scheduled, started, completed)
    local r1 = client:reset_workflow(id, { run_id = run_id, event_id = 4 })
    assert.are_not.equals(run_id, r1)
    helper.eventually(function()
      local x = helper.cli_json("workflow", "describe", "--workflow-id", id, "--run-id", r1)
      return x.workflowExecutionInfo.status == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    end, 30)
    local r2 = client:reset_workflow(id, { reset_type = "LAST_WORKFLOW_TASK",
      reapply_exclude_types = { "SIGNAL", "UPDATE" } })
    assert.are_not.equals(r1, r2)
    local x = helper.cli_json("workflow", "describe", "--workflow-id", id)
    assert.equals(r2, x.workflowExecutionInfo.execution.runId)
  end)

  it("validates its options", function()
    assert.has_error(function() client:reset_workflow("w", {}) end,
      "reset_workflow: give exactly one of event_id and reset_type")
    assert.has_error(function() client:reset_workflow("w", { event_id = 3, reset_type = "FIRST_WORKFLOW_TASK" }) end,
      "reset_workflow: give exactly one of event_id and reset_type")
    assert.has_error(function() client:reset_workflow("w", { reset_type = "FIRST" }) end,
      "reset_type: unknown value FIRST (expected one of FIRST_WORKFLOW_TASK, LAST_WORKFLOW_TASK)")
    assert.has_error(function() client:reset_workflow("w", { event_id = 0 }) end,
      "event_id: expected a positive integer, got 0")
    assert.has_error(function() client:reset_workflow("w", { event_id = 4, reapply_exclude_types = { "SIGNALS" } }) end,
      "reapply_exclude_types[1]: unknown value SIGNALS (expected one of CANCEL_REQUEST, NEXUS, SIGNAL, UPDATE)")
    local ok, err = pcall(client.reset_workflow, client, helper.unique_id("missing"), { event_id = 4 })
    assert.is_false(ok)
    assert.equals("NOT_FOUND", err.status)
  end)
end)

describe("namespaces and search attributes", function()
  local client
  setup(function() client = connect() end)
  teardown(function() client:close() end)

  it("registers, describes, lists and deletes a namespace", function()
    local name = helper.unique_id("lua-ns")
    client:register_namespace(name, { retention = 2 * 86400, description = "from lua",
      owner_email = "lua@example.com", data = { team = "blue" } })
    local d = client:describe_namespace(name)
    assert.equals(name, d.name)
    assert.equals("REGISTERED", d.state)
    assert.equals(2 * 86400, d.retention)
    assert.equals("from lua", d.description)
    assert.equals("lua@example.com", d.owner_email)
    assert.equals("blue", d.data.team)
    assert.is_string(d.id)
    -- the CLI agrees
    local cli = helper.cli_json("operator", "namespace", "describe", "--namespace", name)
    assert.equals(d.id, cli.namespaceInfo.id)
    -- the client's own namespace by default
    assert.equals(helper.namespace, client:describe_namespace().name)
    local names = {}
    for ns in client:list_namespaces({ page_size = 2 }) do names[ns.name] = ns.state end
    assert.equals("REGISTERED", names[name])
    assert.equals("REGISTERED", names[helper.namespace])
    local ok, err = pcall(client.register_namespace, client, name)
    assert.is_false(ok)
    assert.equals("ALREADY_EXISTS", err.status)

    local renamed = client:delete_namespace(name)
    assert.matches("^" .. name:gsub("%-", "%%-") .. "%-deleted", renamed)
    local ok2, err2 = pcall(client.describe_namespace, client, name)
    assert.is_false(ok2)
    assert.equals("NOT_FOUND", err2.status)
    assert.has_error(function() client:delete_namespace(helper.namespace) end,
      "delete_namespace: refusing to delete the client's own namespace '" .. helper.namespace .. "'")
  end)

  it("adds and lists custom search attributes through the operator service", function()
    local name = helper.unique_id("lua-ns-sa")
    client:register_namespace(name)
    client:add_search_attributes({ LuaSpecKeyword = "KEYWORD", LuaSpecInt = "INT" }, { namespace = name })
    local sa = helper.eventually(function()
      local l = client:list_search_attributes({ namespace = name })
      return l.custom.LuaSpecKeyword and l
    end, 20)
    assert.equals("KEYWORD", sa.custom.LuaSpecKeyword)
    assert.equals("INT", sa.custom.LuaSpecInt)
    assert.equals("KEYWORD", sa.system.WorkflowId)
    assert.has_error(function() client:add_search_attributes({ X = "STRING" }) end,
      "attributes.X: unknown value STRING (expected one of BOOL, DATETIME, DOUBLE, INT, KEYWORD, KEYWORD_LIST, TEXT)")
    client:delete_namespace(name)
  end)

  it("validates namespace options", function()
    assert.has_error(function() client:register_namespace("x", { retention = -1 }) end,
      "retention: expected a positive number of seconds, got -1")
    assert.has_error(function() client:register_namespace("x", { retension = 1 }) end,
      "register_namespace: unknown option 'retension'")
    assert.has_error(function() client:register_namespace("x", { data = { k = 1 } }) end,
      "data: expected string keys and values")
  end)
end)

describe("legacy worker versioning", function()
  it("says clearly when the server has it disabled", function()
    local client = connect()
    local tq = helper.unique_id("bv")
    local calls = {
      function() client:update_worker_build_id_compatibility(tq, { add_new_id_in_new_default_set = "1.0" }) end,
      function() client:get_worker_build_id_compatibility(tq) end,
      function() client:get_worker_task_reachability({ "1.0" }, { task_queues = { tq } }) end,
    }
    for _, call in ipairs(calls) do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.is_true(errors.is(err, "RPCError"))
      assert.equals("PERMISSION_DENIED", err.status)
      assert.is_true(err.versioning_unsupported)
      assert.matches("build-id-based (legacy) worker versioning is disabled or removed on this server", err.message, 1, true)
    end
    assert.has_error(function() client:update_worker_build_id_compatibility(tq, { add = "1" }) end,
      "operation: unknown option 'add'")
    assert.has_error(function()
      client:update_worker_build_id_compatibility(tq, { promote_set_by_build_id = "1", merge_sets = {} })
    end)
    assert.has_error(function() client:get_worker_task_reachability({ "1" }, { reachability = "ALL" }) end,
      "reachability: unknown value ALL (expected one of CLOSED_WORKFLOWS, EXISTING_WORKFLOWS, NEW_WORKFLOWS, OPEN_WORKFLOWS)")
    client:close()
  end)

  describe("on a server that enables it", function()
    local server, client
    setup(function()
      server = extra_server.start({
        "frontend.workerVersioningDataAPIs=true",
        "frontend.workerVersioningRuleAPIs=true",
        "frontend.workerVersioningWorkflowAPIs=true",
      })
      client = connect(server.address)
    end)
    teardown(function()
      if client then client:close() end
      if server then server:stop() end
    end)

    it("manages version sets and reports reachability", function()
      local tq = helper.unique_id("bv")
      local none = client:get_worker_build_id_compatibility(tq)
      assert.same({}, none.version_sets)
      assert.is_nil(none.default_build_id)
      assert.is_nil(none:default_set())
      client:update_worker_build_id_compatibility(tq, { add_new_id_in_new_default_set = "1.0" })
      client:update_worker_build_id_compatibility(tq, { add_new_compatible_version = {
        build_id = "1.1", existing_compatible_build_id = "1.0" } })
      client:update_worker_build_id_compatibility(tq, { add_new_id_in_new_default_set = "2.0" })
      local sets = client:get_worker_build_id_compatibility(tq)
      assert.same({ { build_ids = { "1.0", "1.1" } }, { build_ids = { "2.0" } } }, sets.version_sets)
      assert.equals("2.0", sets.default_build_id)
      assert.same({ "2.0" }, sets:default_set().build_ids)
      assert.equals("1.1", sets.version_sets[1]:default())
      -- the Python client reads the same sets from the server
      local py = helper.json.decode(helper.python(([[
import asyncio, json, os
from temporalio.client import Client
async def main():
    c = await Client.connect(%q)
    s = await c.get_worker_build_id_compatibility(%q)
    print(json.dumps({"sets": [list(v.build_ids) for v in s.version_sets],
                      "default_set": list(s.default_set().build_ids), "default": s.default_build_id()}))
    e = await c.get_worker_build_id_compatibility(%q)
    print(json.dumps(len(e.version_sets)))
asyncio.run(main())
os._exit(0)
]]):format(server.address, tq, tq .. "-none")):match("^[^\n]+"))
      assert.same({ { "1.0", "1.1" }, { "2.0" } }, py.sets)
      assert.same(py.default_set, sets:default_set().build_ids)
      assert.equals(py.default, sets.default_build_id)
      assert.same({}, client:get_worker_build_id_compatibility(tq .. "-none").version_sets)
      client:update_worker_build_id_compatibility(tq, { promote_set_by_build_id = "1.1" })
      assert.equals("1.1", client:get_worker_build_id_compatibility(tq).default_build_id)
      client:update_worker_build_id_compatibility(tq, { merge_sets = { primary_build_id = "2.0", secondary_build_id = "1.0" } })
      assert.same({ { build_ids = { "1.0", "1.1", "2.0" } } }, client:get_worker_build_id_compatibility(tq).version_sets)
      assert.equals(1, #client:get_worker_build_id_compatibility(tq, { max_sets = 1 }).version_sets)

      local r = client:get_worker_task_reachability({ "2.0" }, { task_queues = { tq } })
      local entry = r.build_id_reachability["2.0"]
      assert.is_table(entry)
      assert.same({ "NEW_WORKFLOWS" }, entry.task_queue_reachability[tq])
      assert.same({}, entry.unretrieved_task_queues)
    end)
  end)
end)
