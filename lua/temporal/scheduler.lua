--- Cooperative tasks on Lua coroutines, driven by the runtime's completions, and the
-- host protocol that lets other event loops (cqueues, luv, skynet, a C frame loop) run
-- them.
--
-- Where a call (an RPC, `sleep`, `Task:wait`) waits depends on who runs the caller:
--
-- * a task made by `temporal.spawn` without a host: it yields a sentinel to this
--   scheduler and is resumed when the call completes;
-- * a coroutine the installed host owns (a cqueues coroutine, a skynet session, a
--   coroutine a C loop resumes): it parks through the host's own primitive
--   (`host.wait(waiter)`), and the host resumes it when `host.wakeup(waiter)` is called;
--   the host runs one driver that calls `step(0)` when `pollfd()` is readable or
--   `timeout()` seconds pass;
-- * anything else (the main chunk, the REPL, a plain coroutine with no host): it blocks
--   and drives the scheduler while it waits, so tasks make progress meanwhile.
--
-- A host loop of its own needs no adapter to run tasks: wait until `pollfd()` is
-- readable or `timeout()` seconds pass, then call `step(0)`, which never blocks.
local core = require("temporal.core")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT

local M = {}

local now = core.now
local ready = {}          -- FIFO of waiters (a task or a host waiter) to resume
local spare = {}          -- an emptied batch, reused as the next `ready` (see run_ready)
local waiting = {}        -- call object -> waiter waiting for it
local sleepers = {}       -- list of { deadline, waiter }, unsorted (small)
local SUSPEND = {}        -- what our own yields pass, to tell them from a user's yield
local current             -- the scheduler task running now
local stepping = 0        -- depth of step() calls in progress (re-entry guard)
local host                -- the installed host adapter (see set_host), or nil
local host_waiters = 0    -- host coroutines parked now
local driver_running = false

local Task = {}
Task.__index = Task
Task.__name = "temporal.Task"

function Task:__tostring()
  return ("temporal.Task(%s)"):format(self.status)
end

-- A host waiter: one parked host coroutine. `host.wait` may keep its own fields in it.
local HostWaiter = { __name = "temporal.HostWaiter", is_host_waiter = true }
HostWaiter.__index = HostWaiter

local poke  -- set below: wakes the host's driver when work appears outside a step

local function schedule(waiter)
  ready[#ready + 1] = waiter
  if stepping == 0 and host then poke() end
end

local function pending_ready() return #ready end

local function finish(task, ok, ...)
  if ok then
    task.status = "done"
    task.results = compat.pack(...)
  else
    task.status = "failed"
    task.error = ...
  end
  for _, w in ipairs(task.waiters) do schedule(w) end
  task.waiters = {}
end

-- What coroutine.resume of a task returned (taken as arguments: no table per resume).
local function resumed(task, previous, ok, ...)
  current = previous
  if ok and (...) == SUSPEND then return end  -- parked by a wait of ours (the common case)
  if coroutine.status(task.co) == "dead" then
    if ok then finish(task, true, ...)
    else
      local err = ...
      if type(err) == "string" then err = debug.traceback(task.co, err) end
      finish(task, false, err)
    end
  elseif ok then
    schedule(task)  -- a plain coroutine.yield() inside a task: let others run, then go on
  end
end

local function resume_task(task)
  local previous = current
  current = task
  resumed(task, previous, coroutine.resume(task.co))
end

local function run_one(waiter)
  if waiter.is_host_waiter then
    if waiter.abandoned then return end  -- its wait raised: nobody is parked there now
    -- counted out now, not when it runs again: the driver may stop once none is parked
    waiter.woken = true
    host_waiters = host_waiters - 1
    waiter.host.wakeup(waiter)
  else
    resume_task(waiter)
  end
end

-- A step's budget: at most `max` resumes, and no new one once the `deadline` (now()
-- time) has passed; at least one always runs, so every step makes progress. `count`: the
-- resumes of this step so far.
local function quota_left(count, max, deadline)
  if count == 0 then return true end
  if max and count >= max then return false end
  if deadline and now() >= deadline then return false end
  return true
