-- Connections for production against real endpoints on 127.0.0.1: nginx (grpc_pass) in
-- front of the test bed's server with certificates openssl makes here, tinyproxy as the
-- HTTP CONNECT proxy, nginx answering with injected gRPC statuses for the retry policy.
-- Each check looks at the other side too: nginx's access log and tinyproxy's log.
local compat = require('temporal.compat')  -- Lua 5.4 / LuaJIT
local helper = require("support.helper")
local nginx = require("support.nginx")
local proxies = require("support.proxies")
local temporal = require("temporal")
local envconfig = require("temporal.envconfig")
local errors = temporal.errors
local now = temporal.core.now

local pki, gw

local function tls_opts(extra)
  local t = { server_root_ca_cert = pki.ca }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function connect_error(target, opts)
  opts.connect_timeout = opts.connect_timeout or 5
  local ok, err = pcall(temporal.connect, target, opts)
  assert.is_false(ok, "connect should have failed")
  return err
end

local function count(list, pattern)
  local n = 0
  for _, line in ipairs(list) do
    if line:find(pattern) then n = n + 1 end
  end
  return n
end

-- nginx writes a request's log line as the request ends, which may be just after the
-- client saw the response: wait (bounded) for the lines to be there.
local function log_lines(listener, at_least)
  return helper.eventually(function()
    local log = gw:requests(listener)
    return #log >= at_least and log
  end, 5, 0.05)
end

local function logged(listener, pattern, n)
  helper.eventually(function() return count(gw:requests(listener), pattern) == n end, 5, 0.05)
  return true
end

setup(function()
  pki = nginx.make_pki()
  gw = nginx.start(pki, helper.address, { api_keys = { "key-one", "key-two" } })
end)

teardown(function()
  if gw then gw:stop() end
  if pki then os.execute("rm -rf " .. helper.shell_quote(pki.dir)) end
end)

describe("TLS", function()
  it("connects with server-auth TLS and a CA of its own, by address or by domain", function()
    local client = temporal.connect(gw.tls, { tls = tls_opts() })
    assert.is_string(client.system_info.server_version)
    local info = client.workflow_service:get_system_info{}
    assert.equals(client.system_info.server_version, info.server_version)
    client:close()
    client = temporal.connect(gw.tls, { tls = tls_opts({ domain = "temporal.test" }) })
    client:close()
    -- nginx saw both over TLS and passed them on
    assert.is_true(logged(gw.tls, "GetSystemInfo status=200", 3))
  end)

  it("fails clearly for a CA that did not sign the server's certificate", function()
    local err = connect_error(gw.tls, { tls = { server_root_ca_cert = pki.other_ca } })
    assert.is_true(errors.is(err, "RPCError"))
    assert.equals("UNAVAILABLE", err.status)
    assert.matches("certificate verify failed", err.message)
    assert.matches("cannot connect to " .. gw.tls:gsub("%.", "%%."), err.message)
  end)

  it("fails clearly for a name the certificate does not carry", function()
    local err = connect_error(gw.tls, { tls = tls_opts({ domain = "wrong.example" }) })
    assert.equals("UNAVAILABLE", err.status)
    assert.matches("wrong.example is not in peer certificate", err.message, 1, true)
  end)

  it("fails against a plaintext endpoint when TLS is on, and the other way round", function()
    local err = connect_error(helper.address, { tls = tls_opts() })
    assert.equals("UNAVAILABLE", err.status)
    err = connect_error(gw.tls, { tls = false })
    assert.is_true(errors.is(err, "RPCError"))
  end)

  it("mTLS: the listener rejects a client without a certificate and accepts one with it", function()
    local err = connect_error(gw.mtls, { tls = tls_opts() })
    assert.is_true(errors.is(err, "RPCError"))
    local client = temporal.connect(gw.mtls, {
      tls = tls_opts({ client_cert = pki.client_cert, client_private_key = pki.client_key }),
    })
    assert.is_string(client.workflow_service:get_system_info{}.server_version)
    client:close()
    assert.is_true(logged(gw.mtls, "status=400 .* verify=NONE", 1))
    assert.is_true(logged(gw.mtls, 'status=200 .*cert="CN=lua%-spec%-client" verify=SUCCESS', 2))
  end)

  it("mTLS needs both halves, and says so without echoing the key", function()
    local ok, err = pcall(temporal.connect, gw.mtls, { tls = tls_opts({ client_private_key = pki.client_key }) })
    assert.is_false(ok)
    assert.matches("client_cert and client_private_key go together", tostring(err), 1, true)
    assert.is_nil(tostring(err):find("PRIVATE KEY", 1, true))
    ok, err = pcall(temporal.connect, gw.mtls, { tls = tls_opts({ client_cert = pki.client_cert }) })
    assert.is_false(ok)
    assert.matches("go together", tostring(err))
    ok, err = pcall(temporal.connect, gw.mtls, { tls = { server_root_ca_cert = pki.ca, cert = "x" } })
    assert.is_false(ok)
    assert.matches("tls: unknown option 'cert'", tostring(err), 1, true)
  end)
end)

