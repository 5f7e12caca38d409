-- Gives a live session a new id, atomically: same data and expiry, the
-- old id gone (against session fixation). Both ids carry the same hash
-- tag, so the two keys share a slot.
--
-- KEYS[1]  the session
-- KEYS[2]  its new key
-- ARGV[1]  idle timeout, ms
-- ARGV[2]  maximum lifetime, ms
--
-- Returns the user ('' for none), or false when there is no such live
-- session (or the new id is taken).
local created = tonumber(redis.call('HGET', KEYS[1], 'm:created') or '')
if not created or redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local left = created + tonumber(ARGV[2]) - now
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], math.min(tonumber(ARGV[1]), left))
return redis.call('HGET', KEYS[2], 'm:user') or ''
