"""Idempotency-Key (the IETF httpapi draft's semantics), around an API's whole pipeline.

A request carrying the header is run once per (tenant, key): its result (status, headers and
body, a stream's bytes as sent) is kept `idempotency.ttl` (24 h) and answers every retry with
the same key, which then reserves no budget and writes no ledger record (README: Response
cache). A retry that arrives while the first is in flight joins it: the first holds a claim
(SET NX in the state store, so replicas sharing Redis see it) and the retry polls for the
result until the request's deadline (then a 409). The same key with another body is a 422 (an
upload's body is what it says, its fields and each file's sha256, not its bytes: an SDK's
retry draws a new multipart boundary); a key longer than 255 characters or outside printable
ASCII is a 400; both name the header.

Only results that settle the request are kept: a 5xx, a 429 or a 499 (nothing was done, the
gateway could not do it, or the client left and the work was cancelled) releases the claim
so a retry runs again, as does an error raised before any answer (a validation 400 is
deterministic and cheap to repeat). A stream is kept
only if it was sent whole.

What it did is counted for /metrics (`IdempotencyCounts`, one per core, shared by the APIs):
`executed` (ran under its claim), `replayed` (answered by a kept result at once), `joined`
(found the key in flight, waited, then got the first's result), `conflict` (the 422) and
`in_flight_timeout` (the 409). A fixed set of labels: bounded by the code.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from prometheus_client.core import Metric
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.api.audio.upload import SCOPE_KEY as UPLOAD_KEY
from core.api.audio.upload import Upload
from core.api.identity import Caller
from core.observe.families import by, counters
from core.state.store import Store
from shared.config_cache import IdempotencyConfig
from shared.errors import GatewayError

Handler = Callable[[Request, Caller, bytes], Awaitable[Response]]
HEADER = "Idempotency-Key"
REPLAYED = "x-interlock-idempotent-replay"
MAX_KEY_CHARS = 255
_POLL_S = 0.05
# Answers that settle nothing besides 5xx: 429 (not run) and 499 (the client left, so the work
# was cancelled: the SDK's retry after its own timeout must run it, never replay the 499).
_UNSETTLED = frozenset((429, 499))
_UNKEPT = frozenset(("content-length", "date", "server", "x-request-id", "request-id"))


def _bad_key() -> GatewayError:
    return GatewayError(
        400,
        f"the {HEADER} header must be 1 to {MAX_KEY_CHARS} printable ASCII characters",
        param=HEADER,
        code="invalid_idempotency_key",
    )


def _checked(key: str) -> str:
    if not 0 < len(key) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in key):
        raise _bad_key()
    return key


class IdempotencyCounts:
    """The counters behind `interlock_idempotency_total{outcome}` (see the module docstring),
    in the style of the response cache's `metric_families()`."""

    __slots__ = ("outcomes",)

    def __init__(self) -> None:
        self.outcomes = {
            "executed": 0,
            "replayed": 0,
            "joined": 0,
            "conflict": 0,
            "in_flight_timeout": 0,
        }

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    def metric_families(self) -> list[Metric]:
        """Requests carrying an Idempotency-Key, by what became of them."""
        return [
            counters(
                "interlock_idempotency_total",
                "Requests with an Idempotency-Key, by outcome.",
                ("outcome",),
                by(self.outcomes),
            )
        ]


def _content(http: Request, body: bytes) -> bytes:
    """What a retry must repeat: a JSON body's bytes; an upload's canonical content (its
    fields and each file's sha256, core.api.audio.upload), since an SDK's retry draws a new
    multipart boundary and would otherwise look like another body (a 422)."""
    upload = http.scope.get(UPLOAD_KEY)
    return upload.canonical if isinstance(upload, Upload) else body


def _digest(data: bytes, size: int = 20) -> str:
    return hashlib.blake2b(data, digest_size=size).hexdigest()


