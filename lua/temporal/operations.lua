--- The rest of the client surface: server health and info, task queues, reset, namespaces,
-- search attributes and the legacy (build-id-based) worker versioning calls.
--
--   client:check_health()                          --> true, "SERVING"
--   client:get_system_info().server_version        --> "1.32.0"
--   client:describe_task_queue("tq").pollers[1].identity
--   local run_id = client:reset_workflow("order-1", { reset_type = "LAST_WORKFLOW_TASK", reason = "bug fixed" })
--   client:register_namespace("team-a", { retention = 3 * 86400 })
--   client:describe_namespace("team-a").state      --> "REGISTERED"
--   for ns in client:list_namespaces() do print(ns.name) end
--
-- Each method takes an options table with rpc_timeout (seconds) and rpc_metadata (table)
-- besides its own options; argument mistakes raise at once naming the option, RPC
-- failures raise RPCError. Every call is retried on transient failures. Most are
-- read-only or idempotent, and reset carries a request id; register_namespace and
-- delete_namespace are neither: a retried register whose first reply was lost (the
-- namespace was created) raises RPCError ALREADY_EXISTS, and a retried delete can
-- likewise fail because the first attempt already went through.
local client_mod = require("temporal.client")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local errors = require("temporal.errors")

local M = {}

local methods = client_mod.methods
local check_options = client_mod.check_options
local SERVICES = client_mod.SERVICES

local check_type = client_mod.check_type

local function check_name(value, name, level)
  if type(value) ~= "string" or value == "" then
    error(("%s: expected a non-empty string, got %s"):format(name, type(value)), level + 1)
  end
  return value
end

local function check_string_list(value, name, level)
  if value == nil then return {} end
  if type(value) ~= "table" then error(("%s: expected a list of strings, got %s"):format(name, type(value)), level + 1) end
  for k, v in pairs(value) do
    if compat.math_type(k) ~= "integer" or k < 1 or k > #value or type(v) ~= "string" then
      error(("%s: expected a list of strings"):format(name), level + 1)
    end
  end
  return value
end

-- Checks opts against `known` plus the rpc options; returns opts and the _rpc options.
local function options(opts, known, what, level)
  opts = client_mod.check_rpc_options(opts, known, what, level + 1)
  return opts, { rpc_timeout = opts.rpc_timeout, rpc_metadata = opts.rpc_metadata, retry = true }
end

