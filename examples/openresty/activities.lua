--- Lua activities served by nginx (examples/openresty/activities.conf).
--
-- Every nginx worker process runs one temporal activity worker on the nginx host
-- (temporal.host.nginx): its long polls and its activities wait on nginx's event loop, so
-- the process keeps answering HTTP while activities run. Workflows written in any SDK call
-- these activities by name on the task queue TEMPORAL_ACTIVITY_TASK_QUEUE.
--
--   init_worker_by_lua_block { require("activities").init_worker() }
--   exit_worker_by_lua_block { require("activities").exit_worker() }
--
-- The worker runs in a timer (ngx.timer.at), started from init_worker_by_lua. A reload
-- (nginx -s reload, SIGHUP) or a graceful stop (nginx -s quit) fires a pending timer kept
-- for that purpose early ("premature"): the worker stops polling (its open polls are
-- cancelled), lets its running activities finish within graceful_shutdown_timeout and
-- hands the rest back to the server (retried elsewhere); then nothing of temporal waits in
-- the process any more and nginx lets it exit. The new worker processes poll meanwhile.
--
-- Environment (declared with `env` in the conf): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
-- TEMPORAL_ACTIVITY_TASK_QUEUE (default "openresty-activities"),
-- TEMPORAL_MAX_CONCURRENT_ACTIVITIES (per worker process, default 20),
-- TEMPORAL_GRACEFUL_SHUTDOWN_TIMEOUT (seconds, default 30).
local temporal = require("temporal")
local json_encode = temporal.core.json_encode

local M = {}

local client   -- this worker process's client
local adapter  -- its nginx host adapter
local worker   -- its activity worker

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

--- The activities: fn(ctx, args...) -> result (see temporal.worker).
M.activities = {
  -- what the workflow sent, and where it ran
  echo = function(_, ...)
    local args, n = { ... }, select("#", ...)
    local out = temporal.array{}
    for i = 1, n do
      local v = args[i]
      if v == nil then v = temporal.null end
      out[i] = v
    end
    return { echo = out, pid = ngx.worker.pid(), phase = ngx.get_phase() }
  end,
  -- a cache entry the HTTP side serves (GET /cache/<key>): workflows keep it up to date
  cache_set = function(ctx, key, value)
    local ok, err = ngx.shared.activity_cache:set(key, json_encode(value))
    if not ok then error("cache_set: " .. tostring(err)) end
    return { key = key, pid = ngx.worker.pid(), attempt = ctx.info.attempt }
  end,
  -- waits for another workflow's result through the client, without blocking nginx
  wait_workflow = function(ctx, id)
    local result = client:get_workflow_handle(id):result()
    return { result = result, pid = ngx.worker.pid(), attempt = ctx.info.attempt }
  end,
  -- a failure the workflow sees as ApplicationError type "NginxError", not retried
  fail = function(_, message)
    error(temporal.application_error(message, { type = "NginxError", non_retryable = true,
      details = { { pid = ngx.worker.pid() } } }))
  end,
}

-- Kept pending until the worker process shuts down: nginx then runs pending timers early,
-- with premature = true, which is the signal to stop the worker.
local WATCH_INTERVAL = 3600
local function watch_exit(premature)
  if premature then
    if worker then worker:initiate_shutdown() end
    return
  end
  local ok, err = ngx.timer.at(WATCH_INTERVAL, watch_exit)
  if not ok then
    -- only a worker that is exiting refuses a timer: stop as well
    ngx.log(ngx.WARN, "activities: cannot re-arm the exit watch (", err, "); stopping the worker")
    if worker then worker:initiate_shutdown() end
  end
end

-- The worker's own timer: runs it until it stops, logging a fatal error (an unknown
-- namespace, a missing permission).
local function run(premature)
  if premature then return end
  local ok, err = pcall(worker.run, worker)
  if not ok then
    ngx.log(ngx.ERR, "activities: the activity worker stopped: ", tostring(err))
  else
    ngx.log(ngx.INFO, "activities: the activity worker stopped after ", worker.completed, " activities")
  end
end

--- init_worker_by_lua: the runtime, the host adapter, the client and the activity worker of
-- this worker process (after nginx forked it; never in the master).
function M.init_worker()
  adapter = require("temporal.host.nginx").new()
  temporal.set_host(adapter)
  client = temporal.connect(env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), {
    namespace = env("TEMPORAL_NAMESPACE", "default"), lazy = true,
    identity = ("%d@openresty-activities"):format(ngx.worker.pid()),
  })
  worker = client:new_worker{
    task_queue = env("TEMPORAL_ACTIVITY_TASK_QUEUE", "openresty-activities"),
    activities = M.activities,
    max_concurrent_activities = tonumber(env("TEMPORAL_MAX_CONCURRENT_ACTIVITIES", "20")),
    graceful_shutdown_timeout = tonumber(env("TEMPORAL_GRACEFUL_SHUTDOWN_TIMEOUT", "30")),
    log = function(level, message)
      ngx.log(level == "warn" and ngx.WARN or ngx.ERR, "activities: ", message)
    end,
  }
  assert(ngx.timer.at(0, run))
  assert(ngx.timer.at(WATCH_INTERVAL, watch_exit))
end

--- exit_worker_by_lua: by now the worker has stopped (the process exits only once nothing
-- waits); close the client and the relay.
function M.exit_worker()
  if client then client:close() end
  if adapter then adapter.close() end
end

--- GET /activities: this worker process's activity worker, as JSON.
function M.status()
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json_encode({
    pid = ngx.worker.pid(), state = worker and worker.state or "none",
    running = worker and worker.running_count or 0, polls = worker and worker.polls_in_flight or 0,
    completed = worker and worker.completed or 0,
  }))
end

--- GET /cache/<key>: what cache_set stored (404 when nothing).
function M.cache()
  local key = ngx.var.uri:match("^/cache/(.+)$")
  local v = key and ngx.shared.activity_cache:get(ngx.unescape_uri(key))
  if not v then return ngx.exit(404) end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(v)
end

function M.client() return client end
function M.worker() return worker end

return M
