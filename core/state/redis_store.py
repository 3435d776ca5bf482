"""Redis-backed Store: token buckets in one Lua call, timed by the Redis server's clock.

Using Redis's TIME (not each replica's clock) keeps buckets consistent across core replicas
(in a cluster, a script's keys are on one node, so one clock per call still).
Keys carry hash tags chosen by the caller so a multi-key script lands in one cluster slot.
Every call goes through the lean client (core/state/resp.py; core/state/cluster.py routes it
to its slot's primary with `state.cluster`) whatever the URL scheme, so redis://, rediss://
and unix:// fail the same way and the Redis-down policy sees one set of exceptions. Each call
names the key it is routed by; `owner` tells the policy which node that is.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from core.state import budget_script
from core.state.buckets import BucketSpec, TakeResult
from core.state.budget_accounts import BudgetCharge, BudgetLine, BudgetReply
from core.state.cluster import ClusterClient
from core.state.resp import RespClient

# Groups of buckets: admits the first group whose every bucket can take (all-or-nothing
# inside a group). ARGV: group count, group sizes, then capacity, rate, cost, settle, extra per
# key; an admitted group's extras are taken too when every one of its buckets holds its extra
# after the cost. Reply: group index (-1: none), wait, 1 if the extras were taken, levels.
# Pending settlements are applied to every group visited, admitted or not: an admitted group's
# keys are written once, with the take (each redis.call costs Redis ~3 us of its own; a
# settlement rides along with most takes under load), the others' keys with the settlement.
_TAKE_FIRST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local groups = tonumber(ARGV[1])
local base = groups + 1
local key = 0
local shortest = -1
local last = {}

local function persist(k, level, cap, rate)
  redis.call('HSET', KEYS[k], 't', tostring(level), 'ts', tostring(now))
  local ttl = 60000
  if rate > 0 then ttl = math.ceil(((cap - level) / rate + 1) * 1000) end
  redis.call('PEXPIRE', KEYS[k], ttl)
end

for g = 1, groups do
  local size = tonumber(ARGV[1 + g])
  local levels = {}
  local settled = {}
  local wait = 0
  for i = 1, size do
    local k = key + i
    local a = base + 5 * (k - 1)
    local cap, rate = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local cost, settle = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    local v = redis.call('HMGET', KEYS[k], 't', 'ts')
    local tokens, ts = tonumber(v[1]), tonumber(v[2])
    if tokens == nil or ts == nil then tokens = cap; ts = now end
    local level = math.min(cap, tokens + math.max(0, now - ts) * rate)
    if settle ~= 0 then
      level = math.min(cap, level - settle)
      settled[#settled + 1] = i
    end
    levels[i] = level
    local needed = math.min(cost, cap)
    if level < needed then
      local w = 1e9
      if rate > 0 then w = (needed - level) / rate end
      if w > wait then wait = w end
    end
  end
  if wait == 0 then
    local asked, fits = false, true
    for i = 1, size do
      local a = base + 5 * (key + i - 1)
      local extra = tonumber(ARGV[a + 5])
      if extra > 0 then asked = true end
      if levels[i] - tonumber(ARGV[a + 3]) < extra then fits = false end
    end
    local granted = asked and fits
    local out = {g - 1, '0', granted and 1 or 0}
    for i = 1, size do
      local k = key + i
      local a = base + 5 * (k - 1)
      local left = levels[i] - tonumber(ARGV[a + 3])
      if granted then left = left - tonumber(ARGV[a + 5]) end
      persist(k, left, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
      out[i + 3] = tostring(left)
    end
    return out
  end
  for _, i in ipairs(settled) do
    local a = base + 5 * (key + i - 1)
    persist(key + i, levels[i], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
  end
  if shortest < 0 or wait < shortest then shortest = wait end
  last = levels
  key = key + size
end
local out = {-1, tostring(shortest), 0}
for i = 1, #last do out[i + 3] = tostring(last[i]) end
return out
"""

_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local delta = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then tokens = cap; ts = now end
local level = math.min(cap, math.min(cap, tokens + math.max(0, now - ts) * rate) - delta)
redis.call('HSET', KEYS[1], 't', tostring(level), 'ts', tostring(now))
local ttl = 60000
if rate > 0 then ttl = math.ceil(((cap - level) / rate + 1) * 1000) end
redis.call('PEXPIRE', KEYS[1], ttl)
return tostring(level)
"""

# A shared record (core.resilience.stats_sync): a hash of member -> "<ms written> <value>",
# timed by the Redis server's clock. ARGV: member, value ('' to only read), ttl in ms.
# Returns member, age in ms, value, ... for every member refreshed within the ttl; older
# members are deleted, so the hash holds at most the replicas alive in the last ttl.
_SHARE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], tostring(now) .. ' ' .. ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local space = string.find(v, ' ', 1, true)
  local at = nil
  if space then at = tonumber(string.sub(v, 1, space - 1)) end
  if at == nil or now - at > ttl then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = tostring(now - at)
    out[#out + 1] = string.sub(v, space + 1)
  end
end
return out
"""

