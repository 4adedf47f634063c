-- temporal inside nginx (Debian nginx + libnginx-mod-http-lua + lua-resty-core, OpenResty's
-- LuaJIT): a real nginx on 127.0.0.1 started here, the core built with `make LUA=luajit`,
-- the host adapter temporal.host.nginx, and examples/openresty/ end to end with the Python
-- worker. Overlap is proven by structure: calls the server holds open (workflows waiting
-- for a signal) are all in flight in one worker at once while other requests are answered,
-- then released by signals in an order chosen here.
local helper = require("support.helper")
local ngxs = require("support.nginx")   -- free_port, tempdir, wait_port, read
local temporal = require("temporal")
local compat = require("temporal.compat")

local ROOT = assert(os.getenv("PWD"))
local TQ = helper.task_queue

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function sh(cmd)
  local ok, out, err, code = helper.run({ "bash", "-c", cmd })
  assert(ok, ("%s failed (%s): %s%s"):format(cmd, tostring(code), out, err))
  return out
end

local function alive(pid) return helper.run({ "kill", "-0", tostring(pid) }) end

-- GET/POST with curl: status, body
local function http(method, url, body)
  local argv = { "curl", "-s", "-X", method, "-w", "\n%{http_code}", "--max-time", "60", url }
  if body then argv[#argv + 1] = "--data-binary"; argv[#argv + 1] = body end
  local ok, out, err = helper.run(argv)
  assert(ok, err)
  local text, status = out:match("^(.*)\n(%d+)$")
  return tonumber(status), (text:gsub("\n$", ""))  -- without ngx.say's newline
end

local Nginx = {}
Nginx.__index = Nginx

-- Starts nginx with `conf` (a template: {port}, {root}) in a fresh prefix that holds
-- app.lua from examples/openresty; returns the instance (port, dir, pid of the master).
-- waits until /ping answers from a worker holding `held` calls (and not `not_pid`); its pid
local function ping_worker(n, held, not_pid, interval)
  local pid
  helper.eventually(function()
    local _, b = http("GET", n:url("/ping"))
    pid = b:match("^pong (%d+) " .. held .. "$")
    return pid ~= nil and pid ~= not_pid
  end, 30, interval or 0.05)
  return pid
end

local function start(conf)
  local dir = ngxs.tempdir("temporal-lua-openresty")
  sh("chmod 755 " .. dir .. " && mkdir -p " .. dir .. "/logs && cp " .. ROOT .. "/examples/openresty/app.lua " .. dir .. "/")
  local port = ngxs.free_port()
  write(dir .. "/nginx.conf", (conf:gsub("{port}", tostring(port)):gsub("{root}", ROOT)))
  local env = ("TEMPORAL_ADDRESS=%s TEMPORAL_NAMESPACE=%s TEMPORAL_TASK_QUEUE=%s TEMPORAL_LUA_ROOT=%s")
    :format(helper.address, helper.namespace, TQ, ROOT)
  -- the test bed's LUA_PATH/LUA_CPATH are for busted, not for nginx's LuaJIT
  local pid = sh(("env -u LUA_PATH -u LUA_CPATH %s setsid nginx -p %s -c %s/nginx.conf -g 'daemon off;' </dev/null >%s/logs/nginx.out 2>&1 & echo $!")
    :format(env, dir, dir, dir))
  local n = setmetatable({ dir = dir, port = port, pid = tonumber(pid:match("%d+")) }, Nginx)
  local ok, err = pcall(ngxs.wait_port, port, 15)
  if not ok then
    local log = n:log()
    n:stop()
    error(tostring(err) .. "\n" .. log)
  end
  return n
end

function Nginx:url(path) return ("http://127.0.0.1:%d%s"):format(self.port, path) end
function Nginx:log() return (ngxs.read(self.dir .. "/logs/error.log") or "") .. (ngxs.read(self.dir .. "/logs/nginx.out") or "") end
function Nginx:stop()
  if self.pid then
    sh(("kill -QUIT %d 2>/dev/null; for i in $(seq 100); do kill -0 %d 2>/dev/null || break; sleep 0.1; done; kill -KILL %d 2>/dev/null; true")
      :format(self.pid, self.pid, self.pid))
    self.pid = nil
  end
  sh("rm -rf " .. helper.shell_quote(self.dir))
end
-- what would show a crash or a leak: a worker killed by a signal, an alert
function Nginx:assert_clean_log()
  local log = self:log()
  assert.is_nil(log:match("exited on signal"), log)
  assert.is_nil(log:match("%[alert%]"), log)
  assert.is_nil(log:match("%[emerg%]"), log)
end

-- Many concurrent HTTP/1.0 GETs from one Python process (asyncio), each answer written as a
-- line "<index>\t<status>\t<body>" to `out` as it arrives. Returns the pid.
local function fire(port, paths, out)
  local script = os.tmpname()
  write(script, [[
import asyncio, sys, json
port, out, paths = int(sys.argv[1]), sys.argv[2], json.load(open(sys.argv[3]))
f = open(out, "w")
async def one(i, path):
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(("GET %s HTTP/1.0\r\nHost: t\r\n\r\n" % path).encode())
        await w.drain()
        data = await r.read()
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b" ")[1].decode() if head else "000"
    except Exception as e:
        status, body = "000", repr(e).encode()
    f.write("%d\t%s\t%s\n" % (i, status, body.decode().strip().replace("\n", " ")))
    f.flush()
async def main():
    await asyncio.gather(*(one(i + 1, p) for i, p in enumerate(paths)))
asyncio.run(main())
]])
  local list = os.tmpname()
  write(list, helper.json.encode(paths))
  return tonumber(sh(("setsid %s %s %d %s %s </dev/null >/dev/null 2>%s.err & echo $!")
    :format(helper.python_path, script, port, out, list, out)):match("%d+"))
