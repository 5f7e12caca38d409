-- A user's session index: adds and removes ids, and keeps it as long as
-- a session may live.
--
-- KEYS[1]  the index
-- ARGV[1]  how long it is kept, ms
-- ARGV[2]  an id to remove ('' for none)
-- ARGV[3]  an id to add ('' for none)
if ARGV[2] ~= '' then
  redis.call('SREM', KEYS[1], ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('SADD', KEYS[1], ARGV[3])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
