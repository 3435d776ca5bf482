"""The edge: verify the tenant JWT, pick a core pool, relay bytes both ways.

It parses the body only to read `model`, forwards the exact bytes it received, and streams the
core's response back as it arrives. Kept small: Lambda cold start pays for every import.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import ssl
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from edge.auth import TokenVerifier, VerifiedToken, refuse_duplicate_credentials
from edge.clientaddr import NetworkPolicy
from edge.core_tls import core_tls_context
from edge.events import EventSplitter, EventTooLarge, error_event
from edge.jwks import JwksRefresher, load_public_keys
from edge.revocation import RevocationRefresher
from edge.routing import PoolRouter
from shared import hop
from shared.config_edge import EdgeTierConfig
from shared.errors import Api, GatewayError
from shared.http import EXCEPTION_HANDLERS, error_response, header_map, read_body
from shared.names import check_model_name
from shared.traceparent import child_of

# Hop-by-hop and recomputed headers are not relayed from the core's response.
_DROP_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
)
# Client headers that carry API semantics the core needs; nothing else crosses the hop.
_FORWARD_REQUEST_HEADERS = ("anthropic-version", "anthropic-beta", "idempotency-key")


# Whether the connection of the request being sent had served a request before (set by
# _PoolConnector in the sending task's context, read right after the send fails).
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("interlock_reused", default=False)


class _PoolConnector(aiohttp.TCPConnector):
    """Tells the sender whether it got a pooled connection: only those may be stale."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handed_out: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        if protocol is not None:
            _REUSED.set(protocol in self._handed_out)
            self._handed_out.add(protocol)
        return connection


def _core_session(connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        trust_env=False,
        skip_auto_headers=("User-Agent",),
    )


def _core_unavailable() -> GatewayError:
    return GatewayError(
        502, "the gateway core is unavailable; retry shortly", code="core_unavailable"
    )


def _peek_model(body: bytes) -> str:
    """Read `model` only (checked against the shared name rule, so an over-long or odd name
    is a 400 here, never a 502 from a response header); everything else is the core's."""
    if not body:
        raise GatewayError(
            400, "the request body is empty; expected a JSON object", code="invalid_json"
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            400, f"the request body is not valid JSON ({exc.msg})", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_type")
    return check_model_name(payload)


class EdgeState:
    def __init__(self, config: EdgeTierConfig) -> None:
        self.config = config
        self.verifier = TokenVerifier(config.auth, load_public_keys(config.auth))
        self.jwks = JwksRefresher(config.auth, self.verifier.replace_keys)
        self.revocations = RevocationRefresher(config.auth, self.verifier.replace_revocations)
        self.verifier.replace_revocations(self.revocations.load())
        self.network = NetworkPolicy(config.auth.tenant_cidrs, config.edge.trusted_proxies)
        self.router = PoolRouter(config.edge)
        self.hop_key = hop.HopKey(hop.resolve_secret(config.hop.secret, config.state_dir))
        self.token_leeway_s = config.auth.leeway_s
        self.max_body = config.edge.max_body_bytes
        self.session: aiohttp.ClientSession | None = None
        self.fresh: aiohttp.ClientSession | None = None
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=5, sock_read=config.edge.core_timeout_s
        )
        self.core_tls = core_tls_context(config.edge)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Idle connections are dropped after 15 s, well below the core's keep-alive (75 s by
        # default): the edge, not the core, ends an idle connection, so none is reused mid-close.
        tls: ssl.SSLContext | bool = self.core_tls if self.core_tls is not None else True
        pool = _PoolConnector(
            limit=0, ttl_dns_cache=300, enable_cleanup_closed=True, keepalive_timeout=15, ssl=tls
        )
        self.session = _core_session(pool)
        # For the rare second attempt: never pooled, so it is always a new connection.
        self.fresh = _core_session(aiohttp.TCPConnector(limit=0, force_close=True, ssl=tls))
        await self.jwks.start()
        await self.revocations.start()
        try:
            yield
        finally:
            await self.revocations.stop()
            await self.jwks.stop()
            await self.session.close()
            await self.fresh.close()
            self.session = self.fresh = None

    def hop_headers(
        self,
        request: Request,
        incoming: dict[str, str],
        token: VerifiedToken,
        path: str,
        request_id: str,
        body: bytes,
    ) -> dict[str, str]:
        """Identity travels only inside the signed hop credential (any `sub` round-trips
        exactly), bound to this method, path, body and request id, and to the token's expiry."""
        identity = hop.HopIdentity(
            token.tenant,
            token.tier,
            token.models,
            hop.expires_at(token.expires_at, self.token_leeway_s),
        )
        credential = hop.sign(self.hop_key, identity, request.method, path, request_id, body)
        headers = {
            "content-type": "application/json",
            hop.HOP_HEADER: credential,
            hop.REQUEST_ID_HEADER: request_id,
            hop.TRACEPARENT_HEADER: child_of(incoming.get(hop.TRACEPARENT_HEADER)),
        }
        for name in _FORWARD_REQUEST_HEADERS:
            value = incoming.get(name)
            if value is not None:
                headers[name] = value
        return headers

    async def forward(
        self,
        request: Request,
        incoming: dict[str, str],
        api: Api,
        token: VerifiedToken,
        model: str | None,
        body: bytes | None,
        request_id: str,
    ) -> Response:
        path: str = request.scope["path"]
        headers = self.hop_headers(request, incoming, token, path, request_id, body or b"")
        session = self.session
        if session is None:
            raise _core_unavailable()
        urls = self.router.urls(self.router.pool_for(model, token.tenant))
        for url in urls:
            try:
                upstream = await self._send(session, request.method, url + path, body, headers)
            except aiohttp.ClientConnectorError:
                continue  # core replica down: the next one in the pool may serve
            except (aiohttp.ClientError, TimeoutError):
                raise _core_unavailable() from None
            return await _relay(upstream, api)
        raise _core_unavailable()

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> aiohttp.ClientResponse:
        """One request to the core; sent a second time, on a new connection, only when a pooled
        connection turned out to be closed before the core sent a single byte of an answer.
        That is a connection the core was already closing (it restarted, timed it out, or
        closed it after an error), so the request did not reach the app. Bounded to one more
        attempt; a new connection that fails, or any failure after a response byte, is never
        retried: there the core may have acted on the request."""
        _REUSED.set(False)
        try:
            return await session.request(
                method, url, data=body, headers=headers, timeout=self.timeout
            )
        except aiohttp.ClientConnectorError:
            raise
        except (
            aiohttp.ServerDisconnectedError,  # EOF instead of an answer
            aiohttp.ClientOSError,  # reset while sending or waiting
            aiohttp.ClientConnectionResetError,  # the transport was already closing
        ) as exc:
            partial = isinstance(exc, aiohttp.ServerDisconnectedError) and not isinstance(
                exc.message, str
            )  # a partial status line or headers had arrived
            if partial or not _REUSED.get() or self.fresh is None:
                raise
        return await self.fresh.request(
            method, url, data=body, headers=headers, timeout=self.timeout
        )