describe("api_key", function()
  it("is sent as a bearer token; nginx rejects a missing or wrong one as UNAUTHENTICATED", function()
    local err = connect_error(gw.bearer_tls, { tls = tls_opts() })
    assert.equals("UNAUTHENTICATED", err.status)
    err = connect_error(gw.bearer_tls, { tls = tls_opts(), api_key = "key-wrong" })
    assert.equals("UNAUTHENTICATED", err.status)
    assert.is_nil(tostring(err):find("key-wrong", 1, true))
    local client = temporal.connect(gw.bearer_tls, { tls = tls_opts(), api_key = "key-one" })
    client.workflow_service:get_system_info{}
    client:close()
    assert.is_true(logged(gw.bearer_tls, 'status=401 auth="%-"', 1))
    assert.is_true(logged(gw.bearer_tls, 'status=401 auth="Bearer key%-wrong"', 1))
    assert.is_true(logged(gw.bearer_tls, 'status=200 auth="Bearer key%-one"', 2))
  end)

  it("rotates with client.api_key = k on the next call, without reconnecting", function()
    local before = #gw:requests(gw.bearer_tls)
    local client = temporal.connect(gw.bearer_tls, { tls = tls_opts(), api_key = "key-one" })
    client.api_key = "key-two"
    client.workflow_service:get_system_info{}
    client.api_key = "key-revoked"
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {})
    assert.is_false(ok)
    assert.equals("UNAUTHENTICATED", err.status)
    client.api_key = "key-one"
    client.workflow_service:get_system_info{}
    assert.has_error(function() client.api_key = 42 end, "api_key: expected a string, got number")
    client:close()
    local last = { compat.unpack(log_lines(gw.bearer_tls, before + 4), before + 1) }
    assert.matches('status=200 auth="Bearer key%-one"', last[1])
    assert.matches('status=200 auth="Bearer key%-two"', last[2])
    assert.matches('status=401 auth="Bearer key%-revoked"', last[3])
    assert.matches('status=200 auth="Bearer key%-one"', last[4])
  end)

  it("yields to an authorization in rpc_metadata (the client's or the call's)", function()
    local before = #gw:requests(gw.bearer_tls)
    local client = temporal.connect(gw.bearer_tls, { tls = tls_opts(), api_key = "key-wrong",
      rpc_metadata = { authorization = "Bearer key-two" } })
    client.workflow_service:get_system_info({}, { rpc_metadata = { authorization = "Bearer key-one" } })
    client.rpc_metadata = {}
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {})
    assert.equals("UNAUTHENTICATED", not ok and err.status)
    client:close()
    local log = log_lines(gw.bearer_tls, before + 3)
    assert.matches('status=200 auth="Bearer key%-two"', log[before + 1])
    assert.matches('status=200 auth="Bearer key%-one"', log[before + 2])
    assert.matches('status=401 auth="Bearer key%-wrong"', log[before + 3])
  end)

  it("turns TLS on by itself, and goes over plaintext when tls = false", function()
    -- TLS implied: the CA is the system's, which does not know the test CA
    local err = connect_error(gw.bearer_tls, { api_key = "key-one" })
    assert.matches("certificate verify failed", err.message)
    -- against the plaintext (h2c) listener: no TLS, still a bearer header
    local client = temporal.connect(gw.bearer_plain, { api_key = "key-two", tls = false })
    client:close()
    assert.is_true(logged(gw.bearer_plain, 'status=200 auth="Bearer key%-two"', 1))
  end)

  it("never shows up in tostring(client) or in error messages", function()
    local client = temporal.connect(gw.bearer_tls, { tls = tls_opts(), api_key = "key-one" })
    assert.is_nil(tostring(client):find("key-one", 1, true))
    client.api_key = "key-secret-rotated"
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {})
    assert.is_false(ok)
    assert.is_nil(tostring(err):find("key-secret-rotated", 1, true))
    assert.is_nil(tostring(client):find("key-secret", 1, true))
    client:close()
  end)
