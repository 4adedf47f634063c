-- Retries against a real outage: a private dev server (the test bed's stays up for the
-- other specs) is stopped in the middle of a run of starts and started again on the same
-- port and database. Every logical start must land exactly once - the listing shows each
-- workflow id with one run, the run the client was told about. While the server stays
-- down past the retry budget, calls fail with UNAVAILABLE in bounded time.
local helper = require("support.helper")
local nginx = require("support.nginx")
local temporal = require("temporal")
local errors = temporal.errors
local now = temporal.core.now

local server = {}

local function start_cmd()
  return ("TEMPORAL_VERSION_CHECK_DISABLED=1 setsid %s server start-dev --headless --ip 127.0.0.1 --port %d --http-port %d --metrics-port %d --log-level warn --namespace default --db-filename %s/server.db --dynamic-config-value frontend.enableServerVersionCheck=false </dev/null >>%s/server.log 2>&1 & echo $! > %s/server.pid")
    :format(helper.shell_quote(helper.cli_path), server.port, server.http, server.metrics,
      server.dir, server.dir, server.dir)
end


local function healthy()
  return helper.run({ "timeout", "5", helper.cli_path, "operator", "cluster", "health",
    "--address", server.address })
end

-- Stops the server (TERM to its process group, then waits for it to be gone).
local function stop_cmd()
  return ("p=$(cat %s/server.pid); /bin/kill -TERM -- -$p 2>/dev/null; for i in $(seq 100); do kill -0 $p 2>/dev/null || break; sleep 0.1; done; /bin/kill -KILL -- -$p 2>/dev/null; true")
    :format(server.dir)
end

setup(function()
  server.dir = nginx.tempdir("temporal-lua-retry")
  server.port, server.http, server.metrics = nginx.free_port(), nginx.free_port(), nginx.free_port()
  server.address = "127.0.0.1:" .. server.port
  assert(os.execute(start_cmd()))
  helper.eventually(healthy, 60, 0.2)
end)

teardown(function()
  if server.dir then
    os.execute(stop_cmd())
    os.execute("rm -rf " .. helper.shell_quote(server.dir))
  end
end)

describe("retries across a server restart", function()
  it("land every start exactly once; the same calls without retry see the outage", function()
    local client = temporal.connect(server.address, { namespace = "default" })
    local wf_type = helper.unique_id("RetrySpecWorkflow")
    local N_TASKS, PER_TASK = 4, 10
    local started, failures = {}, {}
    local probe_failures = 0

    local function starter(t)
      for i = 1, PER_TASK do
        local id = ("%s-%d-%d"):format(wf_type, t, i)
        local ok, handle = pcall(client.start_workflow, client, wf_type, { id = id, task_queue = "retry-spec-tq" })
        if ok then started[id] = handle.first_execution_run_id else failures[#failures + 1] = tostring(handle) end
        temporal.sleep(0.1)
      end
    end
    local tasks = {}
    for t = 1, N_TASKS do tasks[t] = temporal.spawn(starter, t) end
    -- a probe without retries: it sees the outage the starts ride out
    local probe = temporal.spawn(function()
      local deadline = now() + 30
      while now() < deadline do
        local ok = pcall(client.workflow_service.get_system_info, client.workflow_service, {}, { rpc_timeout = 2 })
        if not ok then probe_failures = probe_failures + 1
        elseif probe_failures > 0 then break end  -- down, then back
        temporal.sleep(0.05)
      end
    end)
    -- after a few starts: stop the server and start it again, in the background
    temporal.sleep(0.3)
    os.execute(("(%s; sleep 0.5; %s) >/dev/null 2>&1 &"):format(stop_cmd(), start_cmd()))
    for t = 1, N_TASKS do tasks[t]:wait() end
    probe:wait()

    assert.same({}, failures)
    assert.is_true(probe_failures > 0, "the outage was not seen")
    -- the listing: each id once, with the run the client got
    local listed = helper.eventually(function()
      local resp = client.workflow_service:list_workflow_executions({
        namespace = "default", query = ("WorkflowType = '%s'"):format(wf_type), page_size = 1000,
      }, { retry = true })
      local execs = resp.executions or {}
      return #execs >= N_TASKS * PER_TASK and execs
    end, 30, 0.3)
    assert.equals(N_TASKS * PER_TASK, #listed)
    local seen = {}
    for _, e in ipairs(listed) do
      local id = e.execution.workflow_id
      assert.is_nil(seen[id], "listed twice: " .. id)
      seen[id] = true
      assert.equals(started[id], e.execution.run_id)
    end
    client:close()
  end)

  it("fails with UNAVAILABLE in bounded time while the server stays down", function()
    local client = temporal.connect(server.address, { namespace = "default" })
    os.execute(stop_cmd())
    local t0 = now()
    local ok, err = pcall(client.start_workflow, client, "RetrySpecWorkflow",
      { id = helper.unique_id("retry-down"), task_queue = "retry-spec-tq" })
    local elapsed = now() - t0
    assert.is_false(ok)
    assert.is_true(errors.is(err, "RPCError"))
    assert.equals("UNAVAILABLE", err.status)
    assert.is_true(err.attempts > 1)
    assert.matches("gave up after %d+ attempts", err.message)
    -- the budget is 10 s of waits; each attempt fails at once on a refused connection
    assert.is_true(elapsed < 15, "took " .. elapsed .. " s")
    -- a raw call does not retry unless asked
    t0 = now()
    ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {})
    assert.equals("UNAVAILABLE", not ok and err.status)
    assert.equals(1, err.attempts)
    assert.is_true(now() - t0 < 5)
    client:close()
  end)
end)
