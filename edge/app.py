"""The edge: verify the tenant JWT, pick a core pool, relay bytes both ways.

It parses the body only to read `model`, forwards the exact bytes it received, and streams the
core's response back as it arrives. A multipart upload is never held whole: the edge reads
only up to its `model` field and relays the rest as it arrives (edge/upload.py). Kept
small: Lambda cold start pays for every import.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from edge.auth import TokenVerifier, VerifiedToken, refuse_duplicate_credentials
from edge.clientaddr import NetworkPolicy
from edge.core_tls import core_tls_context
from edge.corecall import CoreCaller, Sent, Unsent
from edge.dashboard import relay_static
from edge.jwks import JwksRefresher, load_public_keys
from edge.relay import core_unavailable as _core_unavailable
from edge.relay import relay, timed
from edge.replicas import ReplicaHealth
from edge.request_ids import new_request_id
from edge.revocation import RevocationRefresher
from edge.routing import PoolRouter
from edge.secrets import EdgeSecrets
from edge.upload import UploadSource
from shared import hop, multipart
from shared.client_watch import watched
from shared.config_edge import EdgeTierConfig
from shared.errors import Api, GatewayError
from shared.h1 import Client
from shared.h1 import Response as CoreResponse
from shared.http import EXCEPTION_HANDLERS, error_response, header_map, read_body
from shared.names import check_model_name
from shared.server_fast import FastApp
from shared.traceparent import forwarded

# Client headers that carry API semantics the core needs; nothing else crosses the hop but
# the headers the operator lets routing rules read (routing.headers).
_FORWARD_REQUEST_HEADERS = (
    "anthropic-version",
    "anthropic-beta",
    "idempotency-key",
    "cache-control",  # the response cache's per-request directives (core.cache)
    "x-interlock-tags",  # billing tags: the core validates them and the ledger records them
    "x-interlock-prompt-cache",  # the request's prompt-cache mode (core.pipeline.prompt_cache)
    "accept",  # GET /v1/usage answers CSV for Accept: text/csv
)


def _core_timeout() -> GatewayError:
    return GatewayError(504, "the gateway core did not answer in time", code="core_timeout")


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
        edge_secrets = EdgeSecrets(config)  # the hop secret and JWKS, maybe referenced
        self.secrets = edge_secrets
        self.verifier = TokenVerifier(edge_secrets.auth, load_public_keys(edge_secrets.auth))
        edge_secrets.follow_jwks(self.verifier.replace_keys)
        self.jwks = JwksRefresher(edge_secrets.auth, self.verifier.replace_keys)
        self.revocations = RevocationRefresher(config.auth, self.verifier.replace_revocations)
        self.verifier.replace_revocations(self.revocations.load())
        self.network = NetworkPolicy(config.auth.tenant_cidrs, config.edge.trusted_proxies)
        self.router = PoolRouter(config.edge)
        self.hop_key = hop.HopKey(edge_secrets.hop_secret)
        self.token_leeway_s = config.auth.leeway_s
        self.max_body = config.edge.max_body_bytes
        self.max_upload = config.edge.max_upload_bytes
        self.client: Client | None = None  # the pooled connections to the cores
        edge = config.edge
        self.caller = CoreCaller(
            edge.core_connect_timeout_s,
            edge.core_ack_timeout_s,
            edge.core_response_timeout_s,
            edge.core_timeout_s,
            {url for urls in edge.pools.values() for url in urls},
            config.hop.max_skew_s,
        )
        self.replicas = ReplicaHealth(
            {url for urls in edge.pools.values() for url in urls},
            edge.replica_eject_after,
            edge.replica_eject_base_s,
            edge.replica_eject_max_s,
            # A probe has this long to report before another request may probe instead.
            probe_window_s=edge.core_connect_timeout_s + edge.core_ack_timeout_s,
        )
        self.max_response = edge.max_response_bytes
        self.core_tls = core_tls_context(config.edge)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Idle connections are dropped after 15 s, well below the core's keep-alive (75 s by
        # default): the edge, not the core, ends an idle connection, so none is reused mid-close.
        # A later attempt asks for a fresh connection (never pooled: always a new one).
        self.client = Client(self.core_tls, idle_s=15.0)
        await self.jwks.start()
        await self.revocations.start()
        self.secrets.refresher.start()
        try:
            yield
        finally:
            await self.secrets.refresher.stop()
            await self.revocations.stop()
            await self.jwks.stop()
            self.client.close()
            self.client = None

    def hop_headers(
        self,
        request: Request,
        incoming: dict[str, str],
        token: VerifiedToken,
        path: str,
        request_id: str,
        body: bytes | None,
    ) -> tuple[dict[str, str], bytes | None]:
        """Identity travels only inside the signed hop credential (any `sub` round-trips
        exactly), bound to this method, path, body and request id, and to the token's expiry.
        An upload (`body` None) is signed in the streamed mode: the chain key its frames are
        tagged with comes back too (shared/hop.py)."""
        identity = hop.HopIdentity(
            token.tenant,
            token.tier,
            token.models,
            hop.expires_at(token.expires_at, self.token_leeway_s),
            token.admin,
            token.tags,
        )
        method, seed = request.method, None
        if body is None:
            credential, seed = hop.sign_streamed(self.hop_key, identity, method, path, request_id)
        else:
            credential = hop.sign(self.hop_key, identity, method, path, request_id, body)
        headers = {
            "content-type": multipart.relayed_type(incoming.get("content-type")),
            hop.HOP_HEADER: credential,
            hop.REQUEST_ID_HEADER: request_id,
        }
        # The client's trace context, as it came: the edge records no span of its own, so it
        # must not name one as the core's parent (shared.traceparent.forwarded).
        traceparent = forwarded(incoming.get(hop.TRACEPARENT_HEADER))
        if traceparent is not None:
            headers[hop.TRACEPARENT_HEADER] = traceparent
        for name in (*_FORWARD_REQUEST_HEADERS, *self.config.policy_headers):
            value = incoming.get(name)
            if value is not None:
                headers[name] = value
        return headers, seed

    async def forward(
        self,
        request: Request,
        incoming: dict[str, str],
        api: Api,
        token: VerifiedToken,
        model: str | None,
        body: bytes | UploadSource | None,
        request_id: str,
    ) -> Response:
        """The core's answer, relayed; given up at once if the client leaves first, so the
        core sees its connection close and can stop the work (a relayed stream is cancelled by
        Starlette on disconnect the same way). An upload's body is read by the relay itself,
        so the watch on the client starts once it is all sent."""
        attempts = self._attempts(request, incoming, token, model, body, request_id)
        receive = body.receive_after_body if isinstance(body, UploadSource) else request.receive
        upstream = await watched(receive, attempts, _nobody_listening)
        if upstream is None:
            return Response(status_code=499)  # nobody is listening any more
        return await relay(upstream, api, self.max_response)

    async def _attempts(
        self,
        request: Request,
        incoming: dict[str, str],
        token: VerifiedToken,
        model: str | None,
        body: bytes | UploadSource | None,
        request_id: str,
    ) -> CoreResponse:
        """The core's response from the first replica that takes the request. A replica is
        left for the next only while it cannot have acted on the request (edge/corecall.py);
        a pool of one gets a second try on a new connection (its pooled one may have been
        closing). Later attempts never reuse pooled connections. An upload is read from the
        client as it is sent, so once a byte of it went to one replica it can go to no other."""
        query = _forwarded_query(request)
        path = request.scope["path"] + query  # signed as the core decodes it
        target = quote(request.scope["path"], safe=_PATH_SAFE) + query  # sent percent-encoded
        urls = self.replicas.choose(self.router.urls(self.router.pool_for(model, token.tenant)))
        await self.secrets.fresh()  # a referenced hop secret unread for too long: read first
        upload = body if isinstance(body, UploadSource) else None
        signed = None if isinstance(body, UploadSource) else body or b""
        eager = bool(signed) and self.caller.eager(urls)  # edge/corecall.py: eager bodies
        once = None  # an eager body's one credential, for every attempt
        if eager:
            once = self.hop_headers(request, incoming, token, path, request_id, signed)
        for attempt, url in enumerate(urls * 2 if len(urls) == 1 else urls):
            client = self.client
            if client is None:
                break
            headers, seed = once or self.hop_headers(
                request, incoming, token, path, request_id, signed
            )
            data: bytes | AsyncIterator[bytes] | None = signed
            if upload is not None and seed is not None:
                data = upload.frames(seed)
            try:
                upstream = await self.caller.send(
                    client, request.method, url, target, data, headers, attempt > 0, eager
                )
            except Unsent:
                self.replicas.failed(url)
                if upload is not None and upload.started:
                    raise _core_unavailable() from None  # its body is gone: no other replica
                continue
            except Sent as failure:
                if upload is not None and (upload.overflowed or upload.left):
                    raise upload.refusal() from None  # the core saw a cut: nothing ran
                if not failure.elsewhere:
                    self.replicas.failed(url)
                raise (_core_timeout() if failure.timed_out else _core_unavailable()) from None
            self.replicas.succeeded(url)
            return upstream
        raise _core_unavailable()


# The usage API's parameters are short; a longer query string is refused, never relayed.
MAX_QUERY_CHARS = 4096
# What stays as it is in a relayed path (RFC 3986 pchar and "/"); anything else is
# percent-encoded (UTF-8), which the core's server decodes back to the path that was signed.
_PATH_SAFE = "/:@!$&'()*+,;="


def _forwarded_query(request: Request) -> str:
    """The client's query string (GET routes only, e.g. /v1/usage), canonically re-encoded
    and sent as it is (shared.h1 sends the target verbatim), so the bytes the core receives are
    the ones the hop credential was signed over; "" when there is none."""
    if request.method != "GET" or not request.scope.get("query_string"):
        return ""
    if len(request.scope["query_string"]) > MAX_QUERY_CHARS:
        raise GatewayError(
            400,
            f"the query string is longer than {MAX_QUERY_CHARS} characters",
            code="query_too_long",
        )
    query = urlencode(request.query_params.multi_items(), quote_via=quote)
    return f"?{query}" if query else ""


def _nobody_listening() -> None:
    """The client left before the core answered: the request to the core was dropped."""
    return None


Endpoint = Callable[[Request], Awaitable[Response]]


def _proxy(state: EdgeState, api: Api, reads_model: bool = True, upload: bool = False) -> Endpoint:
    """A relayed endpoint: `reads_model` False for the ones without a body (GET, DELETE),
    `upload` for a multipart upload (streamed through with its own limit, edge/upload.py)."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        return timed(await _answer(state, request, api, reads_model, upload), started)

    return endpoint


