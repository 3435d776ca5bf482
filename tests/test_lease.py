"""Leased attempts (core.resilience.lease), driven through the Dispatcher: whatever ends a
half-open probe (the client leaving, the request's own error, no free key, a bug), the probe slot
is given back and the key's token reservation is settled, so the target is not wedged behind
`circuit_open` on this replica. And a replica's half-open breaker learns of a circuit another
replica opened.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from core.limits.tenant import Settlements
from core.providers.adapters.base import JSON, Capabilities, ProviderError, Target
from core.resilience.circuit import BreakerPolicy, State
from core.resilience.circuit_board import BreakerBoard
from core.resilience.dispatch import Dispatcher
from core.resilience.key_pools import KeyPools
from core.resilience.latency import LatencyTracker
from core.routing.planning import Attempt
from core.state.store import MemoryStore
from shared.config import ProviderConfig, ResilienceConfig
from shared.errors import FailureClass, GatewayError
from tests.support.dispatching import run_completion
from tests.support.providers import provider_of

OK: JSON = {"choices": [{"message": {"content": "ok"}}]}
OPEN_S = 0.05
TPM = 100  # every request below reserves the key's whole minute of tokens
LABEL = "p/m"
Step = Callable[[], Awaitable[None]]


async def _outage() -> None:
    raise ProviderError(503, "overloaded", FailureClass.TRANSIENT, upstream_status=503)


async def _fine() -> None:
    return None


class Scripted:
    """Each call runs the next step of the script (then succeeds); `started` is set once a
    call is in flight."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.calls = 0
        self.started = asyncio.Event()

    def capabilities(self, target: Target) -> Capabilities:
        return Capabilities()

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        self.calls += 1
        self.started.set()
        await (self.steps.pop(0) if self.steps else _fine)()
        return OK

    async def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        yield await self.complete(canonical, target)


def setup(upstream: Scripted, rpm: int | None = None) -> tuple[Dispatcher, list[Attempt]]:
    """One target whose breaker opens on one failure; its key has a TPM of 100 (and `rpm`)."""
    store = MemoryStore()
    provider = ProviderConfig("p", "stub", None, ("k",), {}, None, False, key_rpm=rpm, key_tpm=TPM)
    keys = KeyPools({"p": provider}, store, Settlements(store))
    board = BreakerBoard(BreakerPolicy(min_requests=1, open_s=OPEN_S), store)
    policy = ResilienceConfig(max_retries=0, key_wait_max_s=0.0)
    dispatcher = Dispatcher(policy, board, keys, LatencyTracker(), random.Random(1))
    attempts = [Attempt(Target(provider_of(provider), "m", "k"), upstream, {"model": "m"}, ())]
    return dispatcher, attempts


async def half_open(dispatcher: Dispatcher, attempts: list[Attempt]) -> None:
    """An outage opens the circuit; once its open period is over the next request probes."""
    with pytest.raises(ProviderError):
        await run_completion(dispatcher, attempts, tokens=TPM)
    assert dispatcher.breakers.state(LABEL) is State.OPEN
    await asyncio.sleep(OPEN_S * 1.5)


async def served_after(dispatcher: Dispatcher, attempts: list[Attempt]) -> None:
    """The probe slot is free and the key's tokens are back: the next request is served
    (a leaked reservation would leave the key no capacity: 429 with key_wait_max 0)."""
    result, outcome = await run_completion(dispatcher, attempts, tokens=TPM)
    assert result is OK and outcome.attempts == 1
    assert dispatcher.breakers.state(LABEL) is State.CLOSED


def test_a_cancelled_probe_gives_back_its_slot_and_its_key() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        upstream = Scripted(_outage, hang)
        dispatcher, attempts = setup(upstream)
        await half_open(dispatcher, attempts)
        upstream.started.clear()
        probe = asyncio.ensure_future(run_completion(dispatcher, attempts, tokens=TPM))
        await upstream.started.wait()
        probe.cancel()  # the client hung up during the probe
        with pytest.raises(asyncio.CancelledError):
            await probe
        await served_after(dispatcher, attempts)

    asyncio.run(scenario())


def test_a_probe_failing_on_its_own_image_gives_back_its_slot_and_its_key() -> None:
    async def unfetchable(payload: JSON) -> JSON:
        raise GatewayError(400, "image could not be fetched", code="invalid_image_url")

    async def scenario() -> None:
        upstream = Scripted(_outage)
        dispatcher, attempts = setup(upstream)
        await half_open(dispatcher, attempts)
        with_image = [Attempt(attempts[0].target, upstream, {"model": "m"}, (), True)]
        with pytest.raises(GatewayError) as info:
            await run_completion(dispatcher, with_image, unfetchable, tokens=TPM)
        assert info.value.status == 400 and upstream.calls == 1
        await served_after(dispatcher, attempts)

    asyncio.run(scenario())


def test_a_client_error_is_neutral_for_the_breaker() -> None:
    """An upstream 400 about the request neither closes the half-open circuit nor reopens
    it: the slot is free for the next request, whose success closes it."""

    async def bad_request() -> None:
        raise ProviderError(400, "bad", FailureClass.CLIENT_ERROR, upstream_status=400)

    async def scenario() -> None:
        dispatcher, attempts = setup(Scripted(_outage, bad_request))
        await half_open(dispatcher, attempts)
        with pytest.raises(ProviderError) as info:
            await run_completion(dispatcher, attempts, tokens=TPM)
        assert info.value.failure_class is FailureClass.CLIENT_ERROR
        assert dispatcher.breakers.state(LABEL) is State.HALF_OPEN
        await served_after(dispatcher, attempts)

    asyncio.run(scenario())


