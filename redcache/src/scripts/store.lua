-- Stores an entry if its key still holds what the load began from, and
-- releases the load lock if one is given and still held: one round trip.
-- A `put` or an `invalidate_key` that came in during the load changed the
-- key's head, so an older load never overwrites it. (An entry is kept a
-- little past its expiry, so a load that began from it finds it still.)
--
-- KEYS[1]  the entry key
-- KEYS[2]  the lock key (absent on a cluster, where it lives in another
--          slot and is released separately)
-- ARGV[1]  the entry's bytes
-- ARGV[2]  the entry's TTL in milliseconds
-- ARGV[3]  the head the load began from: the first ARGV[4] bytes of the
--          entry it read, or '' when the key held nothing
-- ARGV[4]  the length of a head
-- ARGV[5]  the token the lock was taken with (with KEYS[2])
--
-- Returns 1 when stored, 0 when the key moved on.
local stored = 0
if redis.call('GETRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  stored = 1
end
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[5] then
  redis.call('DEL', KEYS[2])
end
return stored
