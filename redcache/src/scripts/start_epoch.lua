-- Starts a tag's epoch where a reader found none: at the server's time in
-- microseconds, not at 0. A tag's epoch key may be evicted (or expire)
-- while entries stored under it live on; started again at 0 it would
-- match the epoch such an entry recorded before the tag's first
-- invalidation, and serve it although the tag was invalidated since. A
-- new start is later than any epoch the tag had (an epoch moves by one per
-- invalidation, the clock by a million a second).
--
-- KEYS[1]  the tag's epoch key
-- ARGV[1]  milliseconds the key lives if this makes it (a write extends it)
--
-- Returns the epoch. A key holding 0 (written by redcache before epochs
-- started at the clock) is started too, keeping its TTL.
local current = redis.call('GET', KEYS[1])
if current and current ~= '0' then
  return tonumber(current)
end
local now = redis.call('TIME')
local epoch = tonumber(now[1]) * 1000000 + tonumber(now[2])
if current then
  redis.call('SET', KEYS[1], string.format('%d', epoch), 'KEEPTTL')
else
  redis.call('SET', KEYS[1], string.format('%d', epoch), 'PX', ARGV[1])
end
return epoch
