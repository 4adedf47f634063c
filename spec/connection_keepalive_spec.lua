-- Keep-alive against a peer that silently drops traffic: a TCP forwarder in front of the
-- test bed's server is frozen (SIGSTOP), so the kernel still takes what the client sends
-- and nothing ever answers. Only keep-alive pings can tell; the call must fail with the
-- keep-alive's UNAVAILABLE, not with its (30 s) deadline's DEADLINE_EXCEEDED. The status and
-- message are the proof, not a clock: the test asserts no timing.
local helper = require("support.helper")
local proxies = require("support.proxies")
local temporal = require("temporal")

describe("keep_alive", function()
  local fwd
  before_each(function() fwd = proxies.forwarder(helper.address) end)
  after_each(function() if fwd then fwd:stop() end end)

  it("detects a silently dead connection by keep-alive, before the deadline, then reconnects", function()
    local client = temporal.connect(fwd.address, { keep_alive = { interval = 2, timeout = 2 } })
    fwd:freeze()
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {}, { rpc_timeout = 30 })
    assert.is_false(ok)
    assert.equals("UNAVAILABLE", err.status)
    assert.matches("keepalive", err.message)
    fwd:thaw()
    -- a new connection through the same forwarder works again
    assert.is_string(client.workflow_service:get_system_info({}, { retry = true }).server_version)
    client:close()
  end)

  it("without keep-alive, the same call only ends at its deadline", function()
    local client = temporal.connect(fwd.address, { keep_alive = false })
    fwd:freeze()
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {}, { rpc_timeout = 6 })
    assert.is_false(ok)
    assert.equals("DEADLINE_EXCEEDED", err.status)
    fwd:thaw()
    client:close()
  end)

  it("checks its options", function()
    assert.has_error(function() temporal.connect(fwd.address, { lazy = true, keep_alive = { interval = "30" } }) end,
      "keep_alive.interval: expected a number, got string")
    assert.has_error(function() temporal.connect(fwd.address, { lazy = true, keep_alive = { every = 30 } }) end,
      "keep_alive: unknown option 'every'")
  end)
end)