end

-- Runs what is ready now (what becomes ready meanwhile waits for the next round) within
-- the quota; what the quota leaves stays first in line. Returns the step's count of
-- resumes. The batch, once run, is emptied and kept as the next `ready` table (a nested
-- step finds none kept and makes its own).
local function run_ready(count, max, deadline)
  local batch = ready
  local i, n = 1, #batch
  if n == 0 then return count end
  ready = spare or {}
  spare = nil
  local ok, err = true, nil
  local limited = max or deadline
  while ok and i <= n and (not limited or quota_left(count, max, deadline)) do
    count = count + 1
    local w = batch[i]
    if host or w.is_host_waiter then
      ok, err = pcall(run_one, w)   -- a host's wakeup may raise (luv resumes at once)
    else
      resume_task(w)                -- a task, no host: nothing in there raises
    end
    i = i + 1
  end
  if i <= n then
    local rest = table.move(batch, i, n, 1, {})
    table.move(ready, 1, #ready, #rest + 1, rest)
    ready = rest
  end
  for j = 1, n do batch[j] = nil end
  spare = batch
  if not ok then error(err, 0) end   -- what was not run stays first in line
  return count
end

local function next_deadline()
  local d
  for i = 1, #sleepers do
    if not d or sleepers[i][1] < d then d = sleepers[i][1] end
  end
  return d
end

local function wake_sleepers()
  local t = now()
  local i = 1
  while i <= #sleepers do
    if sleepers[i][1] <= t then
      schedule(sleepers[i][2])
      table.remove(sleepers, i)
    else
      i = i + 1
    end
  end
end

--- Seconds until the scheduler has work without any I/O: 0 when tasks are ready, the
-- time to the next timer, or nil when only completions (the pollfd) can wake it.
function M.timeout()
  if pending_ready() > 0 then return 0 end
  local d = next_deadline()
  if d then return math.max(0, d - now()) end
  return nil
end

local function check_timeout(timeout, what)
  if timeout == nil then return nil end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error(("%s: timeout must be a non-negative number or nil, got %s"):format(what, tostring(timeout)), 3)
  end
  if timeout == math.huge then return nil end
  return timeout
end

local BUDGET_KEYS = { max_tasks = true, max_time = true }

local function check_budget(budget)
  if budget == nil then return nil end
  if type(budget) ~= "table" then error("step: budget must be a table, got " .. type(budget), 3) end
  for k, v in pairs(budget) do
    if not BUDGET_KEYS[k] then error(("step: unknown budget option '%s'"):format(tostring(k)), 3) end
    if k == "max_tasks" and (compat.math_type(v) ~= "integer" or v < 1) then
      error("step: budget.max_tasks must be a positive integer, got " .. tostring(v), 3)
    end
    if k == "max_time" and (type(v) ~= "number" or v ~= v or v < 0) then
      error("step: budget.max_time must be a non-negative number of seconds, got " .. tostring(v), 3)
    end
  end
  return budget
end

-- (runs inside a step: schedule's poke is never due, so the waiters go straight in line)
local function deliver(calls)
  for i = 1, #calls do
    local call = calls[i]
    local w = waiting[call]
    if w then
      waiting[call] = nil
      ready[#ready + 1] = w
    end
  end
end

--- Work left: tasks ready, timers, calls in flight or host coroutines parked.
local function busy()
  return pending_ready() > 0 or #sleepers > 0 or core.inflight() > 0 or host_waiters > 0
end

--- One round: wait up to `timeout` seconds (nil or math.huge: until something happens;
-- 0: not at all) for completions or timers, then resume every task (and wake every host
-- coroutine) that became ready, within `budget` ({ max_tasks = n, max_time = seconds }).
-- Returns true when there is still work (tasks, timers, calls in flight or parked host
-- coroutines).
local function step_body(timeout, max, deadline)
  local count = run_ready(0, max, deadline)
  local t = M.timeout()
  if t == nil then t = timeout
  elseif timeout ~= nil then t = math.min(t, timeout) end
  -- what just ran may be what the caller waits for (a task that finished): do not
  -- block in the runtime for some unrelated call after it
  if count > 0 then t = 0 end
  if t ~= 0 or core.inflight() > 0 or host then deliver(core.wait(t)) end
  wake_sleepers()
  run_ready(count, max, deadline)
end

function M.step(timeout, budget)
  timeout = check_timeout(timeout, "step")
  budget = check_budget(budget)
  local max = budget and budget.max_tasks
  local deadline = budget and budget.max_time and now() + budget.max_time
  stepping = stepping + 1
  local ok, err = pcall(step_body, timeout, max, deadline)
  stepping = stepping - 1
  if not ok then error(err, 0) end
  return busy()
end

--- The eventfd a host loop polls for readability, and the events it waits for.
function M.pollfd() return core.pollfd() end
function M.events() return "r" end

-- The driver of a host: started when the first host coroutine parks, it runs step(0)
-- each time the host sees pollfd() readable or timeout() pass, until no work is left.
local function drive()
  local ok, more = pcall(M.step, 0, host and host.budget)
  if not (ok and more) then driver_running = false end
  if not ok then error(more, 0) end
  return more
end

local function ensure_driver()
  if not driver_running then
    driver_running = true
    host.start(drive)
  end
end

poke = function()
  ensure_driver()
  core.wake()  -- the driver may be waiting on pollfd() with no timeout
end

-- How the running code waits: "task" (yield to this scheduler), "host" (park through
-- the host), or "block" (drive the scheduler until done). Raises, naming the context,
-- where it can do neither.
local function wait_mode(what)
  local task = current
  local co, main = coroutine.running()
  if co == nil then main = true end  -- LuaJIT: no coroutine object for the main thread
  if task and co == task.co then
    if compat.isyieldable() then return "task", task end
    error(("%s: cannot wait inside this temporal task: it is inside a C call (a metamethod, "
      .. "an iterator or a function called from C), which can neither yield nor block the "
      .. "scheduler that runs the task"):format(what), 0)
  end
  if not task and not main and host and compat.isyieldable() and host.owns(co) then
    return "host"
  end
  if host and host.blocking == false then
    if host.cannot_wait then error(host.cannot_wait(what), 0) end  -- the host names the context
    local where = main and "the main thread" or "a coroutine that cannot yield to the host"
    error(("%s: cannot wait in %s: blocking would stall the %s host; make the call from a "
      .. "coroutine of the host"):format(what, where, host.name), 0)
  end
  return "block"
end
M.wait_mode = wait_mode

local function park(waiter_setup)
  local w = setmetatable({ host = host, co = coroutine.running(), woken = false }, HostWaiter)
  waiter_setup(w)
  host_waiters = host_waiters + 1
  ensure_driver()
  local ok, err = pcall(function()
    repeat host.wait(w) until w.woken
  end)
  if not w.woken then
    w.abandoned = true
    host_waiters = host_waiters - 1
  end
  if not ok then error(err, 0) end
end

--- Waits for a call object from core.unary; returns what call:result() returns. `mode` and
-- `task`: what wait_mode returned for the caller before it started the call (the call is
-- then known to be in flight: a call is only marked done while completions are taken).
function M.await(call, mode, task)
  if mode ~= nil or not call:done() then
    if mode == nil then mode, task = wait_mode("call") end
    if mode == "task" then
      waiting[call] = task
      coroutine.yield(SUSPEND)
    elseif mode == "host" then
      park(function(w) waiting[call] = w end)
    else
      while not call:done() do M.step(nil) end
    end
  end
  return call:result()
end

--- Pauses the current task or host coroutine (or blocks the caller) for `seconds`.
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
    error("sleep: seconds must be a non-negative number", 2)
  end
  local deadline = now() + seconds
  local mode, task = wait_mode("sleep")
  if mode == "task" then
    sleepers[#sleepers + 1] = { deadline, task }
    coroutine.yield(SUSPEND)
  elseif mode == "host" then
    park(function(w) sleepers[#sleepers + 1] = { deadline, w } end)
  else
    while now() < deadline do M.step(math.max(0, deadline - now())) end
  end
end

--- Starts fn(...) as a task. Without a host it first runs at the next scheduler step;
-- with a host installed it is a coroutine of the host (so the host's own yields inside
-- it go to the host) started the host's way.
function M.spawn(fn, ...)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("spawn: expected a function, got " .. type(fn), 2)
  end
  -- is_host_waiter: a field of its own, so run_one's test does not go through __index
  local task = setmetatable({ status = "running", waiters = {}, is_host_waiter = false }, Task)
  local args = compat.pack(...)
  if host then
    task.host = host
    host.spawn(function()
      task.co = coroutine.running()
      local r = compat.pack(xpcall(fn, function(e)
        if type(e) == "string" then return debug.traceback(e, 2) end
        return e
      end, compat.unpack(args, 1, args.n)))
      finish(task, r[1], compat.unpack(r, 2, r.n))
    end)
  else
    task.co = coroutine.create(function() return fn(compat.unpack(args, 1, args.n)) end)
    schedule(task)
  end
  return task
end

--- Waits for the task to finish; returns its results or raises its error.
function Task:wait()
  if self.status == "running" then
    local mode, me = wait_mode("Task:wait")
    if mode == "task" then
      if me == self then error("a task cannot wait for itself", 2) end
      self.waiters[#self.waiters + 1] = me
      coroutine.yield(SUSPEND)
    elseif mode == "host" then
      if self.co == coroutine.running() then error("a task cannot wait for itself", 2) end
      park(function(w) self.waiters[#self.waiters + 1] = w end)
    else
      if self.host then
        error(("Task:wait: the task runs in the %s host; wait for it from a coroutine of "
          .. "that host, or run the host's loop"):format(self.host.name), 2)
      end
      while self.status == "running" do
        if not M.step(nil) and self.status == "running" then
          error("deadlock: the task waits for something no call, timer or task will bring", 2)
        end
      end
    end
  end
  if self.status == "failed" then error(self.error, 0) end
  return compat.unpack(self.results, 1, self.results.n)
end

--- true when the task has finished (successfully or not).
function Task:done() return self.status ~= "running" end

--- Runs the scheduler until no task, timer or call is left.
function M.run()
  while M.step(nil) do end
end

M.Task = Task  -- the metatable of tasks

--- The running scheduler task, or nil outside tasks.
function M.current() return current end

local HOST_FIELDS = { name = "string", owns = "function", wait = "function", wakeup = "function",
  start = "function", spawn = "function" }

--- Installs a host adapter (or removes it with nil); returns the previous one.
-- An adapter is a table:
--   name          string, for error messages
--   owns(co)      true when `co` (the running, yieldable coroutine) is one the host resumes
--   wait(w)       parks the running coroutine until wakeup(w) is called (w is a table the
--                 adapter may keep its own fields in; w.co is the coroutine)
--   wakeup(w)     makes the parked coroutine of w resume (now or when the host gets to it)
--   start(drive)  from now on, call drive() whenever pollfd() is readable or timeout()
--                 seconds have passed, until drive() returns false
--   spawn(fn)     runs fn in a new coroutine of the host (temporal.spawn under the host)
--   budget        optional { max_tasks = n, max_time = s } for each drive() step
--   blocking      optional false: code of the host that cannot yield must not block either
--   cannot_wait   optional function(what) -> the error message for such code (naming the
--                 host's context, e.g. nginx's phase); a generic one otherwise
function M.set_host(adapter)
  if adapter ~= nil then
    if type(adapter) ~= "table" then error("set_host: expected an adapter table or nil, got " .. type(adapter), 2) end
    for k, t in pairs(HOST_FIELDS) do
      if type(adapter[k]) ~= t then
        error(("set_host: adapter.%s must be a %s, got %s"):format(k, t, type(adapter[k])), 2)
      end
    end
    if adapter.budget ~= nil then check_budget(adapter.budget) end
    if adapter.cannot_wait ~= nil and type(adapter.cannot_wait) ~= "function" then
      error("set_host: adapter.cannot_wait must be a function or nil, got " .. type(adapter.cannot_wait), 2)
    end
  end
  if host and host ~= adapter and host_waiters > 0 then
    error(("set_host: %d coroutines of the %s host are still waiting"):format(host_waiters, host.name), 2)
  end
  -- A host waits on the pollfd: completions reach this state through it from now on
  -- (before any call a host coroutine makes), not straight from its own queue. Before the
  -- state's runtime exists, from its creation on (nginx's master may install a host).
  if adapter ~= nil then core.relay_mode() end
  local previous = host
  if adapter ~= host then
    host = adapter
    driver_running = false
  end
  return previous
end

--- The installed host adapter, or nil.
function M.get_host() return host end

-- ------------------------------------------------------------------ events

-- An Event: a one-shot wake-up for code that waits for something other than a call, a
-- timer or a task (the activity worker's cancellations). Waiting on one costs nothing
-- until it is set or its timeout passes: no polling.
local Event = { __name = "temporal.Event" }
Event.__index = Event

local function remove_value(list, v)
  for i = 1, #list do
    if list[i] == v then table.remove(list, i) return true end
  end
  return false
end

--- A new Event, not set.
function M.event()
  return setmetatable({ is_set = false, waiters = {} }, Event)
end

--- Sets the event: every waiter resumes (at the next step); later waits return at once.
function Event:set()
  if self.is_set then return end
  self.is_set = true
  local list = self.waiters
  self.waiters = {}
  for _, rec in ipairs(list) do
    -- a waiter whose timeout has fired is no longer among the sleepers: already resumed
    if rec.entry == nil or remove_value(sleepers, rec.entry) then schedule(rec.waiter) end
  end
end

--- Waits until the event is set or `timeout` seconds pass (nil or math.huge: no limit);
-- returns true when it is set. Waits as any call does (yields in a task or a host
-- coroutine, blocks driving the scheduler elsewhere).
function Event:wait(timeout)
  if self.is_set then return true end
  timeout = check_timeout(timeout, "Event:wait")
  local deadline = timeout and now() + timeout
  local mode, task = wait_mode("Event:wait")
  if mode == "block" then
    while not self.is_set do
      local left = deadline and deadline - now()
      if left and left <= 0 then break end
      if not M.step(left) and not self.is_set and not deadline then
        error("deadlock: the event waits to be set, but no call, timer or task is left to set it", 2)
      end
    end
    return self.is_set
  end
  local rec = {}
  local function register(waiter)
    rec.waiter = waiter
    self.waiters[#self.waiters + 1] = rec
    if deadline then
      rec.entry = { deadline, waiter }
      sleepers[#sleepers + 1] = rec.entry
    end
  end
  if mode == "task" then
    register(task)
    coroutine.yield(SUSPEND)
  else
    park(register)
  end
  if not self.is_set then remove_value(self.waiters, rec) end   -- timed out
  return self.is_set
end

M.Event = Event

--- Cancels the calls the coroutine `co` (a task's or a host coroutine) is waiting for now:
-- each completes at once with CANCELLED, which its waiter receives. Returns how many.
-- (Scans the calls waited for; meant for rare events such as an activity's cancellation.)
function M.cancel_calls_of(co)
  local n = 0
  for call, w in pairs(waiting) do
    if w.co == co then
      call:cancel()
      n = n + 1
    end
  end
  return n
end

return M
