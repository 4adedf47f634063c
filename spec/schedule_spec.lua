-- Schedules against the real test bed: the server's scheduler starts workflows that the
-- Python worker runs; every claim is checked from the server side (describe, list, the
-- CLI's view of the started workflows).
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local helper = require("support.helper")
local extra_server = require("support.extra_server")
local temporal = require("temporal")

local errors = temporal.errors
local sa = require("temporal.converter").search_attributes

local function connect(address)
  return temporal.connect(address or helper.address, { namespace = helper.namespace })
end

local function echo_action(id, args)
  return { workflow = "Echo", id = id, task_queue = helper.task_queue, args = args or { 1, "two" } }
end

-- A spec that fires rarely: once a year.
local function yearly()
  return { calendars = { { month = 1, day_of_month = 1, hour = 0 } } }
end

local function workflow_outcome(workflow_id)
  local d = helper.cli_json("workflow", "describe", "--workflow-id", workflow_id)
  return d.workflowExecutionInfo.status, d.result
end

-- Waits until the schedule took at least n actions, all completed by the worker; returns them.
local function completed_actions(sh, n, timeout)
  return helper.eventually(function()
    local info = sh:describe().info
    if #info.recent_actions < n then return false end
    for _, a in ipairs(info.recent_actions) do
      if workflow_outcome(a.action.workflow_id) ~= "WORKFLOW_EXECUTION_STATUS_COMPLETED" then return false end
    end
    return info.recent_actions
  end, timeout or 30, 0.5)
end

describe("schedules", function()
  local client
  local created = {}
  setup(function() client = connect() end)
  teardown(function()
    for _, sh in ipairs(created) do pcall(sh.delete, sh) end
    client:close()
  end)

  local function create(prefix, schedule, opts)
    local id = helper.unique_id(prefix)
    local sh = client:create_schedule(id, schedule, opts)
    created[#created + 1] = sh
    return sh, id
  end

  it("creates a schedule whose description reads back as created", function()
    local t0 = 2000000000
    local sh, id = create("sched-shape", {
      spec = {
        intervals = { { every = 3600, offset = 60 } },
        calendars = { { hour = 3, minute = { 0, 30 }, day_of_week = { start = 1, stop = 5 }, comment = "weekdays" } },
        cron_expressions = { "15 4 * * *" },
        skip = { { month = 12, day_of_month = 25 } },
        start_at = t0, end_at = t0 + 86400 * 365, jitter = 30, time_zone_name = "Europe/Berlin",
      },
      action = {
        workflow = "Echo", id = "wf-shape", task_queue = helper.task_queue, args = { 1, "two", { k = true } },
        execution_timeout = 600, run_timeout = 300, task_timeout = 10,
        retry_policy = { maximum_attempts = 3, initial_interval = 2, backoff_coefficient = 2.5 },
        memo = { owner = "lua" }, static_summary = "nightly report",
        search_attributes = { CustomKeyword = sa.keyword("kw"), CustomInt = sa.int(5) },
      },
      policy = { overlap = "BUFFER_ONE", catchup_window = 3600, pause_on_failure = true },
      state = { note = "created by lua", paused = true, remaining_actions = 4 },
    }, { memo = { team = "blue" }, search_attributes = { CustomKeyword = sa.keyword("schedule-kw") } })
    assert.equals(id, sh.id)
    assert.equals("temporal.ScheduleHandle(" .. id .. ")", tostring(sh))
    assert.equals("userdata", type(sh))

    local d = sh:describe()
    assert.equals(id, d.id)
    local spec = d.schedule.spec
    assert.same({ { every = 3600, offset = 60 } }, spec.intervals)
    -- calendars first, then the cron string the server turned into a calendar
    assert.equals(2, #spec.calendars)
    local cal = spec.calendars[1]
    assert.same({ { start = 3, stop = 3, step = 1 } }, cal.hour)
    assert.same({ { start = 0, stop = 0, step = 1 }, { start = 30, stop = 30, step = 1 } }, cal.minute)
    assert.same({ { start = 1, stop = 5, step = 1 } }, cal.day_of_week)
    assert.same({ { start = 0, stop = 0, step = 1 } }, cal.second)            -- Python's defaults
    assert.same({ { start = 1, stop = 31, step = 1 } }, cal.day_of_month)
    assert.same({ { start = 1, stop = 12, step = 1 } }, cal.month)
    assert.same({}, cal.year)
    assert.equals("weekdays", cal.comment)
    assert.same({ { start = 4, stop = 4, step = 1 } }, spec.calendars[2].hour)
    assert.same({ { start = 15, stop = 15, step = 1 } }, spec.calendars[2].minute)
    assert.same({ { start = 12, stop = 12, step = 1 } }, spec.skip[1].month)
    assert.equals(t0, spec.start_at)
    assert.equals(t0 + 86400 * 365, spec.end_at)
    assert.equals(30, spec.jitter)
    assert.equals("Europe/Berlin", spec.time_zone_name)

    local action = d.schedule.action
    assert.equals("Echo", action.workflow)
    assert.equals("wf-shape", action.id)
    assert.equals(helper.task_queue, action.task_queue)
    assert.equals(3, action.args.n)
    assert.equals(1, action.args[1])
    assert.equals(compat.math_type(1), compat.math_type(action.args[1]))
    assert.equals("two", action.args[2])
    assert.is_true(action.args[3].k)
    assert.equals(600, action.execution_timeout)
    assert.equals(300, action.run_timeout)
    assert.equals(10, action.task_timeout)
    assert.equals(3, action.retry_policy.maximum_attempts)
    assert.equals(2, action.retry_policy.initial_interval)
    assert.equals(2.5, action.retry_policy.backoff_coefficient)
    assert.equals("lua", action.memo.owner)
    assert.equals("nightly report", action.static_summary)
    -- typed, so that an update sends them back as they were
    assert.is_true(sa.is_typed(action.search_attributes.CustomKeyword))
    assert.equals("Keyword", action.search_attributes.CustomKeyword.type)
    assert.equals("kw", action.search_attributes.CustomKeyword.value)
    assert.equals("Int", action.search_attributes.CustomInt.type)
    assert.equals(5, action.search_attributes.CustomInt.value)
    assert.equals("schedule-kw", d.search_attributes.CustomKeyword)

    assert.same({ overlap = "BUFFER_ONE", catchup_window = 3600, pause_on_failure = true },
      d.schedule.policy)
    assert.same({ note = "created by lua", paused = true, limited_actions = true, remaining_actions = 4 },
      d.schedule.state)
    assert.equals("blue", d.memo.team)
    assert.is_number(d.info.created_at)
    assert.is_true(math.abs(d.info.created_at - os.time()) < 120)
    assert.equals(0, d.info.num_actions)
    assert.is_table(d.raw)

    -- the CLI sees the same schedule
    local cli = helper.cli_json("schedule", "describe", "--schedule-id", id)
    assert.equals("created by lua", cli.schedule.state.notes)
    assert.is_true(cli.schedule.state.paused)
  end)

  it("raises ScheduleAlreadyRunningError for a taken id, and delete removes the schedule", function()
    local sh, id = create("sched-dup", { spec = yearly(), action = echo_action("wf-dup") })
    local ok, err = pcall(client.create_schedule, client, id, { spec = yearly(), action = echo_action("wf-dup") })
    assert.is_false(ok)
    assert.is_true(errors.is(err, "ScheduleAlreadyRunningError"))
    assert.equals(id, err.schedule_id)
    assert.is_true(errors.is(err.cause, "RPCError"))
    assert.matches("ScheduleAlreadyRunningError: schedule " .. id:gsub("%-", "%%-") .. " already exists", tostring(err))
    sh:delete()
    local ok2, err2 = pcall(sh.describe, sh)
    assert.is_false(ok2)
    assert.equals("NOT_FOUND", err2.status)
    local cli_ok = helper.try_cli("schedule", "describe", "--schedule-id", id)
    assert.is_false(cli_ok)
  end)

  it("an interval schedule starts workflows that the Python worker completes", function()
    local sh, id = create("sched-interval", {
      spec = { intervals = { { every = 2 } } },
      action = echo_action("wf-interval", { 7, "seven" }),
      policy = { overlap = "ALLOW_ALL" },
    })
    local actions = completed_actions(sh, 2, 40)
    for _, a in ipairs(actions) do
      -- the server appends the scheduled time to the action's workflow id
      assert.matches("^wf%-interval%-", a.action.workflow_id)
      assert.is_number(a.scheduled_at)
      assert.is_number(a.started_at)
      local status, result = workflow_outcome(a.action.workflow_id)
      assert.equals("WORKFLOW_EXECUTION_STATUS_COMPLETED", status)
      assert.same({ 7, "seven" }, result.values)
    end
    local info = sh:describe().info
    assert.is_true(info.num_actions >= 2)
    assert.is_true(#info.next_action_times > 0)
    -- and the workflows carry the schedule's id as a search attribute
    local listed = helper.eventually(function()
      local l = helper.cli_json("workflow", "list", "--query", ("TemporalScheduledById = '%s'"):format(id))
      return #l >= 2 and l
    end, 20)
    assert.is_true(#listed >= 2)
  end)

  it("trigger starts one action now, with the given overlap policy", function()
    local sh = create("sched-trigger", { spec = yearly(), action = echo_action("wf-trigger", { "now" }) })
    assert.equals(0, sh:describe().info.num_actions)
    sh:trigger({ overlap = "ALLOW_ALL" })
    local actions = completed_actions(sh, 1)
    assert.equals(1, #actions)
    local _, result = workflow_outcome(actions[1].action.workflow_id)
    assert.same({ "now" }, result.values)
    assert.equals(1, sh:describe().info.num_actions)
  end)

  it("create with trigger_immediately takes one action at once", function()
    local sh = create("sched-trigger-now", { spec = yearly(), action = echo_action("wf-trigger-now") },
      { trigger_immediately = true })
    assert.equals(1, #completed_actions(sh, 1))
  end)

  it("pause and unpause show in describe, with the note given or a default one", function()
    local sh = create("sched-pause", { spec = yearly(), action = echo_action("wf-pause") })
    assert.is_false(sh:describe().schedule.state.paused)
    sh:pause("maintenance window")
    local st = sh:describe().schedule.state
    assert.is_true(st.paused)
    assert.equals("maintenance window", st.note)
    sh:unpause()
    st = sh:describe().schedule.state
    assert.is_false(st.paused)
    assert.equals("Unpaused via temporal-lua", st.note)
    sh:pause({ note = "again", rpc_timeout = 10 })
    assert.equals("again", sh:describe().schedule.state.note)
    sh:pause()
    assert.equals("Paused via temporal-lua", sh:describe().schedule.state.note)
    local cli = helper.cli_json("schedule", "describe", "--schedule-id", sh.id)
    assert.is_true(cli.schedule.state.paused)
  end)

  it("backfill runs the actions of past periods", function()
    local sh = create("sched-backfill", {
      spec = { intervals = { { every = 60 } } },
      action = echo_action("wf-backfill"),
      state = { paused = true },
    })
    local base = compat.idiv(os.time(), 60) * 60 - 3600
    sh:backfill({ start_at = base, end_at = base + 150, overlap = "ALLOW_ALL" },
      { start_at = base + 600, end_at = base + 630, overlap = "BUFFER_ALL" })
    -- base, base+60, base+120 and base+600: four periods, all in the past
    local actions = completed_actions(sh, 4)
    assert.equals(4, #actions)
    local scheduled = {}
    for _, a in ipairs(actions) do scheduled[#scheduled + 1] = a.scheduled_at end
    table.sort(scheduled)
    assert.same({ base, base + 60, base + 120, base + 600 }, scheduled)
    assert.has_error(function() sh:backfill() end,
      "backfill: at least one { start_at =, end_at = } period is required")
  end)

  it("update changes what describe shows; nil from the updater changes nothing", function()
    local sh = create("sched-update", {
      spec = { intervals = { { every = 3600 } } },
      action = (function()
        local a = echo_action("wf-update", { "a", 1 })
        a.search_attributes = { CustomText = sa.text("some text"), CustomBool = sa.bool(true) }
        return a
      end)(),
      state = { note = "v1" },
    })
    local before = sh:describe()
    local seen
    assert.is_nil(sh:update(function(desc) seen = desc; return nil end))
    assert.equals(before.id, seen.id)
    assert.equals(before.conflict_token, sh:describe().conflict_token)   -- nothing sent

    local after = sh:update(function(desc)
      desc.schedule.spec.intervals = { { every = 7200, offset = 5 } }
      desc.schedule.state.note = "v2"
      desc.schedule.policy.overlap = "CANCEL_OTHER"
      return desc.schedule
    end)
    assert.equals("v2", after.schedule.state.note)
    local d = sh:describe()
    assert.same({ { every = 7200, offset = 5 } }, d.schedule.spec.intervals)
    assert.equals("v2", d.schedule.state.note)
    assert.equals("CANCEL_OTHER", d.schedule.policy.overlap)
    -- the action went back as it came: args decoded and re-encoded exactly
    assert.equals(2, d.schedule.action.args.n)
    assert.equals("a", d.schedule.action.args[1])
    assert.equals(1, d.schedule.action.args[2])
    assert.equals("Text", d.schedule.action.search_attributes.CustomText.type)
    assert.equals("some text", d.schedule.action.search_attributes.CustomText.value)
    assert.is_true(d.schedule.action.search_attributes.CustomBool.value)
    assert.is_number(d.info.last_updated_at)
    local cli = helper.cli_json("schedule", "describe", "--schedule-id", sh.id)
    assert.equals("v2", cli.schedule.state.notes)
  end)

  it("update retries when a concurrent change got in between (workflow-based scheduler)", function()
    local sh = create("sched-conflict", { spec = yearly(), action = echo_action("wf-conflict"),
      state = { note = "start" } })
    local other = client:get_schedule_handle(sh.id)
    local calls = 0
    sh:update(function(desc)
      calls = calls + 1
      if calls == 1 then other:pause("paused meanwhile") end   -- makes this description stale
      desc.schedule.state.note = "mine (call " .. calls .. ")"
      return desc.schedule
    end)
    assert.equals(2, calls)
    local st = sh:describe().schedule.state
    assert.equals("mine (call 2)", st.note)
    assert.is_true(st.paused)   -- the concurrent change survived
  end)

  it("update works on a limited schedule that used up its actions", function()
    -- (manual triggers do not count against remaining_actions: let the spec fire)
    local sh = create("sched-limited", { spec = { intervals = { { every = 1 } } },
      action = echo_action("wf-limited"), state = { remaining_actions = 1 } })
    completed_actions(sh, 1)
    local st = helper.eventually(function()
      local s = sh:describe().schedule.state
      return s.remaining_actions == 0 and s
    end, 20)
    assert.is_true(st.limited_actions)
    sh:update(function(desc) desc.schedule.state.note = "exhausted"; return desc.schedule end)
    st = sh:describe().schedule.state
    assert.equals("exhausted", st.note)
    assert.is_true(st.limited_actions)
    assert.equals(0, st.remaining_actions)
  end)

  it("list_schedules sees the schedule (eventually), with its listed info", function()
    local sh, id = create("sched-list", { spec = { intervals = { { every = 3600 } } },
      action = echo_action("wf-list"), state = { note = "listed" } }, { memo = { m = 1 } })
    local entry = helper.eventually(function()
      for s in client:list_schedules() do
        if s.id == id then return s end
      end
    end, 20)
    assert.equals("Echo", entry.schedule.action.workflow)
    assert.equals("listed", entry.schedule.state.note)
    assert.is_false(entry.schedule.state.paused)
    assert.same({ { every = 3600 } }, entry.schedule.spec.intervals)
    assert.is_true(#entry.info.next_action_times > 0)
    assert.equals(1, entry.memo.m)
    -- limit and page_size
    local n = 0
    for _ in client:list_schedules(nil, { limit = 1, page_size = 1 }) do n = n + 1 end
    assert.equals(1, n)
    sh:delete()
    helper.eventually(function()
      for s in client:list_schedules() do if s.id == id then return false end end
      return true
    end, 20)
  end)

  it("validation errors name the field and send nothing", function()
    local function attempt(schedule)
      local ok, err = pcall(client.create_schedule, client, helper.unique_id("sched-bad"), schedule)
      assert.is_false(ok)
      return tostring(err)
    end
    local action = echo_action("wf-bad")
    assert.matches("state.limited_actions: is true but state.remaining_actions is not set",
      attempt({ spec = yearly(), action = action, state = { limited_actions = true } }), 1, true)
    assert.matches("state.remaining_actions: is set but state.limited_actions is false",
      attempt({ spec = yearly(), action = action, state = { limited_actions = false, remaining_actions = 2 } }), 1, true)
    assert.matches("policy.overlap: unknown overlap policy 'SKIPP'",
      attempt({ spec = yearly(), action = action, policy = { overlap = "SKIPP" } }), 1, true)
    assert.matches("spec.calendars[1].hour: 25 is out of range 0-23",
      attempt({ spec = { calendars = { { hour = 25 } } }, action = action }), 1, true)
    assert.matches("spec.calendars[1].day_of_week.stop: 7 is out of range 0-6",
      attempt({ spec = { calendars = { { day_of_week = { start = 1, stop = 7 } } } }, action = action }), 1, true)
    assert.matches("spec.calendars[1].minute[2]: expected an integer, got 1.5",
      attempt({ spec = { calendars = { { minute = { 1, 1.5 } } } }, action = action }), 1, true)
    assert.matches("spec.calendars[1]: unknown option 'hours'",
      attempt({ spec = { calendars = { { hours = 3 } } }, action = action }), 1, true)
    assert.matches("spec.intervals[1].every: required",
      attempt({ spec = { intervals = { { offset = 3 } } }, action = action }), 1, true)
    assert.matches("action.id: required",
      attempt({ spec = yearly(), action = { workflow = "Echo", task_queue = "q" } }), 1, true)
    assert.matches("action: unknown option 'task_queeu'",
      attempt({ spec = yearly(), action = { workflow = "Echo", id = "x", task_queue = "q", task_queeu = "q" } }), 1, true)
    assert.matches("spec: required", attempt({ action = action }), 1, true)
    assert.matches("create_schedule: unknown option 'trigger'", (select(2, pcall(client.create_schedule, client,
      "x", { spec = yearly(), action = action }, { trigger = true }))), 1, true)
    local sh = client:get_schedule_handle("never-created")
    assert.has_error(function() sh:trigger({ overlap = "ALL" }) end)
    assert.matches("overlap: unknown overlap policy 'ALL'", select(2, pcall(sh.trigger, sh, { overlap = "ALL" })), 1, true)
    assert.matches("backfill[1].end_at: required", select(2, pcall(sh.backfill, sh, { start_at = 1 })), 1, true)
    assert.has_error(function() sh.describe() end, "describe: call it with ':' (schedule_handle:describe(...))")
  end)
end)

describe("schedules on a server with the CHASM scheduler", function()
  local server, client
  setup(function()
    server = extra_server.start({
      "history.enableChasm=true",
      "history.enableCHASMSchedulerCreation=true",
      "history.chasmSchedulerCreationRolloutPercent=100",
      "history.enableCHASMSchedulerRouting=true",
    })
    client = connect(server.address)
  end)
  teardown(function()
    if client then client:close() end
    if server then server:stop() end
  end)

  it("update retries after the server rejects a stale conflict token", function()
    local id = helper.unique_id("chasm-conflict")
    local sh = client:create_schedule(id, { spec = yearly(), action = echo_action("wf-chasm"),
      state = { note = "start" } })
    -- this server does reject a stale token (the workflow-based one drops it silently)
    local ws = client.workflow_service
    local stale = ws:describe_schedule({ namespace = helper.namespace, schedule_id = id }).conflict_token
    sh:pause("bump")
    local ok, err = pcall(ws.update_schedule, ws, {
      namespace = helper.namespace, schedule_id = id, conflict_token = stale, request_id = helper.unique_id("r"),
      schedule = ws:describe_schedule({ namespace = helper.namespace, schedule_id = id }).schedule,
    })
    assert.is_false(ok)
    assert.equals("FAILED_PRECONDITION", err.status)

    local calls = 0
    sh:update(function(desc)
      calls = calls + 1
      if calls == 1 then client:get_schedule_handle(id):unpause("changed meanwhile") end
      desc.schedule.state.note = "mine (call " .. calls .. ")"
      return desc.schedule
    end)
    assert.equals(2, calls)
    local st = sh:describe().schedule.state
    assert.equals("mine (call 2)", st.note)
    assert.is_false(st.paused)
    sh:delete()
  end)
end)
