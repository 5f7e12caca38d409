-- Makes a tag's epoch key outlive an entry about to be written under it, and
-- returns the epoch so the writer can tell whether the tag was invalidated
-- while it was loading.
--
-- KEYS[1]  the tag's epoch key
-- ARGV[1]  milliseconds the epoch key must live at least
--
-- An absent key is created at epoch 0 (what readers assume for an absent
-- key). The TTL only ever grows: other entries under the tag may need it.
local need = tonumber(ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then
  redis.call('SET', KEYS[1], '0', 'PX', need)
  return 0
end
if ttl < need then
  redis.call('PEXPIRE', KEYS[1], need)
end
return tonumber(redis.call('GET', KEYS[1])) or -1
