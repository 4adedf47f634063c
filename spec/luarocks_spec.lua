-- The rockspec, as a Lua user installs the module: a copy of the source tree (no build/
-- from this checkout except the fetched protos), `luarocks --lua-version 5.4 make --tree T`,
-- then a stock lua5.4 with only T's paths starts a workflow that the Python worker runs.
-- Costs one full build (about 10-60 s).
local helper = require("support.helper")

local q = helper.shell_quote

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok == true, out, code
end

describe("LuaRocks", function()
  local root = os.getenv("PWD")
  local dir

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir -p " .. q(dir .. "/src")))
  end)

  teardown(function()
    if dir then sh("rm -rf " .. q(dir)) end
  end)

  it("luarocks make --tree T builds and installs; stock lua5.4 with T's paths makes real calls", function()
    -- a fresh tree: the sources only, plus the already fetched and verified proto package
    local ok, out = sh(("cd %s && tar cf - --exclude=./build --exclude=./.testbed --exclude=./.git . | tar xf - -C %s")
      :format(q(root), q(dir .. "/src")))
    assert.is_true(ok, out)
    if io.open(root .. "/build/proto/.pin") then
      ok, out = sh(("mkdir -p %s/src/build && cp -r %s/build/proto %s/src/build/"):format(q(dir), q(root), q(dir)))
      assert.is_true(ok, out)
    end
    local tree = dir .. "/tree"
    ok, out = sh(("cd %s/src && luarocks --lua-version 5.4 lint temporal-lua-0.1.0-1.rockspec"):format(q(dir)))
    assert.is_true(ok, out)
    ok, out = sh(("cd %s/src && luarocks --lua-version 5.4 make --tree %s"):format(q(dir), q(tree)))
    assert.is_true(ok, out)
    assert.truthy(out:find("temporal-lua 0.1.0-1 is now installed in " .. tree, 1, true), out)

    local id = helper.unique_id("rock")
    local code = ([[
      local temporal = require("temporal")
      print("core", package.searchpath("temporal.core", package.cpath))
      print("client", debug.getinfo(require("temporal.client").connect, "S").source)
      local client = temporal.connect(%q, { namespace = %q })
      print("server", client.workflow_service:get_system_info{}.server_version ~= nil)
      print("result", client:execute_workflow("Greet", { id = %q, task_queue = %q, args = { "rock" } }))
      print("help", (require("temporal.help").render(temporal.connect):match("^[^\n]+")))
    ]]):format(helper.address, helper.namespace, id, helper.task_queue)
    -- nothing but T's paths: a clean environment, then what `luarocks path` prints
    ok, out = sh(("cd / && env -i PATH=%s HOME=%s sh -c %s"):format(q(os.getenv("PATH")), q(dir),
      q(("eval \"$(luarocks --lua-version 5.4 --tree %s path)\" && lua5.4 -e %s && %s/bin/temporal-lua -v")
        :format(q(tree), q(code), q(tree)))))
    assert.is_true(ok, out)
    assert.truthy(out:find("core\t" .. tree .. "/lib/lua/5.4/temporal/core.so\n", 1, true), out)
    assert.truthy(out:find("client\t@" .. tree .. "/share/lua/5.4/temporal/client.lua\n", 1, true), out)
    assert.truthy(out:find("server\ttrue\n", 1, true), out)
    assert.truthy(out:find("result\tHello, rock!\n", 1, true), out)
    assert.truthy(out:find("help\t### `temporal.connect([target[, opts]])`\n", 1, true), out)
    assert.truthy(out:match("temporal%-lua 0%.1%.0 %(Lua 5%.4"), out)
    -- the server ran it: the Python worker's result is in the history
    local d = helper.cli_json("workflow", "describe", "--workflow-id", id)
    assert.equal("WORKFLOW_EXECUTION_STATUS_COMPLETED", d.workflowExecutionInfo.status)
  end)
end)