end)

describe("http_connect_proxy", function()
  local proxy
  setup(function() proxy = proxies.tinyproxy{ user = "alice", password = "pr0xy-pass" } end)
  teardown(function() if proxy then proxy:stop() end end)

  it("tunnels through an HTTP CONNECT proxy with basic auth; its log shows the tunnel", function()
    local client = temporal.connect(helper.address, {
      http_connect_proxy = { target = proxy.address, basic_auth = { "alice", "pr0xy-pass" } },
    })
    assert.is_string(client.workflow_service:get_system_info{}.server_version)
    client:close()
    assert.matches("CONNECT " .. helper.address:gsub("%.", "%%.") .. " HTTP/1.1", proxy:log())
    assert.matches("Established connection to host", proxy:log())
  end)

  it("is refused without the right credentials, and the password stays out of the error", function()
    local err = connect_error(helper.address, { http_connect_proxy = proxy.address })
    assert.equals("UNAVAILABLE", err.status)
    assert.matches("407", err.message)
    err = connect_error(helper.address, {
      http_connect_proxy = { target = proxy.address, basic_auth = { "alice", "not-the-pass" } },
    })
    assert.equals("UNAVAILABLE", err.status)
    assert.matches("401", err.message)
    assert.is_nil(tostring(err):find("not-the-pass", 1, true))
    assert.has_error(function()
      temporal.connect(helper.address, { http_connect_proxy = { target = proxy.address, basic_auth = { "alice" } } })
    end, "http_connect_proxy.basic_auth: expected { user, password } (two strings)")
  end)

  it("goes through TLS end to end inside the tunnel", function()
    local client = temporal.connect(gw.tls, { tls = tls_opts(),
      http_connect_proxy = { target = proxy.address, basic_auth = { user = "alice", password = "pr0xy-pass" } } })
    client:close()
    assert.matches("CONNECT " .. gw.tls:gsub("%.", "%%.") .. " HTTP/1.1", proxy:log())
  end)
end)

