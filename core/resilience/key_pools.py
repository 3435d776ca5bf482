"""Key pools: several API keys per provider, rotated, cooled down, and rate limited per key.

A key that answers 429 rests for its Retry-After; one that answers 401/403 or reports an
exhausted quota rests much longer (it will not recover in seconds). With per-key limits set,
choosing a key is one atomic store call over the pool in rotation order (take_first), and a
request may wait, up to a bound and its deadline, for capacity instead of an immediate 429.

Prompt-cache affinity (core.cache.affinity): a request whose cached prefix a key of the pool
holds (another key is another account, so a cold cache) gets that key instead of the
round-robin turn while it is awake; with per-key limits it is first in the rotation, so a key
at its limit still hands the request on to the next one.

A key may be a reference (shared.secret.SecretRef, `aws-sm://...`): the pool holds the same
object for the process's life and every send reveals its current value, so a rotated key is
used from the moment it is read. Its id (store keys, metrics, the ledger, affinity) is derived
from the reference, so it survives a rotation, and a key resting after a refusal wakes as soon
as its value changes. On a 401 `reread` reads it again at once: a changed key is worth one
more try.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from dataclasses import dataclass

from core.limits.tenant import Reservation, Settlements
from core.observe.events import RATE_LIMITED
from core.providers.adapters.base import ProviderError
from core.state.buckets import BucketSpec
from core.state.store import Store
from shared.config import ProviderConfig
from shared.errors import FailureClass
from shared.secret import Secret, SecretRef

AUTH_COOLDOWN_S = 300.0
QUOTA_COOLDOWN_S = 600.0
RATE_LIMIT_COOLDOWN_S = 5.0  # when the upstream gave no Retry-After


def key_id(key: Secret) -> str:
    """A stable, non-reversible name for a key in store keys and logs (a referenced key's
    from its reference: the same across rotations)."""
    return hashlib.blake2b(key.id_material().encode(), digest_size=6).hexdigest()


@dataclass(slots=True)
class KeyLease(Reservation):
    """The key chosen for one attempt, with its token reservation against the key's TPM."""

    key: Secret | None = None
    version: int = 0  # the key's value (version) this attempt sends

    def __post_init__(self) -> None:
        self.version = self.key.version if self.key is not None else 0


class KeyPool:
    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider
        self.keys = provider.api_keys
        self._ids = {key: key_id(key) for key in self.keys}
        # Until when a key rests, and the value (version) that earned it the rest.
        self._resting: dict[Secret, tuple[float, int]] = {}
        self._turn = itertools.count()

    def _until(self, key: Secret) -> float:
        until, version = self._resting.get(key, (0.0, 0))
        return until if version == key.version else 0.0  # a rotated key starts afresh

    def rotation(self, now: float, prefer: str | None = None) -> list[Secret]:
        """Keys in round-robin order, resting ones left out (all of them if all rest); the
        awake key whose id is `prefer` (it holds the request's cached prefix) first."""
        if len(self.keys) <= 1:
            return list(self.keys)
        start = next(self._turn) % len(self.keys)
        ordered = self.keys[start:] + self.keys[:start]
        awake = [k for k in ordered if self._until(k) <= now]
        if not awake:
            return sorted(ordered, key=self._until)
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
        self._resting[key] = (now + seconds, key.version)

    def has_awake_other(self, key: Secret | None, now: float) -> bool:
        return any(k != key and self._until(k) <= now for k in self.keys)

    async def reread(self, lease: KeyLease) -> bool:
        """After a 401: read the lease's key again now if it is a reference; True when its
        value is no longer the one the attempt sent (the caller tries once more). A literal,
        or a read that fails, is False."""
        key = lease.key
        if not isinstance(key, SecretRef):
            return False
        if key.version != lease.version:
            return True  # a background refresh got there first
        try:
            return await key.reread()
        except Exception:  # the refresher's own job logs and counts its failures
            return False

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
                RATE_LIMITED.add(("provider_keys",))
                raise ProviderError(
                    429,
                    f"every key of provider '{provider}' is at its rate limit",
                    FailureClass.RATE_LIMIT,
                    code="rate_limit_exceeded",
                    retry_after_s=wait,
                )
            await asyncio.sleep(wait)