async def _answer(
    state: EdgeState, request: Request, api: Api, reads_model: bool, upload: bool
) -> Response:
    # Minted first, so every answer (edge errors included) carries an id to quote.
    request_id = new_request_id()
    try:
        incoming = header_map(request)
        if len(incoming) != len(request.scope["headers"]):  # some header repeated
            refuse_duplicate_credentials(request.scope["headers"])
        token = state.verifier.verify(TokenVerifier.credential(incoming, api), api=api)
        state.network.check(token.tenant, token.cidrs, request.scope)
        if not reads_model:
            return await state.forward(request, incoming, api, token, None, None, request_id)
        body, model = await _body_and_model(state, request, upload)
        if model is not None and not token.allows(model):
            raise GatewayError(
                403,
                f"this token may not use the model '{model}'",
                param="model",
                code="model_not_allowed",
            )
        return await state.forward(request, incoming, api, token, model, body, request_id)
    except GatewayError as error:
        return error_response(error, api, {"x-request-id": request_id})
    except ClientDisconnect:
        return Response(status_code=499)  # left mid-upload: nobody to answer


async def _body_and_model(
    state: EdgeState, request: Request, upload: bool
) -> tuple[bytes | UploadSource, str | None]:
    """The body to relay and the model it names (None: an upload whose file comes first;
    the core checks it against the token)."""
    if upload:
        source = UploadSource(request, state.max_upload)
        await source.peek()
        return source, source.model
    body = await read_body(request, state.max_body)
    return body, _peek_model(body)