describe("retries", function()
  local function faulty(code, retry_config)
    return temporal.connect(gw.faults, { lazy = true, rpc_metadata = { ["x-fault"] = code },
      retry_config = retry_config })
  end
  local function attempts_logged(before, expected)
    pcall(log_lines, gw.faults, before + expected)
    return #gw:requests(gw.faults) - before
  end

  it("retries UNAVAILABLE with the backoff, up to max_retries attempts", function()
    local client = faulty("14", { max_retries = 4 })
    local before = #gw:requests(gw.faults)
    local t0 = now()
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {}, { retry = true })
    assert.is_false(ok)
    assert.equals("UNAVAILABLE", err.status)
    assert.equals(4, err.attempts)
    assert.matches("gave up after 4 attempts", err.message)
    assert.equals(4, attempts_logged(before, 4))
    assert.is_true(now() - t0 < 5)
    client:close()
  end)

  it("leaves raw calls alone unless asked, and never retries a non-retryable status", function()
    local client = faulty("14")
    local before = #gw:requests(gw.faults)
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {})
    assert.is_false(ok)
    assert.equals(1, err.attempts)
    assert.equals(1, attempts_logged(before, 1))
    client.rpc_metadata = { ["x-fault"] = "3" }  -- INVALID_ARGUMENT
    ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {}, { retry = true })
    assert.is_false(ok)
    assert.equals("INVALID_ARGUMENT", err.status)
    assert.equals(2, attempts_logged(before, 2))
    assert.has_error(function() client.workflow_service:get_system_info({}, { retry = "yes" }) end,
      "retry: expected a boolean, got string")
    client:close()
  end)

  it("backs off longer on RESOURCE_EXHAUSTED, within the elapsed-time budget", function()
    local client = faulty("8", { max_elapsed_time = 2 })
    local before = #gw:requests(gw.faults)
    local t0 = now()
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {}, { retry = true })
    local elapsed = now() - t0
    assert.is_false(ok)
    assert.equals("RESOURCE_EXHAUSTED", err.status)
    -- throttle waits of about 1 s and 2 s: 3 attempts; the 100 ms backoff alone gives ~8
    assert.is_true(err.attempts >= 2 and err.attempts <= 4, "attempts: " .. err.attempts)
    assert.equals(err.attempts, attempts_logged(before, err.attempts))
    assert.is_true(elapsed < 8)
    client:close()
  end)

  it("is switched off with retry_config = false and checks its options", function()
    local client = faulty("14", false)
    local before = #gw:requests(gw.faults)
    local ok, err = pcall(client.workflow_service.get_system_info, client.workflow_service, {}, { retry = true })
    assert.equals(1, not ok and err.attempts)
    assert.equals(1, attempts_logged(before, 1))
    client:close()
    assert.has_error(function() temporal.connect(gw.faults, { lazy = true, retry_config = { max_retires = 3 } }) end,
      "retry_config: unknown option 'max_retires'")
    assert.has_error(function() temporal.connect(gw.faults, { lazy = true, retry_config = { multiplier = 0.5 } }) end,
      "retry_config.multiplier: expected a number >= 1")
  end)

  it("lets other tasks run while a call waits between attempts", function()
    local client = faulty("14", { max_retries = 6, initial_interval = 0.2, randomization_factor = 0 })
    local ticks = 0
    local ticker = temporal.spawn(function()
      for _ = 1, 5 do ticks = ticks + 1; temporal.sleep(0.1) end
    end)
    local call = temporal.spawn(function()
      local ok = pcall(client.workflow_service.get_system_info, client.workflow_service, {}, { retry = true })
      return ok, ticks
    end)
    local ok, ticks_when_done = call:wait()
    ticker:wait()
    assert.is_false(ok)
    -- the waits between attempts (0.2 + 0.34 + 0.58 + ... s) let the ticker run to the end
    assert.equals(5, ticks_when_done)
    client:close()
  end)
end)

