--- Retries of failed RPCs, as the other Temporal SDKs do them (sdk-core's RetryClient).
--
-- A failed call is retried when its gRPC status is one of RETRYABLE_STATUS, with an
-- exponential, jittered backoff: 100 ms, x1.7 per retry (+/-20 % jitter), at most 5 s per
-- wait, given up after 10 s in all or when the 10th attempt fails. RESOURCE_EXHAUSTED
-- (the server throttling) waits at least as long as a separate, slower backoff (1 s, x2,
-- at most 10 s). The waits use temporal.sleep, so other tasks keep running meanwhile.
--
-- Configured per client with `temporal.connect(target, { retry_config = {...} | true | false })`
-- (nil or true: all defaults; false: no retries; a table: these, defaults for the rest):
--   initial_interval (0.1 s), randomization_factor (0.2), multiplier (1.7),
--   max_interval (5 s), max_elapsed_time (10 s; false = no limit),
--   max_retries (10; the call fails when attempt number max_retries fails; 0 = no limit).
local core = require("temporal.core")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT

local M = {}

--- The gRPC statuses worth another attempt: the server or the path to it failed, and
-- the request can be sent again as is (request_id / update_id make that safe).
M.RETRYABLE_STATUS = {
  DATA_LOSS = true, INTERNAL = true, UNKNOWN = true, RESOURCE_EXHAUSTED = true,
  ABORTED = true, OUT_OF_RANGE = true, UNAVAILABLE = true,
}

M.DEFAULT_CONFIG = {
  initial_interval = 0.1,
  randomization_factor = 0.2,
  multiplier = 1.7,
  max_interval = 5,
  max_elapsed_time = 10,
  max_retries = 10,
}

-- The extra wait when the server says RESOURCE_EXHAUSTED (sdk-core's throttle policy).
M.THROTTLE_CONFIG = {
  initial_interval = 1,
  randomization_factor = 0.2,
  multiplier = 2,
  max_interval = 10,
  max_elapsed_time = false,
  max_retries = 0,
}

local KNOWN = {
  initial_interval = true, randomization_factor = true, multiplier = true,
  max_interval = true, max_elapsed_time = true, max_retries = true,
}

--- Checks a retry_config option (nil or true: the defaults); returns the full config
-- (defaults filled in) or false.
function M.check_config(cfg, level)
  level = (level or 1) + 1
  if cfg == nil or cfg == true then return M.DEFAULT_CONFIG end
  if cfg == false then return false end
  if type(cfg) ~= "table" then
    error("retry_config: expected a table or false, got " .. type(cfg), level)
  end
  local out = {}
  for k, v in pairs(cfg) do
    if not KNOWN[k] then
      -- Python's RetryConfig counts milliseconds: name the Lua option (seconds) instead
      local lua_name = type(k) == "string" and k:match("^(.-)_millis$")
      if lua_name and KNOWN[lua_name] then
        error(("retry_config: unknown option '%s' (the Python SDK's name; use '%s', in seconds)"):format(k, lua_name),
          level)
      end
      error(("retry_config: unknown option '%s'"):format(tostring(k)), level)
    end
    out[k] = v
  end
  for k, v in pairs(M.DEFAULT_CONFIG) do
    if out[k] == nil then out[k] = v end
  end
  local function number(name, min)
    local v = out[name]
    if type(v) ~= "number" or v ~= v or v < min then
      error(("retry_config.%s: expected a number >= %s"):format(name, min), level + 1)
    end
  end
  number("initial_interval", 0)
  number("randomization_factor", 0)
  if out.randomization_factor > 1 then error("retry_config.randomization_factor: at most 1", level) end
  number("multiplier", 1)
  number("max_interval", 0)
  number("max_retries", 0)
  if compat.math_type(out.max_retries) ~= "integer" then
    error("retry_config.max_retries: expected an integer", level)
  end
  if out.max_elapsed_time ~= false then number("max_elapsed_time", 0) end
  return out
end

-- An exponential backoff: each call returns the next wait in seconds, or nil once the
-- elapsed-time budget would be exceeded (the rules of the `backoff` crate sdk-core uses).
local function backoff(cfg, started)
  local current = cfg.initial_interval
  return function()
    local elapsed = core.now() - started
    local limit = cfg.max_elapsed_time
    if limit and elapsed > limit then return nil end
    local delta = cfg.randomization_factor * current
    local wait = current - delta + math.random() * 2 * delta
    current = math.min(current * cfg.multiplier, cfg.max_interval)
    if limit and elapsed + wait > limit then return nil end
    return wait
  end
end

--- A retry policy for one logical call. policy(failure, attempt) -> seconds to wait
-- before the next attempt, or nil to give up and raise this failure.
-- started: when the call's first attempt began (core.now(); default: now).
function M.policy(cfg, started)
  started = started or core.now()
  local next_wait = backoff(cfg, started)
  local next_throttle
  return function(failure, attempt)
    if cfg.max_retries > 0 and attempt >= cfg.max_retries then return nil end
    local status = failure.status
    if not M.RETRYABLE_STATUS[status] then return nil end
    -- An oversized message fails the same way every time.
    if status == "RESOURCE_EXHAUSTED" and tostring(failure.message):lower():find("larger than max", 1, true) then
      return nil
    end
    local wait = next_wait()
    if wait and status == "RESOURCE_EXHAUSTED" then
      next_throttle = next_throttle or backoff(M.THROTTLE_CONFIG, started)
      wait = math.max(wait, next_throttle() or 0)
    end
    return wait
  end
end

return M
