"""core.pipeline.exchange: the headers every API sends on success, built once from what
served the request, and the stream's end handed to the account stage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from core.limits.tenant import Admission, Settlements
from core.pipeline import Exchange
from core.pipeline.exchange import sse_response
from core.providers.adapters.base import Target
from core.resilience.dispatch import Outcome
from core.state.store import MemoryStore
from shared.config import ProviderConfig
from tests.support.pipeline import CountingAccount, FakeApi, FakeRequest, caller, http_request
from tests.support.providers import provider_of


def served(dropped: tuple[str, ...], admission: Admission | None) -> Exchange[Any, Any, Any]:
    x: Any = Exchange(FakeApi(), CountingAccount(), http_request(), caller(), b"{}")
    provider = ProviderConfig("groq", "openai", None, ("k",), {}, None, False)
    x.outcome = Outcome(
        Target(provider_of(provider), "llama", None), 3, dropped, failovers=1, retries=1
    )
    x.admission = admission
    x.request = FakeRequest("fast", False)
    return x


def test_headers_say_what_served_the_request_and_the_tenants_limits() -> None:
    limits = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59"}
    headers = served(("seed", "user"), Admission(headers=limits)).headers()
    assert headers == {
        "x-request-id": "req_1",
        "x-interlock-provider": "groq",
        "x-interlock-model": "llama",
        "x-interlock-attempts": "3",
        "x-interlock-failovers": "1",
        "x-interlock-retries": "1",
        "x-interlock-dropped-params": "seed,user",
        **limits,
    }


def test_no_dropped_params_header_when_nothing_was_dropped() -> None:
    assert "x-interlock-dropped-params" not in served((), None).headers()


def test_streams_are_neither_cached_nor_buffered_by_proxies() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield b"data: {}\n\n"

    response = sse_response(served((), None), events(), {"x-request-id": "req_1"})
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["content-type"].startswith("text/event-stream")


def test_finish_hands_the_streams_usage_to_the_account_stage_once() -> None:
    settlements = Settlements(MemoryStore())
    x = served((), Admission(settlements, "tpm-key", 1000, 100))
    x.finish({"total_tokens": 5}, "cut:timeout")
    x.finish({"total_tokens": 5}, "ok")  # a second end must not settle again
    assert x.account.calls == [("served", "cut:timeout"), ("served", "ok")]
    assert settlements.pop("tpm-key", 1000) == 5 - 100  # settled once, to what was used
