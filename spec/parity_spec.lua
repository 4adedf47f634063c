-- Parity with the Python SDK's Client (issue 16), against the real server and checked from
-- the Python side where values cross: clients on one connection, paging, map_histories,
-- default_workflow_query_reject_condition, typed search attributes on read, config() and
-- service_client, first_execution_run_id after signal-with-start, WorkflowAlreadyStartedError
-- ids, `arg`, and the Python option names.
local helper = require("support.helper")
local compat = require("temporal.compat")  -- Lua 5.4 / LuaJIT
local temporal = require("temporal")
local errors = temporal.errors
local sa = temporal.search_attributes

local TQ = helper.task_queue

local function connect(opts)
  opts = opts or {}
  opts.namespace = opts.namespace or helper.namespace
  return temporal.connect(helper.address, opts)
end

local function id(prefix) return helper.unique_id(prefix or "par") end

local function raises(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  return err
end

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

local client
setup(function() client = connect() end)
teardown(function() if client then client:close() end end)

describe("clients on one connection", function()
  it("client:with and Client.new share the connection, each with its own namespace", function()
    local other = client:with{ namespace = helper.other_namespace }
    local third = temporal.Client.new(client.service_client, { namespace = helper.other_namespace })
    assert.equals(client.service_client, other.service_client)
    assert.equals(client.service_client, third.service_client)
    assert.equals(client.channel, other.channel)      -- one channel, not a second connect
    assert.equals(helper.other_namespace, other.namespace)
    assert.equals(helper.namespace, client.namespace)
    assert.matches("^temporal.ServiceClient%(", tostring(client.service_client))
    -- a workflow started through the derived client lands in the other namespace (no
    -- worker polls there): the Python client of that namespace sees it
    local wid = id("ns")
    other:start_workflow("Echo", { id = wid, task_queue = TQ, arg = "x", memo = { via = "with" } })
    local py = helper.python_json([[
      d = await client.get_workflow_handle(args["id"]).describe()
      print(json.dumps({"type": d.workflow_type, "ns": d.namespace, "memo": await d.memo(),
                        "status": d.status.name}))
    ]], { id = wid, namespace = helper.other_namespace })
    assert.same({ type = "Echo", ns = helper.other_namespace, memo = { via = "with" }, status = "RUNNING" }, py)
    assert.equals("RUNNING", third:get_workflow_handle(wid):describe().status)
    -- ... and not in the first client's namespace
    local err = raises(function() client:get_workflow_handle(wid):describe() end)
    assert.equals("NOT_FOUND", err.status)
    other:get_workflow_handle(wid):terminate{ reason = "done" }
  end)

  it("shares rpc_metadata and api_key with the connection, keeps converter and interceptors per client", function()
    local conn = connect({ lazy = true })
    local seen = {}
    local derived = conn:with{ interceptors = { { start_workflow = function(nxt, input)
      seen[#seen + 1] = input.workflow
      return nxt(input)
    end } } }
    derived.rpc_metadata = { ["x-shared"] = "1" }
    assert.equals("1", conn.rpc_metadata["x-shared"])
    assert.equals("1", conn.service_client.rpc_metadata["x-shared"])
    conn.service_client.api_key = "k2"
    assert.equals("k2", derived.api_key)
    conn.service_client.api_key = nil
    -- the derived client's interceptor runs for it only
    local h = derived:start_workflow("Echo", { id = id("icpt"), task_queue = TQ, args = { 1 } })
    conn:start_workflow("Echo", { id = id("icpt"), task_queue = TQ, args = { 1 } })
    assert.same({ "Echo" }, seen)
    assert.same({ values = { 1 }, types = { "int" } }, h:result())
    -- a different converter on the same connection: payloads encoded by its codec
    local codec = { encode = function(ps)
      for _, p in ipairs(ps) do p.metadata["x-tag"] = "lua" end
      return ps
    end, decode = function(ps) return ps end }
    local tagged = conn:with{ data_converter = temporal.DataConverter.new{ codec = codec } }
    local wid = id("codec")
    tagged:start_workflow("Echo", { id = wid, task_queue = TQ, args = { "v" } }):result()
    local py = helper.python_json([[
      h = client.get_workflow_handle(args["id"])
      async for e in h.fetch_history_events():
          if e.HasField("workflow_execution_started_event_attributes"):
              p = e.workflow_execution_started_event_attributes.input.payloads[0]
              print(json.dumps({k: v.decode() for k, v in p.metadata.items()}))
              break
    ]], { id = wid })
    assert.equals("lua", py["x-tag"])
    -- closing one closes the connection of all
    derived:close()
    local cerr = raises(function() conn:get_workflow_handle("x"):describe() end)
    assert.matches("closed", tostring(cerr))
  end)

  it("lets derived clients be collected; any client keeps the connection usable", function()
    local base = connect({ lazy = true })
    local weak = setmetatable({}, { __mode = "k" })
    for i = 1, 1000 do weak[base:with{ namespace = "ns-" .. i }] = true end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
    local derived = temporal.Client.new(base, { namespace = helper.namespace })
    base = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert.is_string(derived:get_system_info().server_version)
    assert.equals(temporal.ServiceClient, getmetatable(derived.service_client))
    derived:close()
  end)

  it("rejects what is not a connection or not a client option", function()
    assert.has_error(function() temporal.Client.new({}) end,
      "Client.new: expected a temporal.ServiceClient (client.service_client), got table")
    assert.has_error(function() client:with{ identity = "x" } end, "with: unknown option 'identity'")
    assert.has_error(function() client:with{ default_workflow_query_reject_condition = "SOMETIMES" } end,
      "default_workflow_query_reject_condition: expected NONE, NOT_OPEN or NOT_COMPLETED_CLEANLY, got 'SOMETIMES'")
    assert.has_error(function() client.service_client.target = "x" end,
      "temporal.ServiceClient: field 'target' cannot be set")
  end)
end)

describe("config() and service_client", function()
  it("returns the client's settings with the secrets redacted", function()
    local dc = temporal.DataConverter.new{}
    local icpt = { ["*"] = function(nxt, input) return nxt(input) end }
    local c = temporal.connect(helper.address, {
      namespace = helper.other_namespace, lazy = true, identity = "me@test", api_key = "secret-key", tls = false,
      rpc_metadata = { authorization = "Bearer other", ["x-team"] = "blue" },
      keep_alive = { interval = 20, timeout = 5 }, connect_timeout = 3, data_converter = dc,
      interceptors = { icpt }, default_workflow_query_reject_condition = "not_open",
      http_connect_proxy = { target = "127.0.0.1:3128", basic_auth = { "user", "pw" } },
      retry_config = { max_retries = 3 },
    })
    local cfg = c:config()
    assert.equals(helper.address, cfg.target)
    assert.equals(helper.other_namespace, cfg.namespace)
    assert.equals("me@test", cfg.identity)
    assert.equals("<redacted>", cfg.api_key)
    assert.same({ authorization = "<redacted>", ["x-team"] = "blue" }, cfg.rpc_metadata)
    assert.same({ target = "127.0.0.1:3128", basic_auth = { "user", "<redacted>" } }, cfg.http_connect_proxy)
    assert.is_false(cfg.tls)
    assert.same({ interval = 20, timeout = 5 }, cfg.keep_alive)
    assert.equals(3, cfg.connect_timeout)
    assert.equals(3, cfg.retry_config.max_retries)
    assert.is_true(cfg.lazy)
    assert.equals(dc, cfg.data_converter)
    assert.same({ icpt }, cfg.interceptors)
    assert.equals("NOT_OPEN", cfg.default_workflow_query_reject_condition)
    assert.equals(c.service_client, cfg.service_client)
    -- nothing secret anywhere in it
    local function walk(t, seen)
      seen = seen or {}
      if seen[t] then return end
      seen[t] = true
      for _, v in pairs(t) do
        assert.not_equals("secret-key", v)
        assert.not_equals("pw", v)
        assert.not_equals("Bearer other", v)
        if type(v) == "table" and getmetatable(v) == nil then walk(v, seen) end
      end
    end
    walk(cfg)
    -- the live key is unchanged (config is a copy)
    assert.equals("secret-key", c.api_key)
    cfg.rpc_metadata["x-team"] = "red"
    assert.equals("blue", c.rpc_metadata["x-team"])
    -- TLS private keys are redacted, certificates kept; defaults are filled in
    local t = temporal.connect("127.0.0.1:1", { lazy = true,
      tls = { client_cert = "CERT", client_private_key = "KEY", domain = "example" } })
    local tcfg = t:config()
    assert.same({ client_cert = "CERT", client_private_key = "<redacted>", domain = "example" }, tcfg.tls)
    assert.equals("default", tcfg.namespace)
    assert.same({ interval = 30, timeout = 15 }, tcfg.keep_alive)
    assert.equals(10, tcfg.connect_timeout)
    assert.is_nil(tcfg.api_key)
    assert.same(tcfg.target, t.service_client:config().target)
    t:close()
    c:close()
  end)

  it("service_client groups the raw services and answers health", function()
    local sc = client.service_client
    local info = sc.workflow_service:get_system_info({})
    assert.is_string(info.server_version)
    assert.equals(client.target, sc.target)
    assert.equals(client.identity, sc.identity)
    assert.is_true((sc:check_health()))
    assert.is_table(sc.operator_service:list_search_attributes({ namespace = helper.namespace }).custom_attributes)
  end)

  it("has the test server's TestService; the dev server answers UNIMPLEMENTED, to Python too", function()
    local sc = client.service_client
    assert.matches("TestService", tostring(sc.test_service))
    assert.is_function(client.test_service.unlock_time_skipping_with_sleep)
    local err = raises(function() sc.test_service:get_current_time({}) end)
    assert.is_true(errors.is(err, "RPCError"))
    assert.equals("UNIMPLEMENTED", err.status)
    local py = helper.python_json([[
      from google.protobuf.empty_pb2 import Empty
      from temporalio.service import RPCError
      try:
          await client.test_service.get_current_time(Empty())
          print(json.dumps("answered"))
      except RPCError as e:
          print(json.dumps(e.status.name))
    ]])
    assert.equals(py, err.status)
    -- request fields are checked against TestService's own messages
    assert.has_error(function() sc.test_service:sleep({ durationx = 1 }) end)
  end)
end)

describe("paging", function()
  local kw, ids
  setup(function()
    kw = id("page")
    ids = {}
    for i = 1, 5 do
      local wid = ("%s-%d"):format(kw, i)
      ids[#ids + 1] = wid
      client:execute_workflow("Echo", { id = wid, task_queue = TQ, arg = i,
        search_attributes = { CustomKeyword = sa.keyword(kw) } })
    end
    table.sort(ids)
    helper.eventually(function()
      local n = 0
      for _ in client:list_workflows(("CustomKeyword = '%s'"):format(kw)) do n = n + 1 end
      return n == 5
    end, 30)
  end)

  it("list_workflows pages by hand and resumes from a next_page_token, as Python's iterator", function()
    local q = ("CustomKeyword = '%s'"):format(kw)
    local it = client:list_workflows(q, { page_size = 2 })
    assert.is_nil(it.current_page)
    assert.is_nil(it.next_page_token)
    it:fetch_next_page()
    assert.equals(2, #it.current_page)
    assert.equals(1, it.current_page_index)
    local token = it.next_page_token
    assert.is_string(token)
    local first_page = { it.current_page[1].id, it.current_page[2].id }
    -- the loop continues from where the page stands
    local a = it()
    assert.equals(first_page[1], a.id)
    assert.equals(2, it.current_page_index)
    -- the Python client, handed the Lua token, gets the same next page as Lua does
    local lua_next = client:list_workflows(q, { page_size = 2, next_page_token = token })
    lua_next:fetch_next_page()
    local py = helper.python_json([[
      it = client.list_workflows(args["q"], page_size=2, next_page_token=bytes.fromhex(args["token"]))
      await it.fetch_next_page()
      print(json.dumps({"ids": [w.id for w in it.current_page],
                        "more": it.next_page_token is not None}))
    ]], { q = q, token = hex(token) })
    assert.same(py.ids, { lua_next.current_page[1].id, lua_next.current_page[2].id })
    assert.equals(py.more, lua_next.next_page_token ~= nil)
    -- three pages of 2, 2, 1 cover the five workflows once each; the last has no token
    local seen, pages, tok = {}, 0, nil
    repeat
      local p = client:list_workflows(q, { page_size = 2, next_page_token = tok })
      p:fetch_next_page()
      pages = pages + 1
      for _, wf in ipairs(p.current_page) do seen[#seen + 1] = wf.id end
      tok = p.next_page_token
    until tok == nil or pages > 5
    table.sort(seen)
    assert.same(ids, seen)
    assert.equals(3, pages)
    -- page_size override, and a limit caps the page asked for
    local it2 = client:list_workflows(q, { page_size = 1, limit = 4 })
    it2:fetch_next_page({ page_size = 3 })
    assert.equals(3, #it2.current_page)
    local n = 0
    for _ in client:list_workflows(q, { limit = 4, page_size = 3 }) do n = n + 1 end
    assert.equals(4, n)
    assert.has_error(function() it:fetch_next_page({ page_size = 0 }) end,
      "fetch_next_page: option 'page_size' must be a positive integer")
    assert.has_error(function() it.next_page_token = "x" end,
      "temporal.WorkflowExecutionIterator: field 'next_page_token' cannot be set")
  end)

  it("map_histories fetches each listed workflow's history, in listing order, at most `concurrency` at once", function()
    local q = ("CustomKeyword = '%s'"):format(kw)
    local order = {}
    for wf in client:list_workflows(q) do order[#order + 1] = wf.id end
    for _, concurrency in ipairs({ 1, 3 }) do
      -- a fetch is in flight from its iterator's creation to its last event
      local in_flight, max_in_flight = 0, 0
      local counting = client:with{ interceptors = { { fetch_workflow_history_events = function(nxt, input)
        in_flight = in_flight + 1
        if in_flight > max_in_flight then max_in_flight = in_flight end
        local events, open = nxt(input), true
        return function()
          local ev = events()
          if ev == nil and open then
            open = false
            in_flight = in_flight - 1
          end
          return ev
        end
      end } } }
      local got = {}
      for hist in counting:list_workflows(q):map_histories{ concurrency = concurrency } do
        got[#got + 1] = hist
      end
      assert.equals(5, #got)
      for i, hist in ipairs(got) do
        assert.equals(order[i], hist.workflow_id)
        assert.is_string(hist.run_id)
      end
      assert.equals(concurrency, max_in_flight)
      assert.equals(0, in_flight)
      -- the Python client reads the same histories
      local py = helper.python_json([[
        out = {}
        for wid in args["ids"]:
            h = await client.get_workflow_handle(wid).fetch_history()
            out[wid] = [e.event_type for e in h.events]
        print(json.dumps(out))
      ]], { ids = order })
      for _, hist in ipairs(got) do
        assert.equals(#py[hist.workflow_id], #hist.events)
        assert.equals("WORKFLOW_EXECUTION_STARTED", hist.events[1].event_type)
        assert.equals("WORKFLOW_EXECUTION_COMPLETED", hist.events[#hist.events].event_type)
      end
    end
    -- CLOSE_EVENT filter: one event each
    for hist in client:list_workflows(q, { limit = 2 }):map_histories{ event_filter_type = "CLOSE_EVENT" } do
      assert.equals(1, #hist.events)
    end
    assert.has_error(function() client:list_workflows(q):map_histories{ concurrency = 0 } end,
      "map_histories: option 'concurrency' must be a positive integer, got 0")
  end)

  it("list_schedules takes next_page_token and pages by hand", function()
    local skw = id("spage")
    local sids = {}
    for i = 1, 3 do
      local sid = ("%s-%d"):format(skw, i)
      sids[i] = sid
      client:create_schedule(sid, {
        spec = { intervals = { { every = 86400 } } },
        action = { workflow = "Echo", id = sid .. "-wf", task_queue = TQ },
        state = { paused = true },
      }, { search_attributes = { CustomKeyword = sa.keyword(skw) } })
    end
    local q = ("CustomKeyword = '%s'"):format(skw)
    helper.eventually(function()
      local n = 0
      for _ in client:list_schedules(q) do n = n + 1 end
      return n == 3
    end, 30)
    local it = client:list_schedules(q, { page_size = 2 })
    assert.is_nil(it.current_page)
    it:fetch_next_page()
    assert.equals(2, #it.current_page)
    assert.is_string(it.next_page_token)
    local rest = client:list_schedules(q, { page_size = 2, next_page_token = it.next_page_token })
    rest:fetch_next_page()
    assert.equals(1, #rest.current_page)
    assert.is_nil(rest.next_page_token)
    local seen = { it.current_page[1].id, it.current_page[2].id, rest.current_page[1].id }
    table.sort(seen)
    assert.same(sids, seen)
    -- the entries carry typed search attributes; Python's listing reads the same
    assert.equals(sa.keyword(skw).value, rest.current_page[1].typed_search_attributes.CustomKeyword.value)
    assert.equals("Keyword", rest.current_page[1].typed_search_attributes.CustomKeyword.type)
    local py = helper.python_json([[
      it = await client.list_schedules(args["q"], page_size=2, next_page_token=bytes.fromhex(args["token"]))
      await it.fetch_next_page()
      print(json.dumps([s.id for s in it.current_page]))
    ]], { q = q, token = hex(it.next_page_token) })
    assert.same({ rest.current_page[1].id }, py)
    -- the loop still works and honours the token
    local n = 0
    for _ in client:list_schedules(q, { next_page_token = it.next_page_token, page_size = 2 }) do n = n + 1 end
    assert.equals(1, n)
    assert.has_error(function() client:list_schedules(q, { next_page_token = 5 }) end,
      "next_page_token: expected a string, got number")
    for _, sid in ipairs(sids) do client:get_schedule_handle(sid):delete() end
  end)
end)

describe("default_workflow_query_reject_condition", function()
  it("applies to every query without its own reject_condition", function()
    local inputs = {}
    local strict = client:with{ default_workflow_query_reject_condition = "NOT_OPEN",
      interceptors = { { query_workflow = function(nxt, input)
        inputs[#inputs + 1] = input.reject_condition
        return nxt(input)
      end } } }
    local wid = id("reject")
    local h = strict:start_workflow("WaitForSignal", { id = wid, task_queue = TQ })
    assert.same({ approved = false, signals = {}, total = 0, updates = 0 }, h:query("status"))
    h:signal("approve")
    h:result()
    local err = raises(h.query, h, "status")
    assert.is_true(errors.is(err, "WorkflowQueryRejectedError"), tostring(err))
    assert.equals("COMPLETED", err.status)
    -- the call's own condition wins; the plain client does not reject
    assert.is_true(h:query_with_options("status", { reject_condition = "NONE" }).approved)
    assert.is_true(client:get_workflow_handle(wid):query("status").approved)
    assert.same({ "NOT_OPEN", "NOT_OPEN", "NONE" }, inputs)
    -- a Python client with the same default rejects the same way
    local py = helper.python_json([[
      from temporalio.client import Client as C, WorkflowQueryRejectedError
      c = C(client.service_client, namespace=client.namespace,
            default_workflow_query_reject_condition=temporalio.common.QueryRejectCondition.NOT_OPEN)
      try:
          await c.get_workflow_handle(args["id"]).query("status")
          print(json.dumps("answered"))
      except WorkflowQueryRejectedError as e:
          print(json.dumps(e.status.name))
    ]], { id = wid })
    assert.equals(py, err.status)
  end)
end)

describe("typed search attributes on read", function()
  local when = 1767225600 + 0.25

  local function typed_equal(expected, got)
    assert.equals(expected.type, got.type)
    if type(expected.value) == "table" then
      assert.same(expected.value, got.value)
    else
      assert.equals(expected.value, got.value)
    end
  end

  local all = {
    CustomKeyword = sa.keyword("blue"), CustomText = sa.text("free text"), CustomInt = sa.int(42),
    CustomDouble = sa.double(2.0), CustomBool = sa.bool(false), CustomDatetime = sa.datetime(when),
    CustomKeywordList = sa.keyword_list({ "a", "b" }),
  }

  it("describe and list carry typed values, the same Python reads", function()
    local wid = id("tsa")
    local h = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ, search_attributes = all })
    local d = h:describe()
    for name, v in pairs(all) do typed_equal(v, d.typed_search_attributes[name]) end
    -- LuaJIT has no float subtype: a whole Double reads back as a number that is integral
    assert.equals(helper.luajit and "integer" or "float", compat.math_type(d.typed_search_attributes.CustomDouble.value))
    assert.equals("integer", compat.math_type(d.typed_search_attributes.CustomInt.value))
    -- the plain map is still there, next to it
    assert.equals("blue", d.search_attributes.CustomKeyword)
    -- a typed value read back can be sent again unchanged
    local again = client:start_workflow("Echo", { id = id("tsa-again"), task_queue = TQ,
      search_attributes = d.typed_search_attributes })
    local d2 = again:describe()
    for name, v in pairs(all) do typed_equal(v, d2.typed_search_attributes[name]) end
    again:result()
    -- Python's typed_search_attributes of the same run: same names, types and values
    local py = helper.python_json([[
      d = await client.get_workflow_handle(args["id"]).describe()
      out = {}
      for pair in d.typed_search_attributes:
          v = pair.value
          if isinstance(v, datetime):
              v = v.timestamp()
          out[pair.key.name] = {"type": pair.key.indexed_value_type.name, "value": v}
      print(json.dumps(out))
    ]], { id = wid })
    local py_type = { Keyword = "KEYWORD", Text = "TEXT", Int = "INT", Double = "DOUBLE", Bool = "BOOL",
      Datetime = "DATETIME", KeywordList = "KEYWORD_LIST" }
    for name, v in pairs(d.typed_search_attributes) do
      if name:match("^Custom") then
        assert.is_table(py[name], name)
        assert.equals(py[name].type, py_type[v.type])
        if type(v.value) == "table" then assert.same(py[name].value, v.value)
        else assert.equals(py[name].value, v.value) end
      end
    end
    local custom = 0
    for name in pairs(py) do if name:match("^Custom") then custom = custom + 1 end end
    assert.equals(7, custom)
    -- list entries carry them too
    local entry = helper.eventually(function()
      return client:list_workflows(("WorkflowId = '%s' AND CustomInt = 42"):format(wid))()
    end, 20)
    for name, v in pairs(all) do typed_equal(v, entry.typed_search_attributes[name]) end
    h:terminate{}
  end)

  it("reads typed values the Python client wrote", function()
    local wid = id("tsa-py")
    helper.python_client([[
      from temporalio.common import SearchAttributeKey, TypedSearchAttributes, SearchAttributePair
      sas = TypedSearchAttributes([
          SearchAttributePair(SearchAttributeKey.for_keyword("CustomKeyword"), "from-python"),
          SearchAttributePair(SearchAttributeKey.for_float("CustomDouble"), 3.0),
          SearchAttributePair(SearchAttributeKey.for_int("CustomInt"), 7),
          SearchAttributePair(SearchAttributeKey.for_datetime("CustomDatetime"),
                              datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=timezone.utc)),
          SearchAttributePair(SearchAttributeKey.for_keyword_list("CustomKeywordList"), ["x"]),
      ])
      await client.start_workflow("WaitForSignal", id=args["id"], task_queue=args["tq"],
                                  search_attributes=sas)
    ]], { id = wid, tq = TQ })
    local h = client:get_workflow_handle(wid)
    local t = h:describe().typed_search_attributes
    typed_equal(sa.keyword("from-python"), t.CustomKeyword)
    typed_equal(sa.double(3.0), t.CustomDouble)
    assert.equals(helper.luajit and "integer" or "float", compat.math_type(t.CustomDouble.value))
    typed_equal(sa.int(7), t.CustomInt)
    typed_equal(sa.datetime(1767323045.5), t.CustomDatetime)
    typed_equal(sa.keyword_list({ "x" }), t.CustomKeywordList)
    h:terminate{}
  end)

  it("schedule descriptions carry the schedule's typed search attributes", function()
    local sid = id("tsa-sched")
    local sh = client:create_schedule(sid, {
      spec = { intervals = { { every = 86400 } } },
      action = { workflow = "Echo", id = sid .. "-wf", task_queue = TQ, arg = "one" },
      state = { paused = true },
    }, { search_attributes = { CustomKeyword = sa.keyword("sched"), CustomInt = sa.int(5) } })
    local d = sh:describe()
    typed_equal(sa.keyword("sched"), d.typed_search_attributes.CustomKeyword)
    typed_equal(sa.int(5), d.typed_search_attributes.CustomInt)
    -- the action's `arg` became one argument: Python reads it back as args ["one"]
    assert.same({ "one", n = 1 }, d.schedule.action.args)
    local py = helper.python_json([[
      d = await client.get_schedule_handle(args["id"]).describe()
      print(json.dumps({"sa": {p.key.name: p.value for p in d.typed_search_attributes
                               if p.key.name.startswith("Custom")},
                        "raw_args": len(d.schedule.action.args)}))
    ]], { id = sid })
    assert.same({ CustomKeyword = "sched", CustomInt = 5 }, py.sa)
    assert.equals(1, py.raw_args)
    -- typed values read back go out again as they are; a plain one is refused, named
    local uerr = raises(sh.update, sh, function(desc)
      return { schedule = desc.schedule, search_attributes = { CustomInt = 6 } }
    end)
    assert.equals("update: updater result: search_attributes: search attribute 'CustomInt': a plain number is"
      .. " refused (the attribute's type cannot be told from a Lua value); wrap it in its type, e.g."
      .. " temporal.search_attributes.keyword(v) (keyword, text, int, double, bool, datetime, keyword_list)",
      tostring(uerr))
    sh:update(function(desc)
      local attrs = {}
      for name, v in pairs(desc.typed_search_attributes) do
        if name:match("^Custom") then attrs[name] = v end
      end
      attrs.CustomInt = sa.int(6)
      return { schedule = desc.schedule, search_attributes = attrs }
    end)
    local py2 = helper.python_json([[
      d = await client.get_schedule_handle(args["id"]).describe()
      print(json.dumps({p.key.name: p.value for p in d.typed_search_attributes if p.key.name.startswith("Custom")}))
    ]], { id = sid })
    assert.same({ CustomKeyword = "sched", CustomInt = 6 }, py2)
    sh:delete()
  end)

  it("refuses a plain value on write with a clear message naming the attribute", function()
    local err = raises(client.start_workflow, client, "Echo",
      { id = id("sa-plain"), task_queue = TQ, search_attributes = { CustomKeyword = "blue" } })
    assert.equals("start_workflow: option 'search_attributes': search attribute 'CustomKeyword': a plain string"
      .. " is refused (the attribute's type cannot be told from a Lua value); wrap it in its type, e.g."
      .. " temporal.search_attributes.keyword(v) (keyword, text, int, double, bool, datetime, keyword_list)",
      tostring(err))
    local serr = raises(client.create_schedule, client, id("sa-plain"), {
      spec = { intervals = { { every = 86400 } } },
      action = { workflow = "Echo", id = "x", task_queue = TQ },
    }, { search_attributes = { CustomInt = 5 } })
    assert.matches("search_attributes: search attribute 'CustomInt': a plain number is refused", tostring(serr), 1, true)
    assert.not_matches("temporal/", tostring(serr), 1, true)
  end)
end)

describe("handles", function()
  it("signal-with-start fills first_execution_run_id as Python 1.35 does", function()
    local wid = id("sws")
    local h1 = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ, start_signal = "approve_later" })
    assert.equals(h1.result_run_id, h1.first_execution_run_id)
    local h2 = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ, start_signal = "approve_later" })
    assert.equals(h1.result_run_id, h2.result_run_id)
    local py = helper.python_json([[
      h = await client.start_workflow("WaitForSignal", id=args["id"], task_queue=args["tq"],
                                      start_signal="approve_later")
      print(json.dumps({"run": h.result_run_id, "first": h.first_execution_run_id or ""}))
    ]], { id = wid, tq = TQ })
    assert.equals(h1.result_run_id, py.run)
    -- the server names the chain's first run also when the workflow was running already
    assert.equals(py.first, h2.first_execution_run_id or "")
    assert.equals(h1.result_run_id, h2.first_execution_run_id)
    h1:terminate{}
  end)

  it("WorkflowAlreadyStartedError carries run_id and first_run_id as Python's", function()
    local wid = id("dup")
    local h = client:start_workflow("WaitForSignal", { id = wid, task_queue = TQ })
    local err = raises(client.start_workflow, client, "WaitForSignal", { id = wid, task_queue = TQ })
    assert.is_true(errors.is(err, "WorkflowAlreadyStartedError"))
    assert.equals(h.result_run_id, err.run_id)
    local py = helper.python_json([[
      from temporalio.exceptions import WorkflowAlreadyStartedError
      try:
          await client.start_workflow("WaitForSignal", id=args["id"], task_queue=args["tq"])
      except WorkflowAlreadyStartedError as e:
          print(json.dumps({"run_id": e.run_id, "first_run_id": e.first_run_id or False}))
    ]], { id = wid, tq = TQ })
    assert.equals(py.run_id, err.run_id)
    assert.equals(py.first_run_id or nil, err.first_run_id)
    h:terminate{}
  end)
end)

describe("options from Python habits", function()
  it("accepts arg (one argument) beside args, everywhere args is taken", function()
    local h = client:start_workflow("Echo", { id = id("arg"), task_queue = TQ, arg = { 1, 2 } })
    -- the Python workflow received ONE argument, the list
    assert.same({ values = { { 1, 2 } }, types = { "list" } }, h:result())
    local w = client:start_workflow("WaitForSignal", { id = id("arg"), task_queue = TQ })
    assert.equals(5, w:execute_update("add", { arg = 5 }))
    local u = w:start_update("add", { arg = 2, wait_for_stage = "COMPLETED" })
    assert.equals(7, u:result())
    -- a query's arg reaches the operation as args = { arg }
    local seen = client:with{ interceptors = { { query_workflow = function(_, input) return input.args end } } }
    assert.same({ "q", n = 1 }, seen:get_workflow_handle(w.id):query_with_options("status", { arg = "q" }))
    w:signal_with_options("approve", { arg = "x" })
    assert.same({ { "x" } }, w:result())   -- the Python workflow got one signal argument
    local op = temporal.WithStartWorkflowOperation("WaitForSignal", { id = id("arg-uws"), task_queue = TQ,
      id_conflict_policy = "USE_EXISTING" })
    assert.equals(3, client:execute_update_with_start_workflow("add", { arg = 3, start_workflow_operation = op }))
    op:workflow_handle():terminate{}
    assert.has_error(function()
      client:start_workflow("Echo", { id = "x", task_queue = TQ, arg = 1, args = { 2 } })
    end, "start_workflow: give option 'arg' (one argument) or 'args' (a list), not both")
    assert.has_error(function() w:signal_with_options("approve", { arg = 1, args = {} }) end,
      "signal: give option 'arg' (one argument) or 'args' (a list), not both")
  end)

  it("refuses the Python names that differ, naming the Lua option", function()
    assert.has_error(function() temporal.connect(helper.address, { keep_alive_config = {} }) end,
      "connect: unknown option 'keep_alive_config' (the Python SDK's name; use 'keep_alive')")
    assert.has_error(function() temporal.connect(helper.address, { http_connect_proxy_config = {} }) end,
      "connect: unknown option 'http_connect_proxy_config' (the Python SDK's name; use 'http_connect_proxy')")
    assert.has_error(function() client:get_worker_task_reachability({ "1" }, { reachability_type = "NEW_WORKFLOWS" }) end,
      "get_worker_task_reachability: unknown option 'reachability_type' (the Python SDK's name; use 'reachability')")
    assert.has_error(function() client:start_workflow("Echo", { id = "x", task_queue = TQ, result_type = "int" }) end,
      "start_workflow: unknown option 'result_type' (a Python SDK option with no Lua counterpart:"
        .. " results are decoded to Lua values; there is no type to give)")
    assert.has_error(function() temporal.connect(helper.address, { plugins = {} }) end,
      "connect: unknown option 'plugins' (a Python SDK option with no Lua counterpart:"
        .. " there are no plugins; pass interceptors and data_converter)")
    assert.has_error(function() temporal.connect(helper.address, { keep_alive = { interval_millis = 1000 } }) end,
      "keep_alive: unknown option 'interval_millis' (the Python SDK's name; use 'interval (seconds)')")
    assert.has_error(function() temporal.connect(helper.address, { retry_config = { max_interval_millis = 1000 } }) end,
      "retry_config: unknown option 'max_interval_millis' (the Python SDK's name; use 'max_interval', in seconds)")
    assert.has_error(function()
      temporal.connect(helper.address, { http_connect_proxy = { target_host = "127.0.0.1:3128" } })
    end, "http_connect_proxy: unknown option 'target_host' (the Python SDK's name; use 'target')")
    assert.has_error(function()
      client:create_schedule("x", { spec = { intervals = { { every = 60 } } }, action = { workflow = "Echo", id = "x",
        task_queue = TQ, typed_search_attributes = {} } })
    end, "action: unknown option 'typed_search_attributes' (the Python SDK's name; use 'search_attributes')")
    -- a plain typo still reads as before
    assert.has_error(function() temporal.connect(helper.address, { namespaec = "x" }) end,
      "connect: unknown option 'namespaec'")
  end)
end)
