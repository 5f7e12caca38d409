-- Extends a lock only if it is still held by the caller's token.
--
-- KEYS[1]  the lock
-- ARGV[1]  the token it was taken with
-- ARGV[2]  the new ttl, ms
--
-- Returns 1 when extended, 0 when the lock is no longer the caller's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
