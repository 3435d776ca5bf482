"""The core service: wiring of config, upstreams, the model registry and the HTTP routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.api.audio import name_file
from core.api.audio.upload import SCOPE_KEY as UPLOAD_KEY
from core.api.audio.upload import UploadLimits, close_upload, read_upload
from core.api.identity import NONCES_HEADER, Caller, HopVerifier, unauthorized
from core.api.listeners import ListenerRouter
from core.api.models import models_endpoint
from core.api.route_explain import explain_endpoint
from core.api.usage import UsageApi
from core.apis import Apis, build_apis
from core.budgets.alerts import Alerts
from core.budgets.enforce import Budgets
from core.budgets.levels import BudgetLevels
from core.budgets.settle import BudgetSettler
from core.cache.affinity import Affinities
from core.cache.backend import Backend, MemoryBackend, StoreBackend
from core.cache.coalesce import Coalescer
from core.cache.idempotency import IdempotencyCounts, Idempotent
from core.cache.stage import ResponseCache
from core.dashboard.api import DashboardApi
from core.dashboard.routes import raw_reads, static_routes
from core.images.fetcher import ImageFetcher
from core.ledger import store_for
from core.ledger.writer import Ledger
from core.limits.tenant import Settlements, TenantLimiter
from core.observe import context as requestctx
from core.observe import exposition
from core.observe.events import EVENTS, event_families
from core.observe.metrics import families as core_families
from core.observe.otel_metrics import OtlpMetrics
from core.observe.records import Records
from core.observe.request_metrics import Labels, RequestMetrics
from core.observe.tracing import Tracer, build_tracer
from core.observe.usagelog import USAGE_LOG
from core.pipeline.explain import AnySpec, RouteExplainer
from core.providers.client import ProviderClient
from core.providers.gemini_cache import GeminiUpstream
from core.providers.provider import Provider
from core.resilience.circuit import BreakerPolicy
from core.resilience.circuit_board import BreakerBoard
from core.resilience.dispatch import Dispatcher
from core.resilience.health_checks import HealthChecks
from core.resilience.key_pools import KeyPools
from core.resilience.stats_sync import StatsSync
from core.resilience.stats_sync import metric_families as estimate_families
from core.spend.cost import Pricing
from core.startup import prepare_core
from core.state.redis_store import RedisStore
from core.state.resilient import ResilientStore
from core.state.store import MemoryStore, Store
from shared.config import Config
from shared.errors import Api, GatewayError
from shared.http import EXCEPTION_HANDLERS, error_response
from shared.server_fast import FastApp

# Handlers get the body the hop check already read (capped) and matched to its digest.
Handler = Callable[[Request, Caller, bytes], Awaitable[Response]]


def _state_store(config: Config) -> Store:
    """Redis (one node or a cluster) behind the Redis-down policy, else this process's memory."""
    s = config.state
    redis = RedisStore(s.redis_url, s.cluster) if s.redis_url else None
    return ResilientStore(redis, s.fail_open, s.replicas) if redis else MemoryStore()


