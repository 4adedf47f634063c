-- Failures (lua/temporal/failure.lua): error objects <-> temporal.api.failure.v1.Failure
-- in the Python SDK's format, both ways, checked against temporalio itself.
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local core = require("temporal.core")
local errors = require("temporal.errors")
local failure = require("temporal.failure")
local converter = require("temporal.converter")
local py = require("support.python_sdk")
require("temporal")  -- installs temporal.errors.application_error

local dc = converter.default
local FAILURE = "temporal.api.failure.v1.Failure"

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Through the wire format and back, as a real RPC would carry it.
local function wire(f)
  return core.decode(FAILURE, core.encode(FAILURE, f))
end

-- Python snippet that reads failures (hex lines in HEX) and prints the exception chains.
local PY_DESCRIBE = [[
import temporalio.exceptions as te
from temporalio.api.failure.v1 import Failure
def describe(e):
    parts = [type(e).__name__, repr(e.message)]
    if isinstance(e, te.ApplicationError):
        parts += [repr(e.type), repr(e.non_retryable), repr(list(e.details)), repr(e.next_retry_delay), e.category.name]
    elif isinstance(e, te.TimeoutError):
        parts += [e.type.name if e.type else "None", repr(list(e.last_heartbeat_details))]
    elif isinstance(e, te.CancelledError):
        parts += [repr(list(e.details))]
    elif isinstance(e, te.ActivityError):
        parts += [e.activity_type, e.activity_id, e.identity, str(e.scheduled_event_id), str(e.started_event_id), e.retry_state.name if e.retry_state else "None"]
    elif isinstance(e, te.ChildWorkflowError):
        parts += [e.namespace, e.workflow_id, e.run_id, e.workflow_type, str(e.initiated_event_id), str(e.started_event_id), e.retry_state.name if e.retry_state else "None"]
    elif isinstance(e, te.ServerError):
        parts += [repr(e.non_retryable)]
    s = " ".join(parts)
    if e.__cause__ is not None:
        s += " <- " + describe(e.__cause__)
    return s
pc = DataConverter.default.payload_converter
for h in HEX:
    f = Failure(); f.ParseFromString(bytes.fromhex(h))
    print(describe(DataConverter.default.failure_converter.from_failure(f, pc)))
]]

