-- Takes a distributed lock and issues its fencing token, in one step.
--
-- KEYS[1]  the lock            (both in one slot: the resource's hash tag)
-- KEYS[2]  the resource's last fencing token
-- ARGV[1]  the holder's random token
-- ARGV[2]  the lock's ttl, ms
-- ARGV[3]  how long the last fencing token is kept, ms
--
-- Returns the fencing token, or false when the lock is held. The token is
-- the larger of the last one plus one and the server's time in
-- microseconds: it grows with every acquisition, and still grows after the
-- last token's key expired (a later time is a larger number).
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local token = math.max(last + 1, now)
redis.call('SET', KEYS[2], string.format('%.0f', token), 'PX', ARGV[3])
return token
