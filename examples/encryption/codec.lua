--- AES-256-GCM payload codec in the wire format of the Python SDK's encryption sample
-- (temporalio/samples-python, encryption/codec.py), so a Python worker with that codec,
-- the Temporal CLI and the Web UI (through codec_server.lua) read what Lua writes, and the
-- other way round.
--
-- An encoded payload: metadata `encoding = "binary/encrypted"` and `encryption-key-id =
-- <key id>`; data = 12-byte random nonce .. ciphertext .. 16-byte GCM tag, where the
-- plaintext is the original Payload message serialized (temporal.api.common.v1.Payload).
-- Decoding passes payloads with another encoding through unchanged and refuses an unknown
-- key id or a payload that fails authentication. The cipher is OpenSSL's, through Debian's
-- lua-luaossl.
--
--     local codec = require("codec").new{ key = key32, key_id = "prod-2024" }
--     local client = temporal.connect(target, {
--       data_converter = temporal.converter.new{ codec = codec } })
local cipher = require("openssl.cipher")
local rand = require("openssl.rand")
local core = require("temporal.core")

local M = {}

M.ENCODING = "binary/encrypted"
M.NONCE_SIZE = 12
M.TAG_SIZE = 16
-- The Python sample's demo key and id: only for trying things out.
M.DEFAULT_KEY = "test-key-test-key-test-key-test!"
M.DEFAULT_KEY_ID = "test-key-id"

local PAYLOAD = "temporal.api.common.v1.Payload"
local OPTIONS = { key = true, key_id = true }

local function encrypt(key, plaintext)
  local nonce = rand.bytes(M.NONCE_SIZE)
  local c = cipher.new("aes-256-gcm")
  c:encrypt(key, nonce)
  local body = c:update(plaintext) .. assert(c:final())
  return nonce .. body .. c:getTag(M.TAG_SIZE)
end

local function decrypt(key, data, where)
  if #data < M.NONCE_SIZE + M.TAG_SIZE then
    error(("%s: encrypted data is %d bytes, shorter than nonce and tag (%d)")
      :format(where, #data, M.NONCE_SIZE + M.TAG_SIZE), 0)
  end
  local nonce = data:sub(1, M.NONCE_SIZE)
  local body = data:sub(M.NONCE_SIZE + 1, -M.TAG_SIZE - 1)
  local tag = data:sub(-M.TAG_SIZE)
  local c = cipher.new("aes-256-gcm")
  c:decrypt(key, nonce)
  c:setTag(tag)
  local plaintext = c:update(body)
  local final = c:final()
  if final == nil then
    error(where .. ": authentication failed (wrong key or tampered data)", 0)
  end
  return plaintext .. final
end

--- A codec for temporal.converter.new{ codec = ... }.
-- @tparam[opt] table opts `key` (32 bytes, default the sample's demo key), `key_id`
--   (string, default `"test-key-id"`)
-- @treturn table `{ encode = fn(payloads), decode = fn(payloads), key_id = ... }`
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("encryption codec: options must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(("encryption codec: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local key = opts.key or M.DEFAULT_KEY
  local key_id = opts.key_id or M.DEFAULT_KEY_ID
  if type(key) ~= "string" or #key ~= 32 then
    error(("encryption codec: key must be a 32-byte string (AES-256), got %s"):format(
      type(key) == "string" and (#key .. " bytes") or type(key)), 2)
  end
  if type(key_id) ~= "string" or key_id == "" then
    error("encryption codec: key_id must be a non-empty string", 2)
  end

  local codec = { key_id = key_id }

  function codec.encode(payloads)
    local out = {}
    for i, p in ipairs(payloads) do
      out[i] = {
        metadata = { encoding = M.ENCODING, ["encryption-key-id"] = key_id },
        data = encrypt(key, core.encode(PAYLOAD, p)),
      }
    end
    return out
  end

  function codec.decode(payloads)
    local out = {}
    for i, p in ipairs(payloads) do
      local md = p.metadata or {}
      if md.encoding ~= M.ENCODING then
        out[i] = p
      else
        local where = ("payload %d"):format(i)
        local id = md["encryption-key-id"] or ""
        if id ~= key_id then
          error(("%s: unrecognized encryption key id '%s' (this codec has '%s')"):format(where, id, key_id), 0)
        end
        out[i] = core.decode(PAYLOAD, decrypt(key, p.data or "", where))
      end
    end
    return out
  end

  return codec
end

return M
