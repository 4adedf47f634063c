-- Runs snippets under the Python SDK (temporalio) to compare bytes with it; no server.
--
--   local py = require("support.python_sdk")
--   if not py.available() then return pending(py.why_not()) end
--   local out = py.run("print(DataConverter.default)")   -- stdout; raises on failure
--
-- The interpreter is TEMPORAL_TEST_PYTHON (spec/run.sh sets it), else the developer venv
-- /tmp/tb/venv/bin/python. Every snippet starts with a few imports (see PREAMBLE).
local M = {}

local PREAMBLE = [[
import sys
from datetime import datetime, timedelta, timezone
from temporalio.converter import DataConverter
]]

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function candidates()
  local list = {}
  local env = os.getenv("TEMPORAL_TEST_PYTHON")
  if env and env ~= "" then list[#list + 1] = env end
  list[#list + 1] = "/tmp/tb/venv/bin/python"
  return list
end

local checked, interpreter, reason = false, nil, nil

function M.available()
  if not checked then
    checked = true
    reason = "no Python with temporalio (set TEMPORAL_TEST_PYTHON)"
    for _, path in ipairs(candidates()) do
      local ok = os.execute(quote(path) .. " -c 'import temporalio.converter' >/dev/null 2>&1")
      if ok == true or ok == 0 then interpreter = path break end  -- LuaJIT: the exit status
    end
  end
  return interpreter ~= nil
end

function M.why_not() return reason end

function M.run(code)
  assert(M.available(), reason)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(PREAMBLE, code)
  f:close()
  -- helper.run: the exit status under LuaJIT too, whose popen close() does not report it
  local ok, out, err, status = require("support.helper").run({ interpreter, script })
  os.remove(script)
  if not ok then
    error(("python failed (exit %s)\n%s\n--- code:\n%s"):format(tostring(status), err, code), 2)
  end
  return out
end

-- Bytes from a hex string.
function M.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

return M
