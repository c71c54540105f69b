-- A channel's numbering and stored messages, read together (one atomic answer, so the last
-- id and the stored envelopes agree). KEYS[1] meta hash, KEYS[2] history list.
-- Returns {epoch or false, last id or false, {envelopes, oldest first}}
local m = redis.call('HMGET', KEYS[1], 'e', 's')
return {m[1], m[2], redis.call('LRANGE', KEYS[2], 0, -1)}
