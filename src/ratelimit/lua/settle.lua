-- tollgate rate limit: settle one request with the tokens it really used, and end
-- its concurrency lease.
-- KEYS: per scope, its bucket hash then its in-flight lease set.
-- ARGV: token difference (used - reserved, may be negative), lease member, then per
--   scope 5 numbers: token windows (amount, period us) x2, holds a lease (0/1).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[1])
local member = ARGV[2]
local fields = {'t0', 't1'}
local n = #KEYS / 2

for i = 1, n do
  local base = 2 + (i - 1) * 5
  local key = KEYS[2 * i - 1]
  if delta ~= 0 then
    for s = 1, 2 do
      local amount = tonumber(ARGV[base + 2 * s - 1])
      local period = tonumber(ARGV[base + 2 * s])
      if amount > 0 then
        local tat = tonumber(redis.call('HGET', key, fields[s]))
        local by = math.abs(delta) * period / amount
        if delta > 0 then
          local nt = math.max(tat or 0, now) + by
          redis.call('HSET', key, fields[s], string.format('%.0f', nt))
          local ttl = math.ceil((nt - now) / 1000) + 1000
          if redis.call('PTTL', key) < ttl then
            redis.call('PEXPIRE', key, ttl)
          end
        elseif tat then
          redis.call('HSET', key, fields[s], string.format('%.0f', math.max(tat - by, 0)))
        end
      end
    end
  end
  if tonumber(ARGV[base + 5]) > 0 then
    redis.call('ZREM', KEYS[2 * i], member)
  end
end
return 1
