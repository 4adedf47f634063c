-- examples/encryption against the real test bed: a Python SDK worker with the Python
-- encryption sample's codec (examples/encryption/worker.py) runs a workflow a Lua client
-- started with encrypted arguments, the Lua client reads the encrypted result, the server
-- only ever holds ciphertext, and the Temporal CLI shows the plaintext through the Lua
-- codec server (examples/encryption/codec_server.lua).
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local helper = require("support.helper")
local temporal = require("temporal")

local q = helper.shell_quote
local ROOT = os.getenv("PWD")
local DIR = ROOT .. "/examples/encryption"
package.path = DIR .. "/?.lua;" .. package.path
local codec_mod = require("codec")

local function has(s, needle) return s:find(needle, 1, true) ~= nil end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Starts argv in its own process group (output to log); returns its pid.
local function start(argv, log, cwd)
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = q(a) end
  local p = assert(io.popen(("cd %s && setsid %s </dev/null >%s 2>&1 & echo $!"):format(q(cwd or ROOT),
    table.concat(parts, " "), q(log))))
  local pid = tonumber(p:read("a"):match("%d+"))
  p:close()
  return pid
end

-- Running: neither gone nor a zombie (PID 1 may not reap orphans here).
local function alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

local function stop(pid)
  if not pid then return end
  os.execute(("/bin/kill -TERM -- -%d 2>/dev/null"):format(pid))
  for _ = 1, 50 do
    if not alive(pid) then return end
    helper.sleep(0.1)
  end
  os.execute(("/bin/kill -KILL -- -%d 2>/dev/null"):format(pid))
end

local function wait_file(path, pid, log)
  return helper.eventually(function()
    local s = read_file(path)
    if s and s:match("%d") then return s end
    if pid and not alive(pid) then
      error("process exited: " .. (read_file(log) or ""), 0)
    end
  end, 60, 0.1)
end

