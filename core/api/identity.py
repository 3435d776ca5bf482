"""Who is calling: the tenant identity the edge vouched for with its hop credential.

Verification reads a JSON body (capped) exactly once, because the credential is bound to the
body's digest; the handler gets those bytes. An upload comes in the hop's streamed mode instead
(shared/hop.py): its credential yields the chain key its frames are verified with as they are
read (core.api.audio.upload), never the body whole. Every failure, however malformed the
input, is the same 401 envelope, and a credential is accepted at most once (its nonce is
claimed in the state store with one SET NX PX; a pipeline route settles that claim only before
it acts: core.api.nonce_claim).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from core.api.nonce_claim import NonceClaim
from core.api.tags import HEADER as TAGS_HEADER
from core.api.tags import with_header
from core.ledger.record import Tags
from core.state.resilient import ResilientStore
from core.state.store import MemoryStore, Store
from shared import hop
from shared.errors import GatewayError
from shared.http import header_map, read_body
from shared.patterns import compile_patterns
from shared.secret import Secret
from shared.traceparent import received, trace_id_of

log = logging.getLogger("interlock.core")

NONCE_KEY_PREFIX = "il:hop:"
_MAX_MATCHERS = 4096


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    tier: str
    request_id: str
    allows: Callable[[str], bool]
    # Billing tags (sorted key=value pairs, validated and bounded) the ledger records: one
    # tenant key billed per project, department or end customer.
    tags: Tags = ()
    admin: bool = False  # an operator token: the usage API's every-tenant view
    # The W3C traceparent the request came with from the edge (normalised; a new trace's when
    # none or an invalid one came): its trace id goes on every log line and the ledger record.
    traceparent: str | None = None
    # The hop nonce's claim, when the route settles it later (core.api.nonce_claim).
    claim: NonceClaim | None = field(default=None, repr=False, compare=False)

    @property
    def trace_id(self) -> str | None:
        return trace_id_of(self.traceparent) if self.traceparent else None

    async def settled(self) -> None:
        """The hop nonce is this request's (raises its 401 when it was not); at once when it
        was claimed before the route ran."""
        if self.claim is not None:
            await self.claim.settled()


NONCES_HEADER = hop.NONCES_HEADER.encode()  # on every answer past authentication (core.app)
_SHARED = hop.NONCES_SHARED.encode()
_LOCAL = hop.NONCES_LOCAL.encode()


def _unauthorized() -> GatewayError:
    return GatewayError(
        401,
        "missing or invalid hop credential: call the gateway through its edge",
        code="invalid_hop_credential",
    )


def signed_path(request: Request) -> str:
    """What the hop credential is bound to: the path and, when there is one, the raw query
    string (the usage API's parameters), so no parameter can be changed in transit."""
    query: bytes = request.scope.get("query_string", b"")
    path: str = request.scope["path"]
    return f"{path}?{query.decode('latin-1')}" if query else path


def claims_request_id(headers: dict[str, str]) -> str:
    """The request id, checked valid by `HopVerifier._checked` before anything else."""
    return headers[hop.REQUEST_ID_HEADER]


def unauthorized() -> GatewayError:
    return _unauthorized()


def _deny_all(name: str) -> bool:
    return False


class HopVerifier:
    def __init__(self, secret: bytes | Secret, max_skew_s: int, store: Store) -> None:
        self._key = hop.HopKey(secret)
        self._max_skew_s = max_skew_s
        self._store = store
        # A claim in this process's memory is made in its task's first step, with no reply to
        # wait for: nothing to send early (core.api.nonce_claim).
        self._remote = not isinstance(store, MemoryStore)
        self._matchers: dict[str, Callable[[str], bool]] = {}

    async def authenticate(
        self, request: Request, max_body: int, defer: bool = False
    ) -> tuple[Caller, bytes]:
        """The caller and the request's body, or a 401: MAC and freshness first (no body is
        read for a forged credential), then the body against its digest, then the nonce:
        claimed here, or with `defer` started here and settled by the route before it acts
        (`Caller.claim`)."""
        headers, claims, ttl = self._checked(request)
        if claims.streamed:
            raise _unauthorized()  # a JSON route takes whole bodies only
        try:
            body = await read_body(request, max_body)
        except GatewayError as error:
            error.headers = {**error.headers, hop.REQUEST_ID_HEADER: claims_request_id(headers)}
            raise
        if hop.body_digest(body) != claims.body_digest:
            raise _unauthorized()
        if defer:
            claim = await NonceClaim.start(self._claim(claims, ttl, headers), self._remote)
            return self._caller(claims, headers, claim), body
        await self._claim(claims, ttl, headers)
        return self._caller(claims, headers), body

    async def authenticate_streamed(self, request: Request) -> tuple[Caller, bytes]:
        """The caller of an upload and its body's chain key, or a 401. The nonce is claimed
        before any body byte is read, so a replayed credential is refused at once; each frame
        is then verified as it is read (core.api.audio.upload)."""
        headers, claims, ttl = self._checked(request)
        if claims.stream_seed is None:
            raise _unauthorized()  # an upload route takes streamed bodies only
        await self._claim(claims, ttl, headers)
        return self._caller(claims, headers), claims.stream_seed

    def _checked(self, request: Request) -> tuple[dict[str, str], hop.HopClaims, float]:
        headers = header_map(request)
        request_id = headers.get(hop.REQUEST_ID_HEADER)
        if request_id is None or not hop.valid_request_id(request_id):
            raise _unauthorized()
        claims = hop.authenticate(
            self._key, headers.get(hop.HOP_HEADER), request.method, signed_path(request), request_id
        )
        if claims is None:
            raise _unauthorized()
        ttl = hop.remember_for(claims, time.time(), self._max_skew_s)
        if ttl <= 0:
            raise _unauthorized()
        return headers, claims, ttl

    async def _claim(self, claims: hop.HopClaims, ttl: float, headers: dict[str, str]) -> None:
        if not await self._store.claim(NONCE_KEY_PREFIX + claims.nonce, ttl):
            # A captured credential, or the edge's later attempt at a request that a replica
            # it gave up on took after all (edge/corecall.py): the edge tells them apart.
            log.warning(
                "refused a replayed hop credential (request id %s)", claims_request_id(headers)
            )
            refused = _unauthorized()
            refused.headers[hop.REFUSED_HEADER] = hop.REFUSED_REPLAYED
            raise refused

    @property
    def nonces(self) -> bytes:
        """Whether this core's nonce claims are seen by every replica now (hop.NONCES_HEADER):
        Redis, unless it is down and the fail-open fallback claims in this process alone."""
        store = self._store
        if isinstance(store, ResilientStore) and (store.healthy or not store.fail_open):
            return _SHARED
        return _LOCAL

    def _caller(
        self, claims: hop.HopClaims, headers: dict[str, str], claim: NonceClaim | None = None
    ) -> Caller:
        identity = claims.identity
        return Caller(
            tenant=identity.tenant,
            tier=identity.tier,
            request_id=claims_request_id(headers),
            allows=self._matcher(identity.models),
            tags=with_header(identity.tags, headers.get(TAGS_HEADER)),
            admin=identity.admin,
            traceparent=received(headers.get(hop.TRACEPARENT_HEADER)),
            claim=claim,
        )

    def _matcher(self, models: str) -> Callable[[str], bool]:
        matcher = self._matchers.get(models)
        if matcher is None:
            # The edge always sends the token's list ("*" when unrestricted); empty means none.
            matcher = compile_patterns(models.split(",")) if models else _deny_all
            if len(self._matchers) >= _MAX_MATCHERS:
                self._matchers.clear()
            self._matchers[models] = matcher
        return matcher
