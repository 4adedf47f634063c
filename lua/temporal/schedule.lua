--- Schedules: client:create_schedule, client:get_schedule_handle, client:list_schedules and
-- temporal.ScheduleHandle. The server runs the schedule; this module converts between the Lua
-- shape below and the API messages, in both directions, and validates on the way in.
--
--   local sh = client:create_schedule("nightly", {
--     spec   = { intervals = { { every = 3600, offset = 60 } },
--                calendars = { { hour = 3, day_of_week = { start = 1, stop = 5 } } },
--                cron_expressions = { "0 3 * * *" }, skip = { ... },
--                start_at = t0, end_at = t1, jitter = 30, time_zone_name = "Europe/Berlin" },
--     action = { workflow = "Report", args = { 1, 2 }, id = "report", task_queue = "tq",
--                execution_timeout = 600, run_timeout = nil, task_timeout = nil,
--                retry_policy = { maximum_attempts = 3 }, memo = { k = "v" },
--                search_attributes = { CustomKeyword = sa.keyword("x") },
--                static_summary = "...", static_details = "...",
--                priority = { priority_key = 1 } },
--     policy = { overlap = "SKIP", catchup_window = 86400, pause_on_failure = false,
--                keep_original_workflow_id = false },
--     state  = { note = "...", paused = false, limited_actions = false, remaining_actions = 0 },
--   }, { trigger_immediately = false, backfill = { { start_at = a, end_at = b } },
--        memo = { ... }, search_attributes = { ... } })
--
-- (sa = temporal.converter.search_attributes: search attributes are typed values; the
-- action's come back typed from describe, so an update sends them back unchanged.)
--
-- Shapes and defaults (those of the Python SDK's Schedule* classes):
--  - Durations are seconds, times epoch seconds (numbers).
--  - A calendar field (second, minute, hour, day_of_month, month, year, day_of_week) is a
--    number, a range `{ start =, stop =, step = }` (stop defaults to start, step to 1; `["end"]`
--    is accepted for stop) or a list of those. Omitted fields match as in Python: second,
--    minute and hour 0; every day of the month, month and day of the week (0 = Sunday); any
--    year. Decoded calendars always give lists of full ranges.
--  - The schedule's cron_expressions and calendars come back as calendars: the server
--    translates cron strings into calendar specs.
--  - policy.overlap is one of SKIP (default), BUFFER_ONE, BUFFER_ALL, CANCEL_OTHER,
--    TERMINATE_OTHER, ALLOW_ALL. catchup_window nil means the server's default (one year).
--  - state.limited_actions must be true exactly when remaining_actions > 0; when only
--    remaining_actions is given, limited_actions is set for you.
--  - The action's workflow id gets the scheduled time appended by the server for each run,
--    unless policy.keep_original_workflow_id is true (default false).
-- Every method takes an optional last `opts` table with rpc_timeout (seconds) and
-- rpc_metadata (table); argument mistakes raise at once naming the field.
local core = require("temporal.core")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local client_mod = require("temporal.client")
local errors = require("temporal.errors")

local M = {}

local methods = client_mod.methods
local check_options = client_mod.check_options
local WORKFLOW_SERVICE = client_mod.SERVICES.workflow_service

local OVERLAP = {
  SKIP = true, BUFFER_ONE = true, BUFFER_ALL = true, CANCEL_OTHER = true,
  TERMINATE_OTHER = true, ALLOW_ALL = true,
}
M.OVERLAP_POLICIES = { "SKIP", "BUFFER_ONE", "BUFFER_ALL", "CANCEL_OTHER", "TERMINATE_OTHER", "ALLOW_ALL" }

-- How many times update() re-reads and re-applies after losing to a concurrent change.
M.UPDATE_MAX_ATTEMPTS = 10

-- ------------------------------------------------------------------ helpers

local function fail(field, msg, level)
  error(("%s: %s"):format(field, msg), level + 1)
end

local check_type = client_mod.check_type

local function check_seconds(value, field, level)
  if value == nil then return nil end
  if type(value) ~= "number" or value ~= value or value < 0 or value == math.huge then
    fail(field, ("expected a non-negative number of seconds, got %s"):format(tostring(value)), level + 1)
  end
  return value
end

local function check_time(value, field, level)
  if value == nil then return nil end
  if type(value) ~= "number" or value ~= value or value == math.huge or value == -math.huge then
    fail(field, ("expected epoch seconds (a number), got %s"):format(tostring(value)), level + 1)
  end
  return value
end

local function check_list(value, field, level)
  if value == nil then return {} end
  if type(value) ~= "table" then fail(field, "expected a list, got " .. type(value), level + 1) end
  for k in pairs(value) do
    if compat.math_type(k) ~= "integer" or k < 1 or k > #value then
      fail(field, "expected a list (keys 1..n), found key " .. tostring(k), level + 1)
    end
  end
  return value
end

local function check_overlap(value, field, level)
  if value == nil then return nil end
  if not OVERLAP[value] then
    fail(field, ("unknown overlap policy %s (expected one of %s)")
      :format(type(value) == "string" and ("'" .. value .. "'") or tostring(value),
        table.concat(M.OVERLAP_POLICIES, ", ")), level + 1)
  end
  return value
end

local function rpc_opts(opts, what, level)
  opts = client_mod.check_rpc_options(opts, nil, what, level + 1)
  return opts
end

-- The rpc_timeout / rpc_metadata part of an options table that has other keys too.
local function rpc_part(opts)
  return { rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata }
end

-- The _rpc options of an operation's input: these calls are safe to retry (request ids
-- are fixed before the first attempt).
local function call_opts(input)
  return { rpc_timeout = input.rpc_timeout, rpc_metadata = input.rpc_metadata, retry = true }
end

local data_converter = client_mod.data_converter
local uuid4 = client_mod.uuid4

-- ------------------------------------------------------------------ spec: Lua -> proto

-- Calendar fields: allowed values and Python's defaults (nil = any, as an empty list).
local CALENDAR_FIELDS = {
  { name = "second", min = 0, max = 59, default = { { start = 0 } } },
  { name = "minute", min = 0, max = 59, default = { { start = 0 } } },
  { name = "hour", min = 0, max = 23, default = { { start = 0 } } },
  { name = "day_of_month", min = 1, max = 31, default = { { start = 1, stop = 31 } } },
  { name = "month", min = 1, max = 12, default = { { start = 1, stop = 12 } } },
  { name = "year", min = 1, max = 9999, default = {} },
  { name = "day_of_week", min = 0, max = 6, default = { { start = 0, stop = 6 } } },
}
local CALENDAR_KEYS = { comment = true }
for _, f in ipairs(CALENDAR_FIELDS) do CALENDAR_KEYS[f.name] = true end

local function check_calendar_value(v, f, field, level)
  if compat.math_type(v) ~= "integer" and not (compat.math_type(v) == "float" and v == math.floor(v)) then
    fail(field, ("expected an integer, got %s"):format(tostring(v)), level + 1)
  end
  v = compat.tointeger(v)
  if v < f.min or v > f.max then
    fail(field, ("%d is out of range %d-%d"):format(v, f.min, f.max), level + 1)
  end
  return v
end

local function range_to_proto(r, f, field, level)
  if type(r) == "number" then
    local v = check_calendar_value(r, f, field, level + 1)
    return { start = v, ["end"] = v, step = 1 }
  end
  if type(r) ~= "table" then
    fail(field, "expected a number, a { start =, stop =, step = } range or a list of them, got " .. type(r), level + 1)
  end
  check_options(r, { start = true, stop = true, ["end"] = true, step = true }, field, level + 1)
  if r.start == nil then fail(field, "a range needs start", level + 1) end
  if r.stop ~= nil and r["end"] ~= nil then fail(field, "give stop or end, not both", level + 1) end
  local start = check_calendar_value(r.start, f, field .. ".start", level + 1)
  local stop = r.stop
  if stop == nil then stop = r["end"] end
  if stop == nil then stop = start else stop = check_calendar_value(stop, f, field .. ".stop", level + 1) end
  if stop < start then
    fail(field, ("stop (%d) is before start (%d)"):format(stop, start), level + 1)
  end
  local step = r.step
  if step == nil then step = 1 end
  if compat.math_type(step) ~= "integer" and not (type(step) == "number" and step == math.floor(step)) or step < 1 then
    fail(field .. ".step", "expected a positive integer, got " .. tostring(step), level + 1)
  end
  return { start = start, ["end"] = stop, step = compat.tointeger(step) }
end

local function ranges_to_proto(value, f, field, level)
  if value == nil then value = f.default end
  if type(value) == "number" then return { range_to_proto(value, f, field, level + 1) } end
  if type(value) ~= "table" then
    fail(field, "expected a number, a { start =, stop =, step = } range or a list of them, got " .. type(value), level + 1)
  end
  if value.start ~= nil or value.stop ~= nil or value["end"] ~= nil or value.step ~= nil then
    return { range_to_proto(value, f, field, level + 1) }
  end
  check_list(value, field, level + 1)
  local out = {}
  for i, r in ipairs(value) do
    out[i] = range_to_proto(r, f, ("%s[%d]"):format(field, i), level + 1)
  end
  return out
end

local function calendar_to_proto(cal, field, level)
  if type(cal) ~= "table" then fail(field, "expected a table, got " .. type(cal), level + 1) end
  check_options(cal, CALENDAR_KEYS, field, level + 1)
  local out = { comment = check_type(cal.comment, "string", field .. ".comment", level + 1) }
  for _, f in ipairs(CALENDAR_FIELDS) do
    out[f.name] = ranges_to_proto(cal[f.name], f, field .. "." .. f.name, level + 1)
  end
  return out
end

local SPEC_KEYS = {
  intervals = true, calendars = true, cron_expressions = true, skip = true, start_at = true,
  end_at = true, jitter = true, time_zone_name = true,
}

local function spec_to_proto(spec, level)
  if spec == nil then fail("spec", "required", level + 1) end
  if type(spec) ~= "table" then fail("spec", "expected a table, got " .. type(spec), level + 1) end
  check_options(spec, SPEC_KEYS, "spec", level + 1)
  local out = {
    interval = {}, structured_calendar = {}, cron_string = {}, exclude_structured_calendar = {},
    start_time = check_time(spec.start_at, "spec.start_at", level + 1),
    end_time = check_time(spec.end_at, "spec.end_at", level + 1),
    jitter = check_seconds(spec.jitter, "spec.jitter", level + 1),
    timezone_name = check_type(spec.time_zone_name, "string", "spec.time_zone_name", level + 1),
  }
  for i, iv in ipairs(check_list(spec.intervals, "spec.intervals", level + 1)) do
    local field = ("spec.intervals[%d]"):format(i)
    if type(iv) ~= "table" then fail(field, "expected { every =, offset = }, got " .. type(iv), level + 1) end
    check_options(iv, { every = true, offset = true }, field, level + 1)
    if iv.every == nil then fail(field .. ".every", "required", level + 1) end
    check_seconds(iv.every, field .. ".every", level + 1)
    if iv.every <= 0 then fail(field .. ".every", "must be positive", level + 1) end
    out.interval[i] = { interval = iv.every, phase = check_seconds(iv.offset, field .. ".offset", level + 1) }
  end
  for i, cal in ipairs(check_list(spec.calendars, "spec.calendars", level + 1)) do
    out.structured_calendar[i] = calendar_to_proto(cal, ("spec.calendars[%d]"):format(i), level + 1)
  end
  for i, cal in ipairs(check_list(spec.skip, "spec.skip", level + 1)) do
    out.exclude_structured_calendar[i] = calendar_to_proto(cal, ("spec.skip[%d]"):format(i), level + 1)
  end
  for i, cron in ipairs(check_list(spec.cron_expressions, "spec.cron_expressions", level + 1)) do
    if type(cron) ~= "string" or cron == "" then
      fail(("spec.cron_expressions[%d]"):format(i), "expected a non-empty string, got " .. type(cron), level + 1)
    end
    out.cron_string[i] = cron
  end
  return out
end

-- ------------------------------------------------------------------ spec: proto -> Lua

local function ranges_from_proto(list)
  local out = {}
  for i, r in ipairs(list or {}) do
    local start = r.start or 0
    local stop = r["end"] or 0
    if stop < start then stop = start end
    local step = r.step or 0
    if step == 0 then step = 1 end
    out[i] = { start = start, stop = stop, step = step }
  end
  return out
end

local function calendar_from_proto(c)
  local out = { comment = (c.comment ~= "" and c.comment) or nil }
  for _, f in ipairs(CALENDAR_FIELDS) do out[f.name] = ranges_from_proto(c[f.name]) end
  return out
end

local function spec_from_proto(s)
  s = s or {}
  local out = {
    intervals = {}, calendars = {}, cron_expressions = {}, skip = {},
    start_at = s.start_time, end_at = s.end_time, jitter = s.jitter,
    time_zone_name = (s.timezone_name ~= "" and s.timezone_name) or nil,
  }
  for i, iv in ipairs(s.interval or {}) do
    out.intervals[i] = { every = iv.interval or 0, offset = iv.phase }
  end
  for i, c in ipairs(s.structured_calendar or {}) do out.calendars[i] = calendar_from_proto(c) end
  for i, c in ipairs(s.exclude_structured_calendar or {}) do out.skip[i] = calendar_from_proto(c) end
  for i, c in ipairs(s.cron_string or {}) do out.cron_expressions[i] = c end
  return out
end
M.spec_from_proto = spec_from_proto

-- ------------------------------------------------------------------ action

local ACTION_KEYS = {
  workflow = true, args = true, arg = true, id = true, task_queue = true, execution_timeout = true,
  run_timeout = true, task_timeout = true, retry_policy = true, memo = true,
  search_attributes = true, static_summary = true, static_details = true, priority = true,
  raw = true,
}
local RETRY_KEYS = {
  initial_interval = true, backoff_coefficient = true, maximum_interval = true,
  maximum_attempts = true, non_retryable_error_types = true,
}

local function retry_policy_to_proto(rp, field, level)
  if rp == nil then return nil end
  if type(rp) ~= "table" then fail(field, "expected a table, got " .. type(rp), level + 1) end
  check_options(rp, RETRY_KEYS, field, level + 1)
  check_seconds(rp.initial_interval, field .. ".initial_interval", level + 1)
  check_seconds(rp.maximum_interval, field .. ".maximum_interval", level + 1)
  check_type(rp.backoff_coefficient, "number", field .. ".backoff_coefficient", level + 1)
  local coeff = rp.backoff_coefficient
  if coeff ~= nil and not (coeff >= 1 and coeff < math.huge) then
    fail(field .. ".backoff_coefficient", "must be at least 1 (and finite), got " .. tostring(coeff), level + 1)
  end
  if rp.maximum_attempts ~= nil and compat.math_type(rp.maximum_attempts) ~= "integer" then
    fail(field .. ".maximum_attempts", "expected an integer, got " .. tostring(rp.maximum_attempts), level + 1)
  end
  local types = {}
  for i, t in ipairs(check_list(rp.non_retryable_error_types, field .. ".non_retryable_error_types", level + 1)) do
    if type(t) ~= "string" then
      fail(("%s.non_retryable_error_types[%d]"):format(field, i), "expected a string", level + 1)
    end
    types[i] = t
  end
  return {
    initial_interval = rp.initial_interval, backoff_coefficient = rp.backoff_coefficient,
    maximum_interval = rp.maximum_interval, maximum_attempts = rp.maximum_attempts,
    non_retryable_error_types = types,
  }
end

local function retry_policy_from_proto(rp)
  if rp == nil then return nil end
  return {
    initial_interval = rp.initial_interval, backoff_coefficient = rp.backoff_coefficient,
    maximum_interval = rp.maximum_interval, maximum_attempts = rp.maximum_attempts or 0,
    non_retryable_error_types = rp.non_retryable_error_types or {},
  }
end

-- args: a sequence; a `.n` field (as table.pack sets) keeps trailing nils.
local function check_args(args, field, level)
  if args == nil then return { n = 0 } end
  if type(args) ~= "table" then fail(field, "expected a list of arguments, got " .. type(args), level + 1) end
  local n = args.n
  if n ~= nil and compat.math_type(n) ~= "integer" then fail(field .. ".n", "expected an integer", level + 1) end
  for k in pairs(args) do
    if k ~= "n" and (compat.math_type(k) ~= "integer" or k < 1 or (n == nil and k > #args) or (n and k > n)) then
      fail(field, "expected a list of arguments (keys 1..n), found key " .. tostring(k), level + 1)
    end
  end
  return args
end

-- A SearchAttributes message; a plain (untyped) value is an error naming the field.
local function search_attributes_proto(dc, attrs, field, level)
  local ok, msg = pcall(dc.to_search_attributes, dc, attrs)
  if not ok then fail(field, tostring(msg), level + 1) end
  return msg
end

local function action_to_proto(client, action, level)
  if action == nil then fail("action", "required", level + 1) end
  if type(action) ~= "table" then fail("action", "expected a table, got " .. type(action), level + 1) end
  check_options(action, ACTION_KEYS, "action", level + 1)
  if type(action.workflow) ~= "string" or action.workflow == "" then
    fail("action.workflow", "required: the workflow type name (a string)", level + 1)
  end
  if type(action.id) ~= "string" or action.id == "" then
    fail("action.id", "required: the workflow id (a string)", level + 1)
  end
  if type(action.task_queue) ~= "string" or action.task_queue == "" then
    fail("action.task_queue", "required: a task queue name (a string)", level + 1)
  end
  if action.arg ~= nil and action.args ~= nil then
    fail("action.arg", "give arg (one argument) or args (a list), not both", level + 1)
  end
  local args = action.arg ~= nil and { action.arg, n = 1 } or check_args(action.args, "action.args", level + 1)
  check_type(action.memo, "table", "action.memo", level + 1)
  check_type(action.search_attributes, "table", "action.search_attributes", level + 1)
  check_type(action.static_summary, "string", "action.static_summary", level + 1)
  check_type(action.static_details, "string", "action.static_details", level + 1)
  check_type(action.priority, "table", "action.priority", level + 1)
  if action.priority then
    check_options(action.priority, { priority_key = true, fairness_key = true, fairness_weight = true },
      "action.priority", level + 1)
  end
  local dc = data_converter(client)
  local n = args.n or #args
  local info = {
    workflow_id = action.id,
    workflow_type = { name = action.workflow },
    task_queue = { name = action.task_queue },
    input = n > 0 and { payloads = dc:to_payloads(args) } or nil,
    workflow_execution_timeout = check_seconds(action.execution_timeout, "action.execution_timeout", level + 1),
    workflow_run_timeout = check_seconds(action.run_timeout, "action.run_timeout", level + 1),
    workflow_task_timeout = check_seconds(action.task_timeout, "action.task_timeout", level + 1),
    retry_policy = retry_policy_to_proto(action.retry_policy, "action.retry_policy", level + 1),
    memo = (action.memo and next(action.memo)) and dc:to_memo(action.memo) or nil,
    search_attributes = (action.search_attributes and next(action.search_attributes))
      and search_attributes_proto(dc, action.search_attributes, "action.search_attributes", level + 1) or nil,
    priority = action.priority,
  }
  if action.static_summary or action.static_details then
    info.user_metadata = {
      summary = action.static_summary and dc:to_payload(action.static_summary) or nil,
      details = action.static_details and dc:to_payload(action.static_details) or nil,
    }
  end
  -- What this module does not model (header, versioning override, ...) survives an update.
  local raw = type(action.raw) == "table" and action.raw or nil
  if raw then
    info.header = raw.header
    info.versioning_override = raw.versioning_override
    info.workflow_id_reuse_policy = raw.workflow_id_reuse_policy
    info.cron_schedule = raw.cron_schedule
  end
  return { start_workflow = info }
end

local function payloads_list(p) return p and p.payloads or {} end

-- The action's search attributes decoded as typed values (temporal.search_attributes.keyword
-- and friends), so that an update sends them back with the same types.
local SA_CONSTRUCTORS = {
  Keyword = "keyword", Text = "text", Int = "int", Double = "double", Bool = "bool",
  Datetime = "datetime", KeywordList = "keyword_list",
}
local function typed_search_attributes(dc, message)
  if message == nil then return {} end
  local values, types = dc:from_search_attributes(message)
  local constructors = require("temporal.converter").search_attributes
  local out = {}
  for k, v in pairs(values) do
    local make = constructors and constructors[SA_CONSTRUCTORS[types and types[k]] or ""]
    out[k] = (make and v ~= nil) and make(v) or v
  end
  return out
end

local function action_from_proto(client, a)
  local info = a and a.start_workflow
  if not info then return { raw = a } end
  local dc = data_converter(client)
  local args = dc:from_payloads(payloads_list(info.input))
  local meta = info.user_metadata or {}
  return {
    workflow = info.workflow_type and info.workflow_type.name,
    args = args,
    id = info.workflow_id,
    task_queue = info.task_queue and info.task_queue.name,
    execution_timeout = info.workflow_execution_timeout,
    run_timeout = info.workflow_run_timeout,
    task_timeout = info.workflow_task_timeout,
    retry_policy = retry_policy_from_proto(info.retry_policy),
    memo = info.memo and dc:from_memo(info.memo) or {},
    search_attributes = typed_search_attributes(dc, info.search_attributes),
    static_summary = meta.summary and dc:from_payload(meta.summary) or nil,
    static_details = meta.details and dc:from_payload(meta.details) or nil,
    priority = info.priority,
    raw = info,
  }
end

-- ------------------------------------------------------------------ policy and state

local function policy_to_proto(p, level)
  if p == nil then p = {} end
  if type(p) ~= "table" then fail("policy", "expected a table, got " .. type(p), level + 1) end
  check_options(p, { overlap = true, catchup_window = true, pause_on_failure = true,
    keep_original_workflow_id = true }, "policy", level + 1)
  check_overlap(p.overlap, "policy.overlap", level + 1)
  check_seconds(p.catchup_window, "policy.catchup_window", level + 1)
  check_type(p.pause_on_failure, "boolean", "policy.pause_on_failure", level + 1)
  check_type(p.keep_original_workflow_id, "boolean", "policy.keep_original_workflow_id", level + 1)
  return {
    overlap_policy = p.overlap or "SKIP",
    catchup_window = p.catchup_window,
    pause_on_failure = p.pause_on_failure or false,
    keep_original_workflow_id = p.keep_original_workflow_id or false,
  }
end

local function policy_from_proto(p)
  p = p or {}
  local overlap = p.overlap_policy
  if overlap == nil or overlap == "UNSPECIFIED" then overlap = "SKIP" end
  return {
    overlap = overlap,
    catchup_window = p.catchup_window,
    pause_on_failure = p.pause_on_failure or false,
    keep_original_workflow_id = p.keep_original_workflow_id or nil,
  }
end

-- creating: the limited_actions / remaining_actions consistency is checked on create only
-- (as Python): a limited schedule that used up its actions reads back as limited with 0
-- remaining, and an update must be able to send that back.
local function state_to_proto(s, level, creating)
  if s == nil then s = {} end
  if type(s) ~= "table" then fail("state", "expected a table, got " .. type(s), level + 1) end
  check_options(s, { note = true, paused = true, limited_actions = true, remaining_actions = true },
    "state", level + 1)
  check_type(s.note, "string", "state.note", level + 1)
  check_type(s.paused, "boolean", "state.paused", level + 1)
  check_type(s.limited_actions, "boolean", "state.limited_actions", level + 1)
  local remaining = s.remaining_actions or 0
  if compat.math_type(remaining) ~= "integer" or remaining < 0 then
    fail("state.remaining_actions", "expected a non-negative integer, got " .. tostring(s.remaining_actions), level + 1)
  end
  local limited = s.limited_actions
  if limited == nil then limited = remaining > 0 end
  if creating and limited and remaining == 0 then
    fail("state.limited_actions", "is true but state.remaining_actions is not set (must be > 0)", level + 1)
  end
  if creating and not limited and remaining > 0 then
    fail("state.remaining_actions", "is set but state.limited_actions is false", level + 1)
  end
  return { notes = s.note, paused = s.paused or false, limited_actions = limited, remaining_actions = remaining }
end

local function state_from_proto(s)
  s = s or {}
  return {
    note = (s.notes ~= "" and s.notes) or nil,
    paused = s.paused or false,
    limited_actions = s.limited_actions or false,
    remaining_actions = s.remaining_actions or 0,
  }
end

local SCHEDULE_KEYS = { spec = true, action = true, policy = true, state = true }

local function schedule_to_proto(client, schedule, level, creating)
  if type(schedule) ~= "table" then
    error("schedule: expected a table with spec, action, policy, state; got " .. type(schedule), level + 1)
  end
  check_options(schedule, SCHEDULE_KEYS, "schedule", level + 1)
  return {
    spec = spec_to_proto(schedule.spec, level + 1),
    action = action_to_proto(client, schedule.action, level + 1),
    policies = policy_to_proto(schedule.policy, level + 1),
    state = state_to_proto(schedule.state, level + 1, creating),
  }
end
M.schedule_to_proto = schedule_to_proto

local function schedule_from_proto(client, s)
  s = s or {}
  return {
    spec = spec_from_proto(s.spec),
    action = action_from_proto(client, s.action),
    policy = policy_from_proto(s.policies),
    state = state_from_proto(s.state),
  }
end
M.schedule_from_proto = schedule_from_proto

-- ------------------------------------------------------------------ info

local function execution_from_proto(e)
  e = e or {}
  return { workflow_id = e.workflow_id, first_execution_run_id = e.run_id }
end

local function action_results_from_proto(list)
  local out = {}
  for i, r in ipairs(list or {}) do
    out[i] = {
      scheduled_at = r.schedule_time,
      started_at = r.actual_time,
      action = execution_from_proto(r.start_workflow_result),
      status = r.start_workflow_status,
    }
  end
  return out
end

local function times(list)
  local out = {}
  for i, t in ipairs(list or {}) do out[i] = t end
  return out
end

local function info_from_proto(i)
  i = i or {}
  local running = {}
  for k, e in ipairs(i.running_workflows or {}) do running[k] = execution_from_proto(e) end
  return {
    num_actions = i.action_count or 0,
    num_actions_missed_catchup_window = i.missed_catchup_window or 0,
    num_actions_skipped_overlap = i.overlap_skipped or 0,
    num_buffer_dropped = i.buffer_dropped or 0,
    buffer_size = i.buffer_size or 0,
    running_actions = running,
    recent_actions = action_results_from_proto(i.recent_actions),
    next_action_times = times(i.future_action_times),
    created_at = i.create_time,
    last_updated_at = i.update_time,
  }
end

local function description_from_proto(client, id, resp)
  local dc = data_converter(client)
  return {
    id = id,
    schedule = schedule_from_proto(client, resp.schedule),
    info = info_from_proto(resp.info),
    memo = resp.memo and dc:from_memo(resp.memo) or {},
    search_attributes = resp.search_attributes and dc:from_search_attributes(resp.search_attributes) or {},
    typed_search_attributes = resp.search_attributes
      and dc:from_typed_search_attributes(resp.search_attributes) or {},
    conflict_token = resp.conflict_token,
    raw = resp,
  }
end

-- ------------------------------------------------------------------ backfill

local function backfill_to_proto(b, field, level)
  if type(b) ~= "table" then fail(field, "expected { start_at =, end_at =, overlap = }, got " .. type(b), level + 1) end
  check_options(b, { start_at = true, end_at = true, overlap = true }, field, level + 1)
  if b.start_at == nil then fail(field .. ".start_at", "required", level + 1) end
  if b.end_at == nil then fail(field .. ".end_at", "required", level + 1) end
  check_time(b.start_at, field .. ".start_at", level + 1)
  check_time(b.end_at, field .. ".end_at", level + 1)
  if b.end_at < b.start_at then fail(field, "end_at is before start_at", level + 1) end
  return {
    start_time = b.start_at, end_time = b.end_at,
    overlap_policy = check_overlap(b.overlap, field .. ".overlap", level + 1) or "UNSPECIFIED",
  }
end

-- ------------------------------------------------------------------ ScheduleHandle

local ScheduleHandle = { __name = "temporal.ScheduleHandle" }
local handle_methods = {}
M.ScheduleHandle = ScheduleHandle
M.handle_methods = handle_methods

local state = core.handle_state

-- Its two fields are the userdata's user values (core.fields_handle), no state table.
ScheduleHandle.__fields = { "client", "id" }
ScheduleHandle.__index = core.fields_index(handle_methods, ScheduleHandle.__fields)
ScheduleHandle.__newindex = function(_, k)
  error(("temporal.ScheduleHandle: field '%s' cannot be set"):format(tostring(k)), 2)
end
ScheduleHandle.__tostring = function(self)
  return ("temporal.ScheduleHandle(%s)"):format(self.id)
end

local function new_handle(client, id)
  return core.fields_handle(ScheduleHandle, client, id)
end

local function check_self(self, name)
  if getmetatable(self) ~= ScheduleHandle then
    error(("%s: call it with ':' (schedule_handle:%s(...))"):format(name, name), 3)
  end
end

local function schedule_rpc(client, method, id, request, input)
  request.namespace = client.namespace
  request.schedule_id = id
  return client:_rpc(WORKFLOW_SERVICE, method, request, call_opts(input))
end

local function describe_raw(client, input)
  return schedule_rpc(client, "DescribeSchedule", input.id, {}, input)
end

--- Describes the schedule: { id, schedule = { spec, action, policy, state }, info = {
-- num_actions, num_actions_missed_catchup_window, num_actions_skipped_overlap,
-- num_buffer_dropped, buffer_size, running_actions = { { workflow_id,
-- first_execution_run_id } }, recent_actions = { { scheduled_at, started_at, action =
-- { workflow_id, first_execution_run_id }, status } }, next_action_times, created_at,
-- last_updated_at }, memo, search_attributes (plain values), typed_search_attributes (typed
-- values, the type from the server's metadata, as Python's), conflict_token, raw (the
-- response) }. The action's search_attributes come back typed.
function handle_methods:describe(opts)
  check_self(self, "describe")
  opts = rpc_opts(opts, "describe", 2)
  local s = self
  local client = s.client
  return client:_intercept("describe_schedule",
    { id = s.id, rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata },
    function(input)
      return description_from_proto(client, input.id, describe_raw(client, input))
    end)
end

local function patch_op(self, name, fields, opts, make_patch)
  local s = self
  local client = s.client
  local input = { id = s.id, rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata }
  for k, v in pairs(fields) do input[k] = v end
  return client:_intercept(name, input, function(inp)
    schedule_rpc(client, "PatchSchedule", inp.id, {
      patch = make_patch(inp), identity = client.identity, request_id = uuid4(),
    }, inp)
  end)
end

local function note_and_opts(note, opts, what)
  if type(note) == "table" and opts == nil then
    opts = {}
    for k, v in pairs(note) do if k ~= "note" then opts[k] = v end end
    note = note.note
  end
  check_type(note, "string", "note", 3)
  return note, rpc_opts(opts, what, 3)
end

--- Pauses the schedule: sh:pause(note, opts) or sh:pause({ note =, rpc_timeout = }).
-- The note (default "Paused via temporal-lua") replaces state.note.
function handle_methods:pause(note, opts)
  check_self(self, "pause")
  note, opts = note_and_opts(note, opts, "pause")
  patch_op(self, "pause_schedule", { note = note }, opts, function(inp)
    return { pause = (inp.note and inp.note ~= "") and inp.note or "Paused via temporal-lua" }
  end)
end

--- Unpauses the schedule; the note (default "Unpaused via temporal-lua") replaces state.note.
function handle_methods:unpause(note, opts)
  check_self(self, "unpause")
  note, opts = note_and_opts(note, opts, "unpause")
  patch_op(self, "unpause_schedule", { note = note }, opts, function(inp)
    return { unpause = (inp.note and inp.note ~= "") and inp.note or "Unpaused via temporal-lua" }
  end)
end

--- Takes the action now: sh:trigger({ overlap = "ALLOW_ALL" }); without overlap the
-- schedule's own overlap policy applies.
function handle_methods:trigger(opts)
  check_self(self, "trigger")
  opts = check_options(opts, { overlap = true, rpc_timeout = true, rpc_metadata = true }, "trigger", 2)
  check_overlap(opts.overlap, "overlap", 2)
  rpc_opts(rpc_part(opts), "trigger", 2)
  patch_op(self, "trigger_schedule", { overlap = opts.overlap }, opts, function(inp)
    return { trigger_immediately = {
      overlap_policy = check_overlap(inp.overlap, "overlap", 4) or "UNSPECIFIED",
    } }
  end)
end

--- Runs the actions of past periods as if they were now:
-- sh:backfill(b1, b2, ..., [opts]) with each b = { start_at =, end_at =, overlap = }
-- (overlap defaults to the schedule's policy). A trailing table without start_at and
-- end_at is opts (rpc_timeout, rpc_metadata).
function handle_methods:backfill(...)
  check_self(self, "backfill")
  local n = select("#", ...)
  local items = { ... }
  local opts
  if n > 0 and type(items[n]) == "table" and items[n].start_at == nil and items[n].end_at == nil then
    opts = items[n]
    items[n] = nil
    n = n - 1
  end
  opts = rpc_opts(opts, "backfill", 2)
  if n == 0 then error("backfill: at least one { start_at =, end_at = } period is required", 2) end
  local backfills = {}
  for i = 1, n do
    backfill_to_proto(items[i], ("backfill[%d]"):format(i), 2)
    backfills[i] = items[i]
  end
  patch_op(self, "backfill_schedule", { backfills = backfills }, opts, function(inp)
    local requests = {}
    for i, b in ipairs(inp.backfills) do
      requests[i] = backfill_to_proto(b, ("backfill[%d]"):format(i), 4)
    end
    return { backfill_request = requests }
  end)
end

--- Deletes the schedule (workflows it started keep running).
function handle_methods:delete(opts)
  check_self(self, "delete")
  opts = rpc_opts(opts, "delete", 2)
  local s = self
  local client = s.client
  client:_intercept("delete_schedule",
    { id = s.id, rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata },
    function(input)
      schedule_rpc(client, "DeleteSchedule", input.id, { identity = client.identity }, input)
    end)
end

local function is_conflict(err)
  return errors.is(err, "RPCError") and err.status == "FAILED_PRECONDITION"
    and tostring(err.grpc_message or err.message):find("conflict token", 1, true) ~= nil
end

-- Fields the server keeps as sent: when they read back differently after an update, the
-- update was lost to a concurrent change.
local function landed(sent, got)
  local ss, gs = sent.state or {}, got.state or {}
  if (ss.notes or "") ~= (gs.notes or "") or (ss.paused or false) ~= (gs.paused or false)
    or (ss.limited_actions or false) ~= (gs.limited_actions or false) then
    return false
  end
  local sa = sent.action and sent.action.start_workflow or {}
  local ga = got.action and got.action.start_workflow or {}
  local function name(t) return t and t.name or "" end
  return (sa.workflow_id or "") == (ga.workflow_id or "")
    and name(sa.workflow_type) == name(ga.workflow_type)
    and name(sa.task_queue) == name(ga.task_queue)
    and ((sent.policies or {}).pause_on_failure or false) == ((got.policies or {}).pause_on_failure or false)
end

--- Updates the schedule from its current description.
-- `updater(description)` (description as describe() returns it) returns the new schedule
-- (description.schedule edited, or a new table), or { schedule =, search_attributes = }
-- to replace the schedule's search attributes too, or nil to change nothing.
-- The update carries the description's conflict token. When another change got in
-- between, the schedule is described again and `updater` runs again, up to
-- require("temporal.schedule").UPDATE_MAX_ATTEMPTS (10) times; then ScheduleUpdateConflictError.
-- (The Python SDK does not retry.) Servers running the workflow-based scheduler drop a
-- conflicting update silently rather than failing it; there the outcome is checked by
-- describing again: state, pause_on_failure and the action's workflow id, type and task
-- queue must read back as sent. A concurrent change touching only other fields can go
-- unnoticed on such servers.
-- Returns the description after the update, or nil when updater returned nil.
function handle_methods:update(updater, opts)
  check_self(self, "update")
  if type(updater) ~= "function" and not (getmetatable(updater) or {}).__call then
    error("update: updater must be a function, got " .. type(updater), 2)
  end
  opts = rpc_opts(opts, "update", 2)
  local s = self
  local client = s.client
  local input = { id = s.id, updater = updater, rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata }
  return client:_intercept("update_schedule", input, function(inp)
    local resp = describe_raw(client, inp)
    for attempt = 1, M.UPDATE_MAX_ATTEMPTS do
      local desc = description_from_proto(client, inp.id, resp)
      local new = inp.updater(desc)
      if new == nil then return nil end
      if type(new) ~= "table" then error("update: updater must return a table or nil, got " .. type(new), 0) end
      local schedule, search_attributes = new, nil
      if new.schedule ~= nil then
        check_options(new, { schedule = true, search_attributes = true }, "update: updater result", 1)
        schedule, search_attributes = new.schedule, new.search_attributes
      end
      local request = {
        schedule = schedule_to_proto(client, schedule, 1),
        conflict_token = resp.conflict_token,
        identity = client.identity,
        request_id = uuid4(),
      }
      if search_attributes ~= nil then
        check_type(search_attributes, "table", "search_attributes", 1)
        local ok_sa, msg = pcall(data_converter(client).to_search_attributes, data_converter(client), search_attributes)
        if not ok_sa then error("update: updater result: search_attributes: " .. tostring(msg), 0) end
        request.search_attributes = msg or { indexed_fields = {} }
      end
      local ok, err = pcall(schedule_rpc, client, "UpdateSchedule", inp.id, request, inp)
      if not ok and not is_conflict(err) then error(err, 0) end
      resp = describe_raw(client, inp)
      if ok and landed(request.schedule, resp.schedule or {}) then
        return description_from_proto(client, inp.id, resp)
      end
      if attempt == M.UPDATE_MAX_ATTEMPTS then
        errors.raise("ScheduleUpdateConflictError", {
          message = ("update of schedule %s lost to concurrent changes %d times"):format(inp.id, attempt),
          schedule_id = inp.id, cause = not ok and err or nil,
        }, 1)
      end
    end
  end)
end

-- ------------------------------------------------------------------ client methods

local CREATE_OPTIONS = {
  trigger_immediately = true, backfill = true, memo = true, search_attributes = true,
  rpc_timeout = true, rpc_metadata = true,
}

--- client:create_schedule(id, schedule, opts) -> ScheduleHandle
-- opts: trigger_immediately (false: true takes one action at once, with the schedule's
-- overlap policy), backfill (a list of { start_at, end_at, overlap }), memo and
-- search_attributes of the schedule itself (the workflow's are in the action),
-- rpc_timeout, rpc_metadata. Raises ScheduleAlreadyRunningError when the id is taken.
function methods:create_schedule(id, schedule, opts)
  if type(id) ~= "string" or id == "" then
    error("create_schedule: id must be a non-empty string, got " .. type(id), 2)
  end
  opts = check_options(opts, CREATE_OPTIONS, "create_schedule", 2)
  check_type(opts.trigger_immediately, "boolean", "trigger_immediately", 2)
  check_type(opts.memo, "table", "memo", 2)
  check_type(opts.search_attributes, "table", "search_attributes", 2)
  rpc_opts(rpc_part(opts), "create_schedule", 2)
  schedule_to_proto(self, schedule, 2, true)   -- validate now, naming the field
  if opts.search_attributes and next(opts.search_attributes) then
    search_attributes_proto(data_converter(self), opts.search_attributes, "search_attributes", 2)
  end
  for i, b in ipairs(check_list(opts.backfill, "backfill", 2)) do
    backfill_to_proto(b, ("backfill[%d]"):format(i), 2)
  end
  local client = self
  local input = {
    id = id, schedule = schedule, trigger_immediately = opts.trigger_immediately or false,
    backfill = opts.backfill or {}, memo = opts.memo, search_attributes = opts.search_attributes,
    rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata,
  }
  return client:_intercept("create_schedule", input, function(inp)
    local proto = schedule_to_proto(client, inp.schedule, 1, true)
    local initial_patch
    if inp.trigger_immediately or #inp.backfill > 0 then
      initial_patch = { backfill_request = {} }
      if inp.trigger_immediately then
        initial_patch.trigger_immediately = { overlap_policy = proto.policies.overlap_policy }
      end
      for i, b in ipairs(inp.backfill) do
        initial_patch.backfill_request[i] = backfill_to_proto(b, ("backfill[%d]"):format(i), 1)
      end
    end
    local dc = data_converter(client)
    local request = {
      namespace = client.namespace,
      schedule_id = inp.id,
      schedule = proto,
      initial_patch = initial_patch,
      identity = client.identity,
      request_id = uuid4(),
      memo = (inp.memo and next(inp.memo)) and dc:to_memo(inp.memo) or nil,
      search_attributes = (inp.search_attributes and next(inp.search_attributes))
        and search_attributes_proto(dc, inp.search_attributes, "search_attributes", 1) or nil,
    }
    local ok, err = pcall(client._rpc, client, WORKFLOW_SERVICE, "CreateSchedule", request, call_opts(inp))
    if not ok then
      if errors.is(err, "RPCError") and err.status == "ALREADY_EXISTS" then
        errors.raise("ScheduleAlreadyRunningError", {
          message = ("schedule %s already exists"):format(inp.id), schedule_id = inp.id, cause = err,
        }, 1)
      end
      error(err, 0)
    end
    return new_handle(client, inp.id)
  end)
end

--- client:get_schedule_handle(id) -> ScheduleHandle (makes no call)
function methods:get_schedule_handle(id)
  if type(id) ~= "string" or id == "" then
    error("get_schedule_handle: id must be a non-empty string, got " .. type(id), 2)
  end
  return new_handle(self, id)
end

local function list_entry_from_proto(client, e)
  local dc = data_converter(client)
  local info = e.info
  local entry = {
    id = e.schedule_id,
    memo = e.memo and dc:from_memo(e.memo) or {},
    search_attributes = e.search_attributes and dc:from_search_attributes(e.search_attributes) or {},
    typed_search_attributes = e.search_attributes and dc:from_typed_search_attributes(e.search_attributes) or {},
    raw = e,
  }
  if info then
    entry.schedule = {
      action = { workflow = info.workflow_type and info.workflow_type.name },
      spec = spec_from_proto(info.spec),
      state = { note = (info.notes ~= "" and info.notes) or nil, paused = info.paused or false },
    }
    entry.info = {
      recent_actions = action_results_from_proto(info.recent_actions),
      next_action_times = times(info.future_action_times),
    }
  end
  return entry
end

-- ------------------------------------------------------------------ ScheduleIterator

local iterator_methods = {}
local ScheduleIterator = {
  __name = "temporal.ScheduleIterator",
  __index = function(self, k)
    local m = iterator_methods[k]
    if m ~= nil then return m end
    if k == "current_page" or k == "current_page_index" or k == "next_page_token" then
      return state(self)[k]
    end
    return nil
  end,
  __newindex = function(_, k)
    error(("temporal.ScheduleIterator: field '%s' cannot be set"):format(tostring(k)), 2)
  end,
  __tostring = function(self)
    return ("temporal.ScheduleIterator(query=%s)"):format(tostring(state(self).input.query))
  end,
}
M.ScheduleIterator = ScheduleIterator

-- One more entry (nil when done), fetching pages as needed; a generic `for` calls it.
ScheduleIterator.__call = function(it) return client_mod.next_paged(it, state(it)) end

--- it:fetch_next_page{ page_size } -- one ListSchedules call from it.next_page_token:
-- it.current_page becomes that page (a list of entries), it.current_page_index 1 and
-- it.next_page_token the token after it (nil on the last page). page_size overrides the
-- iterator's.
function iterator_methods:fetch_next_page(opts)
  if getmetatable(self) ~= ScheduleIterator then
    error("fetch_next_page: call it with ':' on the iterator list_schedules returned", 2)
  end
  opts = check_options(opts, { page_size = true }, "fetch_next_page", 2)
  local size = opts.page_size
  if size ~= nil and (compat.math_type(size) ~= "integer" or size < 1) then
    error("page_size: expected a positive integer, got " .. tostring(size), 2)
  end
  local st = state(self)
  local inp, client = st.input, st.client
  local resp = client:_rpc(WORKFLOW_SERVICE, "ListSchedules", {
    namespace = client.namespace,
    maximum_page_size = size or inp.page_size,
    next_page_token = st.next_page_token,
    query = inp.query,
  }, call_opts(inp))
  local page = {}
  for i, e in ipairs(resp.schedules or {}) do page[i] = list_entry_from_proto(client, e) end
  st.current_page, st.current_page_index = page, 1
  local token = resp.next_page_token
  st.next_page_token = (token ~= nil and token ~= "") and token or nil
end

--- client:list_schedules(query, opts) -> ScheduleIterator
-- for entry in client:list_schedules(query, opts) do ... end
-- Each entry: { id, schedule = { action = { workflow }, spec, state = { note, paused } },
-- info = { recent_actions, next_action_times }, memo, search_attributes,
-- typed_search_attributes, raw }.
-- query: a visibility query string (nil: every schedule). opts: page_size (1000), limit
-- (nil: no limit), next_page_token (resume where an earlier listing stopped), rpc_timeout,
-- rpc_metadata. Pages are fetched as the loop advances; no call is made before.
-- The iterator also pages by hand (Python's ScheduleAsyncIterator): it:fetch_next_page{
-- page_size }, it.current_page (nil before the first fetch), it.current_page_index (the
-- index of the entry the loop returns next), it.next_page_token (nil after the last page).
-- Listing is eventually consistent: a schedule just created can take a moment to appear.
function methods:list_schedules(query, opts)
  if type(query) == "table" and opts == nil then query, opts = nil, query end
  check_type(query, "string", "query", 2)
  opts = check_options(opts, { page_size = true, limit = true, next_page_token = true,
    rpc_timeout = true, rpc_metadata = true }, "list_schedules", 2)
  for _, k in ipairs({ "page_size", "limit" }) do
    local v = opts[k]
    if v ~= nil and (compat.math_type(v) ~= "integer" or v < 1) then
      error(("%s: expected a positive integer, got %s"):format(k, tostring(v)), 2)
    end
  end
  check_type(opts.next_page_token, "string", "next_page_token", 2)
  rpc_opts(rpc_part(opts), "list_schedules", 2)
  local client = self
  local input = {
    query = query, page_size = opts.page_size or 1000, limit = opts.limit,
    next_page_token = opts.next_page_token,
    rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata,
  }
  return client:_intercept("list_schedules", input, function(inp)
    local token = inp.next_page_token
    return core.handle(ScheduleIterator, {
      client = client, input = inp, _limit = inp.limit, _yielded = 0,
      current_page = nil, current_page_index = 1,
      next_page_token = (token ~= nil and token ~= "") and token or nil,
    })
  end)
end

errors.define("ScheduleUpdateConflictError", "TemporalError")

return M
