"""Real core parts (registry, Dispatcher, tenant limiter on an in-memory store) and a
scriptable ApiSpec, for the pipeline's unit tests (tests/test_pipeline_*.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from core.api.identity import Caller
from core.api.relay import OpenAIStreamEncoder, relay
from core.ledger.writer import Ledger
from core.limits.tenant import Settlements, TenantLimiter
from core.pipeline import Account, Exchange, Pipeline, standard_stages
from core.pipeline.exchange import json_response, sse_response
from core.providers.adapters.base import JSON, ProviderError, Target
from core.resilience.circuit import BreakerPolicy
from core.resilience.circuit_board import BreakerBoard
from core.resilience.dispatch import Dispatcher
from core.resilience.key_pools import KeyPools
from core.resilience.latency import LatencyTracker
from core.routing.registry import ModelRegistry, Route
from core.spend.cost import Pricing
from core.state.store import MemoryStore
from shared.config import LimitsConfig, RateLimit, ResilienceConfig, load_config
from tests.support.providers import providers_of

TPM = 10_000
ESTIMATE = 100  # the fake API's token estimate: what admission reserves
TPM_KEY = "il:{t:acme}:tpm"
FAST = ResilienceConfig(max_retries=0, key_wait_max_s=0.0)


@dataclass(slots=True)
class FakeRequest:
    model: str
    stream: bool


@dataclass(slots=True)
class FakeStep:
    target: Target
    dropped: tuple[str, ...] = ()


async def answer(step: FakeStep, target: Target) -> JSON:
    return {"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


async def chunks(count: int) -> AsyncIterator[JSON]:
    for _ in range(count):
        yield {"choices": [{"index": 0, "delta": {"content": "ok"}}]}
        await asyncio.sleep(0)


async def open_stream(step: FakeStep, target: Target) -> tuple[JSON | None, AsyncIterator[JSON]]:
    return {"choices": [{"index": 0, "delta": {"content": "first"}}]}, chunks(3)


@dataclass
class FakeApi:
    """An ApiSpec whose parts are scripted; it records what the pipeline handed it."""

    call_with: Callable[[FakeStep, Target], Awaitable[Any]] | None = None  # else by mode
    invalid: Exception | None = None
    relays: Response | None = None
    planned: list[Route] = field(default_factory=list)
    api: str = "openai"

    def validate(self, x: Exchange[Any, Any, Any]) -> FakeRequest:
        if self.invalid is not None:
            raise self.invalid
        return FakeRequest(x.payload["model"], bool(x.payload.get("stream")))

    def plan(self, route: Route, request: FakeRequest) -> list[FakeStep]:
        self.planned.append(route)
        return [FakeStep(c.target) for c in route.candidates]

    def prompt(self, request: FakeRequest) -> int:
        return ESTIMATE

    def estimate(self, request: FakeRequest, prompt: int) -> int:
        return prompt

    def call(self, x: Exchange[Any, Any, Any]) -> Callable[[FakeStep, Target], Awaitable[Any]]:
        if self.call_with is not None:
            return self.call_with
        return open_stream if x.request.stream else answer

    def encode(self, x: Exchange[Any, Any, Any]) -> Response:
        if not x.request.stream:
            x.usage = x.result["usage"]
            return json_response(b"{}", x.headers())
        first, rest = x.result
        events = relay(first, rest, OpenAIStreamEncoder(False), x.finish)
        return sse_response(x, events, x.headers())

    def relayed(self, x: Exchange[Any, Any, Any], error: ProviderError) -> Response | None:
        return self.relays


class CountingAccount(Account):
    """The real account stage, recording every call made to it."""

    def __init__(self, ledger: Ledger | None = None, pricing: Pricing | None = None) -> None:
        super().__init__(ledger, pricing)
        self.calls: list[tuple[str, str]] = []

    def served(
        self,
        x: Exchange[Any, Any, Any],
        usage: dict[str, Any] | None,
        status: str,
        error: ProviderError | None = None,
    ) -> None:
        self.calls.append(("served", status))
        super().served(x, usage, status, error)

    def failed(self, x: Exchange[Any, Any, Any], error: ProviderError) -> None:
        self.calls.append(("failed", error.failure_class.value))
        super().failed(x, error)

    def cancelled(self, x: Exchange[Any, Any, Any]) -> None:
        self.calls.append(("cancelled", ""))
        super().cancelled(x)

    def released(self, x: Exchange[Any, Any, Any]) -> None:
        self.calls.append(("released", ""))
        super().released(x)


@dataclass
class Core:
    """The parts the stages use, as the core builds them, on an in-memory store."""

    registry: ModelRegistry
    dispatcher: Dispatcher
    limiter: TenantLimiter

    def pipeline(self, spec: FakeApi, account: Account | None = None) -> Pipeline[Any, Any, Any]:
        stages = standard_stages(self.registry, self.dispatcher, self.limiter)
        return Pipeline(spec, stages, account)  # type: ignore[arg-type]

    def pending_tokens(self) -> float:
        """Token usage settled against the tenant's reservation and not yet flushed."""
        return self.limiter.settlements.owed(TPM_KEY)


def core(tpm: int = TPM, rpm: int | None = None) -> Core:
    config = load_config(env={})  # embedded defaults: the mock provider, model mock-1
    store = MemoryStore()
    settlements = Settlements(store)
    registry = ModelRegistry(config, providers_of(config))
    board = BreakerBoard(BreakerPolicy(), store)
    keys = KeyPools(config.providers, store, settlements)
    dispatcher = Dispatcher(FAST, board, keys, LatencyTracker(), random.Random(1))
    # A full minute's burst: these tests count reservations and refusals, not the burst.
    limits = LimitsConfig({"free": RateLimit(rpm=rpm, tpm=tpm, burst=1.0)}, {})
    return Core(registry, dispatcher, TenantLimiter(limits, store, settlements))


def http_request(receive: Receive | None = None) -> Request:
    """A request as the stages see it; `receive`: its ASGI receive channel (none by default)."""
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    return Request(scope) if receive is None else Request(scope, receive)


def caller(allowed: Callable[[str], bool] = lambda model: True) -> Caller:
    return Caller("acme", "free", "req_1", allowed)
