-- Helpers for specs that run against the real test bed started by spec/run.sh.
--
--   local helper = require 'support.helper'
--   helper.address, helper.namespace, helper.task_queue   -- the test bed (from env)
--   helper.cli('workflow', 'describe', '--workflow-id', id)   -> stdout (errors on exit ~= 0)
--   helper.cli_json('workflow', 'describe', '--workflow-id', id) -> decoded `-o json` output
--   helper.try_cli(...)                  -> ok, stdout, stderr, exit code (never raises)
--   helper.unique_id('prefix')           -> 'prefix-<time>-<n>-<random>'
--   helper.eventually(fn, timeout, interval) -> fn's results once truthy (raises at deadline)
--   helper.python(code, args)            -> stdout of `code` run by the venv python;
--                                           `args` (a table) is json.loads(os.environ['ARGS'])
--   helper.python_client(code, args)     -> like python(), but `code` is the body of an async
--                                           function that has `client` (temporalio Client on
--                                           the test bed), `args`, `json`, `asyncio`, `timedelta`
--
-- Numbers in decoded JSON are floats (Debian lua-cjson 2.1.0): compare with ==, which is
-- exact for integral values in Lua 5.4 (1 == 1.0), or use math.type only on values that did
-- not come through cjson.
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local cjson = require 'cjson'

local helper = {}

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == '' then return default end
  return v
end

