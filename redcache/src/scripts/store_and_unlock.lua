-- Stores an entry and releases the load lock if the caller still holds it,
-- in one round trip. Used on a single node or a Sentinel master only: on a
-- cluster the two keys live in different slots, and are written separately.
--
-- KEYS[1]  the entry key
-- KEYS[2]  the lock key
-- ARGV[1]  the entry's bytes
-- ARGV[2]  the entry's TTL in milliseconds
-- ARGV[3]  the token the lock was taken with
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
