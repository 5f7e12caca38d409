-- Creates a session: its hash, with its creation time (the server's) and
-- user, expiring after the idle timeout (or the maximum lifetime, if
-- shorter).
--
-- KEYS[1]  the session
-- ARGV[1]  idle timeout, ms
-- ARGV[2]  maximum lifetime, ms
-- ARGV[3]  the user ('' for none)
--
-- Returns 1, or 0 if the id is taken (never replaces a session).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', KEYS[1], 'm:created', string.format('%.0f', now), 'm:user', ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[1]), tonumber(ARGV[2])))
return 1
