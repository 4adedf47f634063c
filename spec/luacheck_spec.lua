-- luacheck (Debian lua-check) over every Lua tree of the project, with the project's
-- .luacheckrc: zero warnings, zero errors. Needs no server.
local helper = require("support.helper")

describe("luacheck", function()
  it("reports nothing on lua/, spec/, examples/, bench/ and tools/", function()
    local ok, out, err, code = helper.run({ "luacheck", "--no-color", "--codes",
      "--formatter", "plain", "lua", "spec", "examples", "bench", "tools" })
    assert.equal("", out, "luacheck warnings:\n" .. out .. err)
    assert.equal("", err)
    assert.is_true(ok, "luacheck exit " .. tostring(code))
  end)

  it("uses the project's config, which does catch a mistake", function()
    -- a file with an undefined global: the same run must fail, so the first test can fail
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. helper.shell_quote(dir)))
    local f = assert(io.open(dir .. "/bad.lua", "w"))
    f:write("local x = 1\nprint(undefined_global_xyz)\n")
    f:close()
    local ok, out = helper.run({ "luacheck", "--no-color", "--codes", "--formatter", "plain",
      "--config", ".luacheckrc", dir .. "/bad.lua" })
    os.remove(dir .. "/bad.lua")
    os.remove(dir)
    assert.is_false(ok)
    assert.truthy(out:find("(W113) accessing undefined variable 'undefined_global_xyz'", 1, true), out)
    assert.truthy(out:find("(W211) unused variable 'x'", 1, true), out)
  end)
end)