describe("payload encryption (examples/encryption)", function()
  local tmp, worker_pid, server_pid, port
  local task_queue = helper.unique_id("encryption-tq")
  local token = "Bearer " .. helper.unique_id("secret")
  local client, plain_client

  setup(function()
    tmp = os.tmpname()
    os.remove(tmp)
    os.execute("mkdir -p " .. q(tmp))
    worker_pid = start({ helper.python_path, DIR .. "/worker.py", "--address", helper.address,
      "--namespace", helper.namespace, "--task-queue", task_queue, "--ready-file", tmp .. "/worker.ready" },
      tmp .. "/worker.log")
    server_pid = start({ helper.temporal_lua or (ROOT .. "/build/temporal-lua"), "codec_server.lua",
      "--port", "0", "--auth", token, "--ready-file", tmp .. "/server.port" }, tmp .. "/server.log", DIR)
    wait_file(tmp .. "/worker.ready", worker_pid, tmp .. "/worker.log")
    port = tonumber(wait_file(tmp .. "/server.port", server_pid, tmp .. "/server.log"):match("%d+"))
    client = temporal.connect(helper.address, { namespace = helper.namespace,
      data_converter = temporal.converter.new{ codec = codec_mod.new() } })
    plain_client = temporal.connect(helper.address, { namespace = helper.namespace })
  end)

  teardown(function()
    stop(worker_pid)
    stop(server_pid)
    if tmp then os.execute("rm -rf " .. q(tmp)) end
  end)

  local function start_greeting(id)
    return client:start_workflow("EncryptedGreeting", { id = id, task_queue = task_queue,
      args = { "Lua", { card = "4111-1111-1111-1111", amount = 42 } }, execution_timeout = 60 })
  end

  it("the Python worker reads Lua's encrypted arguments and Lua reads its encrypted result", function()
    local id = helper.unique_id("enc")
    local h = start_greeting(id)
    local result = h:result()
    assert.same({ greeting = "Hello, Lua!", by = "python",
      received = { card = "4111-1111-1111-1111", amount = 42 } }, result)

    -- the server holds ciphertext only: the raw history has no plaintext and the input
    -- and result payloads say binary/encrypted with the key id
    local history = helper.cli("workflow", "show", "--workflow-id", id, "-o", "json")
    assert.falsy(has(history, "4111"), history)
    assert.falsy(has(history, "Hello"), history)
    local encrypted = 0
    for md in history:gmatch('"metadata":%s*(%b{})') do
      if has(md, '"YmluYXJ5L2VuY3J5cHRlZA=="') and has(md, '"dGVzdC1rZXktaWQ="') then encrypted = encrypted + 1 end
    end
    assert.is_true(encrypted >= 2, history) -- the input and the result at least

    -- a client without the codec cannot read the result
    local ok, err = pcall(plain_client:get_workflow_handle(id).result, plain_client:get_workflow_handle(id))
    assert.is_false(ok)
    assert.truthy(has(tostring(err), "binary/encrypted"), tostring(err))
  end)

  it("the Python sample's codec decrypts what Lua encrypted, and Lua decrypts what Python encrypted", function()
    local id = helper.unique_id("enc-py")
    start_greeting(id):result()
    -- Python, with the sample's codec, reads the workflow's input from the history
    local out = helper.python_client([[
      import sys
      sys.path.insert(0, args["dir"])
      from worker import EncryptionCodec
      from temporalio.converter import DataConverter
      codec = EncryptionCodec()
      history = await client.get_workflow_handle(args["id"]).fetch_history()
      started = history.events[0].workflow_execution_started_event_attributes
      payloads = await codec.decode(started.input.payloads)
      values = DataConverter.default.payload_converter.from_payloads(payloads)
      # and Python encrypts a value for Lua
      enc = (await codec.encode(DataConverter.default.payload_converter.to_payloads(["from python", {"n": 7}])))
      print(json.dumps({"values": values, "encrypted": [
        {"metadata": {k: v.decode() for k, v in p.metadata.items()}, "data": p.data.hex()} for p in enc]}))
    ]], { dir = DIR, id = id })
    local got = helper.json.decode(out:match("[^\n]+\n?$"))
    assert.same({ "Lua", { card = "4111-1111-1111-1111", amount = 42 } }, got.values)
    local payloads = {}
    for i, p in ipairs(got.encrypted) do
      assert.equal("binary/encrypted", p.metadata.encoding)
      assert.equal("test-key-id", p.metadata["encryption-key-id"])
      payloads[i] = { metadata = p.metadata, data = (p.data:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) }
    end
    local dc = temporal.converter.new{ codec = codec_mod.new() }
    local values = dc:from_payloads(payloads)
    assert.equal("from python", values[1])
    assert.equal(7, values[2].n)
    assert.equal("integer", compat.math_type(values[2].n))
  end)

  it("starter.lua, run as the README says, prints what the Python worker returned", function()
    local id = helper.unique_id("enc-starter")
    local ok, out, err = helper.run({ helper.temporal_lua or (ROOT .. "/build/temporal-lua"),
      DIR .. "/starter.lua", id }, { TEMPORAL_ADDRESS = helper.address,
      TEMPORAL_NAMESPACE = helper.namespace, TEMPORAL_TASK_QUEUE = task_queue })
    assert.is_true(ok, err)
    assert.equal("Hello, Lua!\tpython\t4111-1111-1111-1111\t42\n", out)
  end)

  it("the Lua codec refuses another key id, tampered data and bad options", function()
    local codec = codec_mod.new()
    local enc = codec.encode({ { metadata = { encoding = "json/plain" }, data = '"x"' } })
    assert.equal(12 + #temporal.core.encode("temporal.api.common.v1.Payload",
      { metadata = { encoding = "json/plain" }, data = '"x"' }) + 16, #enc[1].data)
    local other = codec_mod.new({ key_id = "other", key = ("k"):rep(32) })
    assert.has_error(function() other.decode(enc) end,
      "payload 1: unrecognized encryption key id 'test-key-id' (this codec has 'other')")
    local tampered = { metadata = enc[1].metadata, data = enc[1].data:sub(1, -2) .. "\0" }
    if enc[1].data:sub(-1) == "\0" then tampered.data = enc[1].data:sub(1, -2) .. "\1" end
    assert.has_error(function() codec.decode({ tampered }) end,
      "payload 1: authentication failed (wrong key or tampered data)")
    assert.same({ { metadata = { encoding = "json/plain" }, data = "1" } },
      codec.decode({ { metadata = { encoding = "json/plain" }, data = "1" } }))
    assert.has_error(function() codec_mod.new({ key = "short" }) end,
      "encryption codec: key must be a 32-byte string (AES-256), got 5 bytes")
    assert.has_error(function() codec_mod.new({ keyid = "x" }) end, "encryption codec: unknown option 'keyid'")
  end)

  it("temporal workflow show --codec-endpoint prints the decrypted values through the Lua codec server", function()
    local id = helper.unique_id("enc-cli")
    start_greeting(id):result()
    local endpoint = ("http://127.0.0.1:%d"):format(port)
    local shown = helper.cli("workflow", "show", "--workflow-id", id, "--codec-endpoint", endpoint,
      "--codec-auth", token, "--detailed")
    assert.truthy(has(shown, "4111-1111-1111-1111"), shown)
    assert.truthy(has(shown, "Hello, Lua!"), shown)
    local plain = helper.cli("workflow", "show", "--workflow-id", id, "--detailed")
    assert.falsy(has(plain, "4111-1111-1111-1111"), plain)
    assert.falsy(has(plain, "Hello, Lua!"), plain)
    -- the wrong token: the server refuses, the CLI shows no plaintext
    local _, out, err = helper.try_cli("workflow", "show", "--workflow-id", id, "--codec-endpoint", endpoint,
      "--codec-auth", "Bearer wrong", "--detailed")
    assert.falsy(has(out .. err, "4111-1111-1111-1111"), out .. err)
  end)

  it("speaks the remote codec protocol: JSON payloads, CORS for the Web UI, authorization", function()
    local out = helper.python([[
import base64, json, os, urllib.request, urllib.error
a = json.loads(os.environ["ARGS"])
base = "http://127.0.0.1:%d" % a["port"]
def call(path, body=None, method="POST", auth=a["token"], origin=None):
    headers = {"content-type": "application/json"}
    if auth: headers["authorization"] = auth
    if origin: headers["origin"] = origin
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(), headers=headers)
    try:
        r = urllib.request.urlopen(req, timeout=10)
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()
b64 = lambda s: base64.b64encode(s).decode()
plain = {"payloads": [{"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b'{"secret":1}')}]}
res = {}
s, h, body = call("/encode", plain)
res["encode"] = [s, json.loads(body)]
s, h, body = call("/some/prefix/decode", json.loads(body), origin="http://localhost:8080")
res["decode"] = [s, json.loads(body), h.get("access-control-allow-origin")]
s, h, body = call("/decode", plain, auth=None)
res["noauth"] = [s, body]
s, h, body = call("/decode", None, method="OPTIONS", auth=None, origin="http://localhost:8233")
res["preflight"] = [s, h.get("access-control-allow-origin"), h.get("access-control-allow-methods"),
                    h.get("access-control-allow-headers")]
s, h, body = call("/decode", None, method="OPTIONS", auth=None, origin="http://evil.invalid")
res["other_origin"] = [s, h.get("access-control-allow-origin")]
s, h, body = call("/nothing", plain)
res["notfound"] = s
s, h, body = call("/decode", {"payloads": [{"metadata": {"encoding": b64(b"binary/encrypted"),
    "encryption-key-id": b64(b"test-key-id")}, "data": b64(b"short")}]})
res["bad"] = [s, body]
print(json.dumps(res))
]], { port = port, token = token })
    local r = helper.json.decode(out)
    assert.equal(200, r.encode[1])
    local enc = r.encode[2].payloads[1]
    assert.equal("YmluYXJ5L2VuY3J5cHRlZA==", enc.metadata.encoding)    -- binary/encrypted
    assert.equal("dGVzdC1rZXktaWQ=", enc.metadata["encryption-key-id"]) -- test-key-id
    assert.equal(200, r.decode[1])
    assert.same({ payloads = { { metadata = { encoding = "anNvbi9wbGFpbg==" }, data = "eyJzZWNyZXQiOjF9" } } },
      r.decode[2])
    assert.equal("http://localhost:8080", r.decode[3])
    assert.same({ 401, '{"message":"unauthorized"}' }, r.noauth)
    assert.same({ 204, "http://localhost:8233", "POST, OPTIONS", "content-type, x-namespace, authorization" },
      r.preflight)
    assert.equal(204, r.other_origin[1])
    assert.equal(helper.json.null, r.other_origin[2]) -- no CORS headers for other origins
    assert.equal(404, r.notfound)
    assert.equal(400, r.bad[1])
    assert.truthy(has(r.bad[2], "shorter than nonce and tag"), r.bad[2])
  end)
end)
