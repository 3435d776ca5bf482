"""Budget reserve and settle as Redis Lua scripts: one atomic call for every budget a
request's attempt falls under, and one for a whole batch of settlements, timed by the Redis
server's clock (core.state.budget_accounts states the semantics; this is the same in Lua).

Per account (budget, period) two keys, passed together and hash-tagged by the caller into one
cluster slot: a hash (`s` spent micro-dollars, `k` spent tokens, `r` / `q` reserved micro-dollars
/ tokens, `h:<id>` one reservation as "micros tokens"; rolling accounts also `s:<slot>` /
`k:<slot>` per slot of time and `lo`, the oldest slot that may still hold some, written with
the first charge) and a sorted set
of ids by expiry (`h:<id>` a live reservation, `d:<id>` a settled id remembered until then).
Both expire with the period (`expire_at`), so ended periods leave nothing behind.

Ageing a rolling account walks the slots from `lo` to the newest one that has left the
window: bounded, since `lo` moves on every call and the keys expire a window (plus the
reservation TTL) after the last call.
"""

from __future__ import annotations

from core.state.budget_accounts import (
    ROLLING_SLOTS,
    SLICE_SHARE,
    Account,
    BudgetCharge,
    BudgetLine,
    BudgetReply,
)

# Shared by both scripts: drop expired reservations (give their hold back) and settled ids,
# and age a rolling account's slots out of its running sums.
_PURGE = f"""
local function purge(h, x, now, slot_ms)
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
  if slot_ms == 0 then return 0 end
  local slot = math.floor(now * 1000 / slot_ms)
  local oldest = slot - {ROLLING_SLOTS}
  local lo = tonumber(redis.call('HGET', h, 'lo'))
  if lo == nil or lo > oldest then return slot end
  for j = lo, oldest do
    local v = redis.call('HMGET', h, 's:' .. j, 'k:' .. j)
    if v[1] then
      redis.call('HINCRBY', h, 's', 0 - tonumber(v[1]))
      redis.call('HINCRBY', h, 'k', 0 - (tonumber(v[2]) or 0))
      redis.call('HDEL', h, 's:' .. j, 'k:' .. j)
    end
  end
  redis.call('HSET', h, 'lo', oldest + 1)
  return slot
end
-- Amounts are negated as 0 - x: Lua's -x of 0 is -0, which HINCRBY refuses as "-0".
local function num(v) return tonumber(v) or 0 end
local function int(v) return string.format('%.0f', v) end
-- Takes up to c micro-dollars and q tokens out of the hold `member` (a replica's slice).
local function give_back(h, x, member, c, q)
  local amounts = redis.call('HGET', h, member)
  if not amounts then return end
  local hc, hq = string.match(amounts, '(%d+) (%d+)')
  hc, hq = tonumber(hc), tonumber(hq)
  c, q = math.min(c, hc), math.min(q, hq)
  redis.call('HINCRBY', h, 'r', int(0 - c))
  redis.call('HINCRBY', h, 'q', int(0 - q))
  if hc - c > 0 or hq - q > 0 then
    redis.call('HSET', h, member, int(hc - c) .. ' ' .. int(hq - q))
  else
    redis.call('HDEL', h, member)
    redis.call('ZREM', x, member)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: hash, set per line. ARGV: id, ttl (s), lines, then per line: limit, limit_tokens, cost,
# tokens, enforce (1/0), expire_at (unix ms), slot_ms, slice id ('' none), spare, spare tokens,
# want, want tokens. Returns {refused index or -1, used..., then per line granted, granted tokens}.
RESERVE = (
    _PURGE
    + f"""
local SHARE = {SLICE_SHARE}
"""
    + """
local rid, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local used, spent_tokens, refused, W = {}, {}, -1, 12
for i = 1, n do
  local h, x, a = KEYS[2 * i - 1], KEYS[2 * i], 3 + W * (i - 1)
  purge(h, x, now, tonumber(ARGV[a + 7]))
  if ARGV[a + 8] ~= '' then
    give_back(h, x, 'h:' .. ARGV[a + 8], tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10]))
  end
  local v = redis.call('HMGET', h, 's', 'k', 'r', 'q')
  local money, tokens = num(v[1]) + num(v[3]), num(v[2]) + num(v[4])
  used[i], spent_tokens[i] = money, tokens
  local limit, limit_tokens = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local cost, tok = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local over = money + cost > limit or (limit_tokens > 0 and tokens + tok > limit_tokens)
  if refused < 0 and ARGV[a + 5] == '1' and over then refused = i - 1 end
end
local grants = {}
if refused < 0 then
  for i = 1, n do
    local h, x, a = KEYS[2 * i - 1], KEYS[2 * i], 3 + W * (i - 1)
    local limit, limit_tokens = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local cost, tok = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    redis.call('HSET', h, 'h:' .. rid, ARGV[a + 3] .. ' ' .. ARGV[a + 4])
    redis.call('HINCRBY', h, 'r', cost)
    redis.call('HINCRBY', h, 'q', tok)
    redis.call('ZADD', x, now + ttl, 'h:' .. rid)
    used[i] = used[i] + cost
    local g, gt = tonumber(ARGV[a + 11]), tonumber(ARGV[a + 12])
    g = math.min(g, math.floor(math.max(0, limit - used[i]) / SHARE))
    if limit_tokens > 0 then
      gt = math.min(gt, math.floor(math.max(0, limit_tokens - spent_tokens[i] - tok) / SHARE))
    end
    if g < cost or gt < tok then g, gt = 0, 0 end
    if g > 0 or gt > 0 then
      local member = 'h:' .. ARGV[a + 8]
      local held = redis.call('HGET', h, member)
      local hc, hq = 0, 0
      if held then
        hc, hq = string.match(held, '(%d+) (%d+)')
        hc, hq = tonumber(hc), tonumber(hq)
      end
      redis.call('HSET', h, member, int(hc + g) .. ' ' .. int(hq + gt))
      redis.call('HINCRBY', h, 'r', int(g))
      redis.call('HINCRBY', h, 'q', int(gt))
      redis.call('ZADD', x, now + ttl, member)
      used[i] = used[i] + g
    end
    grants[i] = {g, gt}
    redis.call('PEXPIREAT', h, ARGV[a + 6])
    redis.call('PEXPIREAT', x, ARGV[a + 6])
  end
