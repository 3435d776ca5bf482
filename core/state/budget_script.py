"""Budget reserve and settle as Redis Lua scripts: one atomic call for every budget a
request's attempt falls under, timed by the Redis server's clock (core.state.budget_accounts
states the semantics; this is the same in Lua).

Per account (budget, period) two keys, passed together and hash-tagged by the caller into one
cluster slot: a hash (`s` spent micro-dollars, `k` spent tokens, `r` / `q` reserved micro-dollars
/ tokens, `h:<id>` one reservation as "micros tokens") and a sorted set of ids by expiry
(`h:<id>` a live reservation, `d:<id>` a settled id remembered until then). Both expire with the
period (`expire_at`), so ended periods leave nothing behind.
"""

from __future__ import annotations

from core.state.budget_accounts import BudgetLine, BudgetReply

# Shared by both scripts: drop expired reservations (give their hold back) and settled ids.
_PURGE = """
local function purge(h, x, now)
  local gone = redis.call('ZRANGEBYSCORE', x, '-inf', now)
  for _, member in ipairs(gone) do
    if string.sub(member, 1, 2) == 'h:' then
      local amounts = redis.call('HGET', h, member)
      if amounts then
        local c, t = string.match(amounts, '(%d+) (%d+)')
        redis.call('HINCRBY', h, 'r', 0 - tonumber(c))
        redis.call('HINCRBY', h, 'q', 0 - tonumber(t))
        redis.call('HDEL', h, member)
      end
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', x, '-inf', now) end
end
-- Amounts are negated as 0 - x: Lua's -x of 0 is -0, which HINCRBY refuses as "-0".
local function num(v) return tonumber(v) or 0 end
"""

# KEYS: hash, set per line. ARGV: id, ttl (s), lines, then per line: limit, limit_tokens, cost,
# tokens, enforce (1/0), expire_at (unix ms). Returns {refused index or -1, used per line...}.
RESERVE = (
    _PURGE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rid, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local used, refused = {}, -1
for i = 1, n do
  local h, x, a = KEYS[2 * i - 1], KEYS[2 * i], 3 + 6 * (i - 1)
  purge(h, x, now)
  local v = redis.call('HMGET', h, 's', 'k', 'r', 'q')
  local money, tokens = num(v[1]) + num(v[3]), num(v[2]) + num(v[4])
  used[i] = money
  local limit, limit_tokens = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local cost, tok = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local over = money + cost > limit or (limit_tokens > 0 and tokens + tok > limit_tokens)
  if refused < 0 and ARGV[a + 5] == '1' and over then refused = i - 1 end
end
if refused < 0 then
  for i = 1, n do
    local h, x, a = KEYS[2 * i - 1], KEYS[2 * i], 3 + 6 * (i - 1)
    local cost, tok = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    redis.call('HSET', h, 'h:' .. rid, ARGV[a + 3] .. ' ' .. ARGV[a + 4])
    redis.call('HINCRBY', h, 'r', cost)
    redis.call('HINCRBY', h, 'q', tok)
    redis.call('ZADD', x, now + ttl, 'h:' .. rid)
    redis.call('PEXPIREAT', h, ARGV[a + 6])
    redis.call('PEXPIREAT', x, ARGV[a + 6])
    used[i] = used[i] + cost
  end
end
local out = {refused}
for i = 1, n do out[i + 1] = string.format('%.0f', used[i]) end
return out
"""
)

# KEYS: hash, set per account. ARGV: id, ttl (s), micros, tokens, then expire_at (unix ms) per
# account. Returns the settled spend per account.
SETTLE = (
    _PURGE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rid, ttl, cost, tok = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i = 1, #KEYS / 2 do
  local h, x = KEYS[2 * i - 1], KEYS[2 * i]
  purge(h, x, now)
  if not redis.call('ZSCORE', x, 'd:' .. rid) then
    local amounts = redis.call('HGET', h, 'h:' .. rid)
    if amounts then
      local c, q = string.match(amounts, '(%d+) (%d+)')
      redis.call('HINCRBY', h, 'r', 0 - tonumber(c))
      redis.call('HINCRBY', h, 'q', 0 - tonumber(q))
      redis.call('HDEL', h, 'h:' .. rid)
      redis.call('ZREM', x, 'h:' .. rid)
    end
    redis.call('HINCRBY', h, 's', cost)
    redis.call('HINCRBY', h, 'k', tok)
    redis.call('ZADD', x, now + ttl, 'd:' .. rid)
    redis.call('PEXPIREAT', h, ARGV[4 + i])
    redis.call('PEXPIREAT', x, ARGV[4 + i])
  end
  out[i] = string.format('%.0f', num(redis.call('HGET', h, 's')))
end
return out
"""
)


def reserve_args(lines: list[BudgetLine], rid: str, ttl_s: float) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    args: list[str] = [rid, f"{ttl_s:.3f}", str(len(lines))]
    for line in lines:
        keys += [line.key, f"{line.key}:x"]
        args += [str(line.limit), str(line.limit_tokens), str(line.cost), str(line.tokens)]
        args += ["1" if line.enforce else "0", str(int(line.expire_at * 1000))]
    return keys, args


def settle_args(
    accounts: list[tuple[str, float]], rid: str, cost: int, tokens: int, ttl_s: float
) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    for key, _ in accounts:
        keys += [key, f"{key}:x"]
    args = [rid, f"{ttl_s:.3f}", str(cost), str(tokens)]
    args += [str(int(expire_at * 1000)) for _, expire_at in accounts]
    return keys, args


def reserve_reply(reply: list[object]) -> BudgetReply:
    return BudgetReply(int(str(reply[0])), tuple(int(text(v)) for v in reply[1:]))


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
