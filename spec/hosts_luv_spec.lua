-- Host: luv (Debian lua-luv). Calls made from coroutines resumed by uv callbacks park
-- only their coroutine; uv keeps running the other callbacks. Overlap by structure: N
-- result() long polls held open by the server at once, released in the order the test
-- chooses, while a uv timer keeps ticking between their start and completion.
local helper = require("support.helper")
local temporal = require("temporal")
local uv = require("luv")
local host_luv = require("temporal.host.luv")
local core = temporal.core

-- starts fn as a coroutine from a uv callback, as luv programs do
local function go(fn)
  local t = uv.new_timer()
  t:start(0, 0, function()
    t:close()
    assert(coroutine.resume(coroutine.create(fn)))
  end)
end

describe("luv host", function()
  local client
  setup(function()
    client = temporal.connect(helper.address, { namespace = helper.namespace })
  end)
  teardown(function() client:close() end)
  after_each(function() temporal.set_host(nil) end)

  it("overlaps calls from uv-resumed coroutines while a uv timer keeps ticking", function()
    temporal.set_host(host_luv.new())
    local n = 6
    local handles, results, done_order = {}, {}, {}
    local ticks, ticks_when_all_open = 0, nil
    local ticker = uv.new_timer()
    ticker:start(10, 10, function() ticks = ticks + 1 end)
    local failure
    for i = 1, n do
      go(function()
        local ok, err = pcall(function()
          handles[i] = client:start_workflow("WaitForSignal", {
            id = helper.unique_id("luv-" .. i), task_queue = helper.task_queue })
          results[i] = handles[i]:result()   -- a long poll the server holds open
        end)
        if not ok then failure = failure or ("call " .. i .. ": " .. tostring(err)) end
        done_order[#done_order + 1] = i
      end)
    end
    go(function()
      local ok, err = pcall(function()
        while core.inflight() < n or #handles < n do
          if failure then error(failure, 0) end
          temporal.sleep(0.01)
        end
        ticks_when_all_open = ticks
        assert.equals(0, #done_order)
        while ticks == ticks_when_all_open do temporal.sleep(0.005) end
        -- release in the order 2, 4, 6, 1, 3, 5; each comes back before the next
        for k, i in ipairs({ 2, 4, 6, 1, 3, 5 }) do
          handles[i]:signal("approve", "r" .. i)
          while #done_order < k do
            if failure then error(failure, 0) end
            temporal.sleep(0.005)
          end
          assert.equals(i, done_order[k])
        end
      end)
      if not ok then
        failure = err
        -- end what is still held open, so uv.run returns and the failure is reported
        -- instead of the loop waiting forever on workflows nobody signals
        for i = 1, n do
          if handles[i] then pcall(handles[i].terminate, handles[i], "luv host spec failed") end
        end
      end
      ticker:stop()
      ticker:close()
    end)
    uv.run()
    assert.is_nil(failure)
    assert.same({ 2, 4, 6, 1, 3, 5 }, done_order)
    for i = 1, n do assert.same({ { "r" .. i } }, results[i]) end
    assert.is_true(ticks > ticks_when_all_open)
    assert.equals(0, core.inflight())
    local desc = helper.cli_json("workflow", "describe", "--workflow-id", handles[6].id)
    assert.equals("WORKFLOW_EXECUTION_STATUS_COMPLETED", desc.workflowExecutionInfo.status)
  end)

  it("runs temporal.spawn tasks as uv-started coroutines; uv.run returns when all is done", function()
    temporal.set_host(host_luv.new())
    local tasks = {}
    for i = 1, 5 do
      tasks[i] = temporal.spawn(function()
        return i, client.workflow_service:get_system_info{}.server_version
      end)
    end
    local got = {}
    go(function()
      for i = 1, 5 do
        local j, v = tasks[i]:wait()
        got[j] = v
      end
    end)
    uv.run()
    for i = 1, 5 do assert.equals(client.system_info.server_version, got[i]) end
  end)

  it("a call on the main thread (a plain uv callback) still blocks and completes", function()
    temporal.set_host(host_luv.new())
    local got
    local t = uv.new_timer()
    t:start(0, 0, function()
      t:close()
      got = client.workflow_service:get_system_info{}.server_version
    end)
    uv.run()
    assert.equals(client.system_info.server_version, got)
  end)
end)
