-- Appends an entry to a stream, trimmed to about MAXLEN entries, and
-- slides the stream's expiry: a stream nobody emits to for its retention
-- expires (every key redcache writes has a TTL).
--
-- KEYS[1]  the stream
-- ARGV[1]  MAXLEN: the stream keeps at least this many entries (`~`)
-- ARGV[2]  the retention, in ms
-- ARGV[3]  the payload (field `d`)
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return id
