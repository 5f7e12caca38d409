-- Invalidates a tag: one increment of its epoch, whatever the number of
-- entries under it.
--
-- KEYS[1]  the tag's epoch key
-- ARGV[1]  milliseconds the epoch key must live at least
--
-- The key keeps any longer TTL it has (entries under the tag may need it)
-- and never lives without one.
local need = tonumber(ARGV[1])
local epoch = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < need then
  redis.call('PEXPIRE', KEYS[1], need)
end
return epoch
