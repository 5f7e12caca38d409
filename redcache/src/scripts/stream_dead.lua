-- Moves an entry a group gave up on to the dead-letter stream and acks it,
-- in one step: it is never both pending and dead, nor neither.
-- Both keys share the stream's hash tag (one cluster slot).
--
-- KEYS[1]  the stream
-- KEYS[2]  the dead-letter stream
-- ARGV[1]  the group
-- ARGV[2]  the entry's id
-- ARGV[3]  its payload
-- ARGV[4]  why it is given up (the last error)
-- ARGV[5]  how often it was delivered
-- ARGV[6]  MAXLEN of the dead-letter stream (`~`)
-- ARGV[7]  the retention, in ms
-- Returns the dead letter's id, or false if the entry was no longer pending
-- (another consumer acked it): nothing is written then.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return false
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'd', ARGV[3], 'id', ARGV[2], 'group', ARGV[1], 'error', ARGV[4], 'deliveries', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return id
