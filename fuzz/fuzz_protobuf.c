/* Protobuf decode/encode: the first byte picks a message type the client reads (every
 * WorkflowService/OperatorService response, history, failures, status details, payloads);
 * decoding the rest never crashes, and whatever decodes re-encodes and decodes to the same
 * table (raw messages round-trip exactly). */
#include "harness.h"

FUZZ_TARGET(
  "local core = require('temporal.core')\n"
  "local types = { 'temporal.api.history.v1.History', 'temporal.api.history.v1.HistoryEvent',\n"
  "  'temporal.api.failure.v1.Failure', 'google.rpc.Status', 'temporal.api.common.v1.Payloads',\n"
  "  'temporal.api.common.v1.Payload', 'temporal.api.common.v1.Memo', 'google.protobuf.Any',\n"
  "  'temporal.api.common.v1.SearchAttributes', 'google.protobuf.Timestamp', 'google.protobuf.Duration' }\n"
  "local seen = {}\n"
  "for _, t in ipairs(types) do seen[t] = true end\n"
  "local names = {}\n"
  "for service in pairs(core.services()) do names[#names + 1] = service end\n"
  "table.sort(names)\n"
  "for _, service in ipairs(names) do\n"
  "  local methods, list = core.services()[service], {}\n"
  "  for m in pairs(methods) do list[#list + 1] = m end\n"
  "  table.sort(list)\n"
  "  for _, m in ipairs(list) do\n"
  "    local out = methods[m].output\n"
  "    if not seen[out] then seen[out] = true; types[#types + 1] = out end\n"
  "  end\n"
  "end\n"
  "function check(s)\n"
  "  if #s == 0 then return end\n"
  "  local t = types[s:byte(1) % #types + 1]\n"
  "  local ok, m = pcall(core.decode, t, s:sub(2))\n"
  "  if not ok then return end\n"
  "  local ok2, b = pcall(core.encode, t, m)\n"
  "  if not ok2 then error('BUG: ' .. t .. ': decoded message does not encode: ' .. tostring(b)) end\n"
  "  local ok3, m2 = pcall(core.decode, t, b)\n"
  "  if not ok3 then error('BUG: ' .. t .. ': re-encoded message does not decode: ' .. tostring(m2)) end\n"
  "  if not deep_equal(m, m2) then error('BUG: ' .. t .. ': round trip changed the message') end\n"
  "end\n")
