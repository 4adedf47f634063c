-- Lua activities served by nginx: examples/openresty/activities.conf and activities.lua in a
-- real nginx on 127.0.0.1 (Debian nginx + libnginx-mod-http-lua, the core built with
-- `make LUA=luajit`), two worker processes with one activity slot each, and Python
-- workflows (spec/worker/worker.py: CallLuaActivity) calling the activities by name; what
-- came back is checked on the Python side. Held activities wait for workflows the server
-- holds open (WaitForSignal), released by signals in an order chosen here.
local helper = require("support.helper")
local ngxs = require("support.nginx")   -- free_port, tempdir, wait_port, read
local temporal = require("temporal")

local ROOT = assert(os.getenv("PWD"))

local function sh(cmd)
  local ok, out, err, code = helper.run({ "bash", "-c", cmd })
  assert(ok, ("%s failed (%s): %s%s"):format(cmd, tostring(code), out, err))
  return out
end

local function alive(pid) return (helper.run({ "kill", "-0", tostring(pid) })) end

local function http(path, port)
  local ok, out = helper.run({ "curl", "-s", "-w", "\n%{http_code}", "--max-time", "30",
    ("http://127.0.0.1:%d%s"):format(port, path) })
  assert(ok, "curl failed")
  local text, status = out:match("^(.*)\n(%d+)$")
  return tonumber(status), (text:gsub("\n$", ""))
end

