-- The skynet example's main service: starts the temporal service, then from this service
-- waits on three workflows (skynet.call requests held open) while the temporal service
-- waits on three more in sessions of its own; meanwhile it pings and queries, then
-- releases the workflows one by one in the order given and prints what came back.
--   skynet examples/hosts/skynet/config   (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
--   TEMPORAL_TASK_QUEUE and TEMPORAL_RELEASE_ORDER, e.g. "3,1,2,6,4,5", from the environment)
local skynet = require("skynet")
require("skynet.manager")  -- skynet.abort

-- this process's thread count (all services share it)
local function threads()
  local f = assert(io.open("/proc/self/status"))
  local n = f:read("a"):match("Threads:%s*(%d+)")
  f:close()
  return tonumber(n)
end

local function env(name, default)
  local v = os.getenv(name)
  return (v and v ~= "") and v or default
end

skynet.start(function()
  local address = env("TEMPORAL_ADDRESS", "127.0.0.1:7233")
  local namespace = env("TEMPORAL_NAMESPACE", "default")
  local task_queue = env("TEMPORAL_TASK_QUEUE", "skynet-example")
  local order = {}
  for i in env("TEMPORAL_RELEASE_ORDER", "3,1,2,6,4,5"):gmatch("%d+") do order[#order + 1] = tonumber(i) end
  local svc = skynet.newservice("temporal_service", address, namespace, task_queue)
  print("system", skynet.call(svc, "lua", "system_info"))
  local threads_one = threads()
  -- more services, each its own lua_State with its own client: one runtime serves them all
  local extra = tonumber(env("TEMPORAL_EXTRA_SERVICES", "20"))
  for _ = 1, extra do
    local other = skynet.newservice("temporal_service", address, namespace, task_queue)
    skynet.call(other, "lua", "system_info")
  end
  local info = skynet.call(svc, "lua", "runtime_info")
  print("runtime", info.states, "states", info.poller_threads, "poller threads")
  print("threads", threads_one, "with 1 service,", threads(), "with", extra + 1)

  local prefix = ("skynet-%d-%d"):format(os.time(), math.random(1000000))
  local ids = {}
  for i = 1, 6 do
    ids[i] = prefix .. "-" .. i
    skynet.call(svc, "lua", "start", ids[i])
  end
  -- 1..3: requests from this service, each a session of ours waiting on skynet.call
  local came_back = {}
  for i = 1, 3 do
    skynet.fork(function()
      local r = skynet.call(svc, "lua", "result", ids[i])
      came_back[#came_back + 1] = i
      print("result", i, r[1][1])
    end)
  end
  -- 4..6: sessions of the temporal service itself
  skynet.call(svc, "lua", "fork_results", { ids[4], ids[5], ids[6] })
  while skynet.call(svc, "lua", "inflight") < 6 do skynet.sleep(1) end
  print("all open", 6)
  -- the service keeps answering while six long polls are open
  for _ = 1, 3 do
    local pong, n, inflight = skynet.call(svc, "lua", "ping")
    print("ping", pong, n, inflight)
  end
  for i = 1, 6 do
    print("query", i, skynet.call(svc, "lua", "query", ids[i]).approved and "approved" or "waiting")
  end
  local function returned()
    return #came_back + #skynet.call(svc, "lua", "forked")
  end
  for k, i in ipairs(order) do
    skynet.call(svc, "lua", "signal", ids[i], "r" .. i)
    while returned() < k do skynet.sleep(1) end
    local forked = skynet.call(svc, "lua", "forked")
    local last = i <= 3 and came_back[#came_back] or tonumber(forked[#forked].id:match("(%d+)$"))
    print("released", i, "returned", last)
  end
  for _, f in ipairs(skynet.call(svc, "lua", "forked")) do
    print("forked result", f.id:match("(%d+)$"), f.result[1][1])
  end
  -- a service that exits while two of its sessions wait: the others go on unharmed
  local leaver = skynet.newservice("temporal_service", address, namespace, task_queue)
  skynet.call(leaver, "lua", "exit_while_waiting")
  while skynet.call(svc, "lua", "runtime_info").states > extra + 1 do skynet.sleep(1) end
  print("after a service left", skynet.call(svc, "lua", "runtime_info").states, "states,",
    skynet.call(svc, "lua", "system_info"))
  skynet.call(svc, "lua", "close")   -- the service gives its pollfd back to temporal
  print("done")
  skynet.abort()
end)