helper.address = env('TEMPORAL_TEST_ADDRESS', '127.0.0.1:7233')
helper.namespace = env('TEMPORAL_TEST_NAMESPACE', 'default')
-- A second namespace the test bed creates (no worker polls on it).
helper.other_namespace = 'lua-test'
helper.task_queue = env('TEMPORAL_TEST_TASK_QUEUE', 'lua-test-tq')
helper.cli_path = env('TEMPORAL_TEST_CLI', 'temporal')
helper.python_path = env('TEMPORAL_TEST_PYTHON', 'python3')
helper.temporal_lua = env('TEMPORAL_LUA', nil)
helper.json = cjson
-- The flavour busted runs under (spec/run.sh runs the client's specs under both).
helper.luajit = rawget(_G, 'jit') ~= nil
--- An exact 64-bit integer from its decimal text: a Lua 5.4 integer, or on LuaJIT an
-- int64_t cdata (what the core returns beyond 2^53); integer literals beyond 2^53 would be
-- rounded doubles under LuaJIT.
function helper.int64(s)
  assert(s:match('^%-?%d+$'), s)
  if helper.luajit then return assert(load('return ' .. s .. 'LL'))() end
  return assert(compat.tointeger(tonumber(s)))
end

function helper.shell_quote(s)
  s = tostring(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, 'rb')
  if not f then return '' end
  local s = f:read('a')
  f:close()
  return s
end

-- Run argv (a list) through the shell; returns ok, stdout, stderr, code.
-- env_vars: optional table of extra environment variables.
function helper.run(argv, env_vars)
  local parts = {}
  for k, v in pairs(env_vars or {}) do
    parts[#parts + 1] = k .. '=' .. helper.shell_quote(v)
  end
  for i = 1, #argv do
    parts[#parts + 1] = helper.shell_quote(argv[i])
  end
  local errfile = os.tmpname()
  local cmd = table.concat(parts, ' ') .. ' 2>' .. helper.shell_quote(errfile) .. ' </dev/null'
  if helper.luajit then
    -- LuaJIT's popen close() does not report the exit status: the shell appends it.
    local p = assert(io.popen('(' .. cmd .. '); printf "\\n%d" $?', 'r'))
    local out = p:read('*a')
    p:close()
    local body, code = out:match('^(.*)\n(%d+)$')
    local err = read_file(errfile)
    os.remove(errfile)
    code = tonumber(code)
    return code == 0, body or out, err, code
  end
  local p = assert(io.popen(cmd, 'r'))
  local out = p:read('a')
  local ok, _, code = p:close()
  local err = read_file(errfile)
  os.remove(errfile)
  return ok == true, out, err, code
end

local function has_flag(args, ...)
  for i = 1, #args do
    for _, flag in ipairs({ ... }) do
      if args[i] == flag or tostring(args[i]):sub(1, #flag + 1) == flag .. '=' then
        return true
      end
    end
  end
  return false
end

local function cli_argv(...)
  local args = compat.pack(...)
  local argv = { helper.cli_path }
  for i = 1, args.n do argv[#argv + 1] = tostring(args[i]) end
  if not has_flag(argv, '--address') then
    argv[#argv + 1] = '--address'
    argv[#argv + 1] = helper.address
  end
  if not has_flag(argv, '--namespace', '-n') then
    argv[#argv + 1] = '--namespace'
    argv[#argv + 1] = helper.namespace
  end
  return argv
end

-- temporal CLI against the test bed; never raises.
function helper.try_cli(...)
  return helper.run(cli_argv(...), { NO_COLOR = '1' })
end

-- temporal CLI against the test bed; returns stdout, raises with stderr on failure.
function helper.cli(...)
  local argv = cli_argv(...)
  local ok, out, err, code = helper.run(argv, { NO_COLOR = '1' })
  if not ok then
    error(string.format('temporal CLI failed (exit %s): %s\nstderr: %s\nstdout: %s',
      tostring(code), table.concat(argv, ' '), err, out), 2)
  end
  return out
end

-- Decode JSON output: one document, or JSON lines (returned as a list).
function helper.decode_json(out)
  local ok, v = pcall(cjson.decode, out)
  if ok then return v end
  local list = {}
  for line in out:gmatch('[^\n]+') do
    if line:match('%S') then
      list[#list + 1] = cjson.decode(line)
    end
  end
  return list
end

-- temporal CLI with `-o json`, decoded.
function helper.cli_json(...)
  local args = compat.pack(...)
  args[args.n + 1] = '-o'
  args[args.n + 2] = 'json'
  return helper.decode_json(helper.cli(compat.unpack(args, 1, args.n + 2)))
end

local counter = 0
function helper.unique_id(prefix)
  counter = counter + 1
  return string.format('%s-%d-%d-%06d', prefix or 'lua', os.time(), counter,
    math.random(0, 999999))
end

function helper.sleep(seconds)
  os.execute('sleep ' .. string.format('%.3f', seconds))
end

-- Poll fn until it returns a truthy first value (errors count as not yet). Returns fn's
-- results. At the deadline raises with the last error or last value.
function helper.eventually(fn, timeout, interval)
  timeout = timeout or 10
  interval = interval or 0.2
  local deadline = os.time() + timeout
  local last
  while true do
    local res = compat.pack(pcall(fn))
    if res[1] and res[2] then
      return compat.unpack(res, 2, res.n)
    end
    last = res[1] and ('last value: ' .. tostring(res[2])) or ('last error: ' .. tostring(res[2]))
    if os.time() >= deadline then
      error(string.format('eventually: condition not met within %ss (%s)', timeout, last), 2)
    end
    helper.sleep(interval)
  end
end

-- Run a Python snippet with the test bed's venv python. Returns stdout; raises on failure.
function helper.python(code, args)
  local path = os.tmpname()
  local f = assert(io.open(path, 'w'))
  f:write(code)
  f:close()
  local ok, out, err, code_ = helper.run({ helper.python_path, path }, {
    ARGS = cjson.encode(args or {}),
    TEMPORAL_TEST_ADDRESS = helper.address,
    TEMPORAL_TEST_NAMESPACE = helper.namespace,
    TEMPORAL_TEST_TASK_QUEUE = helper.task_queue,
  })
  os.remove(path)
  if not ok then
    error(string.format('python failed (exit %s)\nstderr: %s\nstdout: %s\ncode:\n%s',
      tostring(code_), err, out, code), 2)
  end
  return out
end

local client_preamble = [[
import asyncio, json, os
from datetime import timedelta, datetime, timezone
from temporalio.client import Client
import temporalio.common, temporalio.exceptions

args = json.loads(os.environ["ARGS"])

async def _body(client, args):
]]

local client_postamble = [[

async def _main():
    client = await Client.connect(os.environ["TEMPORAL_TEST_ADDRESS"],
                                  namespace=args.get("namespace") if isinstance(args, dict) and args.get("namespace") else os.environ["TEMPORAL_TEST_NAMESPACE"])
    await _body(client, args)

asyncio.run(_main())
# The SDK's native runtime sometimes crashes while the interpreter tears down
# (temporalio/sdk-python#300): the snippet's work is done, leave without teardown.
import sys
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
]]

-- `code` is the body of `async def _body(client, args)`; write results with print().
-- Pass args.namespace to connect to another namespace.
function helper.python_client(code, args)
  local lines, indent = {}, nil
  for line in (code .. '\n'):gmatch('(.-)\n') do
    lines[#lines + 1] = line
    if line:match('%S') then
      local ws = line:match('^[ \t]*')
      if indent == nil or #ws < #indent then indent = ws end
    end
  end
  local body = {}
  for _, line in ipairs(lines) do
    body[#body + 1] = '    ' .. line:sub(#(indent or '') + 1)
  end
  body[#body + 1] = '    pass'
  return helper.python(client_preamble .. table.concat(body, '\n') .. client_postamble, args)
end

-- Like python_client, but decodes the last non-empty stdout line as JSON.
function helper.python_json(code, args)
  local out = helper.python_client(code, args)
  local last
  for line in out:gmatch('[^\n]+') do
    if line:match('%S') then last = line end
  end
  assert(last, 'python_json: no output')
  return cjson.decode(last)
end

return helper
