-- Creates a consumer group (and the stream, if missing) unless it exists:
-- a group that exists is no error. A stream this made gets the retention
-- as its expiry; a stream with an expiry keeps it.
--
-- KEYS[1]  the stream
-- ARGV[1]  the group
-- ARGV[2]  where a new group starts: `0` (every entry) or `$` (new ones)
-- ARGV[3]  the retention, in ms
-- Returns 1 if the group was created, 0 if it existed.
local created = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
local made = 1
if type(created) == 'table' and created.err then
  if string.sub(created.err, 1, 9) ~= 'BUSYGROUP' then
    return redis.error_reply(created.err)
  end
  made = 0
end
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return made