describe("environment and profile config", function()
  it("parses the TOML profile format", function()
    local doc = envconfig.parse_toml([[
# a profile file
[profile.default]
address = "localhost:7233"
namespace = 'ns' # comment
[profile.prod.tls]
server_name = "temporal.test"
client_cert_data = """
-----BEGIN CERTIFICATE-----
abc
-----END CERTIFICATE-----"""
[profile.prod.grpc_meta]
x-team = "blue"
]], "t.toml")
    assert.equals("localhost:7233", doc.profile.default.address)
    assert.equals("ns", doc.profile.default.namespace)
    assert.equals("temporal.test", doc.profile.prod.tls.server_name)
    assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\nabc\n", doc.profile.prod.tls.client_cert_data)
    assert.equals("blue", doc.profile.prod.grpc_meta["x-team"])
    local ok, err = pcall(envconfig.parse_toml, 'a = "unterminated\n', "bad.toml")
    assert.is_false(ok)
    assert.equals("bad.toml:1: unterminated string", err)
  end)

  it("layers the environment over the profile; errors name settings, not secrets", function()
    local data = [[
[profile.default]
address = "from-file:7233"
namespace = "file-ns"
api_key = "file-secret"
[profile.default.grpc_meta]
x-from = "file"
[profile.other]
address = "other:7233"
]]
    local target, opts = envconfig.load_connect_config{ config_data = data, env = {
      TEMPORAL_NAMESPACE = "env-ns", TEMPORAL_GRPC_META_X_TEAM = "blue" } }
    assert.equals("from-file:7233", target)
    assert.equals("env-ns", opts.namespace)
    assert.equals("file-secret", opts.api_key)
    assert.same({ ["x-from"] = "file", ["x-team"] = "blue" }, opts.rpc_metadata)
    assert.is_nil(opts.tls)  -- connect turns TLS on for the api key
    target, opts = envconfig.load_connect_config{ config_data = data, env = { TEMPORAL_PROFILE = "other",
      TEMPORAL_TLS = "false" } }
    assert.equals("other:7233", target)
    assert.is_false(opts.tls)
    local ok, err = pcall(envconfig.load_connect_config, { config_data = data, env = { TEMPORAL_PROFILE = "nope" } })
    assert.is_false(ok)
    assert.equals("config_data: profile 'nope' not found", err)
    ok, err = pcall(envconfig.load_connect_config, { config_data = '[profile.default]\napi_kee = "s3cr3t"\n', env = {} })
    assert.is_false(ok)
    assert.equals("config_data: [profile.default]: unknown setting 'api_kee'", err)
    ok, err = pcall(envconfig.load_connect_config, { env = { TEMPORAL_CONFIG_FILE = "/nonexistent/t.toml" } })
    assert.is_false(ok)
    assert.matches("TEMPORAL_CONFIG_FILE /nonexistent/t.toml", err, 1, true)
  end)

  it("temporal.connect() with no arguments connects from TEMPORAL_* and a profile file", function()
    local before = #gw:requests(gw.bearer_tls)
    local dir = nginx.tempdir("temporal-lua-envconfig")
    local f = assert(io.open(dir .. "/temporal.toml", "w"))
    f:write(([[
[profile.default]
address = "127.0.0.1:1"
[profile.staging]
address = "%s"
namespace = "%s"
[profile.staging.tls]
server_name = "temporal.test"
server_ca_cert_path = "%s"
]]):format(gw.bearer_tls, helper.namespace, pki.ca_path))
    f:close()
    local script = [[
local temporal = require("temporal")
local client = temporal.connect()
print(client.namespace, client.workflow_service:get_system_info{}.server_version ~= nil)
local ok, err = pcall(temporal.connect, nil, { namespace = "explicit-ns", api_key = "key-wrong", connect_timeout = 5 })
print(tostring(err))
]]
    local ok, out, stderr = helper.run({ helper.temporal_lua, "-e", script }, {
      TEMPORAL_CONFIG_FILE = dir .. "/temporal.toml", TEMPORAL_PROFILE = "staging",
      TEMPORAL_API_KEY = "key-two", TEMPORAL_GRPC_META_X_SPEC = "from-env",
    })
    os.execute("rm -rf " .. helper.shell_quote(dir))
    assert.is_true(ok, stderr)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equals(helper.namespace .. "\ttrue", lines[1])
    assert.matches("^RPCError: cannot connect to .*UNAUTHENTICATED", lines[2])
    assert.is_nil((out .. stderr):find("key-wrong", 1, true))
    assert.is_nil((out .. stderr):find("key-two", 1, true))
    local log = log_lines(gw.bearer_tls, before + 3)
    assert.matches('status=200 auth="Bearer key%-two" .* x_spec="from%-env"', log[before + 1])
    assert.matches('status=200 auth="Bearer key%-two" .* x_spec="from%-env"', log[before + 2])
    assert.matches('status=401 auth="Bearer key%-wrong"', log[before + 3])
  end)
end)

describe("secrets", function()
  it("stay out of what temporal-lua prints, gRPC's own log lines included", function()
    local script = ([[
local temporal = require("temporal")
for _, opts in ipairs({
  { api_key = "sekret-api-key-1", tls = false },
  { api_key = "sekret-api-key-2", tls = { server_root_ca_cert = %q } },
  { http_connect_proxy = { target = "127.0.0.1:1", basic_auth = { "u", "sekret-proxy-pass" } } },
  { tls = { client_private_key = "sekret-private-key" } },
  { api_key = 7 },
}) do
  opts.connect_timeout = 3
  local ok, err = pcall(temporal.connect, %q, opts)
  print(ok, tostring(err))
end
local c = temporal.connect(%q, { lazy = true, api_key = "sekret-api-key-3", tls = false })
print(tostring(c))
]]):format(pki.ca, gw.bearer_plain, gw.bearer_plain)
    local ok, out, stderr = helper.run({ helper.temporal_lua, "-e", script }, { GRPC_VERBOSITY = "debug" })
    assert.is_true(ok, stderr)
    assert.matches("UNAUTHENTICATED", out)
    assert.matches("go together", out)
    assert.is_nil((out .. stderr):find("sekret", 1, true), out .. stderr)
  end)
end)