async def _relay(upstream: aiohttp.ClientResponse, api: Api) -> Response:
    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP_RESPONSE_HEADERS}
    if upstream.headers.get("content-type", "").startswith("text/event-stream"):
        return StreamingResponse(
            _stream(upstream, api), status_code=upstream.status, headers=headers
        )
    try:
        body = await upstream.read()
    except (aiohttp.ClientError, TimeoutError):
        raise _core_unavailable() from None
    finally:
        upstream.release()
    return Response(body, status_code=upstream.status, headers=headers)


async def _stream(upstream: aiohttp.ClientResponse, api: Api) -> AsyncIterator[bytes]:
    """Relays whole events only (edge.events): if the core dies mid-event, the half event is
    never sent and the client's parser sees a clean error event in its API's format, never a
    clean close."""
    splitter = EventSplitter()
    try:
        async for chunk in upstream.content.iter_any():
            events = splitter.feed(chunk)
            if events:
                yield events
        rest = splitter.rest()
        if rest:
            yield rest
    except EventTooLarge:
        yield error_event(api, "the gateway core sent an oversized event", "core_unavailable")
    except (aiohttp.ClientError, TimeoutError):
        message = "the gateway core connection was lost mid-stream"
        yield error_event(api, message, "core_unavailable")
    finally:
        upstream.close()


def create_app(config: EdgeTierConfig) -> Starlette:
    state = EdgeState(config)

    def proxy(api: Api, reads_model: bool = True):  # type: ignore[no-untyped-def]
        async def endpoint(request: Request) -> Response:
            # Minted first, so every answer (edge errors included) carries an id to quote.
            request_id = "req_" + os.urandom(12).hex()
            try:
                incoming = header_map(request)
                if len(incoming) != len(request.scope["headers"]):  # some header repeated
                    refuse_duplicate_credentials(request.scope["headers"])
                token = state.verifier.verify(TokenVerifier.credential(incoming, api), api=api)
                state.network.check(token.tenant, token.cidrs, request.scope)
                if not reads_model:
                    return await state.forward(
                        request, incoming, api, token, None, None, request_id
                    )
                body = await read_body(request, state.max_body)
                model = _peek_model(body)
                if not token.allows(model):
                    raise GatewayError(
                        403,
                        f"this token may not use the model '{model}'",
                        param="model",
                        code="model_not_allowed",
                    )
                return await state.forward(request, incoming, api, token, model, body, request_id)
            except GatewayError as error:
                return error_response(error, api, {"x-request-id": request_id})

        return endpoint

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    routes = [
        Route("/v1/chat/completions", proxy("openai"), methods=["POST"]),
        Route("/v1/embeddings", proxy("openai"), methods=["POST"]),
        Route("/v1/messages", proxy("anthropic"), methods=["POST"]),
        Route("/v1/models", proxy("openai", reads_model=False), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=state.lifespan, exception_handlers=EXCEPTION_HANDLERS)
    # No trailing-slash redirects: Starlette builds their Location from the client's Host.
    app.router.redirect_slashes = False
    app.state.edge = state
    return app