-- nginx with the example's conf as it is (its port replaced), in a fresh prefix holding
-- activities.lua; env: the example's TEMPORAL_* variables.
local function start(env)
  local dir = ngxs.tempdir("temporal-lua-ngx-activities")
  sh(("chmod 755 %s && mkdir -p %s/logs && cp %s/examples/openresty/activities.lua %s/"):format(dir, dir, ROOT, dir))
  local port = ngxs.free_port()
  local conf = assert(ngxs.read(ROOT .. "/examples/openresty/activities.conf"))
  local listen
  conf, listen = conf:gsub("listen 127%.0%.0%.1:8081;", "listen 127.0.0.1:" .. port .. ";")
  assert(listen == 1, "the example's listen line moved")
  local f = assert(io.open(dir .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
  local vars = { TEMPORAL_ADDRESS = helper.address, TEMPORAL_NAMESPACE = helper.namespace, TEMPORAL_LUA_ROOT = ROOT }
  for k, v in pairs(env) do vars[k] = v end
  local parts = {}
  for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. helper.shell_quote(tostring(v)) end
  -- the test bed's LUA_PATH/LUA_CPATH are for busted, not for nginx's LuaJIT
  local pid = sh(("env -u LUA_PATH -u LUA_CPATH %s setsid nginx -p %s -c %s/nginx.conf -g 'daemon off;' </dev/null >%s/logs/nginx.out 2>&1 & echo $!")
    :format(table.concat(parts, " "), dir, dir, dir))
  local n = { dir = dir, port = port, pid = tonumber(pid:match("%d+")) }
  function n.log() return (ngxs.read(dir .. "/logs/error.log") or "") .. (ngxs.read(dir .. "/logs/nginx.out") or "") end
  function n.workers()
    local list = {}
    for p in sh("pgrep -P " .. n.pid .. " || true"):gmatch("%d+") do list[#list + 1] = tonumber(p) end
    table.sort(list)
    return list
  end
  function n.stop()
    if n.pid then
      -- a worker process that does not exit in time is killed with its master
      local workers = table.concat(n.workers(), " ")
      sh(("kill -QUIT %d 2>/dev/null; for i in $(seq 100); do kill -0 %d 2>/dev/null || break; sleep 0.1; done; kill -KILL %d %s 2>/dev/null; true")
        :format(n.pid, n.pid, n.pid, workers))
      n.pid = nil
    end
    sh("rm -rf " .. helper.shell_quote(dir))
  end
  function n.assert_clean_log()
    local log = n.log()
    assert.is_nil(log:match("exited on signal"), log)
    assert.is_nil(log:match("%[alert%]"), log)
    assert.is_nil(log:match("%[emerg%]"), log)
    assert.is_nil(log:match("%[error%]"), log)
  end
  local ok, err = pcall(ngxs.wait_port, port, 15)
  if not ok then
    local log = n.log()
    n.stop()
    error(tostring(err) .. "\n" .. log)
  end
  -- both worker processes poll or run an activity on every slot (each /activities answer
  -- is one process's worker)
  local slots = tonumber(env.TEMPORAL_MAX_CONCURRENT_ACTIVITIES or 20)
  helper.eventually(function()
    local seen = {}
    for _ = 1, 20 do
      local status, body = http("/activities", port)
      local s = status == 200 and temporal.core.json_decode(body)
      if s and s.state == "running" and s.polls + s.running == slots then seen[s.pid] = true end
    end
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    return count == 2
  end, 30, 0.1)
  return n
end

describe("nginx serves Lua activities #luajit", function()
  local client, n, tq

  setup(function()
    client = temporal.connect(helper.address, { namespace = helper.namespace })
    tq = helper.unique_id("ngx-activities")
    n = start({ TEMPORAL_ACTIVITY_TASK_QUEUE = tq, TEMPORAL_MAX_CONCURRENT_ACTIVITIES = 1,
      TEMPORAL_GRACEFUL_SHUTDOWN_TIMEOUT = 60 })
  end)

  teardown(function()
    if n then n.stop() end
    if client then client:close() end
  end)

  local function call(activity, args, opts)
    opts = opts or {}
    return client:start_workflow("CallLuaActivity", {
      id = helper.unique_id("ngx-act-" .. activity), task_queue = helper.task_queue, execution_timeout = 120,
      args = { { activity = activity, task_queue = tq, args = args, retry = opts.retry } },
    })
  end

  local function hold_workflow()
    local id = helper.unique_id("ngx-act-hold")
    client:start_workflow("WaitForSignal", { id = id, task_queue = helper.task_queue })
    return id
  end

  local function activity_state(h)
    local list = h:describe().raw.pending_activities
    return list and list[1] and list[1].state or "NONE"
  end

  it("runs activities for a Python workflow: values both ways, failures, a cache nginx serves", function()
    local args = temporal.array{ 1, 2.5, "h\u{e9}", temporal.null, true, { k = temporal.array{ 42 } } }
    local r = call("echo", args):result()
    assert.is_true(r.echo_same)   -- compared in the Python workflow
    assert.same({ "int", "float", "str", "NoneType", "bool", "dict" }, r.types)
    assert.equals("timer", r.result.phase)   -- the activity ran in an nginx timer
    assert.truthy(r.result.pid == n.workers()[1] or r.result.pid == n.workers()[2])
    -- a failure: the Python workflow sees the ApplicationError's type, flags and details
    r = call("fail", { "out of stock" }, { retry = { maximum_attempts = 3 } }):result()
    assert.equals("ActivityError", r.error)
    assert.equals("ApplicationError", r.cause)
    assert.equals("NginxError", r.type, r.message)
    assert.equals("out of stock", r.message)
    assert.is_true(r.non_retryable)
    assert.equals("NON_RETRYABLE_FAILURE", r.retry_state)
    -- a workflow keeps a cache entry nginx serves up to date
    local key = helper.unique_id("player")
    r = call("cache_set", { key, { level = 7, items = temporal.array{ "sword" } } }):result()
    assert.equals(key, r.result.key)
    local status, body = http("/cache/" .. key, n.port)
    assert.equals(200, status)
    assert.same({ level = 7, items = { "sword" } }, temporal.core.json_decode(body))
  end)

  it("one worker per worker process: both slots hold activities, nginx answers, released in a chosen order", function()
    local wa, wb = hold_workflow(), hold_workflow()
    local ha, hb = call("wait_workflow", { wa }), call("wait_workflow", { wb })
    -- both activities started: one in each worker process (one slot each)
    helper.eventually(function() return activity_state(ha) == "STARTED" and activity_state(hb) == "STARTED" end, 30, 0.1)
    -- a third has no free slot in either process: it stays scheduled
    local hc = call("echo", { "third" })
    for _ = 1, 10 do
      local status, body = http("/ping", n.port)   -- nginx answers meanwhile
      assert.equals(200, status)
      assert.matches("^pong %d+$", body)
      local _, s = http("/activities", n.port)
      s = temporal.core.json_decode(s)
      assert.same({ running = 1, polls = 0 }, { running = s.running, polls = s.polls })
    end
    assert.equals("SCHEDULED", activity_state(hc))
    -- b first: its process's slot frees and runs the third
    client:get_workflow_handle(wb):signal("approve", "b")
    local rb = hb:result()
    assert.same({ { "b" } }, rb.result.result)
    local rc = hc:result()
    assert.same({ "third" }, rc.result.echo)
    assert.equals(rb.result.pid, rc.result.pid)
    assert.equals("STARTED", activity_state(ha))   -- a still waits, in the other process
    client:get_workflow_handle(wa):signal("approve", "a")
    local ra = ha:result()
    assert.same({ { "a" } }, ra.result.result)
    assert.are_not.equals(ra.result.pid, rb.result.pid)
    assert.same(n.workers(), { math.min(ra.result.pid, rb.result.pid), math.max(ra.result.pid, rb.result.pid) })
    assert.equals(1, ra.result.attempt)
    assert.equals(1, rb.result.attempt)
    n.assert_clean_log()
  end)

  it("reload with an activity in flight: the old workers stop polling, finish it and exit; nothing is lost", function()
    local old = n.workers()
    assert.equals(2, #old)
    local w = hold_workflow()
    local h = call("wait_workflow", { w })
    helper.eventually(function() return activity_state(h) == "STARTED" end, 30, 0.1)
    sh("kill -HUP " .. n.pid)
    -- the old process without an activity exits at once: its poll was cancelled (an open
    -- poll would keep it up to a minute); the one running the activity stays
    local gone, held
    helper.eventually(function()
      local a, b = alive(old[1]), alive(old[2])
      if a ~= b then gone, held = a and old[2] or old[1], a and old[1] or old[2] end
      return a ~= b
    end, 30, 0.1)
    assert.is_false(alive(gone))
    -- the new workers serve new activities meanwhile
    for i = 1, 4 do
      local r = call("echo", { i }):result()
      assert.same({ i }, r.result.echo)
      assert.are_not.equals(old[1], r.result.pid)
      assert.are_not.equals(old[2], r.result.pid)
    end
    assert.is_true(alive(held))
    assert.equals("STARTED", activity_state(h))
    -- released: it completes in the old process, first attempt, and that process exits
    client:get_workflow_handle(w):signal("approve", "after reload")
    local r = h:result()
    assert.same({ { "after reload" } }, r.result.result)
    assert.equals(held, r.result.pid)
    assert.equals(1, r.result.attempt)
    helper.eventually(function() return not alive(held) end, 30, 0.1)
    -- and its worker stopped by itself, as the reload asked (not cut off at exit)
    assert.matches(held .. "#%d+: [^\n]*the activity worker stopped after %d+ activities", n.log())
    n.assert_clean_log()
  end)

  it("quit past the grace period: the waiting activity is woken, handed back and retried by the next nginx", function()
    local tq2 = helper.unique_id("ngx-activities-quit")
    local n2 = start({ TEMPORAL_ACTIVITY_TASK_QUEUE = tq2, TEMPORAL_MAX_CONCURRENT_ACTIVITIES = 1,
      TEMPORAL_GRACEFUL_SHUTDOWN_TIMEOUT = 0 })
    local n3
    finally(function()
      n2.stop()
      if n3 then n3.stop() end
    end)
    local w = hold_workflow()
    local h = client:start_workflow("CallLuaActivity", {
      id = helper.unique_id("ngx-act-quit"), task_queue = helper.task_queue, execution_timeout = 120,
      args = { { activity = "wait_workflow", task_queue = tq2, args = { w }, retry = { maximum_attempts = 2 } } },
    })
    helper.eventually(function() return activity_state(h) == "STARTED" end, 30, 0.1)
    local master = n2.pid
    sh("kill -QUIT " .. master)
    -- the activity waits in a client call the server holds: only its cancellation (the
    -- call cancelled) lets the worker processes, then nginx, exit
    helper.eventually(function() return not alive(master) end, 30, 0.1)
    n2.pid = nil
    n2.assert_clean_log()
    -- attempt 1 came back as WorkerShutdown: the next nginx runs attempt 2
    n3 = start({ TEMPORAL_ACTIVITY_TASK_QUEUE = tq2, TEMPORAL_MAX_CONCURRENT_ACTIVITIES = 1 })
    helper.eventually(function() return activity_state(h) == "STARTED" end, 30, 0.1)
    client:get_workflow_handle(w):signal("approve", "retried")
    local r = h:result()
    local workers = n3.workers()
    assert.same({ { "retried" } }, r.result.result)
    assert.equals(2, r.result.attempt)
    assert.truthy(r.result.pid == workers[1] or r.result.pid == workers[2])
  end)
end)
