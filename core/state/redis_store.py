"""Redis-backed Store: token buckets in one Lua call, timed by the Redis server's clock.

Using Redis's TIME (not each replica's clock) keeps buckets consistent across core replicas.
Keys carry hash tags chosen by the caller so a multi-bucket take lands in one cluster slot.
"""

from __future__ import annotations

import redis.asyncio as redis

from core.state.buckets import BucketSpec, TakeResult

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local wait = 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[4 * i - 3])
  local rate = tonumber(ARGV[4 * i - 2])
  local cost = tonumber(ARGV[4 * i - 1])
  local settle = tonumber(ARGV[4 * i])
  local v = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tokens = tonumber(v[1])
  local ts = tonumber(v[2])
  if tokens == nil or ts == nil then tokens = cap; ts = now end
  local level = math.min(cap, tokens + math.max(0, now - ts) * rate)
  if settle ~= 0 then
    level = math.min(cap, level - settle)
    redis.call('HSET', KEYS[i], 't', tostring(level), 'ts', tostring(now))
    local ttl = 60000
    if rate > 0 then ttl = math.ceil(((cap - level) / rate + 1) * 1000) end
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  levels[i] = level
  local needed = math.min(cost, cap)
  if level < needed then
    local w = 1e9
    if rate > 0 then w = (needed - level) / rate end
    if w > wait then wait = w end
  end
end
local out = {}
if wait > 0 then
  out[1] = 0
  out[2] = tostring(wait)
  for i = 1, #KEYS do out[i + 2] = tostring(levels[i]) end
  return out
end
out[1] = 1
out[2] = '0'
for i = 1, #KEYS do
  local cap = tonumber(ARGV[4 * i - 3])
  local rate = tonumber(ARGV[4 * i - 2])
  local left = levels[i] - tonumber(ARGV[4 * i - 1])
  redis.call('HSET', KEYS[i], 't', tostring(left), 'ts', tostring(now))
  local ttl = 60000
  if rate > 0 then ttl = math.ceil(((cap - left) / rate + 1) * 1000) end
  redis.call('PEXPIRE', KEYS[i], ttl)
  out[i + 2] = tostring(left)
end
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
        self._take = self._redis.register_script(_TAKE)
        self._adjust = self._redis.register_script(_ADJUST)

    async def take(self, specs: list[BucketSpec]) -> TakeResult:
        args: list[float] = []
        for spec in specs:
            args.extend((spec.capacity, spec.rate, spec.cost, spec.settle))
        reply = await self._take(keys=[s.key for s in specs], args=args)
        return TakeResult(
            allowed=int(reply[0]) == 1,
            retry_after_s=float(reply[1]),
            remaining=tuple(float(x) for x in reply[2:]),
        )

    async def adjust(self, key: str, delta: float, capacity: float, rate: float) -> None:
        await self._adjust(keys=[key], args=[delta, capacity, rate])

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._redis.set(key, value, px=max(1, int(ttl_s * 1000)))

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
