"""Reading referenced secrets: all at start-up, then each on its own timer, and on demand.

Start-up (`resolve_now`, blocking, before the process serves) reads every reference in
parallel and fails with one ConfigError naming each reference that could not be read (never a
value). After that each secret has its own background job (shared.periodic) on the
`secrets.refresh` interval: a source is blocking (boto3), so every read runs on this
refresher's own threads, one per secret, never on the event loop, and a slow or failing
secret delays only its own next read. A failed refresh keeps the last good value.

`reread` is the on-demand read for a provider key the upstream refused (401): it joins a read
already in flight rather than starting a second one.

The thread pool's module is imported with the first pool: a process with no references (and
the edge's cold start until it reads one) never loads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from shared.configparse import ConfigError
from shared.periodic import Periodic
from shared.secret import Secret, SecretRef
from shared.secret_sources import CURRENT, PENDING, SecretError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("interlock.secrets")

DEFAULT_REFRESH_S = 300.0
_LIVE: weakref.WeakSet[SecretRefresher] = weakref.WeakSet()


def references(secrets: Iterable[Secret | None]) -> list[SecretRef]:
    """The references among `secrets`, each object once, in order."""
    seen: dict[int, SecretRef] = {}
    for secret in secrets:
        if isinstance(secret, SecretRef):
            seen.setdefault(id(secret), secret)
    return list(seen.values())


def _read(ref: SecretRef) -> tuple[str, str | None]:
    """(current, pending) from the source; blocking."""
    current = ref.source.read(ref.reference, CURRENT)
    if current is None:
        raise SecretError(f"{ref.reference}: the secret has no current value")
    pending = ref.source.read(ref.reference, PENDING) if ref.wants_pending else None
    return current, pending


class SecretRefresher:
    def __init__(self, refs: Iterable[SecretRef], refresh_s: float = DEFAULT_REFRESH_S) -> None:
        self.refs = list(refs)
        self.refresh_s = refresh_s
        # A replaced value stays accepted by verifiers until every peer has had a refresh.
        self.grace_s = 2 * refresh_s
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: list[Periodic] = []
        self._inflight: dict[int, asyncio.Future[bool]] = {}
        self._watchers: dict[int, Callable[[str], object]] = {}
        for ref in self.refs:
            ref.attach(self._reader(ref))

    def watch(self, ref: SecretRef, apply: Callable[[str], object]) -> None:
        """Call `apply(new value)` after each refresh that changed `ref` (a public JWKS the
        edge parses into keys); what it raises fails that refresh, logged and counted."""
        self._watchers[id(ref)] = apply

    def _reader(self, ref: SecretRef) -> Callable[[], Awaitable[bool]]:
        async def read() -> bool:
            return await self.reread(ref)

        return read

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:  # one thread per secret (+1 for start-up): none waits on another
            from concurrent.futures import ThreadPoolExecutor

            workers = min(len(self.refs) + 1, 64)
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="interlock-secrets")
        return self._pool

    def resolve_now(self) -> None:
        """Read every reference not read yet, in parallel; blocking (start-up only)."""
        todo = [ref for ref in self.refs if not ref.resolved]
        if not todo:
            return
        futures = [(ref, self._executor().submit(_read, ref)) for ref in todo]
        problems = []
        for ref, future in futures:
            try:
                current, pending = future.result()
            except SecretError as exc:
                problems.append(f"{ref.setting}: {exc}")
                continue
            ref.update(current, pending, self.grace_s)
        if problems:
            raise ConfigError("; ".join(problems))

    def start(self) -> None:
        """One background job per secret; a refresh interval of 0 turns refreshing off."""
        _LIVE.add(self)
        if self.refresh_s <= 0 or self._jobs:
            return
        for ref in self.refs:
            name = f"secret:{ref.setting}"
            job = Periodic(name, self.refresh_s, self._reader(ref))
            job.start()
            self._jobs.append(job)

    async def stop(self) -> None:
        _LIVE.discard(self)
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            await job.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def reread(self, ref: SecretRef) -> bool:
        """Read `ref` now (or join the read in flight); True when its value changed.
        Raises SecretError when the read fails (the background job counts it)."""
        inflight = self._inflight.get(id(ref))
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[id(ref)] = future
        try:
            loop = asyncio.get_running_loop()
            current, pending = await loop.run_in_executor(self._executor(), _read, ref)
            changed = ref.update(current, pending, self.grace_s)
            if changed:
                log.info("secret %s changed (%s)", ref.setting, ref.reference)
                if id(ref) in self._watchers:
                    self._watchers[id(ref)](ref.reveal())
            future.set_result(changed)
            return changed
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a joiner may not exist
            raise
        finally:
            del self._inflight[id(ref)]

    def ages(self) -> list[tuple[str, str, float, float]]:
        """(setting, reference, seconds since the last good read, seconds since the value
        changed) of each secret: both grow while its refresh fails."""
        now = time.monotonic()
        return [
            (r.setting, r.reference, now - r.refreshed_at, now - r.changed_at) for r in self.refs
        ]


def live_ages() -> list[tuple[str, str, float, float]]:
    """Every running refresher's `ages`, for /metrics."""
    return sorted(age for refresher in list(_LIVE) for age in refresher.ages())
