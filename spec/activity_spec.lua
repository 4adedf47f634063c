-- Async activity completion against the real test bed: the Python activity "complete_async"
-- writes its task token and ids to a file and completes asynchronously; Lua finishes it.
-- What the workflow ("AsyncActivity") received is checked from its result, which the Python
-- side builds from the activity's outcome (result, or ActivityError and its cause).
local helper = require("support.helper")
local temporal = require("temporal")

local errors = temporal.errors

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64decode(s)
  local bits = {}
  for c in s:gmatch("[^=]") do
    local v = B64:find(c, 1, true) - 1
    for i = 5, 0, -1 do bits[#bits + 1] = math.floor(v / 2 ^ i) % 2 end
  end
  local out = {}
  for i = 1, #bits - 7, 8 do
    local byte = 0
    for j = 0, 7 do byte = byte * 2 + bits[i + j] end
    out[#out + 1] = string.char(byte)
  end
  return table.concat(out)
end

local function json_payload(v)
  return { metadata = { encoding = "json/plain" }, data = helper.json.encode(v) }
end

describe("async activity completion", function()
  local client, dir
  setup(function()
    client = temporal.connect(helper.address, { namespace = helper.namespace })
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. helper.shell_quote(dir)))
  end)
  teardown(function()
    client:close()
    os.execute("rm -rf " .. helper.shell_quote(dir))
  end)

  -- Starts AsyncActivity; returns the workflow id and what the activity wrote.
  local function start()
    local id = helper.unique_id("async-activity")
    local path = dir .. "/" .. id .. ".json"
    client.workflow_service:start_workflow_execution{
      namespace = helper.namespace, workflow_id = id, workflow_type = { name = "AsyncActivity" },
      task_queue = { name = helper.task_queue }, input = { payloads = { json_payload(path) } },
      request_id = helper.unique_id("req"), workflow_execution_timeout = 120,
    }
    local info = helper.eventually(function()
      local f = io.open(path)
      if not f then return false end
      local s = f:read("a")
      f:close()
      return helper.json.decode(s)
    end, 30, 0.1)
    info.task_token = b64decode(info.task_token)
    return id, info
  end

  -- The workflow's result, as the Python side reported it.
  local function outcome(id)
    return helper.eventually(function()
      local d = helper.cli_json("workflow", "describe", "--workflow-id", id)
      if d.workflowExecutionInfo.status ~= "WORKFLOW_EXECUTION_STATUS_COMPLETED" then return false end
      return d.result
    end, 30, 0.2)
  end

  local function pending_heartbeat(id)
    local d = helper.cli_json("workflow", "describe", "--workflow-id", id)
    local pa = d.pendingActivities and d.pendingActivities[1]
    return pa and pa.heartbeatDetails
  end

  it("heartbeats then completes by task token; the workflow gets Lua's result", function()
    local id, info = start()
    local ah = client:get_async_activity_handle({ task_token = info.task_token })
    assert.equals("userdata", type(ah))
    assert.equals(info.task_token, ah.task_token)
    assert.matches("^temporal%.AsyncActivityHandle%(task_token=<%d+ bytes>%)$", tostring(ah))
    ah:heartbeat("halfway", 50)
    -- the server holds the heartbeat details for the pending activity
    local hb = helper.eventually(function() return pending_heartbeat(id) end, 10)
    assert.is_truthy(helper.json.encode(hb):find("halfway", 1, true))
    ah:complete({ ok = true, items = { 1, 2, 3 }, ratio = 0.5 })
    assert.same({ result = { ok = true, items = { 1, 2, 3 }, ratio = 0.5 } }, outcome(id))
  end)

  it("completes by workflow id, run id and activity id", function()
    local id, info = start()
    assert.equals(id, info.workflow_id)
    local ah = client:get_async_activity_handle({
      workflow_id = info.workflow_id, run_id = info.run_id, activity_id = info.activity_id,
    })
    assert.equals(info.activity_id, ah.activity_id)
    assert.matches("workflow_id=" .. id:gsub("%-", "%%-"), tostring(ah))
    ah:heartbeat_with_options({ details = { "by id" }, rpc_timeout = 10 })
    ah:complete("done by id", { rpc_timeout = 10 })
    assert.same({ result = "done by id" }, outcome(id))
  end)

  it("goes through the client's interceptors, which can change the result", function()
    local id, info = start()
    local names = {}
    local icpt = temporal.connect(helper.address, { namespace = helper.namespace, interceptors = {
      { ["*"] = function(next, input, name) names[#names + 1] = name; return next(input) end },
      { complete_async_activity = function(next, input)
          assert.equals(info.task_token, input.task_token)
          input.result = "changed: " .. input.result
          return next(input)
        end },
    } })
    local ah = icpt:get_async_activity_handle({ task_token = info.task_token })
    ah:heartbeat("beat")
    ah:complete("original")
    assert.same({ result = "changed: original" }, outcome(id))
    assert.same({ "heartbeat_async_activity", "complete_async_activity" }, names)
    icpt:close()
  end)

  it("completes without a result (the workflow reads None)", function()
    local id, info = start()
    -- run_id may be left out: the current run
    client:get_async_activity_handle({ workflow_id = id, activity_id = info.activity_id }):complete()
    local result = outcome(id)
    assert.is_not_nil(result)
    assert.equals(helper.json.null, result.result)
  end)

  it("fails: the workflow sees an ActivityError caused by Lua's message, type and details", function()
    local id, info = start()
    local ah = client:get_async_activity_handle({ task_token = info.task_token })
    local err = errors.new("ApplicationError", {
      message = "lua says no", type = "LuaFailure", non_retryable = true, details = { 42, "why" },
    })
    ah:fail(err, { last_heartbeat_details = { "last beat" } })
    local got = outcome(id)
    assert.equals("ActivityError", got.error)
    assert.equals("ApplicationError", got.cause)
    assert.equals("lua says no", got.message)
    assert.equals("LuaFailure", got.type)
    assert.is_true(got.non_retryable)
    assert.same({ 42, "why" }, got.details)
  end)

  it("fails with a plain message", function()
    local id, info = start()
    client:get_async_activity_handle({ task_token = info.task_token }):fail("plain failure")
    local got = outcome(id)
    assert.equals("ActivityError", got.error)
    assert.equals("ApplicationError", got.cause)
    assert.equals("plain failure", got.message)
  end)

  it("heartbeat raises AsyncActivityCancelledError after the workflow cancels; report_cancellation ends it", function()
    local id, info = start()
    local ah = client:get_async_activity_handle({ task_token = info.task_token })
    ah:heartbeat("before cancel")
    helper.cli("workflow", "signal", "--workflow-id", id, "--name", "cancel_activity")
    local err = helper.eventually(function()
      local ok, e = pcall(ah.heartbeat, ah, "still here")
      return not ok and e
    end, 20, 0.2)
    assert.is_true(errors.is(err, "AsyncActivityCancelledError"))
    assert.is_true(err.details.cancel_requested)
    assert.matches("^AsyncActivityCancelledError: activity cancelled", tostring(err))
    ah:report_cancellation("cleaned up", 3)
    local got = outcome(id)
    assert.equals("ActivityError", got.error)
    assert.equals("CancelledError", got.cause)
    assert.same({ "cleaned up", 3 }, got.details)
  end)

  it("a finished activity cannot be completed again (NOT_FOUND from the server)", function()
    local id, info = start()
    local ah = client:get_async_activity_handle({ task_token = info.task_token })
    ah:complete(1)
    outcome(id)
    local ok, err = pcall(ah.complete, ah, 2)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "RPCError"))
    assert.equals("NOT_FOUND", err.status)
  end)

  it("rejects bad references and options, naming them", function()
    assert.has_error(function() client:get_async_activity_handle("token") end)
    assert.has_error(function() client:get_async_activity_handle({ task_token = "t", workflow_id = "w" }) end,
      "get_async_activity_handle: give task_token or workflow_id/run_id/activity_id, not both")
    assert.has_error(function() client:get_async_activity_handle({ workflow_id = "w" }) end,
      "activity_id: required when no task_token is given")
    assert.has_error(function() client:get_async_activity_handle({ activity_id = "a" }) end,
      "workflow_id: required when no task_token is given")
    assert.has_error(function() client:get_async_activity_handle({ task_token = 5 }) end,
      "task_token: expected a string, got number")
    assert.has_error(function() client:get_async_activity_handle({ tasktoken = "x" }) end,
      "get_async_activity_handle: unknown option 'tasktoken'")
    local ah = client:get_async_activity_handle({ task_token = "x" })
    assert.has_error(function() ah:fail() end, "fail: an error (a message or an error object) is required")
    assert.has_error(function() ah:fail("x", { last_heartbeat = {} }) end, "fail: unknown option 'last_heartbeat'")
    assert.has_error(function() ah:complete(1, { rpc_timout = 1 }) end, "complete: unknown option 'rpc_timout'")
    assert.has_error(function() ah.heartbeat() end, "heartbeat: call it with ':' (activity_handle:heartbeat(...))")
    -- a malformed token is the server's to refuse
    local ok, err = pcall(ah.heartbeat, ah)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "RPCError"))
  end)
end)
