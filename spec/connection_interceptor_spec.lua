-- Interceptors: the outbound chain around client operations, against real endpoints.
-- The gRPC metadata an interceptor adds is checked on the other side (nginx's access log).
local helper = require("support.helper")
local nginx = require("support.nginx")
local temporal = require("temporal")
local errors = temporal.errors

local pki, gw

setup(function()
  pki = nginx.make_pki()
  gw = nginx.start(pki, helper.address, { api_keys = { "key-one" } })
end)

teardown(function()
  if gw then gw:stop() end
  if pki then os.execute("rm -rf " .. helper.shell_quote(pki.dir)) end
end)

describe("interceptors", function()
  it("run in order around an operation, can change its input and its result", function()
    local trace = {}
    local outer = {
      ["*"] = function(next, input, name)
        trace[#trace + 1] = "outer>" .. name
        local r = next(input)
        trace[#trace + 1] = "outer<"
        return r
      end,
    }
    local inner = {
      system_info = function(next, input)
        trace[#trace + 1] = "inner>" .. input.what
        input.rpc_metadata["x-spec"] = "from-interceptor"
        input.what = "changed"
        local r = next(input)
        r.seen_by_inner = true
        return r
      end,
    }
    local client = temporal.connect(gw.bearer_plain, { tls = false, api_key = "key-one",
      interceptors = { outer, inner } })
    local result = client:_intercept("system_info", { what = "original" }, function(input)
      trace[#trace + 1] = "call:" .. input.what
      return client.workflow_service:get_system_info({}, { rpc_metadata = input.rpc_metadata })
    end)
    assert.is_true(result.seen_by_inner)
    assert.same({ "outer>system_info", "inner>original", "call:changed", "outer<" }, trace)
    -- nginx logs a request as it ends, maybe after the client saw the answer: wait for it
    helper.eventually(function()
      for _, line in ipairs(gw:requests(gw.bearer_plain)) do
        if line:find('status=200 auth="Bearer key%-one" .* x_spec="from%-interceptor"') then return true end
      end
    end, 5, 0.05)
    -- an operation no interceptor names runs as is; a client without interceptors too
    assert.equals(42, client:_intercept("other", {}, function() return 42 end))
    local plain = temporal.connect(helper.address, { lazy = true })
    assert.equals("x", plain:_intercept("anything", {}, function(input)
      assert.same({}, input.header)
      assert.same({}, input.rpc_metadata)
      return "x"
    end))
    client:close()
    plain:close()
  end)

  it("wrap real client operations (schedules), and can stop a call", function()
    local names = {}
    local client = temporal.connect(helper.address, { namespace = helper.namespace, interceptors = {
      { ["*"] = function(next, input, name) names[#names + 1] = name; return next(input) end },
      { describe_schedule = function(next, input)
          if input.id == "blocked" then error(errors.new("TemporalError", { message = "blocked by policy" }), 0) end
          input.id = input.id .. "-renamed"
          return next(input)
        end },
    } })
    local ok, err = pcall(function() return client:get_schedule_handle("blocked"):describe() end)
    assert.is_false(ok)
    assert.equals("blocked by policy", err.message)
    ok, err = pcall(function() return client:get_schedule_handle(helper.unique_id("sched")):describe() end)
    assert.is_false(ok)
    assert.equals("NOT_FOUND", err.status or (err.cause and err.cause.status))
    assert.matches("%-renamed", tostring(err.message) .. tostring(err.cause))
    assert.same({ "describe_schedule", "describe_schedule" }, names)
    client:close()
  end)

  it("are checked at connect", function()
    assert.has_error(function() temporal.connect(helper.address, { lazy = true, interceptors = { 5 } }) end,
      "interceptors[1]: expected a table of functions, got number")
    assert.has_error(function()
      temporal.connect(helper.address, { lazy = true, interceptors = { { start_workflow = "no" } } })
    end, "interceptors[1]: entries must map operation names to functions (start_workflow = string)")
  end)
end)
