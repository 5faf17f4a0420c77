-- Settle a request: drop its holds, debit the real cost from the prepaid balances it
-- held, and add it to the budgets it counted against.
-- KEYS: the balances hash, then per payer: its holds (sorted set), its spend counter.
-- ARGV: hold id, worst (nanos), cost (nanos), then per payer: account, held (0/1),
--       spend ttl in ms (-1: not budgeted, 0: never expires).
-- Returns, per payer, two values: its spend after this request (-1 when not
-- budgeted), and its balance after the debit (false, a nil reply, when it held none).
local member = ARGV[1] .. '|' .. ARGV[2]
local cost = ARGV[3]
local n = (#ARGV - 3) / 3
local out = {}
for i = 1, n do
  local account = ARGV[1 + 3 * i]
  local ttl = tonumber(ARGV[3 + 3 * i])
  local balance = false
  if ARGV[2 + 3 * i] == '1' then
    redis.call('ZREM', KEYS[2 * i], member)
    if redis.call('HEXISTS', KEYS[1], account) == 1 then
      balance = redis.call('HINCRBY', KEYS[1], account, -tonumber(cost))
    end
  end
  if ttl >= 0 then
    out[2 * i - 1] = redis.call('INCRBY', KEYS[1 + 2 * i], cost)
    if ttl > 0 then
      redis.call('PEXPIRE', KEYS[1 + 2 * i], ttl)
    end
  else
    out[2 * i - 1] = -1
  end
  out[2 * i] = balance
end
return out
