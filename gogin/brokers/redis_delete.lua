-- Delete a channel: its numbering and history go, and every node hears of it (an envelope
-- with the "deleted" flag, the text of the deleted message as payload).
-- KEYS[1] meta hash, KEYS[2] history list; ARGV[1] PUB/SUB channel, ARGV[2] text
local existed = redis.call('DEL', KEYS[1], KEYS[2])
local t = redis.call('TIME')
local env = struct.pack('>BBHHHI8I8I8I4', 1, 2, 0, 0, 0, 0, 1, tonumber(t[1]), 0) .. ARGV[2]
redis.call('PUBLISH', ARGV[1], env)
return existed
