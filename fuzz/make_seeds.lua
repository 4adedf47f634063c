-- Writes the seed corpora of the fuzz harnesses into fuzz/corpus/<target>/ (committed; run
-- again after changing it): `lua5.4 fuzz/make_seeds.lua` from the repository root, with
-- build/temporal/core.so built.
package.cpath = "build/?.so;" .. package.cpath
package.path = "lua/?.lua;" .. package.path
local core = require("temporal.core")

local function write(dir, name, data)
  os.execute("mkdir -p fuzz/corpus/" .. dir)
  local f = assert(io.open(("fuzz/corpus/%s/%s"):format(dir, name), "wb"))
  f:write(data)
  f:close()
end

-- json: Python-style payload bodies, plus 'E'-prefixed value builders
local json = {
  '{"a":[1,2.5,"x",null,true,false],"b":{"c":-0.0,"d":1e+16}}', '[]', '{}', '"\\u00e9\\ud83d\\ude00"',
  '9223372036854775807', '-9223372036854775808', '0.30000000000000004', '[[[[[[]]]]]]',
  '{"n":3}', '"a\\nb\\t\\"\\\\"', '5e-324',
}
for i, s in ipairs(json) do write("json", "seed" .. i, s) end
write("json", "encode1", "E\5\3\0\1\2\3\2\3abc")
write("json", "encode2", "E\6\2\1\4\2\0\7")

-- protobuf: the harness picks the type from the first byte (its list starts with these)
local failure = { message = "boom", source = "PythonSDK", stack_trace = "trace",
  application_failure_info = { type = "ValueError", non_retryable = true,
    details = { payloads = { { metadata = { encoding = "json/plain" }, data = '"x"' } } } },
  cause = { message = "inner", timeout_failure_info = { timeout_type = "START_TO_CLOSE" } } }
local payload = { metadata = { encoding = "json/plain", messageType = "x" }, data = '{"a":1}' }
local event = { event_id = 1, event_time = { seconds = 1732934052, nanos = 123456789 },
  event_type = "WORKFLOW_EXECUTION_STARTED",
  workflow_execution_started_event_attributes = { workflow_type = { name = "Greet" },
    task_queue = { name = "tq" }, input = { payloads = { payload } },
    workflow_execution_timeout = 3600.5, memo = { fields = { a = payload } } } }
local failed = { event_id = 2, event_type = "WORKFLOW_EXECUTION_FAILED",
  workflow_execution_failed_event_attributes = { failure = failure } }
local seeds = {
  { 0, "temporal.api.history.v1.History", { events = { event, failed } } },
  { 1, "temporal.api.history.v1.HistoryEvent", event },
  { 2, "temporal.api.failure.v1.Failure", failure },
  { 3, "google.rpc.Status", { code = 6, message = "already started", details = { {
    ["@type"] = "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
    start_request_id = "r", run_id = "run" } } } },
  { 4, "temporal.api.common.v1.Payloads", { payloads = { payload, payload } } },
  { 5, "temporal.api.common.v1.Payload", payload },
  { 6, "temporal.api.common.v1.Memo", { fields = { a = payload, b = {} } } },
  { 7, "google.protobuf.Any", { ["@type"] = "temporal.api.failure.v1.Failure", message = "x" } },
  { 8, "temporal.api.common.v1.SearchAttributes", { indexed_fields = { CustomKeyword = payload } } },
  { 9, "google.protobuf.Timestamp", { seconds = -62135596800, nanos = 999999999 } },
  { 10, "google.protobuf.Duration", { seconds = -5, nanos = -1 } },
}
for _, s in ipairs(seeds) do
  write("protobuf", s[2], string.char(s[1]) .. core.encode(s[2], s[3]))
end

-- status details: google.rpc.Status as servers send it
write("status_details", "already_started", core.encode("google.rpc.Status", seeds[4][3]))
write("status_details", "failure_detail", core.encode("google.rpc.Status", { code = 3, details = {
  { ["@type"] = "temporal.api.failure.v1.Failure", message = "m", cause = failure } } }))
write("status_details", "unknown_any", core.encode("google.rpc.Status", { code = 5, details = {
  { type_url = "type.googleapis.com/example.Unknown", value = "\8\1" } } }))

-- toml: temporal's profile files
write("toml", "profiles", [[
# temporal.toml
[profile.default]
address = "127.0.0.1:7233"
namespace = "default"
api_key = 'secret'

[profile.default.tls]
disabled = false
server_name = "example.test"
client_cert_data = """
-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----"""

[profile.other.grpc_meta]
"x-team" = "a"
some-key = "b\tc\u00e9"
]])
write("toml", "values", [[
a = 1
b = -2.5e3
c = [1, 2, [3, "x"], { y = true }]
d = 1979-05-27T07:32:00Z
e.f.g = 'lit'
"q k" = { x = 0x1f, y = 0o7, z = 0b1 }
]])
print("seeds written")