end

-- lines "<index>\t<status>\t<body>" written so far: { [index] = { status =, body =, order = } }
local function answers(out)
  local got, n = {}, 0
  for line in (ngxs.read(out) or ""):gmatch("[^\n]+") do
    local i, status, body = line:match("^(%d+)\t(%d+)\t(.*)$")
    if i then n = n + 1; got[tonumber(i)] = { status = tonumber(status), body = body, order = n } end
  end
  return got, n
end

-- The spec's own endpoints next to the example's, on the example's handlers module.
local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
env TEMPORAL_ADDRESS;
env TEMPORAL_NAMESPACE;
env TEMPORAL_TASK_QUEUE;
env TEMPORAL_LUA_ROOT;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path logs/client_body;
  lua_package_path "$prefix/?.lua;{root}/lua/?.lua;{root}/lua/?/init.lua;;";
  lua_package_cpath "{root}/build/luajit/?.so;;";
  lua_socket_log_errors off;
  lua_shared_dict t 1m;
  init_by_lua_block {
    -- the master: temporal and the host adapter load here (the workers inherit them), which
    -- starts no thread; a connect here is refused, naming the phase
    require("app").init()
    local temporal = require("temporal")
    local t = ngx.shared.t
    t:set("init_loaded_core", package.loaded["temporal.core"] ~= nil)
    t:set("init_states", temporal.core.runtime_info().states)
    local ok, err = pcall(temporal.connect, os.getenv("TEMPORAL_ADDRESS"), { lazy = true })
    t:set("init_error", tostring(err))
    ok, err = pcall(temporal.sleep, 0.01)
    t:set("init_sleep_error", tostring(err))
    t:set("init_states_after", temporal.core.runtime_info().states)
  }
  init_worker_by_lua_block {
    require("app").init_worker()
    -- a call where nginx cannot yield
    local ok, err = pcall(function() return require("app").client():get_system_info() end)
    ngx.shared.t:set("init_worker_error", tostring(err))
  }
  exit_worker_by_lua_block { require("app").exit_worker() }
  server {
    listen 127.0.0.1:{port};
    location = /ping {
      content_by_lua_block { ngx.say("pong ", ngx.worker.pid(), " ", require("temporal").core.inflight()) }
    }
    location /workflows { content_by_lua_block { require("app").workflows() } }
    location = /namespace { content_by_lua_block { require("app").namespace() } }
    # content_by_lua: waits for the workflow's result; the answer carries the order in
    # which the calls completed in this worker
    location /hold/ {
      content_by_lua_block {
        local id = ngx.var.uri:match("^/hold/(.+)$")
        local ok, r = pcall(function() return require("app").client():get_workflow_handle(id):result() end)
        local seq = ngx.shared.t:incr("done", 1, 0)
        ngx.say(seq, " ", ok and require("temporal").core.json_encode(r) or tostring(r))
      }
    }
    location = /inflight { content_by_lua_block { ngx.say(require("temporal").core.inflight()) } }
    # access_by_lua: the call happens in the access phase
    location /access/ {
      access_by_lua_block {
        local id = ngx.var.uri:match("^/access/(.+)$")
        ngx.ctx.status = require("app").client():get_workflow_handle(id):describe().status
      }
      content_by_lua_block { ngx.say(ngx.ctx.status) }
    }
    # ngx.timer.at: a timer waits for the result, the request waits for the timer
    location /timer/ {
      content_by_lua_block {
        local id = ngx.var.uri:match("^/timer/(.+)$")
        local sema = require("ngx.semaphore").new()
        local result
        assert(ngx.timer.at(0, function()
          local ok, r = pcall(function() return require("app").client():get_workflow_handle(id):result() end)
          result = ok and require("temporal").core.json_encode(r) or "error: " .. tostring(r)
          sema:post(1)
        end))
        assert(sema:wait(60))
        ngx.say(result)
      }
    }
    # ngx.thread: one light thread per id, all waiting at once
    location = /threads {
      content_by_lua_block {
        local threads = {}
        for id in (ngx.var.arg_ids or ""):gmatch("[^,]+") do
          threads[#threads + 1] = ngx.thread.spawn(function()
            return require("temporal").core.json_encode(require("app").client():get_workflow_handle(id):result())
          end)
        end
        local out = {}
        for i, th in ipairs(threads) do
          local ok, r = ngx.thread.wait(th)
          out[i] = ok and r or ("error: " .. tostring(r))
        end
        ngx.say(table.concat(out, " "))
      }
    }
    # phases where nginx cannot yield: the error is kept for /errors
    location = /nonyielding {
      set_by_lua_block $set_error {
        local ok, err = pcall(function() return require("app").client():get_system_info() end)
        ngx.shared.t:set("set_error", tostring(err))
        return "x"
      }
      header_filter_by_lua_block {
        local ok, err = pcall(function() return require("app").client():get_system_info() end)
        ngx.shared.t:set("header_filter_error", tostring(err))
      }
      body_filter_by_lua_block {
        if ngx.arg[2] then
          local ok, err = pcall(function() return require("app").client():get_system_info() end)
          ngx.shared.t:set("body_filter_error", tostring(err))
        end
      }
      content_by_lua_block { ngx.say("ok") }
      log_by_lua_block {
        local ok, err = pcall(function() return require("app").client():get_system_info() end)
        ngx.shared.t:set("log_error", tostring(err))
      }
    }
    location = /errors {
      content_by_lua_block {
        local t = ngx.shared.t
        for _, k in ipairs({ "init_error", "init_sleep_error", "init_loaded_core", "init_states", "init_states_after",
            "init_worker_error", "set_error", "header_filter_error", "body_filter_error", "log_error" }) do
          ngx.say(k, "=", tostring(t:get(k)))
        end
      }
    }
  }
}
]]

