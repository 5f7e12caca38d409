-- Releases a lock only if it is still held by the caller's token, so a
-- caller whose lock expired cannot release the lock another caller took.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the token the lock was taken with
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