end
local out = {refused}
for i = 1, n do out[i + 1] = int(used[i]) end
for i = 1, #grants do
  out[#out + 1] = int(grants[i][1])
  out[#out + 1] = int(grants[i][2])
end
return out
"""
)

# KEYS: hash, set per account. ARGV: ttl (s), accounts, then per account: expire_at (unix ms),
# slot_ms; then per charge: id, micros, tokens, slice id ('' none), drawn, drawn tokens, count,
# and that many account numbers (1-based).
# Returns the settled spend per account once the whole batch is in.
SETTLE = (
    _PURGE
    + """
local ttl, accounts = tonumber(ARGV[1]), tonumber(ARGV[2])
local slots = {}
for i = 1, accounts do
  slots[i] = purge(KEYS[2 * i - 1], KEYS[2 * i], now, tonumber(ARGV[2 + 2 * i]))
end
local a = 3 + 2 * accounts
while a <= #ARGV do
  local rid, cost, tok = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local sid, drawn, drawn_tok = ARGV[a + 3], tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local m = tonumber(ARGV[a + 6])
  for j = 1, m do
    local i = tonumber(ARGV[a + 6 + j])
    local h, x = KEYS[2 * i - 1], KEYS[2 * i]
    if not redis.call('ZSCORE', x, 'd:' .. rid) then
      local amounts = redis.call('HGET', h, 'h:' .. rid)
      if amounts then
        local c, q = string.match(amounts, '(%d+) (%d+)')
        redis.call('HINCRBY', h, 'r', 0 - tonumber(c))
        redis.call('HINCRBY', h, 'q', 0 - tonumber(q))
        redis.call('HDEL', h, 'h:' .. rid)
        redis.call('ZREM', x, 'h:' .. rid)
      end
      if sid ~= '' then give_back(h, x, 'h:' .. sid, drawn, drawn_tok) end
      redis.call('HINCRBY', h, 's', cost)
      redis.call('HINCRBY', h, 'k', tok)
      if slots[i] > 0 then
        redis.call('HSETNX', h, 'lo', slots[i])
        redis.call('HINCRBY', h, 's:' .. slots[i], cost)
        redis.call('HINCRBY', h, 'k:' .. slots[i], tok)
      end
      redis.call('ZADD', x, now + ttl, 'd:' .. rid)
    end
  end
  a = a + 7 + m
end
local out = {}
for i = 1, accounts do
  local h, x = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('PEXPIREAT', h, ARGV[1 + 2 * i])
  redis.call('PEXPIREAT', x, ARGV[1 + 2 * i])
  out[i] = string.format('%.0f', num(redis.call('HGET', h, 's')))
end
return out
"""
)


def _keys(account: Account) -> list[str]:
    return [account.key, f"{account.key}:x"]


def reserve_args(lines: list[BudgetLine], rid: str, ttl_s: float) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    args: list[str] = [rid, f"{ttl_s:.3f}", str(len(lines))]
    for line in lines:
        keys += _keys(line.account)
        args += [str(line.limit), str(line.limit_tokens), str(line.cost), str(line.tokens)]
        args += ["1" if line.enforce else "0", str(int(line.account.expire_at * 1000))]
        args.append(str(line.account.slot_ms))
        cut = line.slice
        if cut is None:
            args += ["", "0", "0", "0", "0"]
        else:
            args += [cut.id, str(cut.spare), str(cut.spare_tokens)]
            args += [str(cut.want), str(cut.want_tokens)]
    return keys, args


def settle_args(
    charges: list[BudgetCharge], ttl_s: float
) -> tuple[list[str], list[str], list[str]]:
    """KEYS and ARGV of a batch, and the account keys in the order the reply gives them."""
    numbers: dict[str, int] = {}
    expiry: dict[str, Account] = {}
    for charge in charges:
        for account in charge.accounts:
            numbers.setdefault(account.key, len(numbers) + 1)
            known = expiry.get(account.key)
            if known is None or account.expire_at > known.expire_at:
                expiry[account.key] = account
    keys: list[str] = []
    args: list[str] = [f"{ttl_s:.3f}", str(len(numbers))]
    for key in numbers:
        account = expiry[key]
        keys += _keys(account)
        args += [str(int(account.expire_at * 1000)), str(account.slot_ms)]
    for charge in charges:
        args += [charge.rid, str(charge.cost), str(charge.tokens)]
        args += [charge.slice, str(charge.drawn), str(charge.drawn_tokens)]
        args.append(str(len(charge.accounts)))
        args += [str(numbers[account.key]) for account in charge.accounts]
    return keys, args, list(numbers)


def reserve_reply(reply: list[object], lines: int) -> BudgetReply:
    numbers = [int(text(v)) for v in reply[1:]]
    grants = numbers[lines:]
    granted = tuple((grants[i], grants[i + 1]) for i in range(0, len(grants), 2))
    return BudgetReply(int(text(reply[0])), tuple(numbers[:lines]), granted)


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
