-- The runtime (gRPC, its completion queue and poller thread) is made on first use, per
-- process: loading the module starts nothing, so a process may load temporal and then fork
-- (nginx's master runs init_by_lua* before forking its workers). A forked child never uses
-- a runtime made before the fork: it gets a clear error instead. Each case runs in a fresh
-- interpreter of the flavour under test, so this busted process is never forked.
local helper = require("support.helper")

local ROOT = assert(os.getenv("PWD"))
local LUA = helper.luajit and "luajit" or "lua5.4"
local CPATH = helper.luajit and ROOT .. "/build/luajit/?.so;;" or ROOT .. "/build/?.so;;"

-- runs `code` (with `temporal`, `addr`, `threads()` and `say(...)` defined) in a fresh
-- interpreter; returns its lines
local function fresh(code)
  local prelude = [[
    local temporal = require("temporal")
    local addr = os.getenv("ADDR")
    local function threads()
      local n = 0
      for _ in io.popen("ls /proc/" .. temporal.core.pid() .. "/task"):lines() do n = n + 1 end
      return n
    end
    local function say(...)
      local t = { ... }
      for i = 1, select("#", ...) do t[i] = tostring(t[i]) end
      io.stdout:write(table.concat(t, " "), "\n")
      io.stdout:flush()
    end
  ]]
  local ok, out, err = helper.run({ LUA, "-e", prelude .. code }, {
    LUA_PATH = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;", LUA_CPATH = CPATH, ADDR = helper.address,
  })
  assert(ok, out .. err)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

describe("the runtime is made on first use", function()
  it("require starts no thread; the first connect starts the runtime (gRPC's threads)", function()
    local lines = fresh([[
      say(threads(), temporal.core.runtime_info().states)
      local c = temporal.connect(addr, { lazy = true })
      say(threads() > 1, temporal.core.runtime_info().states)
      say(c:get_system_info().server_version ~= nil)
      c:close()
    ]])
    assert.same({ "1 0", "true 1", "true" }, lines)
  end)

  -- fork() through LuaJIT's FFI: in the child, the Lua state is the parent's copy
  local FORK = [[
    local ffi = require("ffi")
    ffi.cdef("int fork(void); int waitpid(int pid, int *status, int options); void _exit(int status);")
    -- runs fn in a forked child; its output goes to our stdout; returns the exit code
    local function in_child(fn)
      local pid = ffi.C.fork()
      assert(pid >= 0, "fork failed")
      if pid == 0 then
        local ok, err = pcall(fn)
        if not ok then say("child raised", err) end
        io.stdout:flush()
        ffi.C._exit(ok and 0 or 1)  -- no finalizers: the parent owns what it made
      end
      local st = ffi.new("int[1]")
      ffi.C.waitpid(pid, st, 0)
      return math.floor(st[0] / 256)
    end
  ]]

  it("a child forked before the first use makes its own runtime and calls the server #luajit", function()
    local lines = fresh(FORK .. [[
      local code = in_child(function()
        local c = temporal.connect(addr)
        say("child", c:get_system_info().server_version ~= nil, threads() > 1)
        c:close()
      end)
      say("child exit", code)
      -- the parent still has none, and makes its own
      say("parent", temporal.core.runtime_info().states, threads())
      local c = temporal.connect(addr)
      say("parent", c:get_system_info().server_version ~= nil)
      c:close()
    ]])
    assert.same({ "child true true", "child exit 0", "parent 0 1", "parent true" }, lines)
  end)

  it("a forked child never repeats its parent's request ids #luajit", function()
    -- the parent draws ids first (a buffered source would hold the next ones), then parent
    -- and child draw the same number each; none may be shared
    local lines = fresh(FORK .. [[
      local uuid4 = require("temporal.client").uuid4
      for _ = 1, 3 do say("before", uuid4()) end
      local code = in_child(function()
        for _ = 1, 5 do say("child", uuid4()) end
      end)
      for _ = 1, 5 do say("parent", uuid4()) end
      say("child exit", code)
    ]])
    local seen, n = {}, 0
    for _, line in ipairs(lines) do
      local who, id = line:match("^(%a+) (%x+%-%x+%-%x+%-%x+%-%x+)$")
      if who then
        assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", id)
        assert.is_nil(seen[id], "request id " .. id .. " drawn twice: " .. table.concat(lines, "\n"))
        seen[id], n = who, n + 1
      end
    end
    assert.equals(13, n, table.concat(lines, "\n"))
    assert.equals("child exit 0", lines[#lines])
  end)

  it("a child forked after the first use refuses the parent's runtime, saying why #luajit", function()
    local lines = fresh(FORK .. [[
      local c = temporal.connect(addr)
      local parent = temporal.core.pid()
      local code = in_child(function()
        local ok, err = pcall(c.get_system_info, c)
        say("call", ok, err)
        ok, err = pcall(temporal.connect, addr, { lazy = true })
        say("connect", ok, err)
        ok, err = pcall(temporal.core.inflight)
        say("inflight", ok, err)
        say("parent", parent)
      end)
      say("child exit", code)
      -- the parent's runtime is untouched
      say("parent", c:get_system_info().server_version ~= nil)
      c:close()
    ]])
    local parent = lines[4]:match("^parent (%d+)$")
    assert.is_not_nil(parent, table.concat(lines, "\n"))
    for i, what in ipairs({ "call", "connect", "inflight" }) do
      assert.matches("^" .. what .. " false ", lines[i])
      assert.matches("runtime was created in process %d+, which forked into this one %(%d+%)", lines[i])
      assert.matches("gRPC's threads do not survive fork()", lines[i], 1, true)
    end
    assert.matches("created in process " .. parent .. ",", lines[1], 1, true)
    assert.same({ "child exit 0", "parent true" }, { lines[5], lines[6] })
  end)
end)