local function check_enum(value, allowed, name, level)
  if value == nil then return nil end
  if not allowed[value] then
    local names = {}
    for k in pairs(allowed) do names[#names + 1] = k end
    table.sort(names)
    error(("%s: unknown value %s (expected one of %s)"):format(name, tostring(value), table.concat(names, ", ")),
      level + 1)
  end
  return value
end

local function ws(client, method, request, rpc)
  return client:_rpc(SERVICES.workflow_service, method, request, rpc)
end

-- ------------------------------------------------------------------ health and info

--- client:check_health(opts) -> true, "SERVING" when the frontend's WorkflowService is
-- serving; false and the status name otherwise (e.g. false, "NOT_SERVING"). Raises RPCError
-- when the check itself fails (server unreachable, ...). Uses grpc.health.v1.Health.
function methods:check_health(opts)
  local _, rpc = options(opts, nil, "check_health", 2)
  local resp = self:_rpc(SERVICES.health_service, "Check",
    { service = SERVICES.workflow_service }, rpc)
  local status = resp.status or "UNKNOWN"
  return status == "SERVING", status
end

--- client:get_system_info(opts) -> { server_version, capabilities = { ... } } (asked now;
-- client.system_info holds the answer from connect).
function methods:get_system_info(opts)
  local _, rpc = options(opts, nil, "get_system_info", 2)
  local resp = ws(self, "GetSystemInfo", {}, rpc)
  return { server_version = resp.server_version, capabilities = resp.capabilities or {}, raw = resp }
end

-- ------------------------------------------------------------------ task queues

local TASK_QUEUE_TYPES = { WORKFLOW = true, ACTIVITY = true, NEXUS = true }

--- client:describe_task_queue(name, opts) -> { pollers = { { identity, last_access_time,
-- rate_per_second } }, stats = { approximate_backlog_count, approximate_backlog_age,
-- tasks_add_rate, tasks_dispatch_rate } or nil, config, raw }.
-- opts: task_queue_type ("WORKFLOW" | "ACTIVITY" | "NEXUS"; default "WORKFLOW"),
-- report_stats (false), report_config (false).
function methods:describe_task_queue(name, opts)
  check_name(name, "task_queue", 2)
  local rpc
  opts, rpc = options(opts, { task_queue_type = true, report_stats = true, report_config = true },
    "describe_task_queue", 2)
  check_enum(opts.task_queue_type, TASK_QUEUE_TYPES, "task_queue_type", 2)
  check_type(opts.report_stats, "boolean", "report_stats", 2)
  check_type(opts.report_config, "boolean", "report_config", 2)
  local resp = ws(self, "DescribeTaskQueue", {
    namespace = self.namespace,
    task_queue = { name = name, kind = "NORMAL" },
    task_queue_type = opts.task_queue_type or "WORKFLOW",
    report_stats = opts.report_stats or false,
    report_config = opts.report_config or false,
  }, rpc)
  local pollers = {}
  for i, p in ipairs(resp.pollers or {}) do
    pollers[i] = { identity = p.identity, last_access_time = p.last_access_time, rate_per_second = p.rate_per_second }
  end
  local stats
  if resp.stats then
    stats = {
      approximate_backlog_count = resp.stats.approximate_backlog_count or 0,
      approximate_backlog_age = resp.stats.approximate_backlog_age or 0,
      tasks_add_rate = resp.stats.tasks_add_rate or 0,
      tasks_dispatch_rate = resp.stats.tasks_dispatch_rate or 0,
    }
  end
  return { pollers = pollers, stats = stats, config = resp.config, raw = resp }
end

-- ------------------------------------------------------------------ reset

local RESET_TYPES = { FIRST_WORKFLOW_TASK = true, LAST_WORKFLOW_TASK = true }
local REAPPLY_EXCLUDE = { SIGNAL = true, UPDATE = true, NEXUS = true, CANCEL_REQUEST = true }

-- The event id a reset type points at: the first or the last completed workflow task.
local function reset_event_id(client, workflow_id, run_id, reset_type, rpc)
  local token, found
  repeat
    local resp = ws(client, "GetWorkflowExecutionHistory", {
      namespace = client.namespace,
      execution = { workflow_id = workflow_id, run_id = run_id },
      next_page_token = token,
    }, rpc)
    for _, e in ipairs(resp.history and resp.history.events or {}) do
      if e.event_type == "WORKFLOW_TASK_COMPLETED" then
        found = e.event_id
        if reset_type == "FIRST_WORKFLOW_TASK" then return found end
      end
    end
    token = resp.next_page_token
  until token == nil or token == ""
  return found
end

--- client:reset_workflow(workflow_id, opts) -> the new run's id.
-- Resets the run to a workflow task: opts.event_id (the id of a WorkflowTaskCompleted,
-- -Failed or -TimedOut event) or opts.reset_type ("FIRST_WORKFLOW_TASK" |
-- "LAST_WORKFLOW_TASK": the first or last completed workflow task, found in the history).
-- opts: run_id (default: the current run), reason (default "reset via temporal-lua"),
-- reapply_exclude_types (a list of "SIGNAL", "UPDATE", "NEXUS", "CANCEL_REQUEST": events
-- after the reset point of these kinds are not re-applied; default: all are re-applied).
-- The run being reset is terminated if still running.
function methods:reset_workflow(workflow_id, opts)
  check_name(workflow_id, "workflow_id", 2)
  local rpc
  opts, rpc = options(opts, { run_id = true, event_id = true, reset_type = true, reason = true,
    reapply_exclude_types = true }, "reset_workflow", 2)
  check_type(opts.run_id, "string", "run_id", 2)
  check_type(opts.reason, "string", "reason", 2)
  check_enum(opts.reset_type, RESET_TYPES, "reset_type", 2)
  if opts.event_id ~= nil and (compat.math_type(opts.event_id) ~= "integer" or opts.event_id < 1) then
    error("event_id: expected a positive integer, got " .. tostring(opts.event_id), 2)
  end
  if (opts.event_id == nil) == (opts.reset_type == nil) then
    error("reset_workflow: give exactly one of event_id and reset_type", 2)
  end
  local excludes = check_string_list(opts.reapply_exclude_types, "reapply_exclude_types", 2)
  for i, v in ipairs(excludes) do check_enum(v, REAPPLY_EXCLUDE, ("reapply_exclude_types[%d]"):format(i), 2) end
  local event_id = opts.event_id
  if opts.reset_type then
    event_id = reset_event_id(self, workflow_id, opts.run_id, opts.reset_type, rpc)
    if not event_id then
      error(("reset_workflow: %s has no completed workflow task to reset to"):format(workflow_id), 2)
    end
  end
  local resp = ws(self, "ResetWorkflowExecution", {
    namespace = self.namespace,
    workflow_execution = { workflow_id = workflow_id, run_id = opts.run_id },
    reason = opts.reason or "reset via temporal-lua",
    workflow_task_finish_event_id = event_id,
    request_id = client_mod.uuid4(),
    reset_reapply_exclude_types = excludes,
    identity = self.identity,
  }, rpc)
  return resp.run_id
end

-- ------------------------------------------------------------------ namespaces

local function namespace_from_proto(d)
  local info, config = d.namespace_info or {}, d.config or {}
  return {
    name = info.name,
    id = info.id,
    state = info.state,
    description = info.description,
    owner_email = info.owner_email,
    data = info.data or {},
    retention = config.workflow_execution_retention_ttl,
    is_global_namespace = d.is_global_namespace or false,
    capabilities = info.capabilities or {},
    raw = d,
  }
end

--- client:register_namespace(name, opts): registers a namespace.
-- opts: retention (seconds workflow histories are kept after closing; default 3 days),
-- description, owner_email, data (a string -> string table), is_global_namespace (false).
-- Raises RPCError ALREADY_EXISTS when taken, also when a retry follows an attempt whose
-- reply was lost but which created the namespace. A new namespace may take a few seconds to be
-- usable for workflows on a multi-node cluster (namespace caches refresh).
function methods:register_namespace(name, opts)
  check_name(name, "namespace", 2)
  local rpc
  opts, rpc = options(opts, { retention = true, description = true, owner_email = true, data = true,
    is_global_namespace = true }, "register_namespace", 2)
  if opts.retention ~= nil and (type(opts.retention) ~= "number" or opts.retention <= 0) then
    error("retention: expected a positive number of seconds, got " .. tostring(opts.retention), 2)
  end
  check_type(opts.description, "string", "description", 2)
  check_type(opts.owner_email, "string", "owner_email", 2)
  check_type(opts.is_global_namespace, "boolean", "is_global_namespace", 2)
  check_type(opts.data, "table", "data", 2)
  for k, v in pairs(opts.data or {}) do
    if type(k) ~= "string" or type(v) ~= "string" then error("data: expected string keys and values", 2) end
  end
  ws(self, "RegisterNamespace", {
    namespace = name,
    description = opts.description,
    owner_email = opts.owner_email,
    workflow_execution_retention_period = opts.retention or 3 * 86400,
    data = opts.data,
    is_global_namespace = opts.is_global_namespace or false,
  }, rpc)
end

--- client:describe_namespace(name, opts) -> { name, id, state ("REGISTERED", ...),
-- description, owner_email, data, retention (seconds), is_global_namespace, capabilities,
-- raw }. name defaults to the client's namespace.
function methods:describe_namespace(name, opts)
  if type(name) == "table" and opts == nil then name, opts = nil, name end
  if name ~= nil then check_name(name, "namespace", 2) end
  local _, rpc = options(opts, nil, "describe_namespace", 2)
  return namespace_from_proto(ws(self, "DescribeNamespace", { namespace = name or self.namespace }, rpc))
end

--- for ns in client:list_namespaces(opts) do ... end -- entries as describe_namespace.
-- opts: page_size (100), include_deleted (false).
function methods:list_namespaces(opts)
  local rpc
  opts, rpc = options(opts, { page_size = true, include_deleted = true }, "list_namespaces", 2)
  if opts.page_size ~= nil and (compat.math_type(opts.page_size) ~= "integer" or opts.page_size < 1) then
    error("page_size: expected a positive integer, got " .. tostring(opts.page_size), 2)
  end
  check_type(opts.include_deleted, "boolean", "include_deleted", 2)
  local client = self
  local page, index, token, done = {}, 0, nil, false
  return function()
    while index >= #page do
      if done then return nil end
      local resp = ws(client, "ListNamespaces", {
        page_size = opts.page_size or 100,
        next_page_token = token,
        namespace_filter = { include_deleted = opts.include_deleted or false },
      }, rpc)
      page, index = resp.namespaces or {}, 0
      token = resp.next_page_token
      if token == nil or token == "" then done = true end
    end
    index = index + 1
    return namespace_from_proto(page[index])
  end
end

--- client:delete_namespace(name, opts) -> the name the namespace was renamed to while its
-- data is deleted in the background (OperatorService.DeleteNamespace).
function methods:delete_namespace(name, opts)
  check_name(name, "namespace", 2)
  local _, rpc = options(opts, nil, "delete_namespace", 2)
  if name == self.namespace then
    error("delete_namespace: refusing to delete the client's own namespace '" .. name .. "'", 2)
  end
  local resp = self:_rpc(SERVICES.operator_service, "DeleteNamespace", { namespace = name }, rpc)
  return resp.deleted_namespace
end

-- ------------------------------------------------------------------ search attributes

local SA_TYPES = {
  TEXT = true, KEYWORD = true, INT = true, DOUBLE = true, BOOL = true, DATETIME = true, KEYWORD_LIST = true,
}

--- client:add_search_attributes({ Name = "KEYWORD", ... }, opts) registers custom search
-- attributes (types: TEXT, KEYWORD, INT, DOUBLE, BOOL, DATETIME, KEYWORD_LIST).
-- opts.namespace defaults to the client's. (OperatorService.AddSearchAttributes)
function methods:add_search_attributes(attributes, opts)
  check_type(attributes, "table", "attributes", 2)
  if attributes == nil or next(attributes) == nil then error("attributes: at least one is required", 2) end
  for k, v in pairs(attributes) do
    if type(k) ~= "string" then error("attributes: names must be strings", 2) end
    check_enum(v, SA_TYPES, "attributes." .. k, 2)
  end
  local rpc
  opts, rpc = options(opts, { namespace = true }, "add_search_attributes", 2)
  check_type(opts.namespace, "string", "namespace", 2)
  self:_rpc(SERVICES.operator_service, "AddSearchAttributes",
    { search_attributes = attributes, namespace = opts.namespace or self.namespace }, rpc)
end

--- client:list_search_attributes(opts) -> { custom = { Name = "KEYWORD", ... },
-- system = { ... } } for opts.namespace (default the client's).
function methods:list_search_attributes(opts)
  local rpc
  opts, rpc = options(opts, { namespace = true }, "list_search_attributes", 2)
  check_type(opts.namespace, "string", "namespace", 2)
  local resp = self:_rpc(SERVICES.operator_service, "ListSearchAttributes",
    { namespace = opts.namespace or self.namespace }, rpc)
  return { custom = resp.custom_attributes or {}, system = resp.system_attributes or {}, raw = resp }
end

--- client:remove_search_attributes({ "Name", ... }, opts) (opts.namespace as above).
function methods:remove_search_attributes(names, opts)
  names = check_string_list(names, "names", 2)
  if #names == 0 then error("names: at least one is required", 2) end
  local rpc
  opts, rpc = options(opts, { namespace = true }, "remove_search_attributes", 2)
  check_type(opts.namespace, "string", "namespace", 2)
  self:_rpc(SERVICES.operator_service, "RemoveSearchAttributes",
    { search_attributes = names, namespace = opts.namespace or self.namespace }, rpc)
end

-- ------------------------------------------------------------------ legacy worker versioning

-- Servers that dropped (or disabled) build-id-based versioning answer PERMISSION_DENIED or
-- UNIMPLEMENTED: say so plainly, keeping the RPCError (status, details) as it is.
local function legacy_versioning(client, method, request, rpc, what)
  local ok, resp = pcall(ws, client, method, request, rpc)
  if ok then return resp end
  local err = resp
  if errors.is(err, "RPCError") and (err.status == "PERMISSION_DENIED" or err.status == "UNIMPLEMENTED") then
    err.message = ("%s: build-id-based (legacy) worker versioning is disabled or removed on this "
      .. "server (Worker Deployments replace it): %s"):format(what, tostring(err.grpc_message or err.message))
    err.versioning_unsupported = true
  end
  error(err, 0)
end

local BUILD_ID_OPERATIONS = {
  add_new_id_in_new_default_set = true, add_new_compatible_version = true,
  promote_set_by_build_id = true, promote_build_id_within_set = true, merge_sets = true,
}

local function build_id_operation(op, level)
  if type(op) ~= "table" then error("operation: expected a table, got " .. type(op), level + 1) end
  check_options(op, BUILD_ID_OPERATIONS, "operation", level + 1)
  local kind, value = next(op)
  if kind == nil or next(op, kind) ~= nil then
    error("operation: give exactly one of add_new_id_in_new_default_set, add_new_compatible_version, "
      .. "promote_set_by_build_id, promote_build_id_within_set, merge_sets", level + 1)
  end
  if kind == "add_new_compatible_version" then
    check_type(value, "table", "operation.add_new_compatible_version", level + 1)
    check_options(value, { build_id = true, existing_compatible_build_id = true, promote_set = true },
      "operation.add_new_compatible_version", level + 1)
    check_name(value.build_id, "operation.add_new_compatible_version.build_id", level + 1)
    check_name(value.existing_compatible_build_id, "operation.add_new_compatible_version.existing_compatible_build_id", level + 1)
    check_type(value.promote_set, "boolean", "operation.add_new_compatible_version.promote_set", level + 1)
    return { add_new_compatible_build_id = { new_build_id = value.build_id,
      existing_compatible_build_id = value.existing_compatible_build_id, make_set_default = value.promote_set or false } }
  elseif kind == "merge_sets" then
    check_type(value, "table", "operation.merge_sets", level + 1)
    check_options(value, { primary_build_id = true, secondary_build_id = true }, "operation.merge_sets", level + 1)
    check_name(value.primary_build_id, "operation.merge_sets.primary_build_id", level + 1)
    check_name(value.secondary_build_id, "operation.merge_sets.secondary_build_id", level + 1)
    return { merge_sets = { primary_set_build_id = value.primary_build_id,
      secondary_set_build_id = value.secondary_build_id } }
  end
  check_name(value, "operation." .. kind, level + 1)
  local field = ({
    add_new_id_in_new_default_set = "add_new_build_id_in_new_default_set",
    promote_set_by_build_id = "promote_set_by_build_id",
    promote_build_id_within_set = "promote_build_id_within_set",
  })[kind]
  return { [field] = value }
end

--- client:update_worker_build_id_compatibility(task_queue, operation, opts)
-- Deprecated server feature (legacy worker versioning). operation is one of
--   { add_new_id_in_new_default_set = "2.0" }
--   { add_new_compatible_version = { build_id = "1.1", existing_compatible_build_id = "1.0",
--                                    promote_set = false } }
--   { promote_set_by_build_id = "1.0" }, { promote_build_id_within_set = "1.0" }
--   { merge_sets = { primary_build_id = "2.0", secondary_build_id = "1.0" } }
-- Raises RPCError (err.versioning_unsupported = true) where the server has it disabled.
function methods:update_worker_build_id_compatibility(task_queue, operation, opts)
  check_name(task_queue, "task_queue", 2)
  local request = build_id_operation(operation, 2)
  local _, rpc = options(opts, nil, "update_worker_build_id_compatibility", 2)
  request.namespace = self.namespace
  request.task_queue = task_queue
  legacy_versioning(self, "UpdateWorkerBuildIdCompatibility", request, rpc, "update_worker_build_id_compatibility")
end

-- The result of get_worker_build_id_compatibility (Python's WorkerBuildIdVersionSets):
-- sets:default_set() and set:default() as Python's default_set() and default().
local version_set_methods = {}
local VersionSet = { __name = "temporal.BuildIdVersionSet", __index = version_set_methods }
--- set:default() -> the set's default build id (its last), nil when empty.
function version_set_methods:default() return self.build_ids[#self.build_ids] end

local version_sets_methods = {}
local VersionSets = { __name = "temporal.WorkerBuildIdVersionSets", __index = version_sets_methods }
--- sets:default_set() -> the task queue's default set (the last), nil when there is none.
function version_sets_methods:default_set() return self.version_sets[#self.version_sets] end

--- client:get_worker_build_id_compatibility(task_queue, opts) -> { version_sets =
-- { { build_ids = { ... } }, ... } (oldest first), default_build_id, raw }, with
-- :default_set() (the last set, with :default(): its last build id). A task queue without
-- version sets gives version_sets = {} and default_build_id = nil (Python: an empty
-- list). opts: max_sets (0 = all). Legacy worker versioning.
function methods:get_worker_build_id_compatibility(task_queue, opts)
  check_name(task_queue, "task_queue", 2)
  local rpc
  opts, rpc = options(opts, { max_sets = true }, "get_worker_build_id_compatibility", 2)
  if opts.max_sets ~= nil and (compat.math_type(opts.max_sets) ~= "integer" or opts.max_sets < 0) then
    error("max_sets: expected a non-negative integer, got " .. tostring(opts.max_sets), 2)
  end
  local resp = legacy_versioning(self, "GetWorkerBuildIdCompatibility",
    { namespace = self.namespace, task_queue = task_queue, max_sets = opts.max_sets or 0 }, rpc,
    "get_worker_build_id_compatibility")
  local sets = {}
  for i, s in ipairs(resp.major_version_sets or {}) do
    sets[i] = setmetatable({ build_ids = s.build_ids or {} }, VersionSet)
  end
  local default_set = sets[#sets]
  return setmetatable({ version_sets = sets, default_build_id = default_set and default_set:default(), raw = resp },
    VersionSets)
end

local REACHABILITY = { NEW_WORKFLOWS = true, EXISTING_WORKFLOWS = true, OPEN_WORKFLOWS = true, CLOSED_WORKFLOWS = true }

--- client:get_worker_task_reachability(build_ids, opts) -> { build_id_reachability =
-- { [build_id] = { task_queue_reachability = { [task_queue] = { "NEW_WORKFLOWS", ... } },
-- unretrieved_task_queues = { ... } } } }. opts: task_queues (default: all the build ids'
-- queues), reachability ("NEW_WORKFLOWS" | "EXISTING_WORKFLOWS" | "OPEN_WORKFLOWS" |
-- "CLOSED_WORKFLOWS"; default: all). Legacy worker versioning.
function methods:get_worker_task_reachability(build_ids, opts)
  build_ids = check_string_list(build_ids, "build_ids", 2)
  local rpc
  opts, rpc = options(opts, { task_queues = true, reachability = true }, "get_worker_task_reachability", 2)
  local queues = check_string_list(opts.task_queues, "task_queues", 2)
  check_enum(opts.reachability, REACHABILITY, "reachability", 2)
  local resp = legacy_versioning(self, "GetWorkerTaskReachability", {
    namespace = self.namespace, build_ids = build_ids, task_queues = queues,
    reachability = opts.reachability or "UNSPECIFIED",
  }, rpc, "get_worker_task_reachability")
  local out = {}
  for _, b in ipairs(resp.build_id_reachability or {}) do
    local entry = { task_queue_reachability = {}, unretrieved_task_queues = {} }
    for _, tq in ipairs(b.task_queue_reachability or {}) do
      local list, unretrieved = {}, false
      for _, r in ipairs(tq.reachability or {}) do
        if r == "UNSPECIFIED" then unretrieved = true else list[#list + 1] = r end
      end
      if unretrieved then
        entry.unretrieved_task_queues[#entry.unretrieved_task_queues + 1] = tq.task_queue
      else
        entry.task_queue_reachability[tq.task_queue] = list
      end
    end
    out[b.build_id or ""] = entry
  end
  return { build_id_reachability = out, raw = resp }
end

return M
