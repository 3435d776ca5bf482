"""Key pools: several API keys per provider, rotated, cooled down, and rate limited per key.

A key that answers 429 rests for its Retry-After; one that answers 401/403 or reports an
exhausted quota rests much longer (it will not recover in seconds). With per-key limits set,
choosing a key is one atomic store call over the pool in rotation order (take_first), and a
request may wait, up to a bound and its deadline, for capacity instead of an immediate 429.

Prompt-cache affinity (core.cache.affinity): a request whose cached prefix a key of the pool
holds (another key is another account, so a cold cache) gets that key instead of the
round-robin turn while it is awake; with per-key limits it is first in the rotation, so a key
at its limit still hands the request on to the next one.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from dataclasses import dataclass

from core.limits.tenant import Reservation, Settlements
from core.providers.adapters.base import ProviderError
from core.state.buckets import BucketSpec
from core.state.store import Store
from shared.config import ProviderConfig
from shared.errors import FailureClass
from shared.secret import Secret

AUTH_COOLDOWN_S = 300.0
QUOTA_COOLDOWN_S = 600.0
RATE_LIMIT_COOLDOWN_S = 5.0  # when the upstream gave no Retry-After


def key_id(key: Secret) -> str:
    """A stable, non-reversible name for a key in store keys and logs."""
    return hashlib.blake2b(key.reveal().encode(), digest_size=6).hexdigest()


@dataclass(slots=True)
class KeyLease(Reservation):
    """The key chosen for one attempt, with its token reservation against the key's TPM."""

    key: Secret | None = None


class KeyPool:
    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider
        self.keys = provider.api_keys
        self._ids = {key: key_id(key) for key in self.keys}
        self._resting: dict[Secret, float] = {}
        self._turn = itertools.count()

    def rotation(self, now: float, prefer: str | None = None) -> list[Secret]:
        """Keys in round-robin order, resting ones left out (all of them if all rest); the
        awake key whose id is `prefer` (it holds the request's cached prefix) first."""
        if len(self.keys) <= 1:
            return list(self.keys)
        start = next(self._turn) % len(self.keys)
        ordered = self.keys[start:] + self.keys[:start]
        awake = [k for k in ordered if self._resting.get(k, 0.0) <= now]
        if not awake:
            return sorted(ordered, key=lambda k: self._resting.get(k, 0.0))
        if prefer is not None and self._ids[awake[0]] != prefer:
            held = next((k for k in awake if self._ids[k] == prefer), None)
            if held is not None:
                awake.remove(held)
                awake.insert(0, held)
        return awake

    def rest(self, key: Secret | None, error: ProviderError, now: float) -> None:
        if key is None or len(self.keys) <= 1:
            return
        if error.failure_class is FailureClass.AUTH:
            seconds = AUTH_COOLDOWN_S
        elif error.failure_class is FailureClass.QUOTA_EXHAUSTED:
            seconds = QUOTA_COOLDOWN_S
        else:
            seconds = error.retry_after_s or RATE_LIMIT_COOLDOWN_S
        self._resting[key] = now + seconds

    def has_awake_other(self, key: Secret | None, now: float) -> bool:
        return any(k != key and self._resting.get(k, 0.0) <= now for k in self.keys)

    def specs(self, key: Secret, tokens: int, settlements: Settlements) -> list[BucketSpec]:
        # One hash tag per provider: every key of the pool is in one slot, so one Lua call.
        prefix = f"il:{{k:{self.provider.name}}}:{self._ids[key]}"
        specs = []
        if self.provider.key_rpm:
            rpm = self.provider.key_rpm
            specs.append(BucketSpec(f"{prefix}:rpm", rpm, rpm / 60, 1))
        if self.provider.key_tpm:
            tpm = self.provider.key_tpm
            tokens_key = f"{prefix}:tpm"
            specs.append(
                BucketSpec(tokens_key, tpm, tpm / 60, tokens, settlements.pop(tokens_key, tpm))
            )
        return specs


class KeyPools:
    def __init__(
        self, providers: dict[str, ProviderConfig], store: Store, settlements: Settlements
    ) -> None:
        self._pools = {name: KeyPool(p) for name, p in providers.items()}
        self._store = store
        self._settlements = settlements

    def pool(self, provider: str) -> KeyPool:
        return self._pools[provider]

    async def acquire(
        self, provider: str, tokens: int, wait_until: float, prefer: str | None = None
    ) -> KeyLease:
        """A key for one attempt; raises a RATE_LIMIT ProviderError when no key has capacity
        by `wait_until` (monotonic), so the caller can fail over. `prefer`: the id of the key
        holding the request's cached prefix (core.cache.affinity), tried first if awake."""
        pool = self._pools[provider]
        if not pool.keys:
            return KeyLease()
        if not (pool.provider.key_rpm or pool.provider.key_tpm):
            return KeyLease(key=pool.rotation(time.monotonic(), prefer)[0])
        while True:
            keys = pool.rotation(time.monotonic(), prefer)
            groups = [pool.specs(key, tokens, self._settlements) for key in keys]
            index, result = await self._store.take_first(groups)
            if index >= 0:
                # Groups after the admitted one were never visited: re-queue their settlements.
                for group in groups[index + 1 :]:
                    for spec in group:
                        if spec.settle:
                            self._settlements.defer(spec.key, spec.settle, int(spec.capacity))
                key = keys[index]
                tpm = pool.provider.key_tpm
                tokens_key = groups[index][-1].key if tpm else None
                return KeyLease(self._settlements, tokens_key, tpm, tokens if tpm else 0, key=key)
            wait = result.retry_after_s
            if time.monotonic() + wait > wait_until:
                raise ProviderError(
                    429,
                    f"every key of provider '{provider}' is at its rate limit",
                    FailureClass.RATE_LIMIT,
                    code="rate_limit_exceeded",
                    retry_after_s=wait,
                )
            await asyncio.sleep(wait)
