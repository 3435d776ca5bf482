"""core.pipeline.run: the stages run in order, an error before admission holds nothing, and
every admitted request is accounted exactly once, whether it is served, fails or is cancelled.

Driven with the real stages and core parts (registry, Dispatcher, tenant limiter on an
in-memory store) and a scripted API (tests/support/pipeline.py)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import orjson
import pytest
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from core.pipeline import Exchange, Pipeline, standard_stages
from core.pipeline.stages import Stage
from core.providers.adapters.base import ProviderError, Target
from shared.errors import FailureClass, GatewayError
from tests.support.collector import collector_off
from tests.support.pipeline import (
    ESTIMATE,
    CountingAccount,
    FakeApi,
    FakeStep,
    caller,
    core,
    http_request,
)

ORDER = (
    "read",
    "validate",
    "resolve",
    "prompt_cache",
    "plan",
    "admit",
    "dispatch",
    "encode",
    "account",
)


def body(model: str = "mock-1", stream: bool = False) -> bytes:
    return orjson.dumps({"model": model, "stream": stream})


class Traced:
    """Wraps a stage as a span would: what ran, in which order."""

    def __init__(self, stage: Stage, ran: list[str]) -> None:
        self.name = stage.name
        self._stage = stage
        self._ran = ran

    async def __call__(self, x: Exchange[Any, Any, Any]) -> None:
        self._ran.append(self.name)
        await self._stage(x)


async def drain(response: Response) -> bytes:
    assert isinstance(response, StreamingResponse)
    return b"".join([part async for part in response.body_iterator])  # type: ignore[misc]


def test_the_stages_run_in_order_and_account_closes_the_request() -> None:
    parts, account, ran = core(), CountingAccount(), []
    standard = standard_stages(parts.registry, parts.dispatcher, parts.limiter)
    pipeline = Pipeline(FakeApi(), [Traced(stage, ran) for stage in standard], account)
    assert pipeline.stage_names == ORDER == parts.pipeline(FakeApi()).stage_names
    response = asyncio.run(pipeline(http_request(), caller(), body()))
    assert response.status_code == 200
    assert (*ran, "account") == ORDER
    assert account.calls == [("served", "ok")]
    assert response.headers["x-interlock-provider"] == "mock"
    assert response.headers["x-ratelimit-limit-tokens"] == "10000"


def test_an_error_in_validate_never_admits() -> None:
    parts, account = core(rpm=1), CountingAccount()
    refused = GatewayError(400, "bad", param="messages")
    invalid = parts.pipeline(FakeApi(invalid=refused), account)
    for _ in range(3):
        with pytest.raises(GatewayError) as info:
            asyncio.run(invalid(http_request(), caller(), body()))
        assert info.value is refused
    assert account.calls == []  # nothing was admitted, so nothing to account
    # The tenant's one request a minute is still there.
    valid = parts.pipeline(FakeApi())
    assert asyncio.run(valid(http_request(), caller(), body())).status_code == 200


def test_a_model_the_token_may_not_use_is_refused_before_admission() -> None:
    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(), account)
    with pytest.raises(GatewayError) as info:
        asyncio.run(pipeline(http_request(), caller(lambda model: False), body()))
    assert info.value.status == 403 and info.value.code == "model_not_allowed"
    assert account.calls == [] and parts.pending_tokens() == 0


def test_admission_is_settled_to_zero_when_dispatch_fails_before_any_upstream_use() -> None:
    async def image_unreachable(step: FakeStep, target: Target) -> Any:
        raise GatewayError(400, "the image could not be fetched", code="invalid_image_url")

    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(call_with=image_unreachable), account)
    with pytest.raises(GatewayError, match="image"):
        asyncio.run(pipeline(http_request(), caller(), body()))
    assert account.calls == [("released", "")]
    assert parts.pending_tokens() == -ESTIMATE  # the whole reservation given back


def test_a_failed_request_is_accounted_once_and_its_error_says_what_was_tried() -> None:
    async def refused(step: FakeStep, target: Target) -> Any:
        raise ProviderError(400, "no", FailureClass.CLIENT_ERROR)

    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(call_with=refused), account)
    with pytest.raises(ProviderError) as info:
        asyncio.run(pipeline(http_request(), caller(), body()))
    assert account.calls == [("failed", "client_error")]
    assert info.value.headers["x-interlock-attempts"] == "1"
    assert info.value.headers["x-ratelimit-limit-tokens"] == "10000"
    assert parts.pending_tokens() == -ESTIMATE


def test_an_error_the_api_relays_is_its_response_after_accounting() -> None:
    async def refused(step: FakeStep, target: Target) -> Any:
        raise ProviderError(429, "slow down", FailureClass.CLIENT_ERROR)

    parts, account = core(), CountingAccount()
    own = Response(b"relayed", 429)
    pipeline = parts.pipeline(FakeApi(call_with=refused, relays=own), account)
    assert asyncio.run(pipeline(http_request(), caller(), body())) is own
    assert account.calls == [("failed", "client_error")]


def test_a_complete_answer_settles_the_reservation_to_its_usage() -> None:
    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(), account)
    asyncio.run(pipeline(http_request(), caller(), body()))
    assert account.calls == [("served", "ok")]
    assert parts.pending_tokens() == 7 - ESTIMATE


def test_a_stream_is_accounted_once_when_it_ends() -> None:
    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(), account)

    async def scenario() -> bytes:
        response = await pipeline(http_request(), caller(), body(stream=True))
        assert account.calls == []  # not before its end
        return await drain(response)

    streamed = asyncio.run(scenario())
    assert streamed.endswith(b"data: [DONE]\n\n")
    assert account.calls == [("served", "ok")]


def test_a_finished_stream_leaves_no_cycle_for_the_collector() -> None:
    """Its exchange is freed when the stream's response is, not by a full collection: the
    exchange and its AccountedStream referred to each other, and every stream left ~18 KB
    for the old generation, which runs seldom (the core's RSS crept under stream load)."""
    parts = core()
    pipeline = parts.pipeline(FakeApi(), CountingAccount())

    async def scenario() -> None:
        for _ in range(5):
            await drain(await pipeline(http_request(), caller(), body(stream=True)))

    with collector_off():
        asyncio.run(scenario())
        assert sum(1 for o in gc.get_objects() if type(o) is Exchange) == 0


def test_a_stream_the_client_leaves_is_accounted_once_as_cancelled() -> None:
    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(), account)

    async def scenario() -> None:
        response = await pipeline(http_request(), caller(), body(stream=True))
        assert isinstance(response, StreamingResponse)
        events = response.body_iterator
        await anext(events)  # type: ignore[call-overload]
        await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())
    assert account.calls == [("served", "cancelled")]
    assert parts.pending_tokens() < 0  # settled from the estimate of what was streamed


