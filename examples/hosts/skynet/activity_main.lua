-- The skynet activity worker example's main service: starts activity_service (a service that
-- serves Lua activities with client:new_worker), then, with a client of its own, starts
-- Python workflows (spec/worker/worker.py) that call those activities on the service's task
-- queue. HELD "hold" activities stay open at once while the service answers pings and an
-- "echo" activity completes; they are released one by one in the order given, the last one
-- after the worker's graceful shutdown has begun; then the worker stops.
--   skynet examples/hosts/skynet/activity_config   (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
--   TEMPORAL_TASK_QUEUE (the Python worker's), TEMPORAL_ACTIVITY_TASK_QUEUE and
--   TEMPORAL_RELEASE_ORDER, e.g. "2,0,3,1", from the environment)
local skynet = require("skynet")
require("skynet.manager")  -- skynet.abort
local temporal = require("temporal")

local function env(name, default)
  local v = os.getenv(name)
  return (v and v ~= "") and v or default
end

skynet.start(function()
  local address = env("TEMPORAL_ADDRESS", "127.0.0.1:7233")
  local namespace = env("TEMPORAL_NAMESPACE", "default")
  local task_queue = env("TEMPORAL_TASK_QUEUE", "lua-test-tq")
  local prefix = ("skynet-act-%d-%d"):format(os.time(), math.random(1000000))
  local activity_queue = env("TEMPORAL_ACTIVITY_TASK_QUEUE", prefix)
  local order = {}
  for i in env("TEMPORAL_RELEASE_ORDER", "2,0,3,1"):gmatch("%d+") do order[#order + 1] = tonumber(i) end
  local held = #order

  -- one slot more than the held activities: the echo activity runs while they are held
  local svc = skynet.newservice("activity_service", address, namespace, activity_queue, held + 1)
  print("worker running", skynet.call(svc, "lua", "start"))

  local host = require("temporal.host.skynet").new()
  temporal.set_host(host)
  local client = temporal.connect(address, { namespace = namespace })
  local fan = client:start_workflow("FanOutLuaActivities", {
    id = prefix .. "-fan", task_queue = task_queue, execution_timeout = 120,
    args = { { activity = "hold", count = held, task_queue = activity_queue } },
  })
  print("fan", fan.id)
  while skynet.call(svc, "lua", "held") < held do skynet.sleep(1) end
  local n, ids = skynet.call(svc, "lua", "held")
  print("all held", n, table.concat(ids, ","))

  -- the service answers while they are held, and its worker serves another activity
  for _ = 1, 3 do print("ping", skynet.call(svc, "lua", "ping")) end
  local echo = client:start_workflow("CallLuaActivity", {
    id = prefix .. "-echo", task_queue = task_queue, execution_timeout = 120,
    args = { { activity = "echo", task_queue = activity_queue,
               args = { "grant", 7, 2.5, true, { item = "sword", n = 3 }, temporal.array{ 1, 2, 3 } } } },
  })
  local er = echo:result()
  print("echo", echo.id, er.echo_same, table.concat(er.types, ","))
  print("still held", (skynet.call(svc, "lua", "held")))

  for k, i in ipairs(order) do
    if k == #order then
      -- the last one is still running when the graceful shutdown begins
      print("shutdown initiated, running", skynet.call(svc, "lua", "initiate_shutdown"))
      print("ping", skynet.call(svc, "lua", "ping"))
    end
    assert(skynet.call(svc, "lua", "release", i))
    while skynet.call(svc, "lua", "held") > #order - k do skynet.sleep(1) end
    print("released", i)
  end
  print("stopped, running", skynet.call(svc, "lua", "shutdown"))
  for _, r in ipairs(fan:result()) do
    print("fan result", r.i, r.square, r.released_as, r.attempt)
  end
  print("closed, in flight", skynet.call(svc, "lua", "close"))
  host.close()
  client:close()
  print("done")
  skynet.abort()
end)
