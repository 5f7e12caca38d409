-- Checks (and, when every policy allows, consumes) the rate limits of one
-- call, atomically, with the server's clock. The same algorithms are written
-- in Rust for the embedded backend (src/ratelimit/algorithm.rs); keep the
-- two in step.
--
-- KEYS[i]   the state key of policy i (all in one hash slot: the caller puts
--           the same hash tag in each)
-- ARGV[1]   "consume" or "peek"
-- ARGV[2]   the cost of the call
-- ARGV[3 + 4(i-1) ...]  per policy: algorithm, limit, window (µs), burst
--           algorithms: 1 sliding_log, 2 sliding_window, 3 fixed_window, 4 gcra
--
-- Returns { all_allowed, then per policy: allowed, remaining, retry_after_us, reset_after_us }.
-- Times are integer microseconds; big integers are formatted with %d so no
-- precision is lost in the string conversion.

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
-- writes the new state (called only if every policy allows).
local evaluate = {}

-- 1: sliding log. Exact: a sorted set of the admitted calls of the last
-- window, scored by time.
evaluate[1] = function(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - window))
  local n = redis.call('ZCARD', key)
  local allowed = n + cost <= limit and cost <= limit
  if allowed then
    local write = function()
      for i = 0, cost - 1 do
        redis.call('ZADD', key, int(now), int(now) .. ':' .. int(n + i))
      end
      redis.call('PEXPIRE', key, ms(window))
    end
    return true, limit - n - cost, 0, window, write
  end
  local retry = window
  if cost <= limit then
    -- The call fits once the (n + cost - limit) oldest calls leave the window.
    local k = n + cost - limit
    local oldest = redis.call('ZRANGE', key, k - 1, k - 1, 'WITHSCORES')
    retry = tonumber(oldest[2]) + window - now
  end
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local reset = 0
  if newest[2] then reset = tonumber(newest[2]) + window - now end
  return false, math.max(0, limit - n), retry, reset, nil
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
  local allowed = estimate + cost <= limit
  local used = cur
  if allowed then used = cur + cost end
  local remaining = math.max(0, math.floor(limit - estimate - (allowed and cost or 0)))
  local reset = 0
  if used > 0 then
    reset = (idx + 2) * window - now
  elseif prev > 0 then
    reset = (idx + 1) * window - now
  end
  if allowed then
    local write = function()
      redis.call('HSET', key, 'w', int(idx), 'c', int(used), 'p', int(prev))
      redis.call('PEXPIRE', key, ms((idx + 2) * window - now))
    end
    return true, remaining, 0, reset, write
  end
  local retry = window
  if cost <= limit then
    if cur + cost <= limit then
      -- Later in this window, once enough of the previous one has slid out.
      local e = window * (1 - (limit - cur - cost) / prev)
      retry = math.ceil(e - elapsed)
    else
      -- In the next window, where this window's count becomes the previous.
      local e = 0
      if cur > 0 then e = math.max(0, window * (1 - (limit - cost) / cur)) end
      retry = (window - elapsed) + math.ceil(e)
    end
  end
  return false, remaining, retry, reset, nil
end

-- 3: fixed window, aligned on multiples of the window since the epoch.
evaluate[3] = function(key, limit, window)
  local idx = math.floor(now / window)
  local state = redis.call('HMGET', key, 'w', 'n')
  local n = 0
  if tonumber(state[1]) == idx then n = tonumber(state[2]) or 0 end
  local reset = (idx + 1) * window - now
  local allowed = n + cost <= limit
  if allowed then
    local write = function()
      redis.call('HSET', key, 'w', int(idx), 'n', int(n + cost))
      redis.call('PEXPIRE', key, ms(reset))
    end
    return true, limit - n - cost, 0, reset, write
  end
  local retry = reset
  if cost > limit then retry = window end
  return false, math.max(0, limit - n), retry, reset, nil
end

-- 4: GCRA. One number, the theoretical arrival time; `burst` calls at once,
-- then one every window / limit.
evaluate[4] = function(key, limit, window, burst)
  local interval = window / limit
  local tolerance = burst * interval
  local tat = math.max(tonumber(redis.call('GET', key)) or now, now)
  local new_tat = math.ceil(tat + cost * interval)
  local allowed = new_tat - now <= tolerance
  if allowed then
    local write = function()
      redis.call('SET', key, int(new_tat), 'PX', ms(new_tat - now))
    end
    return true, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now, write
  end
  local retry = window
  if cost <= burst then retry = math.ceil(new_tat - now - tolerance) end
  local remaining = math.max(0, math.floor((tolerance - (tat - now)) / interval))
  return false, remaining, retry, tat - now, nil
end

local reply = { 1 }
local writes = {}
for i, key in ipairs(KEYS) do
  local base = 3 + 4 * (i - 1)
  local algorithm = tonumber(ARGV[base])
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local burst = tonumber(ARGV[base + 3])
  local allowed, remaining, retry, reset, write = evaluate[algorithm](key, limit, window, burst)
  if not allowed then reply[1] = 0 end
  writes[i] = write
  table.insert(reply, allowed and 1 or 0)
  table.insert(reply, math.floor(remaining))
  table.insert(reply, math.ceil(retry))
  table.insert(reply, math.ceil(reset))
end
if consume and reply[1] == 1 then
  for _, write in ipairs(writes) do write() end
end
return reply
