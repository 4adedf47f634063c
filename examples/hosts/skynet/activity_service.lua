-- A skynet service that serves Lua activities: it installs the skynet host adapter, creates
-- a client and client:new_worker{...}, starts the worker and keeps answering other skynet
-- messages while activities run. Started by examples/hosts/skynet/activity_main.lua.
--   activity_service ADDRESS NAMESPACE TASK_QUEUE SLOTS
local skynet = require("skynet")
local temporal = require("temporal")

local address, namespace, task_queue, slots = ...
local client, host, worker
local held = {}             -- i -> the token the held activity waits on (skynet.wait)
local held_count, held_max = 0, 0
local released = 0          -- how many held activities were released so far
local pings = 0

local activities = {}

-- Returns its arguments as the Python side sent them (CallLuaActivity compares them).
function activities.echo(_, ...)
  return { echo = temporal.array{ ... }, service = skynet.self() }
end

-- Held open until the service is told to release it: skynet.wait in the activity's own
-- session (the worker's temporal.spawn task is a skynet.fork session here).
function activities.hold(ctx, i)
  local token = {}
  held[i] = token
  held_count = held_count + 1
  held_max = math.max(held_max, held_count)
  skynet.wait(token)
  held[i] = nil
  held_count = held_count - 1
  released = released + 1
  return { i = i, square = i * i, released_as = released, attempt = ctx.info.attempt,
           activity_id = ctx.info.activity_id }
end

local command = {}

function command.start()
  worker = client:new_worker{
    task_queue = task_queue, activities = activities,
    max_concurrent_activities = tonumber(slots),
    identity = "skynet-activity-service@" .. skynet.self(),
  }
  worker:start()
  return worker:is_running()
end

function command.held()
  local ids = {}
  for i in pairs(held) do ids[#ids + 1] = i end
  table.sort(ids)
  return held_count, ids
end

function command.release(i)
  local token = held[i]
  if not token then return false end
  skynet.wakeup(token)
  return true
end

function command.ping()
  pings = pings + 1
  return "pong", pings, held_count, temporal.core.inflight()
end

-- Graceful shutdown begins (polls stop); this call returns at once.
function command.initiate_shutdown()
  worker:initiate_shutdown()
  return worker:is_running()
end

-- Waits (this session only) until the worker has stopped; returns is_running, the
-- activities completed, the most held at once, the calls in flight (polls included).
function command.shutdown()
  worker:shutdown()
  return worker:is_running(), worker.completed, held_max, temporal.core.inflight(),
    worker.polls_in_flight, worker.polls_complete_on_shutdown
end

-- Before the service exits: the client is closed (the worker's shutdown has already ended
-- its polls; a call still in flight would be cancelled and complete in the runtime shortly
-- after, so this waits for it); then skynet's socket on the pollfd is closed.
-- Returns the calls in flight right after client:close() and once drained.
function command.close()
  client:close()
  local at_close = temporal.core.inflight()
  while temporal.core.inflight() > 0 do skynet.sleep(1) end
  host.close()
  return at_close, temporal.core.inflight()
end

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
