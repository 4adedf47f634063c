-- A short libFuzzer run (ASan + UBSan) of every harness in fuzz/: the JSON codec, protobuf
-- decode/encode of what the client reads, status-details handling and the TOML profile
-- parser. Each must end without a finding (crash, sanitizer report, leak, timeout, or a
-- broken round trip). `make fuzz FUZZ_SECONDS=N` runs them longer.
-- TEMPORAL_TEST_FUZZ_SECONDS sets the time per harness (default 30).
local helper = require("support.helper")

local seconds = tonumber(os.getenv("TEMPORAL_TEST_FUZZ_SECONDS") or "") or 30

describe("fuzzing", function()
  setup(function()
    local ok, out, err = helper.run({ "make", "--no-print-directory", "fuzz-build" })
    assert(ok, "make fuzz-build failed:\n" .. out .. err)
  end)

  for _, target in ipairs({ "json", "protobuf", "status_details", "toml" }) do
    it(("%s: %d s without a finding"):format(target, seconds), function()
      local ok, out, err = helper.run({ "fuzz/run.sh", tostring(seconds), target })
      assert.is_true(ok, out .. err)
      local execs = out:match("^fuzz " .. target .. ": (%d+) executions in %d+ s, no findings")
      assert.is_not_nil(execs, out)
      assert.is_true(tonumber(execs) > 1000, out)
    end)
  end
end)
