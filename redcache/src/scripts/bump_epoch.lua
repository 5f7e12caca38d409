-- Invalidates a tag: one increment of its epoch, whatever the number of
-- entries under it.
--
-- KEYS[1]  the tag's epoch key
-- ARGV[1]  milliseconds the epoch key must live at least
--
-- The key keeps any longer TTL it has (entries under the tag may need it)
-- and never lives without one.
-- An absent epoch (never started, expired or evicted) starts at the
-- server's time before the increment, never at 0: see start_epoch.lua.
local need = tonumber(ARGV[1])
local current = redis.call('GET', KEYS[1])
if not current or current == '0' then
  local now = redis.call('TIME')
  local start = tonumber(now[1]) * 1000000 + tonumber(now[2])
  redis.call('SET', KEYS[1], string.format('%d', start), 'KEEPTTL')
end
local epoch = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < need then
  redis.call('PEXPIRE', KEYS[1], need)
end
return epoch
