-- Smoke test of the test bed itself (server + Python worker), without the C module:
-- if this fails, every other spec's failure is about the test bed, not temporal-lua.
local helper = require 'support.helper'

describe('test bed', function()
  it('has a healthy server', function()
    local out = helper.cli('operator', 'cluster', 'health')
    assert.matches('SERVING', out)
  end)

  it('runs Greet on the Python worker through the temporal CLI', function()
    local id = helper.unique_id('testbed-greet')
    local res = helper.cli_json('workflow', 'execute',
      '--type', 'Greet',
      '--task-queue', helper.task_queue,
      '--workflow-id', id,
      '--input', '"World"')
    assert.equals('Hello, World!', res.result)
    assert.equals(id, res.workflowId)
  end)
end)
