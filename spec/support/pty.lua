-- Drives a program on a pseudo-terminal with util-linux `script`, as a person would.
--
--   local pty = require("support.pty")
--   local screen = pty.run({ "build/temporal-lua" }, {
--     { wait = "> ", send = "6 * 7\r" },          -- wait for text on screen, then type
--     { wait = "42", sh = "touch /tmp/x" },        -- or run a shell command meanwhile
--     { wait_file = "/tmp/out" },                  -- or wait until a file is not empty
--     { send = "\4" },
--   }, { "HOME=/tmp" })
--
-- Each wait gives up after about 20 s and the steps go on, so a missing text shows up as a
-- failed assertion on the returned screen (everything the terminal showed), not a hang.
local M = {}

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = q

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.run(argv, steps, env)
  local typescript = os.tmpname()
  local cmd = {}
  for _, a in ipairs(argv) do cmd[#cmd + 1] = q(a) end
  local feeder = { "out=" .. q(typescript),
    'w() { i=0; while ! grep -qF -- "$1" "$out"; do i=$((i+1)); [ $i -gt 200 ] && return; sleep 0.1; done; }',
    'wf() { i=0; while [ ! -s "$1" ]; do i=$((i+1)); [ $i -gt 200 ] && return; sleep 0.1; done; }',
    "(" }
  for _, step in ipairs(steps) do
    if step.wait then feeder[#feeder + 1] = "w " .. q(step.wait) .. ";" end
    if step.wait_file then feeder[#feeder + 1] = "wf " .. q(step.wait_file) .. ";" end
    if step.sh then feeder[#feeder + 1] = "( " .. step.sh .. " ) >/dev/null 2>&1;" end
    if step.send then feeder[#feeder + 1] = "printf '%s' " .. q(step.send) .. ";" end
  end
  feeder[#feeder + 1] = "sleep 0.5) | env " .. table.concat(env or {}, " ") ..
    " script -qfec " .. q(table.concat(cmd, " ")) .. " \"$out\" >/dev/null 2>&1"
  local p = assert(io.popen(table.concat(feeder, "\n"), "r"))
  p:read("a")
  p:close()
  local screen = read_file(typescript) or ""
  os.remove(typescript)
  return screen
end

return M
