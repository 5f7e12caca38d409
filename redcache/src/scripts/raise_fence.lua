-- Raises a resource's last fencing token to at least ARGV[1] (Redlock:
-- after a quorum, every master of it keeps the token issued, so that the
-- next quorum, which shares a master with this one, issues a larger one).
--
-- KEYS[1]  the resource's last fencing token
-- ARGV[1]  the token issued
-- ARGV[2]  how long it is kept, ms
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local token = math.max(last, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%.0f', token), 'PX', ARGV[2])
return 1
