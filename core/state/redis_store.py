"""Redis-backed Store: token buckets in one Lua call, timed by the Redis server's clock.

Using Redis's TIME (not each replica's clock) keeps buckets consistent across core replicas.
Keys carry hash tags chosen by the caller so a multi-bucket take lands in one cluster slot.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ResponseError

from core.state.buckets import BucketSpec, TakeResult
from core.state.resp import RespClient

# Groups of buckets: admits the first group whose every bucket can take (all-or-nothing
# inside a group). ARGV: group count, group sizes, then capacity, rate, cost, settle per key.
# Pending settlements are applied to every group visited, admitted or not.
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
  local wait = 0
  for i = 1, size do
    local k = key + i
    local a = base + 4 * (k - 1)
    local cap, rate = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local cost, settle = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    local v = redis.call('HMGET', KEYS[k], 't', 'ts')
    local tokens, ts = tonumber(v[1]), tonumber(v[2])
    if tokens == nil or ts == nil then tokens = cap; ts = now end
    local level = math.min(cap, tokens + math.max(0, now - ts) * rate)
    if settle ~= 0 then
      level = math.min(cap, level - settle)
      persist(k, level, cap, rate)
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
    local out = {g - 1, '0'}
    for i = 1, size do
      local k = key + i
      local a = base + 4 * (k - 1)
      local left = levels[i] - tonumber(ARGV[a + 3])
      persist(k, left, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
      out[i + 2] = tostring(left)
    end
    return out
  end
  if shortest < 0 or wait < shortest then shortest = wait end
  last = levels
  key = key + size
end
local out = {-1, tostring(shortest)}
for i = 1, #last do out[i + 2] = tostring(last[i]) end
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


class RedisStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
        )
        self._take_first = self._redis.register_script(_TAKE_FIRST)
        # The per-request call goes through the lean client when the URL allows it.
        self._fast = RespClient(url) if url.startswith("redis://") else None
        self._take_sha = hashlib.sha1(_TAKE_FIRST.encode()).hexdigest()
        self._adjust = self._redis.register_script(_ADJUST)

    async def take(self, specs: list[BucketSpec]) -> TakeResult:
        return (await self.take_first([specs]))[1]

    async def take_first(self, groups: list[list[BucketSpec]]) -> tuple[int, TakeResult]:
        args: list[float] = [len(groups), *(len(group) for group in groups)]
        keys: list[str] = []
        for group in groups:
            for spec in group:
                keys.append(spec.key)
                args.extend((spec.capacity, spec.rate, spec.cost, spec.settle))
        if self._fast is not None:
            reply = await self._evalsha(self._take_sha, _TAKE_FIRST, keys, args)
        else:
            reply = await self._take_first(keys=keys, args=args)
        index = int(reply[0])
        result = TakeResult(
            allowed=index >= 0,
            retry_after_s=float(reply[1]),
            remaining=tuple(float(x) for x in reply[2:]),
        )
        return index, result

    async def _evalsha(self, sha: str, script: str, keys: list[str], args: list[float]) -> Any:
        assert self._fast is not None
        try:
            return await self._fast.call("EVALSHA", sha, len(keys), *keys, *args)
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            await self._fast.call("SCRIPT", "LOAD", script)
            return await self._fast.call("EVALSHA", sha, len(keys), *keys, *args)

    async def adjust(self, key: str, delta: float, capacity: float, rate: float) -> None:
        await self._adjust(keys=[key], args=[delta, capacity, rate])

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """A pipeline, not MGET: the keys carry different hash tags (one per label), which a
        cluster would refuse in one MGET; on a single node it is still one round trip."""
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
            values = await pipe.execute()
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._redis.set(key, value, px=max(1, int(ttl_s * 1000)))

    async def claim(self, key: str, ttl_s: float) -> bool:
        """One SET NX PX; on the lean pipelined client when the URL allows it (hot path)."""
        ttl_ms = max(1, int(ttl_s * 1000))
        if self._fast is not None:
            reply = await self._fast.call("SET", key, b"1", "NX", "PX", ttl_ms)
        else:
            reply = await self._redis.set(key, b"1", nx=True, px=ttl_ms)
        return reply is not None  # "OK" / True when set; nil when the key already exists

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        if self._fast is not None:
            await self._fast.close()
        await self._redis.aclose()