# Request coalescing (core.cache.coalesce): the leader lock, a hash {t: token, w: followers},
# taken only if absent; otherwise the caller is counted as a follower and gets the holder's
# token (nil: the caller now holds it). ARGV: token, ttl in ms.
_LEAD = """
local t = redis.call('HGET', KEYS[1], 't')
if t then
  redis.call('HINCRBY', KEYS[1], 'w', 1)
  return t
end
redis.call('HSET', KEYS[1], 't', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return false
"""

# A cache lookup, and on a miss the coalescing lock (as _LEAD) in the same call. KEYS: the
# entry, the lock (one hash tag: one slot). ARGV: token, ttl in ms. {1, value} when found,
# else {0, holder} or {0} (this caller leads).
_GET_OR_LEAD = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
local t = redis.call('HGET', KEYS[2], 't')
if t then
  redis.call('HINCRBY', KEYS[2], 'w', 1)
  return {0, t}
end
redis.call('HSET', KEYS[2], 't', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {0}
"""

# The lock given up by its holder (ARGV: token): the followers it counted.
_UNLEAD = """
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then return 0 end
local w = tonumber(redis.call('HGET', KEYS[1], 'w') or '0')
redis.call('DEL', KEYS[1])
return w
"""

# A leader's answer stored and its lock given up (as _UNLEAD) at once. KEYS: the entry, the
# lock (one hash tag: one slot). ARGV: value, ttl in ms, token. The followers it counted.
_SET_UNLEAD = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('HGET', KEYS[2], 't') ~= ARGV[3] then return 0 end
local w = tonumber(redis.call('HGET', KEYS[2], 'w') or '0')
redis.call('DEL', KEYS[2])
return w
"""

# A follower fewer, if the lock is still the same leader's (ARGV: token).
_UNFOLLOW = """
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'w', -1)
end
return 0
"""

# The leader's chunks: a list, appended and its TTL renewed at once; answers the followers
# the lock (KEYS[2]) counts. ARGV: ttl in ms, items.
_LOG_APPEND = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return tonumber(redis.call('HGET', KEYS[2], 'w') or '0')
"""


class Client(Protocol):
    """One node (core.state.resp) or a cluster (core.state.cluster): a call names its key, so
    a cluster sends it to the key's slot owner."""

    async def keyed(self, key: str, *args: Any, at_once: bool = False) -> Any: ...

    def owner(self, key: str) -> str: ...

    def owners(self) -> frozenset[str]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class Script:
    """A Lua script run by EVALSHA, sent whole (EVAL, which caches it) on NOSCRIPT: a flushed
    or restarted Redis, or a cluster node that has not seen it yet (each caches its own)."""

    def __init__(self, client: Client, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: list[str], args: Sequence[float | str | bytes]) -> Any:
        route = keys[0] if keys else ""
        call = self._client.keyed
        try:
            return await call(route, "EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:  # EVAL runs and caches it where the call lands (ASK included)
            return await call(route, "EVAL", self._source, len(keys), *keys, *args)


class RedisStore:
    def __init__(self, url: str, cluster: bool = False) -> None:
        """`cluster`: `url` is one node of a Redis Cluster (any node: the map is read from
        it), and every node is reached with its credentials and TLS settings."""
        self._client: Client = ClusterClient(url) if cluster else RespClient(url)
        self._take_first = Script(self._client, _TAKE_FIRST)
        self._adjust = Script(self._client, _ADJUST)
        self._budget_reserve = Script(self._client, budget_script.RESERVE)
        self._budget_settle = Script(self._client, budget_script.SETTLE)
        self._share = Script(self._client, _SHARE)
        self._lead = Script(self._client, _LEAD)
        self._log_append = Script(self._client, _LOG_APPEND)
        self._unlead = Script(self._client, _UNLEAD)
        self._get_or_lead = Script(self._client, _GET_OR_LEAD)
        self._unfollow = Script(self._client, _UNFOLLOW)
        self._set_unlead = Script(self._client, _SET_UNLEAD)

    async def take(self, specs: list[BucketSpec]) -> TakeResult:
        return (await self.take_first([specs]))[1]

    async def take_first(self, groups: list[list[BucketSpec]]) -> tuple[int, TakeResult]:
        args: list[float] = [len(groups), *(len(group) for group in groups)]
        keys: list[str] = []
        for group in groups:
            for spec in group:
                keys.append(spec.key)
                args.extend((spec.capacity, spec.rate, spec.cost, spec.settle, spec.extra))
        reply = await self._take_first(keys, args)
        index = int(reply[0])
        result = TakeResult(
            allowed=index >= 0,
            retry_after_s=float(reply[1]),
            remaining=tuple(float(x) for x in reply[3:]),
            granted=int(reply[2]) == 1,
        )
        return index, result

    async def adjust(self, key: str, delta: float, capacity: float, rate: float) -> None:
        await self._adjust([key], [delta, capacity, rate])

    async def budget_reserve(self, lines: list[BudgetLine], rid: str, ttl_s: float) -> BudgetReply:
        keys, args = budget_script.reserve_args(lines, rid, ttl_s)
        return budget_script.reserve_reply(await self._budget_reserve(keys, args), len(lines))

    async def budget_settle(self, charges: list[BudgetCharge], ttl_s: float) -> dict[str, int]:
        keys, args, order = budget_script.settle_args(charges, ttl_s)
        reply = await self._budget_settle(keys, args)
        return {key: int(budget_script.text(v)) for key, v in zip(order, reply, strict=True)}

    async def get(self, key: str) -> bytes | None:
        value = await self._client.keyed(key, "GET", key)
        return None if value is None else bytes(value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Pipelined GETs, not MGET: the keys carry different hash tags (one per label), which a
        cluster would refuse in one MGET; issued together, they leave in one write."""
        return list(await asyncio.gather(*(self.get(key) for key in keys)))

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._client.keyed(keys[0], "MGET", *keys)  # one hash tag: one slot
        return [None if value is None else bytes(value) for value in values]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._client.keyed(key, "SET", key, value, "PX", max(1, int(ttl_s * 1000)))

    async def claim(self, key: str, ttl_s: float) -> bool:
        """One SET NX PX (the hop nonce on the hot path), written at once (core.api.nonce_claim)."""
        ttl_ms = max(1, int(ttl_s * 1000))
        reply = await self._client.keyed(key, "SET", key, b"1", "NX", "PX", ttl_ms, at_once=True)
        return reply is not None  # "OK" when set; nil when the key already exists

    async def release(self, key: str) -> None:
        await self._client.keyed(key, "DEL", key)

    async def lead(self, key: str, token: bytes, ttl_s: float) -> bytes | None:
        reply = await self._lead([key], [token, max(1, int(ttl_s * 1000))])
        return None if reply is None else bytes(reply)

    async def get_or_lead(
        self, key: str, lock: str, token: bytes, ttl_s: float
    ) -> tuple[bytes | None, bytes | None]:
        reply = await self._get_or_lead([key, lock], [token, max(1, int(ttl_s * 1000))])
        if int(reply[0]) == 1:
            return bytes(reply[1]), None
        return None, bytes(reply[1]) if len(reply) > 1 else None

    async def wanted(self, key: str) -> int:
        return int(await self._client.keyed(key, "HGET", key, "w") or 0)

    async def unlead(self, key: str, token: bytes) -> int:
        return int(await self._unlead([key], [token]))

    async def unfollow(self, key: str, token: bytes) -> None:
        await self._unfollow([key], [token])

    async def set_unlead(
        self, key: str, value: bytes, ttl_s: float, lock: str, token: bytes
    ) -> int:
        ttl_ms = max(1, int(ttl_s * 1000))
        return int(await self._set_unlead([key, lock], [value, ttl_ms, token]))

    async def log_append(self, key: str, items: list[bytes], ttl_s: float, lock: str) -> int:
        if not items:
            return 0
        return int(await self._log_append([key, lock], [max(1, int(ttl_s * 1000)), *items]))

    async def log_read(self, key: str, start: int) -> list[bytes]:
        """LRANGE, not a blocking XREAD: the one multiplexed connection (core.state.resp)
        would stall every other command behind a blocked read; followers poll instead."""
        reply = await self._client.keyed(key, "LRANGE", key, start, -1)
        return [bytes(item) for item in reply or ()]

    async def share(
        self, entries: list[tuple[str, bytes | None]], member: str, ttl_s: float
    ) -> list[dict[str, tuple[float, bytes]]]:
        """One script call per record (each key has its own hash tag, so a cluster may hold
        them on different nodes), issued together: they leave in one write."""
        ttl_ms = max(1, int(ttl_s * 1000))
        replies = await asyncio.gather(
            *(self._share([key], [member, value or b"", ttl_ms]) for key, value in entries)
        )
        return [_members(reply) for reply in replies]

    def owner(self, key: str) -> str:
        """The node serving `key` (the Redis-down policy's unit: core.state.resilient)."""
        return self._client.owner(key)

    def owners(self) -> frozenset[str]:
        return self._client.owners()

    async def ping(self) -> bool:
        return await self._client.ping()

    async def close(self) -> None:
        await self._client.close()


def _members(reply: Any) -> dict[str, tuple[float, bytes]]:
    """The script's flat reply (member, age in ms, value, ...) as member -> (age s, value)."""
    items = [item if isinstance(item, bytes) else str(item).encode() for item in reply or ()]
    return {
        items[i].decode(): (float(items[i + 1]) / 1000, items[i + 2])
        for i in range(0, len(items) - 2, 3)
    }
