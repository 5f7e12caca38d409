-- Checks (and, when every policy allows, consumes) the rate limits of one
-- call, atomically, with the server's clock. The same algorithms are written
-- in Rust for the embedded backend (src/ratelimit/algorithm.rs); keep the
-- two in step: they must make the same decisions with the same figures.
--
-- KEYS[i]   the state key of policy i (all in one hash slot: the caller puts
--           the same hash tag in each)
-- ARGV[1]   "consume" or "peek"
-- ARGV[2]   the cost of the call: 0 (always allowed, writes nothing) up to
--           every policy's limit (burst for GCRA); the caller refuses larger
--           costs without calling
-- ARGV[3 ...]  per policy, its algorithm's number, then that algorithm's
--           arguments:
--           1 sliding_log, 2 sliding_window, 3 fixed_window: limit, window (µs)
--           4 gcra: cost x interval and burst x interval, each as a pair
--             (µs, ns 0-999), then the interval in ns
--
-- Returns { all_allowed, then per policy: allowed, remaining, retry_after_us, reset_after_us }.
--
-- Lua's numbers are IEEE doubles, exact for whole numbers up to 2^53. The
-- caller keeps limits at most 2^53 and windows at most 100 years, so counts
-- and times in µs since the epoch stay exact; comparisons with a limit are
-- written `cost <= limit - used` so no sum exceeds 2^53. GCRA's times need
-- nanoseconds, which do not fit: they are (µs, ns) pairs, and the script
-- only adds, subtracts and compares them (Rust does the multiplications).
-- Big integers are formatted with %d so no precision is lost in strings.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local consume = ARGV[1] == 'consume'
local cost = tonumber(ARGV[2])

local function ms(us)
  return math.max(1, math.ceil(us / 1000))
end

local function int(x)
  return string.format('%d', x)
end

-- Each evaluate returns allowed, remaining, retry, reset and a function that
-- writes the new state (called only if every policy allows; nil when there
-- is nothing to write).
local evaluate = {}

-- 1: sliding log. Exact: a sorted set of the admitted calls of the last
-- window, scored by time, one member per instant whatever the cost (calls
-- at one instant are merged). A member is "<total>:<weight>": its weight
-- and the running total of weights up to it, modulo 2^53, so the weight in
-- the window is the newest total less the oldest one's before it, read from
-- the two ends of the set. Scores never decrease (a member is never older
-- than the newest), so rank order is the order of the totals.
local M = 9007199254740992 -- 2^53

local function log_member(reply)
  local total, weight = string.match(reply[1], '^(%d+):(%d+)$')
  return tonumber(reply[2]), tonumber(total), tonumber(weight), reply[1]
end

-- The weight from running total b (excluded) to running total a: in
-- (0, M], since a member's weight is at least 1 and the window holds at
-- most the limit <= M.
local function since(a, b)
  local d = a - b
  if d <= 0 then d = d + M end
  return d
end

