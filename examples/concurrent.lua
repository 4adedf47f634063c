-- Many calls at once from one Lua state: each task is a coroutine; while one waits for
-- its RPC the others run, and all calls share one connection.
--   temporal-lua examples/concurrent.lua [address] [count]
local temporal = require("temporal")
local address = arg[1] or os.getenv("TEMPORAL_ADDRESS") or "127.0.0.1:7233"
local count = tonumber(arg[2]) or 50

local client = temporal.connect(address)
local t0 = temporal.core.now()
local tasks = {}
for i = 1, count do
  tasks[i] = temporal.spawn(function()
    return client.workflow_service:describe_namespace{ namespace = client.namespace }.namespace_info.name
  end)
end
for i = 1, count do assert(tasks[i]:wait() == client.namespace) end
print(("%d DescribeNamespace calls in %.3f s, overlapped in one Lua state"):format(count, temporal.core.now() - t0))
