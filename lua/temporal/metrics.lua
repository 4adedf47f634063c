--- temporal.metrics: the client's request metrics under the SDKs' names, plus custom ones.
--
-- A Registry holds counters, gauges and histograms, the way the other SDKs' runtime telemetry
-- does (sdk-core's Prometheus meter, as the Python SDK's `PrometheusConfig` configures it):
--
--   local metrics = require("temporal.metrics")
--   local reg = metrics.new{ global_tags = { app = "gateway" } }
--   local client = temporal.connect("127.0.0.1:7233", { metrics = reg })
--   print(reg:exposition())          -- Prometheus text format, for any HTTP host to serve
--
-- Every RPC attempt a client makes (retries included) is recorded as sdk-core records it:
-- `temporal_request` (or `temporal_long_request` for long polls) counts attempts,
-- `temporal_request_failure` counts failed attempts with their `status_code`,
-- `temporal_request_latency` is the histogram of attempt latencies (milliseconds unless
-- durations_as_seconds), labelled `operation` (the RPC method), `namespace` and `task_queue`
-- (taken from the request where it has them) and `service_name` plus the global tags.
-- A client records into the registry connect is given (`metrics = reg`), else into
-- `metrics.default()`: none until `metrics.set_default(reg)`, as the Python SDK's default
-- runtime has no metrics. Recording is a few table updates per attempt; nothing is
-- formatted until someone reads the registry; without a registry it is one nil check.
local core = require("temporal.core")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT

local M = {}

local now = core.now
local math_type = compat.math_type

M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
M.DEFAULT_PREFIX = "temporal_"
M.SERVICE_NAME = "temporal-core-sdk"   -- what sdk-core puts in service_name

-- sdk-core's default histogram buckets, in milliseconds (divided by 1000 when durations are
-- seconds), chosen by the metric's unprefixed name; every other histogram gets DEFAULT.
local DEFAULT_BUCKETS = { 50, 100, 500, 1000, 2500, 10000 }
local NAMED_BUCKETS = {
  workflow_endtoend_latency = { 100, 500, 1000, 1500, 2000, 5000, 10000, 30000, 60000, 120000,
    300000, 600000, 1800000, 3600000, 30600000, 86400000 },
  workflow_task_execution_latency = { 1, 10, 20, 50, 100, 200, 500, 1000 },
  workflow_task_replay_latency = { 1, 10, 20, 50, 100, 200, 500, 1000 },
  activity_execution_latency = { 50, 100, 500, 1000, 5000, 10000, 60000 },
  workflow_task_schedule_to_start_latency = { 100, 500, 1000, 5000, 10000, 100000, 1000000 },
  activity_schedule_to_start_latency = { 100, 500, 1000, 5000, 10000, 100000, 1000000 },
}
M.DEFAULT_BUCKETS = DEFAULT_BUCKETS

-- Worker task polls are long polls to sdk-core as well as the client's own long polls.
local TASK_POLLS = {
  PollWorkflowTaskQueue = true, PollActivityTaskQueue = true, PollNexusTaskQueue = true,
}

local NAME_PATTERN = "^[%a_:][%w_:]*$"
local LABEL_PATTERN = "^[%a_][%w_]*$"

local function check_name(name, what, level)
  if type(name) ~= "string" or not name:match(NAME_PATTERN) then
    error(("%s: metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*, got %s"):format(what,
      type(name) == "string" and ("'" .. name .. "'") or type(name)), level + 1)
  end
end

local function check_labels(labels, what, level)
  if labels == nil then return end
  if type(labels) ~= "table" then
    error(("%s: labels must be a table, got %s"):format(what, type(labels)), level + 1)
  end
  for k, v in pairs(labels) do
    if type(k) ~= "string" or not k:match(LABEL_PATTERN) or k:sub(1, 2) == "__" then
      error(("%s: label name must match [a-zA-Z_][a-zA-Z0-9_]* (no leading __), got %s"):format(what,
        tostring(k)), level + 1)
    end
    local tv = type(v)
    if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      error(("%s: label '%s' must be a string, number or boolean, got %s"):format(what, k, tv), level + 1)
    end
  end
end

