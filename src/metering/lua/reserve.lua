-- Reserve a request's worst case on every prepaid payer, after checking budgets: all
-- or nothing, atomically, on the server's clock.
-- KEYS: the balances hash, then per payer: its holds (sorted set), its spend counter.
-- ARGV: hold ttl (ms), hold id, worst (nanos), then per payer: account, budget limit
--       (nanos, -1 for none).
-- A hold is the member `ID|WORST` scored by its expiry: what an account has reserved
-- is the sum of its live holds, so the holds of a replica that died simply expire.
-- Returns {'ok', i...} (the payers now holding), {'budget', i} or {'balance', i}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local member = ARGV[2] .. '|' .. ARGV[3]
local n = (#ARGV - 3) / 2

for i = 1, n do
  local account = ARGV[2 + 2 * i]
  local limit = tonumber(ARGV[3 + 2 * i])
  local holds, spent = KEYS[2 * i], KEYS[1 + 2 * i]
  if limit >= 0 and tonumber(redis.call('GET', spent) or '0') >= limit then
    return {'budget', i}
  end
  local balance = redis.call('HGET', KEYS[1], account)
  if balance then
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
    local reserved = 0
    for _, m in ipairs(redis.call('ZRANGE', holds, 0, -1)) do
      reserved = reserved + tonumber(string.match(m, '|(%d+)$'))
    end
    if tonumber(balance) - reserved <= 0 then
      return {'balance', i}
    end
  end
end

local held = {'ok'}
for i = 1, n do
  if redis.call('HEXISTS', KEYS[1], ARGV[2 + 2 * i]) == 1 then
    redis.call('ZADD', KEYS[2 * i], now + ttl, member)
    redis.call('PEXPIRE', KEYS[2 * i], ttl)
    held[#held + 1] = i
  end
end
return held
