--- temporal: a Temporal client for Lua 5.4.
--
--   local temporal = require("temporal")
--   local client = temporal.connect("127.0.0.1:7233", { namespace = "default" })
--   print(client.workflow_service:get_system_info{}.server_version)
local core = require("temporal.core")
local scheduler = require("temporal.scheduler")
local errors = require("temporal.errors")
local client = require("temporal.client")
local workflow = require("temporal.workflow")  -- attaches the workflow methods to Client
local schedule = require("temporal.schedule")  -- schedules: create/get/list, ScheduleHandle
local activity = require("temporal.activity")  -- async activity completion
local worker = require("temporal.worker")      -- the activity worker (client:new_worker)
require("temporal.operations")                  -- health, task queues, reset, namespaces, ...
local converter = require("temporal.converter")  -- payloads, codecs, search attributes
local failure = require("temporal.failure")      -- also adds errors.application_error
local envconfig = require("temporal.envconfig")  -- environment and TOML profiles
local metrics = require("temporal.metrics")      -- request metrics, Prometheus exposition

local M = {
  VERSION = core.version,
  core = core,
  errors = errors,
  converter = converter,
  failure = failure,
  envconfig = envconfig,
  metrics = metrics,
  DataConverter = converter.DataConverter,
  binary = converter.binary,         -- bytes as binary/plain
  array = converter.array,           -- JSON array marker: temporal.array{} -> []
  object = converter.object,         -- JSON object marker: temporal.object{} -> {}
  null = converter.null,             -- JSON null inside tables
  search_attributes = converter.search_attributes,  -- typed values: .keyword("x"), ...
  application_error = failure.application_error,
  Client = client.Client,
  ServiceClient = client.ServiceClient,   -- the connection clients share (client.service_client)
  connect = client.connect,
  WorkflowHandle = workflow.WorkflowHandle,
  WorkflowUpdateHandle = workflow.WorkflowUpdateHandle,
  WithStartWorkflowOperation = workflow.WithStartWorkflowOperation,
  ScheduleHandle = schedule.ScheduleHandle,
  AsyncActivityHandle = activity.AsyncActivityHandle,
  Worker = worker.Worker,
  ActivityContext = worker.Context,
  -- tasks and the host-loop protocol (see temporal.scheduler)
  spawn = scheduler.spawn,
  sleep = scheduler.sleep,
  step = scheduler.step,
  run = scheduler.run,
  pollfd = scheduler.pollfd,
  events = scheduler.events,
  timeout = scheduler.timeout,
  set_host = scheduler.set_host,     -- host adapters: temporal.host.cqueues, .luv, .skynet
  get_host = scheduler.get_host,
}

return M