describe("nginx host #luajit", function()
  local client, n

  setup(function()
    client = temporal.connect(helper.address, { namespace = helper.namespace })
    n = start(CONF)
  end)

  teardown(function()
    if n then n:stop() end
    if client then client:close() end
  end)

  -- starts `count` WaitForSignal workflows at once; returns their ids
  local function waiting_workflows(prefix, count)
    local ids, tasks = {}, {}
    for i = 1, count do
      ids[i] = helper.unique_id(prefix .. i)
      tasks[i] = temporal.spawn(function()
        client:start_workflow("WaitForSignal", { id = ids[i], task_queue = TQ, rpc_timeout = 60 })
      end)
    end
    for i = 1, count do tasks[i]:wait() end
    return ids
  end

  local function release(id, value)
    client:get_workflow_handle(id):signal("approve", value)
  end

  it("keeps 200 calls held by the server in flight in one worker while /ping answers, and completes them in the order released", function()
    local N = 200
    local ids = waiting_workflows("ngx-hold-", N)
    local paths = {}
    for i = 1, N do paths[i] = "/hold/" .. ids[i] end
    local out = os.tmpname()
    local pid = fire(n.port, paths, out)
    -- all 200 result calls are in flight in the one worker at once ...
    helper.eventually(function()
      local _, body = http("GET", n:url("/inflight"))
      return tonumber(body) == N
    end, 60, 0.1)
    -- ... and other requests are answered meanwhile (the answer says so itself)
    for _ = 1, 5 do
      local status, body = http("GET", n:url("/ping"))
      assert.equals(200, status)
      assert.equals(tostring(N), body:match("^pong %d+ (%d+)"))
    end
    local _, none = answers(out)
    assert.equals(0, none)
    -- released one at a time in an order chosen here: they complete in that order
    local order = { 200, 1, 117, 2, 50, 199, 3, 100 }
    for k, i in ipairs(order) do
      release(ids[i], i)
      helper.eventually(function() return answers(out)[i] end, 60, 0.05)
      local got = answers(out)[i]
      assert.equals(200, got.status)
      assert.equals(k .. " [[" .. i .. "]]", got.body)
    end
    -- the rest together
    local picked, tasks = {}, {}
    for _, i in ipairs(order) do picked[i] = true end
    for i = 1, N do
      if not picked[i] then tasks[#tasks + 1] = temporal.spawn(release, ids[i], i) end
    end
    for _, t in ipairs(tasks) do t:wait() end
    helper.eventually(function() return select(2, answers(out)) == N end, 120, 0.1)
    local got = answers(out)
    for i = 1, N do
      assert.equals(200, got[i].status, got[i].body)
      assert.matches("^%d+ %[%[" .. i .. "%]%]$", got[i].body)
    end
    sh("kill " .. pid .. " 2>/dev/null; true")
    local _, body = http("GET", n:url("/inflight"))
    assert.equals("0", body)
    n:assert_clean_log()
  end)

  it("waits without blocking in access_by_lua, ngx.timer.at and ngx.thread", function()
    local ids = waiting_workflows("ngx-ctx-", 4)
    -- access phase: a describe
    local status, body = http("GET", n:url("/access/" .. ids[1]))
    assert.equals(200, status)
    assert.equals("RUNNING", body)
    -- a timer and three light threads wait at once; /ping answers meanwhile
    local out = os.tmpname()
    local pid = fire(n.port, { "/timer/" .. ids[1], "/threads?ids=" .. table.concat({ ids[2], ids[3], ids[4] }, ",") }, out)
    helper.eventually(function()
      local _, b = http("GET", n:url("/inflight"))
      return tonumber(b) == 4
    end, 30, 0.05)
    assert.equals(200, (http("GET", n:url("/ping"))))
    release(ids[3], "c"); release(ids[1], "a")
    helper.eventually(function() return answers(out)[1] end, 30, 0.05)
    assert.equals('[["a"]]', answers(out)[1].body)
    assert.is_nil(answers(out)[2])  -- the threads wait for all three
    release(ids[4], "d"); release(ids[2], "b")
    helper.eventually(function() return answers(out)[2] end, 30, 0.05)
    assert.equals('[["b"]] [["c"]] [["d"]]', answers(out)[2].body)
    sh("kill " .. pid .. " 2>/dev/null; true")
  end)

  -- threads of a process, from /proc
  local function threads(pid) return tonumber((sh("ls /proc/" .. pid .. "/task | wc -l"):match("%d+"))) end

  it("loads temporal and the adapter in init_by_lua without a thread in the master; each worker makes its own runtime on first use", function()
    local _, body = http("GET", n:url("/errors"))
    local e = {}
    for k, v in body:gmatch("([%w_]+)=([^\n]*)") do e[k] = v end
    assert.equals("true", e.init_loaded_core)   -- app.lua required temporal in the master
    assert.equals("0", e.init_states)            -- ... which made no runtime
    assert.equals("0", e.init_states_after)      -- not even by the refused connect and sleep
    -- the master (init_by_lua ran there) has its one thread: no poller, no gRPC threads
    assert.equals(1, threads(n.pid))
    -- a worker's first call makes its runtime there; the master still has one thread
    local status, nsbody = http("GET", n:url("/namespace"))
    assert.equals(200, status, nsbody)
    local ns = temporal.core.json_decode(nsbody)
    assert.equals(helper.namespace, ns.name)
    assert.equals("REGISTERED", ns.state)
    assert.equals(client:describe_namespace().id, ns.id)  -- the same namespace, seen from here
    local worker = select(2, http("GET", n:url("/ping"))):match("^pong (%d+)")
    assert.is_true(threads(worker) > 2)  -- nginx's one thread plus temporal's poller and gRPC's
    assert.equals(1, threads(n.pid))
  end)

  it("refuses calls where nginx cannot yield, naming the phase and what to do instead", function()
    http("GET", n:url("/nonyielding"))
    local _, body = http("GET", n:url("/errors"))
    local e = {}
    for k, v in body:gmatch("([%w_]+)=([^\n]*)") do e[k] = v end
    -- init_by_lua: the connect that would make the runtime in the master
    assert.matches("nginx cannot yield in phase init (init_by_lua*, the master process)", e.init_error, 1, true)
    assert.matches("init_worker_by_lua*", e.init_error, 1, true)
    assert.matches("ngx.timer.at", e.init_error, 1, true)
    assert.matches("sleep: nginx cannot yield in phase init (ngx.get_phase())", e.init_sleep_error, 1, true)
    for key, phase in pairs({ init_worker_error = "init_worker", set_error = "set",
        header_filter_error = "header_filter", body_filter_error = "body_filter", log_error = "log" }) do
      assert.matches("GetSystemInfo: nginx cannot yield in phase " .. phase .. " (ngx.get_phase())", e[key], 1, true)
      assert.matches("ngx.timer.at(0, fn)", e[key], 1, true)
    end
  end)

  it("serves the example's endpoints end to end; the Python workflow sees exact values", function()
    local id = helper.unique_id("ngx-echo")
    local status, body = http("POST", n:url("/workflows"),
      ('{"workflow": "Echo", "id": "%s", "args": [1, 9007199254740993, -9223372036854775808, 2.5, 0.1, "h\\u00e9", null, {"k": [true]}]}'):format(id))
    assert.equals(201, status, body)
    local started = temporal.core.json_decode(body)
    assert.equals(id, started.id)
    assert.is_string(started.run_id)
    status, body = http("GET", n:url("/workflows/" .. id .. "/result"))
    assert.equals(200, status, body)
    -- what the Python workflow received, as it reports it: types and exact values
    assert.equals('{"result":{"types":["int","int","int","float","float","str","NoneType","dict"],'
      .. '"values":[1,9007199254740993,-9223372036854775808,2.5,0.1,"h\\u00e9",null,{"k":[true]}]}}', body)
    -- describe
    status, body = http("GET", n:url("/workflows/" .. id))
    assert.equals(200, status)
    local d = temporal.core.json_decode(body)
    assert.equals("COMPLETED", d.status)
    assert.equals("Echo", d.type)
    assert.equals(started.run_id, d.run_id)
    -- signal + a result that waits: the signal's args reach the workflow
    local wid = helper.unique_id("ngx-signal")
    assert.equals(201, (http("POST", n:url("/workflows"), ('{"workflow": "WaitForSignal", "id": "%s"}'):format(wid))))
    local out = os.tmpname()
    local pid = fire(n.port, { "/workflows/" .. wid .. "/result" }, out)
    helper.eventually(function() return select(2, http("GET", n:url("/inflight"))) == "1" end, 30, 0.05)
    assert.equals(202, (http("POST", n:url("/workflows/" .. wid .. "/signals/approve"), '["yes", 9223372036854775807]')))
    helper.eventually(function() return answers(out)[1] end, 30, 0.05)
    assert.equals('{"result":[["yes",9223372036854775807]]}', answers(out)[1].body)
    sh("kill " .. pid .. " 2>/dev/null; true")
    assert.same({ "yes", compat.maxinteger }, { compat.unpack(client:get_workflow_handle(wid):query("status").signals[1], 1, 2) })
    -- errors: statuses and JSON bodies
    status, body = http("GET", n:url("/workflows/no-such-" .. id))
    assert.equals(404, status)
    assert.matches('"status":"NOT_FOUND"', body)
    local running = helper.unique_id("ngx-running")
    assert.equals(201, (http("POST", n:url("/workflows"), ('{"workflow": "WaitForSignal", "id": "%s"}'):format(running))))
    status, body = http("POST", n:url("/workflows"), ('{"workflow": "WaitForSignal", "id": "%s"}'):format(running))
    assert.equals(409, status)
    assert.matches('"type":"WorkflowAlreadyStartedError"', body)
    status, body = http("POST", n:url("/workflows"), '{"workflow": "Echo", "args": [1], "idd": 2')
    assert.equals(400, status)
    assert.matches('"type":"BadRequest"', body)
    local fid = helper.unique_id("ngx-fail")
    assert.equals(201, (http("POST", n:url("/workflows"), ('{"workflow": "Fail", "id": "%s", "args": ["boom"]}'):format(fid))))
    status, body = http("GET", n:url("/workflows/" .. fid .. "/result"))
    assert.equals(422, status)
    assert.matches('"type":"WorkflowFailureError"', body)
    assert.matches("boom", body)
    client:get_workflow_handle(running):terminate()
  end)

  it("make demo's OpenResty part (examples/openresty/demo.sh, on serve.sh) shows every endpoint and error status", function()
    local ok, out, err = helper.run({ ROOT .. "/examples/openresty/demo.sh" },
      { TEMPORAL_ADDRESS = helper.address, TEMPORAL_TASK_QUEUE = TQ })
    assert(ok, out .. err)
    assert.matches('< 200 {"result":"Hello, OpenResty!"}', out, 1, true)
    assert.matches('< 200 {[^\n]*"status":"COMPLETED"[^\n]*"type":"Greet"', out)
    assert.matches('< 200 {"id":"[^"]+","name":"' .. helper.namespace .. '","state":"REGISTERED"}', out)
    assert.matches('< 409 {"error":{[^\n]*"type":"WorkflowAlreadyStartedError"', out)
    assert.matches('< 202 {}', out, 1, true)
    assert.matches('got: HTTP 200 {"result":[["yes",9223372036854775807]]}', out, 1, true)
    assert.matches('< 404 {"error":{[^\n]*"status":"NOT_FOUND"', out)
    assert.matches('< 422 {"error":{"message":"Workflow execution failed: boom","type":"WorkflowFailureError"}}', out, 1, true)
    assert.matches('< 400 {"error":{[^\n]*"type":"BadRequest"', out)
    local _, starts = out:gsub("\n< 201 ", "")
    assert.equals(3, starts)
  end)

  it("bench smoke: bench/nginx_wrk.lua drives the example's POST /workflows and GET /namespace under wrk", function()
    local prefix = helper.unique_id("ngx-wrk")
    local function wrk(path, id_prefix)
      local ok, out, err = helper.run({ "wrk", "-t1", "-c2", "-d1s", "-s", ROOT .. "/bench/nginx_wrk.lua", n:url(path) },
        { BENCH_START = id_prefix, BENCH_TASK_QUEUE = TQ .. "-nobody" })
      assert(ok, out .. err)
      return temporal.core.json_decode((assert(out:match("\nWRK (%b{})\n"), out)))
    end
    local r = wrk("/workflows", prefix)
    assert.is_true(r.requests > 0)
    assert.same({ 0, 0, 0, 0, 0 }, { r.non_2xx, r.connect, r.read, r.write, r.timeout })
    -- the ids the script made were started, with the script's workflow type and queue
    local d = client:get_workflow_handle(prefix .. "-1-2"):describe()  -- wrk builds (and drops) request 1 at start
    assert.equals("BenchNoWorker", d.workflow_type)
    assert.equals(TQ .. "-nobody", d.task_queue)
    r = wrk("/namespace")
    assert.is_true(r.requests > 0)
    assert.same({ 0, 0, 0, 0, 0 }, { r.non_2xx, r.connect, r.read, r.write, r.timeout })
    assert.is_true(r.p50_us <= r.p99_us)
  end)

  it("reload: the old worker finishes its calls in flight and exits, the new one serves", function()
    local ids = waiting_workflows("ngx-reload-", 3)
    local paths = {}
    for i = 1, 3 do paths[i] = "/hold/" .. ids[i] end
    local out = os.tmpname()
    local pid = fire(n.port, paths, out)
    local old = ping_worker(n, 3)
    sh("kill -HUP " .. n.pid)
    ping_worker(n, 0, old, 0.1)  -- a new worker, idle, answers too
    assert.is_true(alive(old))  -- still holding the three requests
    for i = 3, 1, -1 do release(ids[i], i) end
    helper.eventually(function() return select(2, answers(out)) == 3 end, 30, 0.05)
    for i = 1, 3 do
      local got = answers(out)[i]
      assert.equals(200, got.status)
      assert.matches("%[%[" .. i .. "%]%]$", got.body)
    end
    helper.eventually(function() return not alive(old) end, 30, 0.1)
    -- the new worker makes calls of its own
    local wid = helper.unique_id("ngx-after-reload")
    assert.equals(201, (http("POST", n:url("/workflows"), ('{"workflow": "Greet", "id": "%s", "args": ["reload"]}'):format(wid))))
    local status, body = http("GET", n:url("/workflows/" .. wid .. "/result"))
    assert.equals(200, status)
    assert.equals('{"result":"Hello, reload!"}', body)
    sh("kill " .. pid .. " 2>/dev/null; true")
    n:assert_clean_log()
  end)

  it("stopping nginx with calls in flight exits at once and cleanly", function()
    local ids = waiting_workflows("ngx-stop-", 2)
    local out = os.tmpname()
    local pid = fire(n.port, { "/hold/" .. ids[1], "/hold/" .. ids[2] }, out)
    local worker = ping_worker(n, 2)
    sh("kill -TERM " .. n.pid)
    helper.eventually(function() return not alive(n.pid) and not alive(worker) end, 10, 0.05)
    helper.eventually(function() return select(2, answers(out)) == 2 end, 10, 0.05)
    for i = 1, 2 do assert.is_not.equals(200, answers(out)[i].status) end  -- cut, not answered
    n.pid = nil
    n:assert_clean_log()
    sh("kill " .. pid .. " 2>/dev/null; true")
    -- the workflows are untouched: still running, waiting for their signal
    assert.equals("RUNNING", client:get_workflow_handle(ids[1]):describe().status)
  end)
end)
