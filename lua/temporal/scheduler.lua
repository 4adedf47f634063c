--- Cooperative tasks on Lua coroutines, driven by the runtime's completions.
--
-- A task made by `temporal.spawn` runs until it waits for an RPC, a timer or another
-- task; then it yields to the scheduler and is resumed when that completes. Code outside
-- any task (the main chunk, the REPL, a coroutine of the user's own) blocks instead, and
-- drives the scheduler while it waits, so spawned tasks make progress meanwhile.
-- A host event loop drives it without blocking: wait until `pollfd()` is readable or
-- `timeout()` seconds pass, then call `step(0)`.
local core = require("temporal.core")

local M = {}

local now = core.now
local tasks = setmetatable({}, { __mode = "k" })  -- coroutine -> task
local ready = {}          -- FIFO of { task, ... resume values }
local waiting = {}        -- call object -> task waiting for it
local sleepers = {}       -- list of { deadline, task }, unsorted (small)
local SUSPEND = {}        -- what our own yields pass, to tell them from a user's yield
local current             -- the task running now

local Task = {}
Task.__index = Task
Task.__name = "temporal.Task"

function Task:__tostring()
  return ("temporal.Task(%s)"):format(self.status)
end

local function schedule(task, ...)
  ready[#ready + 1] = table.pack(task, ...)
end

local function finish(task, ok, ...)
  if ok then
    task.status = "done"
    task.results = table.pack(...)
  else
    task.status = "failed"
    task.error = ...
  end
  for _, w in ipairs(task.waiters) do schedule(w) end
  task.waiters = {}
end

local function resume(task, ...)
  local previous = current
  current = task
  local r = table.pack(coroutine.resume(task.co, ...))
  current = previous
  if coroutine.status(task.co) == "dead" then
    if r[1] then finish(task, true, table.unpack(r, 2, r.n))
    else
      local err = r[2]
      if type(err) == "string" then err = debug.traceback(task.co, err) end
      finish(task, false, err)
    end
  elseif r[1] and r[2] ~= SUSPEND then
    schedule(task)  -- a plain coroutine.yield() inside a task: let others run, then go on
  end
end

local function run_ready()
  -- Only what is ready now: tasks scheduled while running wait for the next round.
  local batch = ready
  ready = {}
  for i = 1, #batch do
    local item = batch[i]
    resume(item[1], table.unpack(item, 2, item.n))
  end
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
  if #ready > 0 then return 0 end
  local d = next_deadline()
  if d then return math.max(0, d - now()) end
  return nil
end

--- One round: wait up to `timeout` seconds (nil: until something happens; 0: not at
-- all) for completions or timers, then resume every task that became ready.
-- Returns true when there is still work (tasks, timers or calls in flight).
function M.step(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("step: timeout must be a non-negative number or nil", 2)
  end
  run_ready()
  local t = M.timeout()
  if t == nil then t = timeout
  elseif timeout ~= nil then t = math.min(t, timeout) end
  if t ~= 0 or core.inflight() > 0 then
    for _, call in ipairs(core.wait(t)) do
      local task = waiting[call]
      if task then
        waiting[call] = nil
        schedule(task)
      end
    end
  end
  wake_sleepers()
  run_ready()
  return #ready > 0 or #sleepers > 0 or core.inflight() > 0
end

--- The eventfd a host loop polls for readability, and the events it waits for.
function M.pollfd() return core.pollfd() end
function M.events() return "r" end

--- Waits for a call object from core.unary; returns what call:result() returns.
function M.await(call)
  local task = current
  if task and coroutine.running() == task.co then
    waiting[call] = task
    coroutine.yield(SUSPEND)
  else
    while not call:done() do M.step(nil) end
  end
  return call:result()
end

--- Pauses the current task (or blocks the caller) for `seconds`.
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
    error("sleep: seconds must be a non-negative number", 2)
  end
  local deadline = now() + seconds
  local task = current
  if task and coroutine.running() == task.co then
    sleepers[#sleepers + 1] = { deadline, task }
    coroutine.yield(SUSPEND)
  else
    while now() < deadline do M.step(math.max(0, deadline - now())) end
  end
end

--- Starts fn(...) as a task; it first runs at the next scheduler step.
function M.spawn(fn, ...)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("spawn: expected a function, got " .. type(fn), 2)
  end
  local task = setmetatable({ status = "ready", waiters = {} }, Task)
  local args = table.pack(...)
  task.co = coroutine.create(function() return fn(table.unpack(args, 1, args.n)) end)
  tasks[task.co] = task
  task.status = "running"
  schedule(task)
  return task
end

--- Waits for the task to finish; returns its results or raises its error.
function Task:wait()
  if self.status == "running" then
    local me = current
    if me and coroutine.running() == me.co then
      if me == self then error("a task cannot wait for itself", 2) end
      self.waiters[#self.waiters + 1] = me
      coroutine.yield(SUSPEND)
    else
      while self.status == "running" do
        if not M.step(nil) and self.status == "running" then
          error("deadlock: the task waits for something no call, timer or task will bring", 2)
        end
      end
    end
  end
  if self.status == "failed" then error(self.error, 0) end
  return table.unpack(self.results, 1, self.results.n)
end

--- true when the task has finished (successfully or not).
function Task:done() return self.status ~= "running" end

--- Runs the scheduler until no task, timer or call is left.
function M.run()
  while M.step(nil) do end
end

--- The running task, or nil outside tasks.
function M.current() return current end

return M