-- The shortest decimal that reads back as the same double (Prometheus parses them exactly).
local function number_text(v)
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v ~= v then return "NaN" end
  if math_type(v) == "integer" then
    -- LuaJIT: tostring writes 14 digits, and "LL" after a boxed int64
    if compat.is_boxed_integer(v) then return (tostring(v):gsub("U?LL$", "")) end
    return ("%d"):format(v)
  end
  if v == math.floor(v) and v > -2^53 and v < 2^53 then return ("%d"):format(v) end
  for digits = 15, 17 do
    local s = ("%." .. digits .. "g"):format(v)
    if tonumber(s) == v then return s end
  end
  return ("%.17g"):format(v)
end
M._number_text = number_text

local function escape_label(v)
  return (v:gsub("[\\\n\"]", { ["\\"] = "\\\\", ["\n"] = "\\n", ["\""] = "\\\"" }))
end

local function escape_help(v)
  return (v:gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }))
end

---------------------------------------------------------------------------- MetricBuffer

--- A buffer of metric updates, drained by the user (the Python SDK's MetricBuffer): give it
-- to `metrics.new{ buffer = buf }`; every update (counter delta, gauge value, histogram value)
-- is appended until `size` are waiting, later ones are dropped and counted in `buf.dropped`.
local Buffer = { __name = "temporal.metrics.MetricBuffer" }
Buffer.__index = Buffer

--- metrics.buffer(size[, opts]) -> MetricBuffer; opts.duration_format: "milliseconds" (the
-- default; latencies are integers of milliseconds as in Python) or "seconds" (floats).
function M.buffer(size, opts)
  if math_type(size) ~= "integer" or size < 1 then
    error("buffer: size must be a positive integer", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("buffer: options must be a table", 2) end
  for k in pairs(opts or {}) do
    if k ~= "duration_format" then error(("buffer: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local fmt = opts and opts.duration_format or "milliseconds"
  if fmt ~= "milliseconds" and fmt ~= "seconds" then
    error("buffer: duration_format must be 'milliseconds' or 'seconds', got " .. tostring(fmt), 2)
  end
  return setmetatable({ size = size, seconds = fmt == "seconds", updates = {}, n = 0, dropped = 0 }, Buffer)
end

function Buffer:_push(metric, value, attributes)
  local n = self.n
  if n >= self.size then
    if self.dropped == 0 then
      io.stderr:write("temporal.metrics: the metric buffer is full; updates are dropped until "
        .. "retrieve_updates() drains it\n")
    end
    self.dropped = self.dropped + 1
    return
  end
  n = n + 1
  self.n = n
  self.updates[n] = { metric = metric, value = value, attributes = attributes }
end

--- Drains the buffer: a list of updates { metric = { name, description, unit, kind },
-- value, attributes }. kind is "counter" (value is a delta), "gauge" or "histogram".
-- The same metric (and the same label set) is the same table across updates.
function Buffer:retrieve_updates()
  local out = self.updates
  self.updates, self.n = {}, 0
  return out
end

function Buffer:__tostring()
  return ("temporal.metrics.MetricBuffer(%d/%d waiting, %d dropped)"):format(self.n, self.size, self.dropped)
end

---------------------------------------------------------------------------- Registry

local Registry = { __name = "temporal.metrics.Registry" }
Registry.__index = Registry

local KNOWN = {
  prefix = true, global_tags = true, attach_service_name = true, counters_total_suffix = true,
  unit_suffix = true, durations_as_seconds = true, histogram_bucket_overrides = true, buffer = true,
}

local function check_buckets(b, what, level)
  if type(b) ~= "table" or #b == 0 then error(what .. ": expected a non-empty list of numbers", level + 1) end
  local out = {}
  for i, v in ipairs(b) do
    if type(v) ~= "number" or v ~= v or (i > 1 and v <= b[i - 1]) then
      error(what .. ": bucket bounds must be increasing numbers", level + 1)
    end
    if v ~= math.huge then out[#out + 1] = v end
  end
  return out
end

--- metrics.new([opts]) -> Registry. opts (the Python SDK's TelemetryConfig + PrometheusConfig):
-- prefix ("temporal_", on the client's metrics only), global_tags ({ name = value }, on every
-- series), attach_service_name (true: service_name="temporal-core-sdk"), counters_total_suffix
-- (false), unit_suffix (false: `_milliseconds`/`_seconds` on duration histograms when true),
-- durations_as_seconds (false: milliseconds), histogram_bucket_overrides ({ [name part] =
-- { bounds } }: a histogram whose full name contains the key uses those bounds), buffer (a
-- metrics.buffer(...) that also receives every update).
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then error("metrics.new: options must be a table, got " .. type(opts), 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if not KNOWN[k] then error(("metrics.new: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local prefix = opts.prefix
  if prefix == nil then prefix = M.DEFAULT_PREFIX end
  if type(prefix) ~= "string" or (prefix ~= "" and not prefix:match("^[%a_:][%w_:]*$")) then
    error("metrics.new: prefix must be a string of [a-zA-Z0-9_:] not starting with a digit", 2)
  end
  for _, k in ipairs({ "attach_service_name", "counters_total_suffix", "unit_suffix", "durations_as_seconds" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      error(("metrics.new: %s must be a boolean, got %s"):format(k, type(opts[k])), 2)
    end
  end
  check_labels(opts.global_tags, "metrics.new: global_tags", 2)
  local overrides = {}
  if opts.histogram_bucket_overrides ~= nil then
    if type(opts.histogram_bucket_overrides) ~= "table" then
      error("metrics.new: histogram_bucket_overrides must be a table of name -> bounds", 2)
    end
    for k, v in pairs(opts.histogram_bucket_overrides) do
      if type(k) ~= "string" then error("metrics.new: histogram_bucket_overrides keys must be strings", 2) end
      overrides[k] = check_buckets(v, "metrics.new: histogram_bucket_overrides['" .. k .. "']", 2)
    end
  end
  if opts.buffer ~= nil and getmetatable(opts.buffer) ~= Buffer then
    error("metrics.new: buffer must come from metrics.buffer(size)", 2)
  end
  -- Labels every series carries: service_name first (a default attribute in sdk-core),
  -- the global tags after the series' own labels.
  local base = {}
  if opts.attach_service_name ~= false then base.service_name = M.SERVICE_NAME end
  local global = {}
  for k, v in pairs(opts.global_tags or {}) do global[k] = tostring(v) end
  local self = setmetatable({
    prefix = prefix,
    total_suffix = opts.counters_total_suffix == true,
    unit_suffix = opts.unit_suffix == true,
    seconds = opts.durations_as_seconds == true,
    overrides = overrides,
    buffer = opts.buffer,
    base_labels = base,
    global_labels = global,
    families = {},          -- exported name -> family
    rpc_cache = { [false] = {}, [true] = {} },  -- long -> operation -> namespace -> task queue -> recorder
  }, Registry)
  self.rpc = {
    request = self:counter(prefix .. "request", "Count of client request successes by rpc name"),
    failure = self:counter(prefix .. "request_failure", "Count of client request failures by rpc name"),
    latency = self:histogram_duration(prefix .. "request_latency", "Histogram of client request latencies"),
    long_request = self:counter(prefix .. "long_request", "Count of long-poll request successes by rpc name"),
    long_failure = self:counter(prefix .. "long_request_failure", "Count of long-poll request failures by rpc name"),
    long_latency = self:histogram_duration(prefix .. "long_request_latency",
      "Histogram of client long-poll request latencies"),
  }
  return self
end

function Registry:__tostring()
  local n = 0
  for _ in pairs(self.families) do n = n + 1 end
  return ("temporal.metrics.Registry(%d metrics)"):format(n)
end

-- The buckets of a histogram: an override whose key is part of its name, else sdk-core's
-- default for the name without the "temporal_" prefix; seconds when durations are.
function Registry:_buckets(name)
  for part, b in pairs(self.overrides) do
    if name:find(part, 1, true) then return b end
  end
  local ms = NAMED_BUCKETS[(name:gsub("^temporal_", ""))] or DEFAULT_BUCKETS
  if not self.seconds then return ms end
  local s = {}
  for i, v in ipairs(ms) do s[i] = v / 1000 end
  return s
end

---------------------------------------------------------------------------- instruments

-- A family: one exported metric name with its series (one per label set).
local Family = {}
Family.__index = Family

local function new_family(reg, kind, name, description, unit, what, level)
  check_name(name, what, level + 1)
  if description ~= nil and type(description) ~= "string" then
    error(what .. ": description must be a string", level + 1)
  end
  if unit ~= nil and type(unit) ~= "string" then error(what .. ": unit must be a string", level + 1) end
  local exported = name
  local duration = unit == "duration"
  if duration then unit = reg.seconds and "seconds" or "milliseconds" end
  if kind == "counter" and reg.total_suffix then exported = name .. "_total" end
  if kind == "histogram" and reg.unit_suffix and unit and unit ~= "" then
    exported = name .. "_" .. unit
    check_name(exported, what, level + 1)
  end
  local existing = reg.families[exported]
  if existing then
    if existing.kind ~= kind or existing.duration ~= duration then
      error(("%s: '%s' is already a %s"):format(what, exported, existing.kind), level + 1)
    end
    return existing
  end
  local f = setmetatable({
    registry = reg, kind = kind, name = exported, help = description or "", duration = duration,
    series = {},
    -- what a MetricBuffer update names: the name as created, as Python's BufferedMetric does
    metric = { name = name, description = description, unit = unit, kind = kind },
  }, Family)
  if duration and reg.buffer then f.metric.unit = reg.buffer.seconds and "seconds" or "milliseconds" end
  if kind == "histogram" then f.bounds = reg:_buckets(name) end
  reg.families[exported] = f
  return f
end

-- The series of a family for a label table (user labels; base and global ones are added).
local function series_for(f, labels)
  local reg = f.registry
  local merged = {}
  for k, v in pairs(reg.base_labels) do merged[k] = v end
  for k, v in pairs(labels or {}) do
    v = tostring(v)
    if v ~= "" then merged[k] = v end   -- sdk-core leaves empty labels out
  end
  for k, v in pairs(reg.global_labels) do
    if merged[k] == nil then merged[k] = v end
  end
  local names = {}
  for k in pairs(merged) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=\"" .. escape_label(merged[k]) .. "\"" end
  local key = table.concat(parts, ",")
  local s = f.series[key]
  if s then return s end
  s = { key = key, labels = merged, family = f }
  if f.kind == "histogram" then
    s.counts = {}
    for i = 1, #f.bounds do s.counts[i] = 0 end
    s.sum, s.count = 0, 0
  else
    s.value = 0
  end
  f.series[key] = s
  return s
end

local function check_value(v, what, level)
  if type(v) ~= "number" or v ~= v then error(what .. ": value must be a number", level + 1) end
end

local function add(s, v)
  s.value = s.value + v
  local buf = s.family.registry.buffer
  if buf then buf:_push(s.family.metric, v, s.labels) end
end

local function set(s, v)
  s.value = v
  local buf = s.family.registry.buffer
  if buf then buf:_push(s.family.metric, v, s.labels) end
end

-- value in the histogram's own unit; for duration histograms, `seconds` is what the buffer gets.
local function observe(s, v, seconds)
  local bounds, counts = s.family.bounds, s.counts
  for i = 1, #bounds do
    if v <= bounds[i] then counts[i] = counts[i] + 1; break end
  end
  s.sum = s.sum + v
  s.count = s.count + 1
  local buf = s.family.registry.buffer
  if buf then
    local bv = v
    if seconds then bv = buf.seconds and seconds or math.floor(seconds * 1000) end
    buf:_push(s.family.metric, bv, s.labels)
  end
end

-- Bound instruments: one series, no label handling per update.
local Bound = {}
Bound.__index = Bound
function Bound:add(v)
  check_value(v, self.what, 2)
  if v < 0 then error(self.what .. ": a counter only goes up (value < 0)", 2) end
  add(self.series, v)
end
function Bound:set(v) check_value(v, self.what, 2); set(self.series, v) end
function Bound:record(v)
  check_value(v, self.what, 2)
  if self.duration then
    observe(self.series, self.scale * v, v)
  else
    observe(self.series, v)
  end
end

local Instrument = {}
Instrument.__index = Instrument
Instrument.__name = "temporal.metrics.Instrument"
function Instrument:__tostring()
  return ("temporal.metrics.%s(%s)"):format(self.family.kind, self.family.name)
end

--- inst:with_labels(labels) -> an instrument bound to one label set (add/set/record take
-- only the value): the cheap way to record the same series often.
function Instrument:with_labels(labels)
  check_labels(labels, self.what, 2)
  local f = self.family
  return setmetatable({
    series = series_for(f, labels), what = self.what, duration = f.duration,
    scale = f.registry.seconds and 1 or 1000,
  }, Bound)
end

--- counter:add(value[, labels]): value >= 0.
function Instrument:add(v, labels)
  if self.family.kind ~= "counter" then error(self.what .. ": add is for counters", 2) end
  check_value(v, self.what, 2)
  if v < 0 then error(self.what .. ": a counter only goes up (value < 0)", 2) end
  check_labels(labels, self.what, 2)
  add(series_for(self.family, labels), v)
end

--- gauge:set(value[, labels]).
function Instrument:set(v, labels)
  if self.family.kind ~= "gauge" then error(self.what .. ": set is for gauges", 2) end
  check_value(v, self.what, 2)
  check_labels(labels, self.what, 2)
  set(series_for(self.family, labels), v)
end

--- histogram:record(value[, labels]); a duration histogram takes seconds.
function Instrument:record(v, labels)
  if self.family.kind ~= "histogram" then error(self.what .. ": record is for histograms", 2) end
  check_value(v, self.what, 2)
  check_labels(labels, self.what, 2)
  local f = self.family
  if f.duration then
    observe(series_for(f, labels), f.registry.seconds and v or v * 1000, v)
  else
    observe(series_for(f, labels), v)
  end
end

local function instrument(reg, kind, name, description, unit, what)
  if getmetatable(reg) ~= Registry then error(what .. ": call it with ':' on a registry", 3) end
  local f = new_family(reg, kind, name, description, unit, what, 3)
  return setmetatable({ family = f, what = what .. "(" .. name .. ")" }, Instrument)
end

--- reg:counter(name[, description[, unit]]) -> counter (counter:add(n[, labels])).
-- Custom metrics are not prefixed (as in the SDKs' metric meters).
function Registry:counter(name, description, unit)
  return instrument(self, "counter", name, description, unit, "counter")
end

--- reg:gauge(name[, description[, unit]]) -> gauge (gauge:set(v[, labels])).
function Registry:gauge(name, description, unit)
  return instrument(self, "gauge", name, description, unit, "gauge")
end

--- reg:histogram(name[, description[, unit]]) -> histogram (histogram:record(v[, labels]));
-- the buckets are sdk-core's defaults for the name unless histogram_bucket_overrides says.
function Registry:histogram(name, description, unit)
  return instrument(self, "histogram", name, description, unit, "histogram")
end

--- reg:histogram_duration(name[, description]) -> histogram whose record takes seconds and
-- exports milliseconds (or seconds with durations_as_seconds), as the SDKs' duration histograms.
function Registry:histogram_duration(name, description)
  return instrument(self, "histogram", name, description, "duration", "histogram_duration")
end

---------------------------------------------------------------------------- client requests

-- The recorder of one (operation, namespace, task queue, long) combination: the series it
-- updates, found once and kept, so recording an attempt is a few table updates.
local Recorder = {}
Recorder.__index = Recorder

function Recorder:begin()
  add(self.request, 1)
  return now()
end

function Recorder:finish(started, failure)
  local seconds = now() - started
  observe(self.latency, seconds * self.scale, seconds)
  if failure then
    local status = failure.status or "UNKNOWN"
    local s = self.failures[status]
    if not s then
      local labels = {}
      for k, v in pairs(self.labels) do labels[k] = v end
      labels.status_code = status
      s = series_for(self.failure_family, labels)
      self.failures[status] = s
    end
    add(s, 1)
  end
end

local function task_queue_of(request)
  local tq = request.task_queue
  if type(tq) == "table" then
    local normal = tq.normal_name
    if type(normal) == "string" and normal ~= "" then return normal end
    tq = tq.name
  end
  return type(tq) == "string" and tq or ""
end

--- reg:recorder(operation, request[, long_polls]) -> the recorder for one logical call (what
-- the client's RPC path uses): recorder:begin() when an attempt starts returns its start
-- time, recorder:finish(start, failure) records the attempt's outcome. The call is a long
-- poll when `long_polls` (a set of method names) has the operation, when the request waits
-- for new history events, or when it is a worker task poll.
function Registry:recorder(operation, request, long_polls)
  if type(request) ~= "table" then request = {} end
  local long = (long_polls and long_polls[operation]) == true or request.wait_new_event == true
    or TASK_POLLS[operation] == true
  local ns = type(request.namespace) == "string" and request.namespace or ""
  local tq = task_queue_of(request)
  local by_op = self.rpc_cache[long]
  local by_ns = by_op[operation]
  if not by_ns then by_ns = {}; by_op[operation] = by_ns end
  local by_tq = by_ns[ns]
  if not by_tq then by_tq = {}; by_ns[ns] = by_tq end
  local r = by_tq[tq]
  if r then return r end
  local rpc = self.rpc
  local labels = { operation = operation, namespace = ns, task_queue = tq }
  local request_f = long and rpc.long_request.family or rpc.request.family
  local latency_f = long and rpc.long_latency.family or rpc.latency.family
  r = setmetatable({
    labels = labels,
    request = series_for(request_f, labels),
    latency = series_for(latency_f, labels),
    failure_family = long and rpc.long_failure.family or rpc.failure.family,
    failures = {},
    scale = self.seconds and 1 or 1000,
  }, Recorder)
  by_tq[tq] = r
  return r
end

---------------------------------------------------------------------------- reading

local function sorted_families(reg)
  local list = {}
  for _, f in pairs(reg.families) do
    if next(f.series) then list[#list + 1] = f end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

local function sorted_series(f)
  local list = {}
  for _, s in pairs(f.series) do list[#list + 1] = s end
  table.sort(list, function(a, b) return a.key < b.key end)
  return list
end

--- reg:exposition() -> the Prometheus text format (version 0.0.4) of every metric that has
-- a value; serve it with Content-Type metrics.CONTENT_TYPE.
function Registry:exposition()
  local out, n = {}, 0
  local function put(s) n = n + 1; out[n] = s end
  for _, f in ipairs(sorted_families(self)) do
    put("# HELP " .. f.name .. " " .. escape_help(f.help ~= "" and f.help or f.name) .. "\n")
    put("# TYPE " .. f.name .. " " .. f.kind .. "\n")
    for _, s in ipairs(sorted_series(f)) do
      local labels = s.key
      if f.kind == "histogram" then
        local sep = labels == "" and "" or ","
        local cum = 0
        for i, b in ipairs(f.bounds) do
          cum = cum + s.counts[i]
          put(("%s_bucket{%s%sle=\"%s\"} %d\n"):format(f.name, labels, sep, number_text(b), cum))
        end
        put(("%s_bucket{%s%sle=\"+Inf\"} %d\n"):format(f.name, labels, sep, s.count))
        local braces = labels == "" and "" or "{" .. labels .. "}"
        put(("%s_sum%s %s\n"):format(f.name, braces, number_text(s.sum)))
        put(("%s_count%s %d\n"):format(f.name, braces, s.count))
      else
        put(("%s%s %s\n"):format(f.name, labels == "" and "" or "{" .. labels .. "}", number_text(s.value)))
      end
    end
  end
  return table.concat(out)
end

--- reg:collect() -> a list of { name, kind, help, series = { { labels, value } or
-- { labels, buckets = { { le, count (cumulative) } }, sum, count } } }, sorted by name:
-- the registry's current values as tables, for forwarding elsewhere.
function Registry:collect()
  local list = {}
  for _, f in ipairs(sorted_families(self)) do
    local fam = { name = f.name, kind = f.kind, help = f.help, series = {} }
    for _, s in ipairs(sorted_series(f)) do
      local labels = {}
      for k, v in pairs(s.labels) do labels[k] = v end
      local item = { labels = labels }
      if f.kind == "histogram" then
        item.buckets, item.sum, item.count = {}, s.sum, s.count
        local cum = 0
        for i, b in ipairs(f.bounds) do
          cum = cum + s.counts[i]
          item.buckets[i] = { le = b, count = cum }
        end
        item.buckets[#f.bounds + 1] = { le = math.huge, count = s.count }
      else
        item.value = s.value
      end
      fam.series[#fam.series + 1] = item
    end
    list[#list + 1] = fam
  end
  return list
end

---------------------------------------------------------------------------- /metrics listener

-- lua-http (Debian's lua-http, on cqueues) is pure Lua; Debian installs it for Lua 5.1-5.3
-- only, so its directories are added to package.path when Lua 5.4 does not find it.
local function load_http_server()
  local ok, server = pcall(require, "http.server")
  if ok then return server, require("http.headers") end
  local extra = {}
  for _, v in ipairs({ "5.3", "5.1" }) do
    extra[#extra + 1] = ("/usr/share/lua/%s/?.lua;/usr/share/lua/%s/?/init.lua"):format(v, v)
  end
  local saved = package.path
  package.path = package.path .. ";" .. table.concat(extra, ";")
  ok, server = pcall(require, "http.server")
  if ok then return server, require("http.headers") end
  package.path = saved
  error("serve: needs lua-http and lua-cqueues (Debian: apt-get install lua-http): " .. tostring(server), 3)
end

local Listener = { __name = "temporal.metrics.Listener" }
Listener.__index = Listener

function Listener:__tostring()
  return ("temporal.metrics.Listener(%s:%s%s)"):format(self.host, tostring(self.port),
    self.closed and ", closed" or "")
end

--- Stops listening (idempotent); the stepping task ends at its next turn.
function Listener:close()
  if self.closed then return end
  self.closed = true
  self.server:close()
end
Listener.__close = Listener.close

--- reg:serve([opts]) -> listener: a built-in HTTP endpoint answering GET `path` with
-- reg:exposition(), for plain scripts. opts: host ("127.0.0.1"), port (0: any free port;
-- listener.port says which), path ("/metrics"), interval (0.05 s). It is lua-http's server
-- (on cqueues), stepped without blocking by a temporal task every `interval` seconds, so it
-- answers while the script waits in temporal calls, temporal.sleep or temporal.run (which
-- then runs until listener:close()).
function Registry:serve(opts)
  if opts ~= nil and type(opts) ~= "table" then error("serve: options must be a table", 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "host" and k ~= "port" and k ~= "path" and k ~= "interval" then
      error(("serve: unknown option '%s'"):format(tostring(k)), 2)
    end
  end
  local host, port = opts.host or "127.0.0.1", opts.port or 0
  local path, interval = opts.path or "/metrics", opts.interval or 0.05
  if type(host) ~= "string" then error("serve: host must be a string", 2) end
  if math_type(port) ~= "integer" or port < 0 or port > 65535 then
    error("serve: port must be an integer 0-65535", 2)
  end
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then error("serve: path must start with '/'", 2) end
  if type(interval) ~= "number" or interval ~= interval or interval <= 0 then
    error("serve: interval must be a positive number", 2)
  end
  local http_server, http_headers = load_http_server()
  local reg = self
  local function respond(stream, status, body, content_type)
    local h = http_headers.new()
    h:append(":status", status)
    h:append("content-type", content_type)
    h:append("content-length", tostring(#body))
    stream:write_headers(h, false)
    stream:write_chunk(body, true)
  end
  local server, err = http_server.listen({
    host = host, port = port, reuseaddr = true,
    onstream = function(_, stream)
      local req = stream:get_headers()
      if not req then return end
      local method, target = req:get(":method"), req:get(":path") or ""
      if target:gsub("%?.*$", "") ~= path then
        respond(stream, "404", "not found\n", "text/plain")
      elseif method ~= "GET" and method ~= "HEAD" then
        respond(stream, "405", "method not allowed\n", "text/plain")
      else
        respond(stream, "200", reg:exposition(), M.CONTENT_TYPE)
      end
    end,
    onerror = function() end,   -- a client that hangs up mid-request is its own problem
  })
  if not server then error(("serve: cannot listen on %s:%d: %s"):format(host, port, tostring(err)), 2) end
  local ok, lerr = server:listen()
  if not ok then error(("serve: cannot listen on %s:%d: %s"):format(host, port, tostring(lerr)), 2) end
  local _, bound_host, bound_port = server:localname()
  local listener = setmetatable({ server = server, host = bound_host or host, port = bound_port, closed = false },
    Listener)
  local scheduler = require("temporal.scheduler")
  listener.task = scheduler.spawn(function()
    while not listener.closed do
      server:step(0)
      scheduler.sleep(interval)
    end
  end)
  return listener
end

---------------------------------------------------------------------------- default registry

local default_registry

--- metrics.default() -> the registry clients of this Lua state record into when connect has
-- no `metrics` option; nil (no metrics) until metrics.set_default(reg) names one, as the
-- Python SDK's default runtime has none. Each Lua state has its own.
function M.default()
  return default_registry
end

--- metrics.set_default(reg): clients connected afterwards without a `metrics` option record
-- into reg (nil: into none again), as the Python SDK's Runtime.set_default.
function M.set_default(reg)
  if reg ~= nil and getmetatable(reg) ~= Registry then
    error("set_default: expected a registry from metrics.new() or nil", 2)
  end
  default_registry = reg
end

--- The `metrics` connect option: nil -> the default registry (maybe none), false -> none,
-- or a registry.
function M._check_option(v, level)
  if v == nil then return default_registry end
  if v == false then return nil end
  if getmetatable(v) ~= Registry then
    error("metrics: expected a registry from temporal.metrics.new() or false", level + 1)
  end
  return v
end

M.Registry = Registry
M.MetricBuffer = Buffer

return M