evaluate[1] = function(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - window))
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local start, used, reset = 0, 0, 0
  local newest_at, newest_total, newest_weight, newest_member
  if oldest[1] then
    local _, total, weight = log_member(oldest)
    start = total - weight
    if start < 0 then start = start + M end
    newest_at, newest_total, newest_weight, newest_member =
      log_member(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES'))
    used = since(newest_total, start)
    reset = newest_at + window - now
  end
  local room = math.max(0, limit - used)
  if cost == 0 then
    return true, room, 0, reset, nil
  end
  if cost <= room then
    local at, weight, base = now, cost, newest_total or 0
    local merge = newest_at ~= nil and newest_at >= now
    if merge then at, weight = newest_at, newest_weight + cost end
    local total
    if cost >= M - base then total = cost - (M - base) else total = base + cost end
    local write = function()
      if merge then redis.call('ZREM', key, newest_member) end
      redis.call('ZADD', key, int(at), int(total) .. ':' .. int(weight))
      redis.call('PEXPIRE', key, ms(at + window - now))
    end
    return true, room - cost, 0, at + window - now, write
  end
  -- The call fits once the oldest members holding at least `need` have left
  -- the window: binary search, by rank, for the first member whose total
  -- since `start` reaches `need` (the newest one, at `used`, always does).
  local need = cost - room
  local lo, hi = 0, redis.call('ZCARD', key) - 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local _, total = log_member(redis.call('ZRANGE', key, mid, mid, 'WITHSCORES'))
    if since(total, start) >= need then hi = mid else lo = mid + 1 end
  end
  local leaves = log_member(redis.call('ZRANGE', key, lo, lo, 'WITHSCORES'))
  return false, room, leaves + window - now, reset, nil
end

-- 2: sliding window. Two fixed windows in one hash; the previous window's
-- count is weighted by how much of it still overlaps the sliding window.
evaluate[2] = function(key, limit, window)
  local idx = math.floor(now / window)
  local state = redis.call('HMGET', key, 'w', 'c', 'p')
  local w, cur, prev = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
  if w == idx - 1 then
    prev, cur = cur, 0
  elseif w ~= idx then
    prev, cur = 0, 0
  end
  local elapsed = now - idx * window
  local estimate = prev * (window - elapsed) / window + cur
  -- estimate >= cur, so this also keeps cur + cost <= limit exactly.
  local allowed = cost == 0 or (cost <= limit and cost <= limit - estimate)
  local used = cur
  if allowed then used = cur + cost end
  local remaining = math.max(0, math.floor(limit - estimate - (allowed and cost or 0)))
  local reset = 0
  if used > 0 then
    reset = 2 * window - elapsed
  elseif prev > 0 then
    reset = window - elapsed
  end
  if allowed then
    local write = nil
    if cost > 0 then
      write = function()
        redis.call('HSET', key, 'w', int(idx), 'c', int(used), 'p', int(prev))
        redis.call('PEXPIRE', key, ms(reset))
      end
    end
    return true, remaining, 0, reset, write
  end
  local retry
  if cost <= limit - cur then
    -- Later in this window, once enough of the previous one has slid out.
    local e = window * (1 - (limit - cur - cost) / prev)
    retry = math.ceil(e - elapsed)
  else
    -- In the next window, where this window's count becomes the previous.
    local e = 0
    if cur > 0 then e = math.max(0, window * (1 - (limit - cost) / cur)) end
    retry = (window - elapsed) + math.ceil(e)
  end
  return false, remaining, retry, reset, nil
end

-- 3: fixed window, aligned on multiples of the window since the epoch.
evaluate[3] = function(key, limit, window)
  local idx = math.floor(now / window)
  local state = redis.call('HMGET', key, 'w', 'n')
  local n = 0
  if tonumber(state[1]) == idx then n = tonumber(state[2]) or 0 end
  local room = math.max(0, limit - n)
  local reset = window - (now - idx * window)
  if cost <= room then
    local write = nil
    if cost > 0 then
      write = function()
        redis.call('HSET', key, 'w', int(idx), 'n', int(n + cost))
        redis.call('PEXPIRE', key, ms(reset))
      end
    end
    return true, room - cost, 0, reset, write
  end
  return false, room, reset, reset, nil
end

-- 4: GCRA, as governor computes it. One time, the theoretical arrival time
-- (TAT), stored as "<µs>:<ns>"; a call moves it to max(TAT, now) + cost x
-- interval and is admitted when that is at most burst x interval ahead of
-- now. Times are (µs, ns) pairs with 0 <= ns < 1000.
local function pair_add(a, b)
  local us, ns = a[1] + b[1], a[2] + b[2]
  if ns >= 1000 then return { us + 1, ns - 1000 } end
  return { us, ns }
end

-- a - b, for a >= b.
local function pair_sub(a, b)
  local us, ns = a[1] - b[1], a[2] - b[2]
  if ns < 0 then return { us - 1, ns + 1000 } end
  return { us, ns }
end

local function pair_le(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] <= b[2])
end

-- Whole µs, rounded up.
local function pair_ceil(a)
  if a[2] > 0 then return a[1] + 1 end
  return a[1]
end

-- Whole intervals in `slack` (a pair, or nil for none), in doubles: the
-- Rust side does the same operations.
local function intervals(slack, interval)
  if not slack then return 0 end
  return math.floor((slack[1] * 1000 + slack[2]) / interval)
end

evaluate[4] = function(key, increment, tolerance, interval)
  local now_pair = { now, 0 }
  local tat = now_pair
  local stored = redis.call('GET', key)
  if stored then
    local us, ns = string.match(stored, '^(%d+):(%d+)$')
    if us then
      tat = { tonumber(us), tonumber(ns) }
    elseif tonumber(stored) then
      tat = { tonumber(stored), 0 } -- written as whole µs by earlier versions
    end
    if pair_le(tat, now_pair) then tat = now_pair end
  end
  local new_tat = pair_add(tat, increment)
  local ahead = pair_sub(new_tat, now_pair)
  if cost == 0 or pair_le(ahead, tolerance) then
    local slack = nil
    if pair_le(ahead, tolerance) then slack = pair_sub(tolerance, ahead) end
    local write = nil
    if cost > 0 then
      write = function()
        redis.call('SET', key, int(new_tat[1]) .. ':' .. int(new_tat[2]), 'PX', ms(pair_ceil(ahead)))
      end
    end
    return true, intervals(slack, interval), 0, pair_ceil(ahead), write
  end
  local waited = pair_sub(tat, now_pair)
  local slack = nil
  if pair_le(waited, tolerance) then slack = pair_sub(tolerance, waited) end
  local retry = pair_ceil(pair_sub(ahead, tolerance))
  return false, intervals(slack, interval), retry, pair_ceil(waited), nil
end

local reply = { 1 }
local writes = {}
local arg = 3
for i, key in ipairs(KEYS) do
  local algorithm = tonumber(ARGV[arg])
  local allowed, remaining, retry, reset, write
  if algorithm == 4 then
    local n = function(j) return tonumber(ARGV[arg + j]) end
    allowed, remaining, retry, reset, write =
      evaluate[4](key, { n(1), n(2) }, { n(3), n(4) }, n(5))
    arg = arg + 6
  else
    allowed, remaining, retry, reset, write =
      evaluate[algorithm](key, tonumber(ARGV[arg + 1]), tonumber(ARGV[arg + 2]))
    arg = arg + 3
  end
  if not allowed then reply[1] = 0 end
  if write then table.insert(writes, write) end
  table.insert(reply, allowed and 1 or 0)
  table.insert(reply, math.floor(remaining))
  table.insert(reply, math.ceil(retry))
  table.insert(reply, math.ceil(reset))
end
if consume and reply[1] == 1 then
  for _, write in ipairs(writes) do write() end
end
return reply
