-- wrk script for bench_flood.py: every request carries a fresh forged ES256 token: the
-- header and claims of a real token (known kid, valid claims) with 64 random signature
-- bytes, so no cache can answer it and each one costs a full signature verification.
local hp = os.getenv("FLOOD_HEADER_PAYLOAD")
local mode = os.getenv("FLOOD_MODE") or "forged"
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
-- 64 bytes are 86 base64url characters whose last one carries 2 data bits (4 zero bits):
-- only A, Q, g and w keep the encoding canonical, so the token parses and reaches the check.
local last = { "A", "Q", "g", "w" }
-- FLOOD_DELAY_MS > 0: each connection waits that long between requests (a flood at a
-- bounded rate, connections x 1000 / delay per second at most); 0: closed loop.
local delay_ms = tonumber(os.getenv("FLOOD_DELAY_MS") or "0")
if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

function request()
  local sig = {}
  for i = 1, 85 do
    local r = math.random(1, 64)
    sig[i] = alphabet:sub(r, r)
  end
  sig[86] = last[math.random(1, 4)]
  if mode == "malformed" then sig[86] = "!" end
  return wrk.format("GET", "/tickets/1", { ["authorization"] = "Bearer " .. hp .. "." .. table.concat(sig) })
end
