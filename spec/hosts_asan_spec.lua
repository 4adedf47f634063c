-- The host paths under AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer
-- (`make asan`): spec/support/hosts_asan.lua runs in build/asan/temporal-lua, with the
-- Lua modules embedded and cqueues/luv from the system.
local helper = require("support.helper")

describe("host paths under ASan/UBSan", function()
  it("build and run clean", function()
    local ok, out, err = helper.run({ "make", "--no-print-directory", "asan" })
    assert.is_true(ok, out .. err)
    ok, out, err = helper.run({ "build/asan/temporal-lua", "spec/support/hosts_asan.lua" }, {
      LUA_PATH = ";;", LUA_CPATH = ";;", ASAN_OPTIONS = "detect_leaks=1",
      UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1",
    })
    assert.is_true(ok, out .. err)
    assert.matches("asan script ok\n", out)
    assert.not_matches("runtime error", err)
    assert.not_matches("AddressSanitizer", err)
    assert.not_matches("LeakSanitizer", err)
  end)
end)