class Idempotent:
    """One API's handler (a core.pipeline.Pipeline) with Idempotency-Key semantics."""

    def __init__(
        self,
        handler: Handler,
        store: Store,
        config: IdempotencyConfig,
        deadline_s: float,
        counts: IdempotencyCounts | None = None,
    ) -> None:
        self._handler = handler
        self._store = store
        self._config = config
        self._deadline_s = deadline_s
        self.counts = counts or IdempotencyCounts()

    @property
    def defers_claim(self) -> bool:
        """As its handler's (core.api.nonce_claim); settled here before a key is used."""
        return bool(getattr(self._handler, "defers_claim", False))

    async def __call__(self, http: Request, caller: Caller, body: bytes) -> Response:
        raw = http.headers.get("idempotency-key")
        if raw is None or not self._config.enabled:
            return await self._handler(http, caller, body)
        key = _checked(raw)
        await caller.settled()  # a replayed hop credential neither reads nor holds the key
        tag = _digest(caller.tenant.encode(), 8)  # the hash tag: a tenant's keys share a slot
        base = f"ilk:{{{tag}}}:{_digest(key.encode())}"
        fingerprint = _digest(http.url.path.encode() + b"\n" + _content(http, body))
        claim, result = base + ":c", base + ":r"
        deadline = time.monotonic() + self._deadline_s
        waited = False
        while True:
            stored = await self._store.get(result)
            if stored is not None:
                return self._replay(stored, fingerprint, caller.request_id, waited)
            if await self._store.claim(claim, self._config.in_flight_ttl_s):
                break
            waited = True
            if time.monotonic() >= deadline:
                self.counts.count("in_flight_timeout")
                raise GatewayError(
                    409,
                    f"a request with this {HEADER} is still in flight; retry later",
                    param=HEADER,
                    code="idempotency_key_in_flight",
                )
            await asyncio.sleep(_POLL_S)
        self.counts.count("executed")
        return await self._first(http, caller, body, (claim, result, fingerprint))

    def _replay(self, stored: bytes, fingerprint: str, request_id: str, waited: bool) -> Response:
        try:
            response = _stored_response(stored, fingerprint, request_id)
        except GatewayError:
            self.counts.count("conflict")
            raise
        self.counts.count("joined" if waited else "replayed")
        return response

    async def _first(
        self, http: Request, caller: Caller, body: bytes, keys: tuple[str, str, str]
    ) -> Response:
        """The request itself, under the claim; its result kept for the retries."""
        claim, result, fingerprint = keys
        try:
            response = await self._handler(http, caller, body)
        except BaseException:
            await self._release(claim)
            raise
        if response.status_code >= 500 or response.status_code in _UNSETTLED:
            await self._release(claim)
            return response
        meta = {
            "fp": fingerprint,
            "status": response.status_code,
            "media": response.media_type,
            "headers": {k: v for k, v in response.headers.items() if k not in _UNKEPT},
        }
        if isinstance(response, StreamingResponse):
            response.body_iterator = self._tee(response.body_iterator, meta, claim, result)
            return response
        await self._keep(result, meta, bytes(response.body), claim)
        return response

    async def _tee(
        self, body: AsyncIterable[Any], meta: dict[str, Any], claim: str, result: str
    ) -> AsyncIterator[Any]:
        kept: bytearray | None = bytearray()
        complete = False
        try:
            async for part in body:
                if kept is not None:
                    kept += part if isinstance(part, bytes) else str(part).encode()
                    if len(kept) > self._config.max_bytes:
                        kept = None
                yield part
            complete = True
        finally:
            if not complete or kept is None:
                await asyncio.shield(self._release(claim))
        if kept is not None:
            await self._keep(result, {**meta, "stream": True}, bytes(kept), claim)

    async def _keep(self, result: str, meta: dict[str, Any], body: bytes, claim: str) -> None:
        if len(body) > self._config.max_bytes:
            await self._release(claim)
            return
        await self._store.set(result, orjson.dumps(meta) + b"\n" + body, self._config.ttl_s)

    async def _release(self, claim: str) -> None:
        await self._store.release(claim)


def _stored_response(stored: bytes, fingerprint: str, request_id: str) -> Response:
    header, _, body = stored.partition(b"\n")
    meta = orjson.loads(header)
    if meta.get("fp") != fingerprint:
        raise GatewayError(
            422,
            f"this {HEADER} was used for a different request body",
            param=HEADER,
            code="idempotency_key_reused",
        )
    headers = {**meta["headers"], REPLAYED: "true", "x-request-id": request_id}
    if meta.get("stream"):
        return StreamingResponse(_once(body), meta["status"], headers, meta.get("media"))
    return Response(body, meta["status"], headers, meta.get("media"))


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body
