-- The runnable programs of docs/hosts.md: each runs against the test bed and prints what
-- the Python worker's Greet workflow returned.
local helper = require("support.helper")

local env = {
  TEMPORAL_ADDRESS = helper.address, TEMPORAL_NAMESPACE = helper.namespace,
  TEMPORAL_TASK_QUEUE = helper.task_queue,
}

local function run(argv, name)
  local ok, out, err = helper.run(argv, env)
  assert.is_true(ok, out .. err)
  for i = 1, 3 do assert.matches(("Hello, %s %d!\n"):format(name, i), out) end
  return out
end

describe("docs/hosts.md examples", function()
  it("cqueues.lua", function()
    assert.matches("ticker ran\ttrue\n", run({ "lua5.4", "examples/hosts/cqueues.lua" }, "cqueues"))
  end)
  it("luv.lua", function()
    assert.matches("ticker ran\ttrue\n", run({ "lua5.4", "examples/hosts/luv.lua" }, "luv"))
  end)
  it("plain.lua, under temporal-lua", function()
    run({ helper.temporal_lua, "examples/hosts/plain.lua" }, "plain")
  end)
end)
