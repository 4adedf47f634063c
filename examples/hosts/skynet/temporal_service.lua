-- A skynet service that talks to Temporal: several sessions wait on workflows at once
-- (requests from other services and skynet.fork sessions of its own) while it keeps
-- answering other messages. Started by examples/hosts/skynet/main.lua.
local skynet = require("skynet")
local temporal = require("temporal")

local address, namespace, task_queue = ...
local client
local host
local handles = {}          -- workflow id -> handle
local forked = {}           -- results collected by this service's own sessions, in order
local pings = 0

local command = {}

function command.start(id)
  handles[id] = client:start_workflow("WaitForSignal", { id = id, task_queue = task_queue })
  return handles[id].result_run_id
end

-- Held open by the server until the workflow is signalled.
function command.result(id)
  return handles[id]:result()
end

-- Waits for each workflow in its own session of this service (skynet.fork).
function command.fork_results(ids)
  for _, id in ipairs(ids) do
    skynet.fork(function()
      local r = handles[id]:result()
      forked[#forked + 1] = { id = id, result = r }
    end)
  end
  return #ids
end

function command.forked() return forked end

function command.signal(id, value)
  handles[id]:signal("approve", value)
  return true
end

function command.query(id)
  return handles[id]:query("status")
end

function command.ping()
  pings = pings + 1
  return "pong", pings, temporal.core.inflight()
end

-- before the service exits: skynet's socket on the pollfd is closed, the client too
function command.close()
  host.close()
  client:close()
  return true
end

-- Leaves with calls in flight: two sessions wait on workflows nobody signals, then the
-- service exits; skynet closes its lua_State, which cancels and drains those calls.
function command.exit_while_waiting()
  local ids = {}
  for i = 1, 2 do
    ids[i] = ("%s-leaver-%d-%d"):format(task_queue, math.random(1000000), i)
    command.start(ids[i])
    skynet.fork(function() handles[ids[i]]:result() end)
  end
  skynet.fork(function()
    while temporal.core.inflight() < 2 do skynet.sleep(1) end
    skynet.exit()
  end)
  return ids
end

function command.inflight() return temporal.core.inflight() end

function command.system_info()
  return client.workflow_service:get_system_info{}.server_version
end

function command.runtime_info() return temporal.core.runtime_info() end

skynet.start(function()
  host = require("temporal.host.skynet").new()
  temporal.set_host(host)
  client = temporal.connect(address, { namespace = namespace })
  skynet.dispatch("lua", function(_, _, cmd, ...)
    local fn = command[cmd]
    if not fn then error("unknown command " .. tostring(cmd)) end
    skynet.ret(skynet.pack(fn(...)))
  end)
end)
