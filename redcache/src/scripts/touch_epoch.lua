-- Makes a tag's epoch key outlive an entry about to be written under it, and
-- returns the epoch so the writer can tell whether the tag was invalidated
-- while it was loading.
--
-- KEYS[1]  the tag's epoch key
-- ARGV[1]  milliseconds the epoch key must live at least
--
-- Readers start an absent epoch (start_epoch.lua), so a key absent here
-- expired or was evicted since the writer read it: it is started again at
-- the server's time, which differs from what the writer read, and the
-- entry is not stored. The TTL only ever grows: other entries under the
-- tag may need it.
local need = tonumber(ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then
  local now = redis.call('TIME')
  local epoch = tonumber(now[1]) * 1000000 + tonumber(now[2])
  redis.call('SET', KEYS[1], string.format('%d', epoch), 'PX', need)
  return epoch
end
if ttl < need then
  redis.call('PEXPIRE', KEYS[1], need)
end
return tonumber(redis.call('GET', KEYS[1])) or -1