class CoreState:
    """Everything built once per process at start-up."""

    def __init__(
        self, config: Config, pricing: Pricing | None = None, tracer: Tracer | None = None
    ) -> None:
        self.session: ProviderClient | None = None
        self.ready = False
        parts = prepare_core(config, self.client)
        self.config = config = parts.config
        # Traces (core.observe.tracing): NO_TRACER unless `tracing` is on; a test may hand in
        # its own (an in-memory exporter).
        self.tracer: Tracer = tracer or build_tracer(config.tracing)
        # One per configured provider: typed settings, adapter, transport, upstream.
        self.providers: dict[str, Provider] = parts.providers
        self.registry = parts.registry
        # routing.rules, compiled once (core.routing.policy); budget conditions read the
        # budgets' levels, attached below.
        self.policy = parts.policy
        # Prices and costs (core.spend), built once; a test may hand in its own Pricing.
        self.pricing: Pricing = pricing or parts.pricing
        self.store: Store = _state_store(config)
        for provider in self.providers.values():
            if isinstance(provider.upstream, GeminiUpstream):
                provider.upstream.attach(self.store)  # its context cache registry, shared
        self.verifier = HopVerifier(parts.hop_secret, config.hop.max_skew_s, self.store)
        self.secrets = parts.secrets  # referenced secrets, refreshed while serving
        self.settlements = Settlements(self.store)
        # Leases only pay where a take is a call (Redis), and only if the operator keeps them.
        leased = config.state.redis_url is not None and config.limits.leases
        self.limiter = TenantLimiter(config.limits, self.store, self.settlements, leased)
        self._dispatch(config)
        self.images = ImageFetcher.from_config(config.core)
        self._spend(config)
        self._caches(config)

    def _dispatch(self, config: Config) -> None:
        """Breakers, budgets and the dispatcher, with the estimates shared between replicas."""
        policy = config.core.resilience
        self.breakers = BreakerBoard(
            BreakerPolicy(
                policy.breaker_failure_ratio,
                policy.breaker_min_requests,
                policy.breaker_window_s,
                policy.breaker_open_s,
            ),
            self.store,
        )
        self.breakers.register(self.registry.target_labels())
        # Budgets (core.budgets): reserved per attempt at the same prices the client is shown.
        levels = BudgetLevels(config.budgets)
        self.policy.attach(levels)
        self.budget_settler = BudgetSettler(self.store, Alerts(self.store), levels)
        budgets = Budgets(config.budgets, self.store, self.pricing, self.budget_settler)
        self.dispatcher = Dispatcher(
            policy,
            self.breakers,
            KeyPools(config.providers, self.store, self.settlements),
            upstream_timeout_s=config.core.upstream_timeout_s,
            budgets=budgets,
            pricing=self.pricing,
        )
        # Latency and error estimates, shared with the other replicas (core.resilience.stats_sync).
        self.dispatcher.latency.track(self.registry.target_labels())
        self.stats_sync = StatsSync(self.dispatcher.latency, self.store)
        # Off unless a route sets health_check_interval (core.resilience.health_checks).
        self.health_checks = HealthChecks(self.registry.health_checked(), self.dispatcher.latency)

    def _spend(self, config: Config) -> None:
        """The ledger's writer (README: Spend) and every request's outcome record."""
        ledger = config.ledger
        # The writer owns the store; the usage API (core.api.usage) only reads from it.
        self.ledger_store = store_for(ledger.url, ledger.partition) if ledger.enabled else None
        self.ledger = Ledger(self.ledger_store, ledger) if self.ledger_store else None
        # Every request's outcome record: the metrics always (OpenTelemetry's form too when
        # exported: core.observe.otel_metrics), the ledger when it is on.
        metrics = RequestMetrics(Labels(config))
        self.records = Records(metrics, self.ledger)
        instruments = [*metrics.instruments.all(), *EVENTS]
        self.otlp = OtlpMetrics(instruments) if config.metrics.otlp else None

    def _caches(self, config: Config) -> None:
        """The response cache (core.cache): Redis itself when there is one (an outage is a
        miss), else this process's memory, bounded by cache.max_bytes. Request coalescing
        (core.cache.coalesce) shares flights through the same Redis, and prompt-cache affinity
        (core.cache.affinity) its holders (an outage is no affinity)."""
        shared = self.store.primary if isinstance(self.store, ResilientStore) else None
        self.affinity = Affinities(shared)
        self.cache: ResponseCache | None = None
        # What Idempotency-Key requests came to, for /metrics (core.cache.idempotency).
        self.idempotency = IdempotencyCounts()
        if config.cache.used:
            resilience = config.core.resilience
            backend: Backend = (
                StoreBackend(shared) if shared else MemoryBackend(config.cache.max_bytes)
            )
            self.cache = ResponseCache(
                config.cache,
                backend,
                self.limiter,
                self.records,
                Coalescer(shared),
                (resilience.total_deadline_s, resilience.stream_idle_timeout_s),
            )

    def entries(self) -> dict[str, int]:
        """Sizes of the per-target structures, for /metrics (each is bounded)."""
        return {
            "breakers": len(self.breakers),
            "latency": len(self.dispatcher.latency),
            "dynamic_routes": self.registry.dynamic_routes(),
            "prompt_cache_affinity": len(self.affinity),
        }

    def client(self) -> ProviderClient:
        if self.session is None:
            raise GatewayError(503, "the gateway is starting up", code="not_ready")
        return self.session

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.session = ProviderClient(self.config.core.pool_size)
        await self.images.start()
        self.secrets.start()
        USAGE_LOG.start()
        requestctx.install_log_ids(logging.getLogger("interlock"))  # ids on every line
        self.settlements.start()
        self.budget_settler.start()
        self.breakers.start()
        self.stats_sync.start()
        self.health_checks.start()
        if self.ledger is not None:
            self.ledger.start()
        if self.otlp is not None:
            self.otlp.start()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            if self.ledger is not None:
                await self.ledger.stop()  # writes what it holds, else spills it to disk
            await self.breakers.stop()
            await self.stats_sync.stop()
            await self.health_checks.stop()
            await self.settlements.stop()
            await self.budget_settler.stop()
            await USAGE_LOG.stop()
            await self.tracer.shutdown()  # exports the spans still buffered
            if self.otlp is not None:  # exports what it counted since the last export
                await self.otlp.stop()
            await self.images.close()
            await self.secrets.stop()
            await self.store.close()
            self.session.close()
            self.session = None