def test_a_probe_with_no_free_key_gives_back_its_slot() -> None:
    async def scenario() -> None:
        dispatcher, attempts = setup(Scripted(_outage), rpm=1)
        await half_open(dispatcher, attempts)  # ...which spent the key's one request a minute
        for _ in range(3):  # no capacity each time: a 429, never a wedged `circuit_open`
            with pytest.raises(ProviderError) as info:
                await run_completion(dispatcher, attempts, tokens=TPM)
            assert info.value.status == 429 and info.value.code == "rate_limit_exceeded"
        assert dispatcher.breakers.state(LABEL) is State.HALF_OPEN

    asyncio.run(scenario())


def test_an_unexpected_exception_gives_back_the_slot_and_the_key() -> None:
    async def bug() -> None:
        raise RuntimeError("a bug in an adapter")

    async def scenario() -> None:
        dispatcher, attempts = setup(Scripted(_outage, bug))
        await half_open(dispatcher, attempts)
        with pytest.raises(RuntimeError):
            await run_completion(dispatcher, attempts, tokens=TPM)
        await served_after(dispatcher, attempts)

    asyncio.run(scenario())


def test_a_failed_probe_reopens_and_settles_the_key() -> None:
    async def scenario() -> None:
        dispatcher, attempts = setup(Scripted(_outage, _outage))
        await half_open(dispatcher, attempts)
        with pytest.raises(ProviderError) as info:
            await run_completion(dispatcher, attempts, tokens=TPM)
        assert info.value.status == 503 and info.value.code != "circuit_open"
        assert dispatcher.breakers.state(LABEL) is State.OPEN
        await asyncio.sleep(OPEN_S * 1.5)
        await served_after(dispatcher, attempts)

    asyncio.run(scenario())


def test_sync_reopens_a_half_open_breaker_another_replica_opened() -> None:
    """This replica probes (half-open) while another has just seen the target fail and
    shared its open decision: the sync re-opens the circuit here too, which also frees a
    probe slot that would otherwise stay taken."""

    async def scenario() -> None:
        store = MemoryStore()
        here = BreakerBoard(BreakerPolicy(min_requests=1, open_s=OPEN_S), store)
        there = BreakerBoard(BreakerPolicy(min_requests=1, open_s=30.0), store)
        failure = ProviderError(503, "down", FailureClass.TRANSIENT, upstream_status=503)
        here.record(LABEL, failure)
        await asyncio.sleep(OPEN_S * 1.5)
        assert here.allow(LABEL)  # this replica's probe is in flight...
        assert here.state(LABEL) is State.HALF_OPEN and not here.allow(LABEL)
        there.record(LABEL, failure)  # ...while another replica sees the target fail
        await there.sync()
        await here.sync()
        assert here.state(LABEL) is State.OPEN and here.retry_after(LABEL) > 20

    asyncio.run(scenario())


def test_a_streams_verdict_waits_for_its_end() -> None:
    """A stream's first chunk records nothing but its latency; its end does, once: a cut is
    the target's failure (here, enough to open the circuit), a clean end a success."""
    from core.resilience.dispatch import stream_call

    async def scenario() -> None:
        dispatcher, attempts = setup(Scripted())
        cut = ProviderError(502, "the stream was cut", FailureClass.TRANSIENT)
        _, outcome = await dispatcher.run(attempts, stream_call(None), TPM, streaming=True)
        assert dispatcher.breakers.state(LABEL) is State.CLOSED and len(dispatcher.latency) == 1
        outcome.settle(cut, clean=False)
        outcome.settle(None, clean=True)  # settled once: the second end changes nothing
        assert dispatcher.breakers.state(LABEL) is State.OPEN and outcome.lease
        outcome.lease.settle(0)  # as accounting does: the key's tokens are back
        await asyncio.sleep(OPEN_S * 1.5)
        _, probe = await dispatcher.run(attempts, stream_call(None), TPM, streaming=True)
        assert dispatcher.breakers.state(LABEL) is State.CLOSED  # on probation
        probe.settle(cut, clean=False)
        assert dispatcher.breakers.state(LABEL) is State.OPEN  # the probe's stream failed

    asyncio.run(scenario())


def test_sync_never_holds_a_circuit_past_the_shared_decision() -> None:
    """One replica's open decision reaches the other; once its period is over, neither
    replica's sync re-opens the circuit from the expired decision, and each one's probe
    closes it."""

    async def scenario() -> None:
        store = MemoryStore()
        here = BreakerBoard(BreakerPolicy(min_requests=1, open_s=OPEN_S), store)
        there = BreakerBoard(BreakerPolicy(min_requests=1, open_s=OPEN_S), store)
        there.register([LABEL])  # a configured target: learned before it is used
        here.record(LABEL, ProviderError(503, "down", FailureClass.TRANSIENT, upstream_status=503))
        await here.sync()  # published...
        await there.sync()  # ...and learned
        assert there.state(LABEL) is State.OPEN
        await asyncio.sleep(OPEN_S * 1.5)
        for board in (here, there):
            await board.sync()
            probe = board.permit(LABEL)
            assert probe and board.state(LABEL) is State.HALF_OPEN
            await board.sync()  # nothing shared is open any more: the probe keeps its slot
            board.record(LABEL, None, probe)
            await board.sync()
            assert board.state(LABEL) is State.CLOSED

    asyncio.run(scenario())
