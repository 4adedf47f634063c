-- busted output handler: busted's own plainTerminal output (names, messages and, since we
-- force verbose, tracebacks of every failure and error), followed by one closing line that
-- CI reads:
--
--   N passed, M failed            (errors count as failed)
--   N passed, M failed, K skipped (only when K > 0; K = pending tests)
--
-- Use: busted -o spec/support/summary_handler.lua
-- If env TEMPORAL_TEST_SUMMARY_FILE is set, the same line is also written to that file so
-- spec/run.sh can repeat it as the very last line after printing log tails.
return function(options)
  local busted = require 'busted'
  local inner_options = setmetatable({ verbose = true }, { __index = options })
  local handler = require 'busted.outputHandlers.plainTerminal'(inner_options)

  local function summary()
    local passed = handler.successesCount
    local failed = handler.failuresCount + handler.errorsCount
    local skipped = handler.pendingsCount
    local line = string.format('%d passed, %d failed', passed, failed)
    if skipped > 0 then
      line = line .. string.format(', %d skipped', skipped)
    end
    return line
  end

  -- Subscribed after plainTerminal's own suite-end handler, so this prints last.
  busted.subscribe({ 'suite', 'end' }, function()
    local line = summary()
    io.write('\n', line, '\n')
    io.flush()
    local path = os.getenv('TEMPORAL_TEST_SUMMARY_FILE')
    if path and path ~= '' then
      local f = io.open(path, 'w')
      if f then
        f:write(line, '\n')
        f:close()
      end
    end
    return nil, true
  end)

  return handler
end