def create_app(
    config: Config, pricing: Pricing | None = None, tracer: Tracer | None = None
) -> Starlette:
    state = CoreState(config, pricing, tracer)
    max_body = config.core.max_body_bytes
    core = config.core
    uploads = UploadLimits(core.max_upload_bytes, core.upload_memory_bytes, core.upload_dir)

    def authenticated(
        handler: Handler, api: Api = "openai", upload: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        defer = not upload and getattr(handler, "defers_claim", False)

        async def endpoint(request: Request) -> Response:
            caller: Caller | None = None
            try:
                if upload:  # multipart: streamed, verified and spooled (core.api.audio.upload)
                    caller = await _streamed(state, request, uploads)
                    body = b""
                else:
                    caller, body = await state.verifier.authenticate(request, max_body, defer)
                requestctx.bind(caller.tenant, caller.request_id, caller.trace_id)
                try:
                    response = await handler(request, caller, body)
                except GatewayError:
                    await caller.settled()  # a replayed credential's 401 goes first
                    raise
                await caller.settled()  # nothing leaves for a replayed credential
                response.raw_headers.append((NONCES_HEADER, state.verifier.nonces))
                return response
            except GatewayError as error:
                if upload:
                    name_file(error)  # an oversized upload's 413 names `file`, as OpenAI's
                extra = {"x-request-id": caller.request_id} if caller else None
                return error_response(error, api, extra)
            finally:
                if upload:
                    close_upload(request)  # its temporary file, on every path

        return endpoint

    def once(handler: Handler) -> Handler:
        """Idempotency-Key semantics around an API (core.cache.idempotency)."""
        deadline = config.core.resilience.total_deadline_s
        return Idempotent(handler, state.store, config.idempotency, deadline, state.idempotency)

    apis = build_apis(state)
    public = [
        Route(path, authenticated(handler, api, upload), methods=[method])
        for path, method, handler, api, upload in _api_routes(state, apis, once)
    ]
    public += [*static_routes(), Route("/healthz", _healthz, methods=["GET"])]
    app = FastApp(EXCEPTION_HANDLERS, public, config.core.admin_port)  # see shared.server_fast
    admin = _admin_routes(state, apis.specs)
    app.router = ListenerRouter(public, admin, config.core.admin_port, state.lifespan)
    app.state.core = state
    return app


async def _streamed(state: CoreState, request: Request, limits: UploadLimits) -> Caller:
    """An upload's caller; its verified, spooled body rides on the scope (upload_of)."""
    caller, seed = await state.verifier.authenticate_streamed(request)
    try:
        request.scope[UPLOAD_KEY] = await read_upload(request, seed, limits, unauthorized())
    except GatewayError as error:
        error.headers = {**error.headers, "x-request-id": caller.request_id}
        raise
    return caller


def _api_routes(
    state: CoreState, apis: Apis, once: Callable[[Handler], Handler]
) -> list[tuple[str, str, Handler, Api, bool]]:
    """(path, method, handler, error format, multipart upload) of every authenticated route;
    `once` adds Idempotency-Key semantics where a retry could repeat a billed call."""
    config = state.config
    usage = UsageApi(state.ledger_store, config.ledger.write_timeout_s)
    dashboard = DashboardApi(state, raw_reads(state.ledger_store, config.ledger.partition))
    return [
        ("/v1/chat/completions", "POST", once(apis.chat), "openai", False),
        ("/v1/embeddings", "POST", once(apis.embeddings), "openai", False),
        ("/v1/messages", "POST", once(apis.messages), "anthropic", False),
        ("/v1/messages/count_tokens", "POST", apis.count_tokens, "anthropic", False),
        ("/v1/responses", "POST", once(apis.responses), "openai", False),
        ("/v1/responses/input_tokens", "POST", apis.input_tokens, "openai", False),
        ("/v1/responses/{response_id}", "GET", apis.get_response, "openai", False),
        ("/v1/responses/{response_id}", "DELETE", apis.delete_response, "openai", False),
        ("/v1/responses/{response_id}/input_items", "GET", apis.input_items, "openai", False),
        ("/v1/images/generations", "POST", once(apis.images), "openai", False),
        ("/v1/audio/speech", "POST", apis.speech, "openai", False),
        ("/v1/audio/transcriptions", "POST", once(apis.transcribe), "openai", True),
        ("/v1/models", "GET", models_endpoint(state), "openai", False),
        ("/v1/usage", "GET", usage, "openai", False),
        ("/v1/dashboard/{panel}", "GET", dashboard, "openai", False),
    ]


async def _healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def _not_ready(body: bytes) -> Response:
    return Response(body, status_code=503, media_type="application/json")


def _admin_routes(state: CoreState, specs: dict[str, AnySpec]) -> list[Route]:
    """The admin listener's routes: liveness, readiness, Prometheus text and the route
    explanation (core.api.route_explain: the pipeline's own specs, registry, policy and
    signals), never public."""

    async def readyz(request: Request) -> Response:
        """Not ready while starting or stopping, and while shared state is down under
        `fail_closed`: every request would be a 503, so the balancer should send none. Asks
        the store itself (one PING), since a replica out of rotation sees no traffic that
        would tell it the store is back."""
        if not state.ready:
            return _not_ready(b'{"status":"starting"}')
        if not state.config.state.fail_open and not await state.store.ping():
            return _not_ready(b'{"status":"state_unavailable"}')
        return Response(b'{"status":"ready"}', media_type="application/json")

    registry = exposition.registry_of(_metric_sources(state))

    async def metrics(request: Request) -> Response:
        page, content_type = exposition.render(registry, request.headers.get("accept"))
        return Response(page, media_type=content_type)

    explainer = RouteExplainer(
        specs, state.registry, state.policy, state.dispatcher, state.pricing, state.affinity
    )
    max_body = state.config.core.max_body_bytes
    return [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/route/explain", explain_endpoint(explainer, max_body), methods=["POST"]),
    ]


def _metric_sources(state: CoreState) -> list[exposition.Source]:
    """What /metrics shows, each source asked at scrape time."""
    sources: list[exposition.Source] = [
        lambda: core_families(state.store, state.breakers, state.entries()),
        lambda: estimate_families(state.dispatcher.latency, state.health_checks.sent),
        state.records.metrics.families,
        event_families,
        state.budget_settler.levels.metric_families,
    ]
    if state.ledger is not None:
        sources.append(state.ledger.metric_families)
    if state.cache is not None:
        sources.append(state.cache.metric_families)
    if state.config.idempotency.enabled:
        sources.append(state.idempotency.metric_families)
    return sources
