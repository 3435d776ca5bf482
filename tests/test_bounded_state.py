"""Per-target structures are bounded whatever names tenants send (issue 8, finding 4), and the
breaker board syncs in one Store round trip and attributes failures (finding 9)."""

from __future__ import annotations

import asyncio

from core.api.identity import Caller
from core.observe import context as requestctx
from core.observe.accounting import _log
from core.observe.usagelog import MAX_NAME_CHARS, USAGE_LOG, bounded_name
from core.providers.adapters.base import ProviderError, Target
from core.resilience.circuit import BreakerPolicy, State
from core.resilience.circuit_board import BreakerBoard
from core.resilience.latency import LatencyTracker
from core.routing.registry import DYNAMIC_ROUTES, ModelRegistry
from core.state.store import MemoryStore
from shared.config import load_config
from shared.errors import FailureClass
from tests.support.providers import provider_of, providers_of


def _registry() -> ModelRegistry:
    config = load_config(env={})  # embedded defaults: mock with allow_any_model
    return ModelRegistry(config, providers_of(config))


def test_dynamic_routes_are_an_lru_and_share_one_health_label() -> None:
    registry = _registry()
    assert registry.resolve("mock/" + "x" * 1_000_000) is not None  # served, never cached
    assert registry.dynamic_routes() == 0
    for i in range(DYNAMIC_ROUTES + 500):
        route = registry.resolve(f"mock/name-{i}")
        assert route is not None and route.candidates[0].target.health_label == "mock/*"
    assert registry.dynamic_routes() == DYNAMIC_ROUTES
    assert "mock/*" in registry.target_labels()
    configured = registry.resolve("mock-1")
    assert configured is not None
    assert configured.candidates[0].target.health_label == "mock/mock-1"


def test_breaker_board_never_grows_past_its_cap() -> None:
    board = BreakerBoard(BreakerPolicy(), MemoryStore(), max_unregistered=8)
    board.register(["p/configured"])
    for i in range(1000):
        board.record(f"p/unexpected-{i}", None)
    assert len(board) == 9 and "p/configured" in board.labels()


def test_latency_tracker_is_a_bounded_lru() -> None:
    latency = LatencyTracker(max_entries=4)
    for i in range(100):
        latency.observe(f"t{i}", 0.1)
    assert len(latency) == 4 and latency.estimate("t99") == 0.1 and latency.estimate("t0") == 0


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = self.batches = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return await super().get(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        self.batches += 1
        return [await MemoryStore.get(self, key) for key in keys]


def test_breaker_sync_reads_every_label_in_one_round_trip() -> None:
    store = CountingStore()
    board = BreakerBoard(BreakerPolicy(), store)
    board.register([f"p/m{i}" for i in range(50)])
    asyncio.run(store.set("il:{b:p/m7}:open", b"9999999999.0", 60))
    asyncio.run(board.sync())
    assert (store.gets, store.batches) == (0, 1)
    assert board.state("p/m7") is State.OPEN and board.state("p/m8") is State.CLOSED


def _error(status: int, failure: FailureClass = FailureClass.TRANSIENT) -> ProviderError:
    return ProviderError(502, "x", failure, upstream_status=status)


def test_board_attribution_rule() -> None:
    policy = BreakerPolicy(min_requests=3, failure_ratio=0.5)

    async def tenant_records(board: BreakerBoard, tenant: str, error: ProviderError) -> None:
        requestctx.bind(tenant, "req")  # each task has its own context, like each request
        board.record("p/m", error)

    async def scenario(errors: list[tuple[str, ProviderError]]) -> State:
        board = BreakerBoard(policy, MemoryStore())
        for tenant, error in errors:
            await asyncio.create_task(tenant_records(board, tenant, error))
        return board.state("p/m")

    assert asyncio.run(scenario([("a", _error(500))] * 10)) is State.CLOSED
    assert asyncio.run(scenario([("a", _error(500)), ("b", _error(500))] * 2)) is State.OPEN
    assert asyncio.run(scenario([("a", _error(503))] * 3)) is State.OPEN  # the target's own
    assert asyncio.run(scenario([("a", _error(429, FailureClass.RATE_LIMIT))] * 3)) is State.OPEN
    timeout = ProviderError(504, "t", FailureClass.TIMEOUT)  # first-byte timeout: no status
    assert asyncio.run(scenario([("a", timeout)] * 3)) is State.OPEN
    client = _error(400, FailureClass.CLIENT_ERROR)
    assert asyncio.run(scenario([("a", client), ("b", client)] * 5)) is State.CLOSED


def test_usage_log_lines_have_a_bounded_model_name() -> None:
    assert bounded_name("short") == "short"
    long_a, long_b = "m/" + "a" * 100_000, "m/" + "a" * 99_999 + "b"
    assert len(bounded_name(long_a) or "") <= MAX_NAME_CHARS
    assert bounded_name(long_a) != bounded_name(long_b)
    lines: list[dict[str, object]] = []
    enabled, write = USAGE_LOG.enabled, USAGE_LOG.write
    USAGE_LOG.enabled, USAGE_LOG.write = True, lines.append  # type: ignore[method-assign]
    try:
        caller = Caller("acme", "default", "req", lambda name: True)
        provider = load_config(env={}).providers["mock"]
        _log(
            caller, long_a, Target(provider_of(provider), long_a, None, True), None, "ok", 0.0, 1, 0
        )
    finally:
        USAGE_LOG.enabled, USAGE_LOG.write = enabled, write  # type: ignore[method-assign]
    (line,) = lines
    assert len(str(line["model"])) <= MAX_NAME_CHARS
    assert len(str(line["upstream_model"])) <= MAX_NAME_CHARS