describe("failure", function()
  describe("application_error", function()
    it("builds an ApplicationError with Python's defaults", function()
      local e = errors.application_error("card declined")
      assert.is_true(errors.is(e, "ApplicationError"))
      assert.is_true(errors.is(e, "FailureError"))
      assert.equal("card declined", e.message)
      assert.is_false(e.non_retryable)
      assert.same({ n = 0 }, e.details)
      assert.is_nil(e.type)
      assert.equal("ApplicationError: card declined", tostring(e))
      assert.equal(failure.application_error, errors.application_error)
    end)

    it("takes type, non_retryable, details (with .n), next_retry_delay, category, cause", function()
      local cause = errors.application_error("root")
      local e = errors.application_error("outer", {
        type = "PaymentError", non_retryable = true, details = compat.pack(1, nil, "x"),
        next_retry_delay = 2.5, category = "BENIGN", cause = cause,
      })
      assert.equal("PaymentError", e.type)
      assert.equal(3, e.details.n)
      assert.equal(2.5, e.next_retry_delay)
      assert.equal(cause, e.cause)
      assert.equal("ApplicationError: outer\ncaused by: ApplicationError: root", tostring(e))
    end)

    it("rejects bad arguments naming them", function()
      assert.has_error(function() errors.application_error(1) end,
        "application_error: message must be a string, got number")
      assert.has_error(function() errors.application_error("m", { typ = "x" }) end,
        "application_error: unknown option 'typ'")
      assert.has_error(function() errors.application_error("m", { non_retryable = "yes" }) end,
        "non_retryable: expected a boolean, got string")
    end)
  end)

  describe("encode", function()
    it("writes an ApplicationError as Python does, with source LuaSDK", function()
      local f = wire(dc:encode_failure(errors.application_error("boom", {
        type = "MyError", non_retryable = true, details = { "d1", 2 }, next_retry_delay = 1.5,
        stack_trace = "at somewhere",
      })))
      assert.equal("boom", f.message)
      assert.equal("LuaSDK", f.source)
      assert.equal("at somewhere", f.stack_trace)
      local info = f.application_failure_info
      assert.equal("MyError", info.type)
      assert.is_true(info.non_retryable)
      assert.equal(1.5, info.next_retry_delay)
      assert.same({
        { metadata = { encoding = "json/plain" }, data = '"d1"' },
        { metadata = { encoding = "json/plain" }, data = "2" },
      }, info.details.payloads)
    end)

    it("turns a string error into an ApplicationError without a type", function()
      local f = dc:encode_failure("something broke")
      assert.equal("something broke", f.message)
      assert.same({}, f.application_failure_info)
      assert.is_nil(f.cause)
    end)

    it("gives other temporal errors their class name as type, keeping the cause", function()
      local rpc = errors.new("RPCError", { message = "NOT_FOUND: gone", cause = "inner" })
      local f = wire(dc:encode_failure(rpc))
      assert.equal("NOT_FOUND: gone", f.message)
      assert.equal("RPCError", f.application_failure_info.type)
      assert.equal("inner", f.cause.message)
    end)

    it("writes every FailureError subclass with its info", function()
      local err = errors.new("ActivityError", {
        message = "activity failed", activity_type = "Charge", activity_id = "a1", identity = "w@h",
        scheduled_event_id = 5, started_event_id = 6, retry_state = "MAXIMUM_ATTEMPTS_REACHED",
        cause = errors.new("TimeoutError", { message = "t", type = "START_TO_CLOSE",
          last_heartbeat_details = { 42 },
          cause = errors.new("CancelledError", { message = "c", details = { "why" },
            cause = errors.new("ServerError", { message = "s", non_retryable = true,
              cause = errors.new("TerminatedError", { message = "term",
                cause = errors.new("ChildWorkflowError", { message = "child", namespace = "ns",
                  workflow_id = "wid", run_id = "rid", workflow_type = "Child",
                  initiated_event_id = 7, started_event_id = 8, retry_state = "NON_RETRYABLE_FAILURE" }) }) }) }) }),
      })
      local f = wire(dc:encode_failure(err))
      assert.same({ scheduled_event_id = 5, started_event_id = 6, identity = "w@h",
        activity_type = { name = "Charge" }, activity_id = "a1", retry_state = "MAXIMUM_ATTEMPTS_REACHED" },
        f.activity_failure_info)
      f = f.cause
      assert.equal("START_TO_CLOSE", f.timeout_failure_info.timeout_type)
      assert.equal("42", f.timeout_failure_info.last_heartbeat_details.payloads[1].data)
      f = f.cause
      assert.equal('"why"', f.canceled_failure_info.details.payloads[1].data)
      f = f.cause
      assert.same({ non_retryable = true }, f.server_failure_info)
      f = f.cause
      assert.same({}, f.terminated_failure_info)
      f = f.cause
      assert.same({ namespace = "ns", workflow_execution = { workflow_id = "wid", run_id = "rid" },
        workflow_type = { name = "Child" }, initiated_event_id = 7, started_event_id = 8,
        retry_state = "NON_RETRYABLE_FAILURE" }, f.child_workflow_execution_failure_info)
    end)

    it("sends a decoded error's failure unchanged", function()
      local original = wire(dc:encode_failure(errors.application_error("x", { type = "T" })))
      original.source = "PythonSDK"
      local err = dc:decode_failure(original)
      assert.same(original, dc:encode_failure(err))
    end)

    it("refuses cyclic cause chains", function()
      local a = errors.application_error("a")
      local b = errors.application_error("b", { cause = a })
      a.cause = b
      local ok, err = pcall(dc.encode_failure, dc, a)
      assert.is_false(ok)
      assert.matches("cause chain deeper than", err, 1, true)
    end)

    it("moves message and stack trace into encoded_attributes when asked", function()
      local edc = converter.new({ failure_converter = failure.new({ encode_common_attributes = true }) })
      local f = wire(edc:encode_failure(errors.application_error("secret", {
        stack_trace = "trace", cause = errors.application_error("inner secret") })))
      assert.equal("Encoded failure", f.message)
      assert.is_nil(f.stack_trace)
      assert.same({ metadata = { encoding = "json/plain" }, data = '{"message":"secret","stack_trace":"trace"}' },
        f.encoded_attributes)
      assert.equal("Encoded failure", f.cause.message)
      local err = dc:decode_failure(f)   -- any converter reads them back
      assert.equal("secret", err.message)
      assert.equal("trace", err.stack_trace)
      assert.equal("inner secret", err.cause.message)
    end)
  end)

  describe("decode", function()
    it("maps each failure_info to its error class with Python's default messages", function()
      local cases = {
        { { application_failure_info = {} }, "ApplicationError", "Application error" },
        { { timeout_failure_info = { timeout_type = "HEARTBEAT" } }, "TimeoutError", "Timeout" },
        { { canceled_failure_info = {} }, "CancelledError", "Cancelled" },
        { { terminated_failure_info = {} }, "TerminatedError", "Terminated" },
        { { server_failure_info = {} }, "ServerError", "Server error" },
        { { activity_failure_info = {} }, "ActivityError", "Activity error" },
        { { child_workflow_execution_failure_info = {} }, "ChildWorkflowError", "Child workflow error" },
        { { reset_workflow_failure_info = {} }, "FailureError", "Failure error" },
        { {}, "FailureError", "Failure error" },
      }
      for _, c in ipairs(cases) do
        local err = dc:decode_failure(wire(c[1]))
        assert.equal(c[2], errors.class(err))
        assert.equal(c[3], err.message)
      end
      local t = dc:decode_failure({ timeout_failure_info = { timeout_type = "HEARTBEAT" } })
      assert.equal("HEARTBEAT", t.type)
      assert.same({ n = 0 }, t.last_heartbeat_details)
    end)

    it("round-trips an ApplicationError with details and a cause chain", function()
      local e = errors.application_error("outer", {
        type = "Outer", non_retryable = true, details = compat.pack({ k = { 1, 2 } }, nil, 0.1 + 0.2),
        next_retry_delay = 3, stack_trace = "st",
        cause = errors.new("TimeoutError", { message = "slow", type = "SCHEDULE_TO_CLOSE",
          last_heartbeat_details = { "hb" }, cause = "root cause" }),
      })
      local back = dc:decode_failure(wire(dc:encode_failure(e)))
      assert.equal("ApplicationError", errors.class(back))
      assert.equal("outer", back.message)
      assert.equal("Outer", back.type)
      assert.is_true(back.non_retryable)
      assert.equal(3, back.next_retry_delay)
      assert.equal("st", back.stack_trace)
      assert.equal(3, back.details.n)
      assert.same({ 1, 2 }, back.details[1].k)
      assert.is_nil(back.details[2])
      assert.equal(0.1 + 0.2, back.details[3])
      assert.equal("table", type(back.failure))
      local t = back.cause
      assert.equal("TimeoutError", errors.class(t))
      assert.equal("SCHEDULE_TO_CLOSE", t.type)
      assert.equal("hb", t.last_heartbeat_details[1])
      assert.equal("ApplicationError", errors.class(t.cause))
      assert.equal("root cause", t.cause.message)
      assert.equal("ApplicationError: outer\ncaused by: TimeoutError: slow\ncaused by: ApplicationError: root cause",
        tostring(back))
    end)

    it("ignores encoded_attributes it cannot read, as Python", function()
      local err = dc:decode_failure({ message = "m", encoded_attributes = { metadata = { encoding = "x/y" } },
        application_failure_info = {} })
      assert.equal("m", err.message)
    end)

    it("rejects something that is not a failure", function()
      local ok, err = pcall(dc.decode_failure, dc, "nope")
      assert.is_false(ok)
      assert.matches("expected a failure table", err, 1, true)
    end)
  end)

  describe("codec", function()
    -- Reverses data and tags the encoding: enough to see where the codec ran.
    local codec = {
      encode = function(ps)
        local out = {}
        for i, p in ipairs(ps) do
          out[i] = { metadata = { encoding = "binary/rev", inner = p.metadata.encoding }, data = (p.data or ""):reverse() }
        end
        return out
      end,
      decode = function(ps)
        local out = {}
        for i, p in ipairs(ps) do
          out[i] = { metadata = { encoding = p.metadata.inner }, data = p.data:reverse() }
        end
        return out
      end,
    }

    it("applies to details, heartbeat details, encoded attributes, through the cause chain", function()
      local cdc = converter.new({ codec = codec,
        failure_converter = failure.new({ encode_common_attributes = true }) })
      local e = errors.application_error("top", { details = { "abc" },
        cause = errors.new("TimeoutError", { message = "t", type = "HEARTBEAT", last_heartbeat_details = { 12 },
          cause = errors.new("CancelledError", { message = "c", details = { true } }) }) })
      local f = wire(cdc:encode_failure(e))
      assert.equal("binary/rev", f.encoded_attributes.metadata.encoding)
      assert.same({ metadata = { encoding = "binary/rev", inner = "json/plain" }, data = '"cba"' },
        f.application_failure_info.details.payloads[1])
      assert.equal("21", f.cause.timeout_failure_info.last_heartbeat_details.payloads[1].data)
      assert.equal("eurt", f.cause.cause.canceled_failure_info.details.payloads[1].data)
      local copy = failure.copy(f)
      local back = cdc:decode_failure(f)
      assert.same(copy, f)   -- the input is left alone
      assert.equal("top", back.message)
      assert.equal("abc", back.details[1])
      assert.equal(12, back.cause.last_heartbeat_details[1])
      assert.is_true(back.cause.cause.details[1])
      assert.equal("c", back.cause.cause.message)
    end)
  end)

  describe("Python interop", function()
    it("decodes failures written by Python's default failure converter", function()
      if not py.available() then return pending(py.why_not()) end
      local out = py.run([[
import temporalio.exceptions as te
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
pc = DataConverter.default.payload_converter
def to_failure(exc, fc=DataConverter.default.failure_converter):
    f = Failure(); fc.to_failure(exc, pc, f); return f.SerializeToString().hex()
try:
    try:
        raise ValueError("inner boom")
    except ValueError as inner:
        raise te.ApplicationError("outer", {"k": [1, 2.5]}, None, "é", type="MyType",
            non_retryable=True, next_retry_delay=timedelta(seconds=1.5)) from inner
except te.ApplicationError as err:
    print(to_failure(err))
print(to_failure(te.TimeoutError("timed out", type=te.TimeoutType.HEARTBEAT, last_heartbeat_details=[7])))
print(to_failure(te.CancelledError("cancelled", "d")))
print(to_failure(te.ActivityError("act", scheduled_event_id=5, started_event_id=6, identity="id",
    activity_type="Charge", activity_id="a1", retry_state=te.RetryState.TIMEOUT)))
print(to_failure(te.ChildWorkflowError("child", namespace="ns", workflow_id="w", run_id="r",
    workflow_type="Child", initiated_event_id=1, started_event_id=2, retry_state=te.RetryState.NON_RETRYABLE_FAILURE)))
print(to_failure(te.ServerError("srv", non_retryable=True)))
print(to_failure(te.ApplicationError("hidden", type="Secret"), DefaultFailureConverterWithEncodedAttributes()))
]])
      local lines = {}
      for line in out:gmatch("%x+") do lines[#lines + 1] = core.decode(FAILURE, py.unhex(line)) end
      assert.equal(7, #lines)

      local app = dc:decode_failure(lines[1])
      assert.equal("ApplicationError", errors.class(app))
      assert.equal("outer", app.message)
      assert.equal("MyType", app.type)
      assert.is_true(app.non_retryable)
      assert.equal(1.5, app.next_retry_delay)
      assert.equal(3, app.details.n)
      assert.same({ 1, 2.5 }, app.details[1].k)
      assert.is_nil(app.details[2])
      assert.equal("é", app.details[3])
      assert.matches("raise", app.stack_trace)     -- Python's traceback text
      assert.equal("ApplicationError", errors.class(app.cause))
      assert.equal("ValueError", app.cause.type)
      assert.equal("inner boom", app.cause.message)
      assert.equal(lines[1], app.failure)

      local t = dc:decode_failure(lines[2])
      assert.equal("TimeoutError", errors.class(t))
      assert.equal("HEARTBEAT", t.type)
      assert.equal(7, t.last_heartbeat_details[1])

      local c = dc:decode_failure(lines[3])
      assert.equal("CancelledError", errors.class(c))
      assert.equal("d", c.details[1])

      local a = dc:decode_failure(lines[4])
      assert.equal("ActivityError", errors.class(a))
      assert.equal("Charge", a.activity_type)
      assert.equal("a1", a.activity_id)
      assert.equal("id", a.identity)
      assert.equal(5, a.scheduled_event_id)
      assert.equal(6, a.started_event_id)
      assert.equal("TIMEOUT", a.retry_state)

      local cw = dc:decode_failure(lines[5])
      assert.equal("ChildWorkflowError", errors.class(cw))
      assert.equal("ns", cw.namespace)
      assert.equal("w", cw.workflow_id)
      assert.equal("r", cw.run_id)
      assert.equal("Child", cw.workflow_type)
      assert.equal(1, cw.initiated_event_id)
      assert.equal("NON_RETRYABLE_FAILURE", cw.retry_state)

      local s = dc:decode_failure(lines[6])
      assert.equal("ServerError", errors.class(s))
      assert.is_true(s.non_retryable)

      assert.equal("Encoded failure", lines[7].message)
      local h = dc:decode_failure(lines[7])
      assert.equal("hidden", h.message)
      assert.equal("Secret", h.type)
    end)

    it("writes failures Python's default failure converter reads back", function()
      if not py.available() then return pending(py.why_not()) end
      local failures = {
        dc:encode_failure(errors.application_error("outer", {
          type = "MyType", non_retryable = true, details = compat.pack({ k = 1 }, nil, 2.5),
          next_retry_delay = 2, category = "BENIGN",
          cause = errors.new("TimeoutError", { message = "slow", type = "START_TO_CLOSE",
            last_heartbeat_details = { "hb" }, cause = "plain string" }) })),
        dc:encode_failure(errors.new("ActivityError", { message = "act", activity_type = "Charge",
          activity_id = "a1", identity = "me", scheduled_event_id = 5, started_event_id = 6,
          retry_state = "TIMEOUT", cause = errors.new("CancelledError", { message = "c", details = { "d" } }) })),
        dc:encode_failure(errors.new("ChildWorkflowError", { message = "child", namespace = "ns",
          workflow_id = "w", run_id = "r", workflow_type = "Child", initiated_event_id = 1,
          started_event_id = 2, retry_state = "NON_RETRYABLE_FAILURE",
          cause = errors.new("ServerError", { message = "srv", non_retryable = true,
            cause = errors.new("TerminatedError", { message = "gone" }) }) })),
        converter.new({ failure_converter = failure.new({ encode_common_attributes = true }) })
          :encode_failure(errors.application_error("hidden", { type = "Secret" })),
      }
      local hexes = {}
      for i, f in ipairs(failures) do hexes[i] = "'" .. hex(core.encode(FAILURE, f)) .. "'" end
      local out = py.run("HEX = [" .. table.concat(hexes, ", ") .. "]\n" .. PY_DESCRIBE)
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.same({
        "ApplicationError 'outer' 'MyType' True [{'k': 1}, None, 2.5] datetime.timedelta(seconds=2) BENIGN"
          .. " <- TimeoutError 'slow' START_TO_CLOSE ['hb']"
          .. " <- ApplicationError 'plain string' None False [] None UNSPECIFIED",
        "ActivityError 'act' Charge a1 me 5 6 TIMEOUT <- CancelledError 'c' ['d']",
        "ChildWorkflowError 'child' ns w r Child 1 2 NON_RETRYABLE_FAILURE <- ServerError 'srv' True"
          .. " <- TerminatedError 'gone'",
        "ApplicationError 'hidden' 'Secret' False [] None UNSPECIFIED",
      }, lines)
    end)
  end)
end)
