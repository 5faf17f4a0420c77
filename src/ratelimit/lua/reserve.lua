-- tollgate rate limit: reserve one request in every scope, or nothing.
-- KEYS: per scope, its bucket hash then its in-flight lease set.
-- ARGV: tokens, lease member, lease ttl (ms), then per scope 9 numbers:
--   request windows (amount, period us) x2, token windows (amount, period us) x2,
--   max in flight (0: none).
-- Returns {admitted, denied scope, denied slot, retry us, then per window:
--   scope, slot, limit, remaining, reset us}. Slots: 1-2 requests, 3-4 tokens,
--   5 concurrency. Times are the server's, in microseconds.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local member = ARGV[2]
local lease_ms = tonumber(ARGV[3])
local fields = {'r0', 'r1', 't0', 't1'}
local n = #KEYS / 2
local out = {}
local updates = {}
local deny_scope, deny_slot, deny_retry = 0, 0, -1

for i = 1, n do
  local base = 3 + (i - 1) * 9
  local tats = redis.call('HMGET', KEYS[2 * i - 1], 'r0', 'r1', 't0', 't1')
  local new = {}
  for s = 1, 4 do
    local amount = tonumber(ARGV[base + 2 * s - 1])
    local period = tonumber(ARGV[base + 2 * s])
    if amount > 0 then
      local c = 1
      if s > 2 then c = math.min(cost, amount) end
      local b = math.max(tonumber(tats[s]) or 0, now)
      local nt = b + c * period / amount
      local horizon = now + period
      local seen = b
      if nt <= horizon then
        seen = nt
        new[s] = nt
      elseif nt - horizon > deny_retry then
        deny_scope, deny_slot, deny_retry = i, s, nt - horizon
      end
      local remaining = math.min(amount, math.floor((horizon - seen) * amount / period))
      for _, v in ipairs({i, s, amount, remaining, math.floor(seen - now)}) do
        out[#out + 1] = v
      end
    end
  end
  local max_parallel = tonumber(ARGV[base + 9])
  if max_parallel > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', now)
    if redis.call('ZCARD', KEYS[2 * i]) >= max_parallel and deny_retry < 0 then
      deny_scope, deny_slot, deny_retry = i, 5, 0
    end
  end
  updates[i] = new
end

if deny_scope > 0 then
  local res = {0, deny_scope, deny_slot, math.ceil(deny_retry)}
  for _, v in ipairs(out) do res[#res + 1] = v end
  return res
end

for i = 1, n do
  local key = KEYS[2 * i - 1]
  local full_at = 0
  for s = 1, 4 do
    if updates[i][s] then
      redis.call('HSET', key, fields[s], string.format('%.0f', updates[i][s]))
      full_at = math.max(full_at, updates[i][s])
    end
  end
  if full_at > 0 then
    local ttl = math.ceil((full_at - now) / 1000) + 1000
    if redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
  end
  if tonumber(ARGV[3 + (i - 1) * 9 + 9]) > 0 then
    redis.call('ZADD', KEYS[2 * i], now + lease_ms * 1000, member)
    redis.call('PEXPIRE', KEYS[2 * i], lease_ms + 1000)
  end
end

local res = {1, 0, 0, 0}
for _, v in ipairs(out) do res[#res + 1] = v end
return res