def test_a_request_cancelled_during_dispatch_is_accounted_once() -> None:
    started = asyncio.Event()

    async def hangs(step: FakeStep, target: Target) -> Any:
        started.set()
        await asyncio.Event().wait()

    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(call_with=hangs), account)

    async def scenario() -> None:
        task = asyncio.ensure_future(pipeline(http_request(), caller(), body()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert account.calls == [("cancelled", "")]
    assert parts.pending_tokens() == -ESTIMATE


def test_a_client_that_leaves_during_dispatch_cancels_it() -> None:
    """The client disconnects while the upstream call is in flight: the call is cancelled,
    the request accounted once as cancelled with its reservation given back, and the answer
    nobody will read is a 499."""
    started, left = asyncio.Event(), asyncio.Event()
    cancelled: list[bool] = []

    async def hangs(step: FakeStep, target: Target) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(call_with=hangs), account)

    async def scenario() -> Response:
        task = asyncio.ensure_future(pipeline(http_request(receive), caller(), body()))
        await started.wait()
        left.set()
        return await asyncio.wait_for(task, 5)

    response = asyncio.run(scenario())
    assert response.status_code == 499 and cancelled == [True]
    assert account.calls == [("cancelled", "")]
    assert parts.pending_tokens() == -ESTIMATE


def test_a_stage_that_answers_ends_the_list() -> None:
    """A stage placed before admission that can answer alone (a cache hit): nothing after it
    runs, so nothing is admitted, dispatched or accounted."""

    class Answers:
        name = "answers"

        async def __call__(self, x: Exchange[Any, Any, Any]) -> None:
            x.response = Response(b"from elsewhere")

    parts, account, ran = core(rpm=1), CountingAccount(), []
    read, validate, resolve, cache, plan, *rest = standard_stages(
        parts.registry, parts.dispatcher, parts.limiter
    )
    stages = [Traced(s, ran) for s in (read, validate, resolve, cache, plan, Answers(), *rest)]
    pipeline = Pipeline(FakeApi(), stages, account)
    for _ in range(2):  # the tenant's one request a minute is never taken
        response = asyncio.run(pipeline(http_request(), caller(), body()))
        assert response.body == b"from elsewhere"
    assert ran == ["read", "validate", "resolve", "prompt_cache", "plan", "answers"] * 2
    assert account.calls == []
    served = asyncio.run(parts.pipeline(FakeApi())(http_request(), caller(), body()))
    assert served.status_code == 200


def test_a_stream_whose_body_never_started_is_accounted_as_cancelled() -> None:
    """The client left between dispatch and the first byte: the server fails to send the
    response start, so the relay (whose end accounts the stream) never runs. The response
    accounts the request itself, once, giving back the reservation."""

    async def gone(message: Any) -> None:
        raise OSError("the client has gone")

    async def never(message: Any = None) -> dict[str, Any]:
        raise AssertionError("not read on ASGI 2.4")

    parts, account = core(), CountingAccount()
    pipeline = parts.pipeline(FakeApi(), account)

    async def scenario() -> None:
        response = await pipeline(http_request(), caller(), body(stream=True))
        scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
        with pytest.raises(ClientDisconnect):
            await response(scope, never, gone)

    asyncio.run(scenario())
    assert account.calls == [("served", "cancelled")]
    assert parts.pending_tokens() == -ESTIMATE
