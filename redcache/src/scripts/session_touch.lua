-- Opens a session for an operation: only a live session the server
-- created (with its creation time) within its maximum lifetime; its
-- expiry slides to the idle timeout (never past the maximum lifetime).
-- Then, one of:
--   ARGV[3] = 'all'            the whole hash (HGETALL)
--   ARGV[3] = 'get',  ARGV[4]  one field: {1, value or nil}
--   ARGV[3] = 'set',  ARGV[4], ARGV[5]  HSET, 1
--   ARGV[3] = 'del',  ARGV[4]  HDEL, 1
--   ARGV[3] = 'end'            DEL, and the user: {1, user}
--
-- KEYS[1]  the session
-- ARGV[1]  idle timeout, ms
-- ARGV[2]  maximum lifetime, ms
--
-- Returns false when there is no such live session.
local created = tonumber(redis.call('HGET', KEYS[1], 'm:created') or '')
if not created then
  return false
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local left = created + tonumber(ARGV[2]) - now
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return false
end
local op = ARGV[3]
if op == 'end' then
  local user = redis.call('HGET', KEYS[1], 'm:user')
  redis.call('DEL', KEYS[1])
  return {1, user}
end
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[1]), left))
if op == 'all' then
  return redis.call('HGETALL', KEYS[1])
elseif op == 'get' then
  return {1, redis.call('HGET', KEYS[1], ARGV[4])}
elseif op == 'set' then
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
  return 1
elseif op == 'del' then
  redis.call('HDEL', KEYS[1], ARGV[4])
  return 1
end
return redis.error_reply('unknown session operation')