def _either(state: EdgeState) -> Endpoint:
    """GET /v1/models, asked by either SDK: the Anthropic SDK (it sends `anthropic-version`)
    may authenticate with x-api-key and reads errors in Anthropic's envelope."""
    as_openai = _proxy(state, "openai", reads_model=False)
    as_anthropic = _proxy(state, "anthropic", reads_model=False)

    async def endpoint(request: Request) -> Response:
        anthropic = any(name == b"anthropic-version" for name, _ in request.scope["headers"])
        return await (as_anthropic if anthropic else as_openai)(request)

    return endpoint


def _routes(state: EdgeState) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def dashboard(request: Request) -> Response:
        return await relay_static(state, request)  # the page's files (edge/dashboard.py)

    bodiless = _proxy(state, "openai", reads_model=False)
    return [
        Route("/v1/chat/completions", _proxy(state, "openai"), methods=["POST"]),
        Route("/v1/embeddings", _proxy(state, "openai"), methods=["POST"]),
        Route("/v1/messages", _proxy(state, "anthropic"), methods=["POST"]),
        Route("/v1/messages/count_tokens", _proxy(state, "anthropic"), methods=["POST"]),
        Route("/v1/responses", _proxy(state, "openai"), methods=["POST"]),
        Route("/v1/responses/input_tokens", _proxy(state, "openai"), methods=["POST"]),
        Route("/v1/responses/{id}", bodiless, methods=["GET", "DELETE"]),
        Route("/v1/responses/{id}/input_items", bodiless, methods=["GET"]),
        Route("/v1/images/generations", _proxy(state, "openai"), methods=["POST"]),
        Route("/v1/audio/speech", _proxy(state, "openai"), methods=["POST"]),
        Route("/v1/audio/transcriptions", _proxy(state, "openai", upload=True), methods=["POST"]),
        Route("/v1/models", _either(state), methods=["GET"]),
        Route("/v1/usage", bodiless, methods=["GET"]),
        Route("/v1/dashboard/{panel}", bodiless, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/dashboard/", dashboard, methods=["GET"]),
        Route("/dashboard/{name}", dashboard, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]


def create_app(config: EdgeTierConfig) -> Starlette:
    """The edge's app: its fixed-path API routes are served from a (method, path) table in
    front of Starlette's per-request layers (shared/server_fast.py), the rest by the router."""
    state = EdgeState(config)
    routes = _routes(state)
    app = FastApp(EXCEPTION_HANDLERS, routes, routed=routes, lifespan=state.lifespan)
    # No trailing-slash redirects: Starlette builds their Location from the client's Host.
    app.router.redirect_slashes = False
    app.state.edge = state
    return app
