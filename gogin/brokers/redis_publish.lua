-- One publish, atomically (gogin/brokers/redis.py, docs/deployment.md):
-- for each channel: its epoch (created with its numbering), its next id, the broker's
-- (time, tag), the envelope appended to its history (trimmed, expiring) and PUBLISHed.
-- KEYS[1] the clock hash; then per channel KEYS[2i] its meta hash, KEYS[2i+1] its history list
-- ARGV: max stored, history ttl (ms), meta ttl (s), flags, event id, event type, payload,
--       the PUB/SUB channel prefix, then the channel ids
-- Returns {id1, stored1, id2, stored2, ...}
local max_stored = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
local meta_ttl = tonumber(ARGV[3])
local flags = tonumber(ARGV[4])
local eid, etype, payload, prefix = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local t = redis.call('TIME')
local now = tonumber(t[1])
local clock = redis.call('HMGET', KEYS[1], 't', 'g')
local last_t, tag = tonumber(clock[1]) or 0, tonumber(clock[2]) or 0
local out = {}
for i = 9, #ARGV do
  local k = (i - 8) * 2
  local meta, hist = KEYS[k], KEYS[k + 1]
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    -- microseconds of the broker's clock: a numbering that starts after a loss differs
    epoch = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('HSET', meta, 'e', epoch)
  end
  local id = redis.call('HINCRBY', meta, 's', 1)
  -- push-stream's tag: +1 within the same second as the previous message, else 1; a clock
  -- that went back keeps the previous second, so (time, tag) never goes backwards
  if now <= last_t then tag = tag + 1 else tag = 1; last_t = now end
  local env = struct.pack('>BBHHHI8I8I8I4', 1, flags, #eid, #etype, 0, tonumber(epoch), id,
                          last_t, tag) .. eid .. etype .. payload
  local stored = 0
  if max_stored > 0 then
    stored = redis.call('RPUSH', hist, env)
    if stored > max_stored then
      redis.call('LTRIM', hist, -max_stored, -1)
      stored = max_stored
    end
    if ttl_ms > 0 then redis.call('PEXPIRE', hist, ttl_ms) end
  end
  if meta_ttl > 0 then redis.call('EXPIRE', meta, meta_ttl) end
  redis.call('PUBLISH', prefix .. ARGV[i], env)
  out[#out + 1] = id
  out[#out + 1] = stored
end
redis.call('HSET', KEYS[1], 't', last_t, 'g', tag)
return out
