"""The core's /metrics after a scripted run through a real edge and core, read with the official
Prometheus parser: GenAI token usage and durations (OpenTelemetry semantic conventions), time to
first chunk for streams, requests by outcome, spend equal to the cost headers the clients got,
failovers, rate-limit refusals, budget levels, and labels only from configuration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import openai
import pytest
import requests

from tests.support.net import free_port
from tests.support.prom import Samples, samples, value
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "count the tokens of this"}]
DEAD = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: every try there fails


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "dead": {"kind": "openai", "base_url": DEAD, "api_key": "sk-dead"},
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "flaky": {
                "targets": [
                    {"provider": "dead", "model": "gpt-x"},
                    {"provider": "mock", "model": "mock-1"},
                ]
            },
            "broken": {"provider": "dead", "model": "gpt-x"},
        },
        "limits": {"tenants": {"capped": {"rpm": 2}}},
        "budgets": {"acme-daily": {"tenant": "acme", "limit": "5.00"}},
        "metrics": {"tenants": ["acme"]},
    }
    running = Stack(tmp_path_factory.mktemp("metrics"), overrides).start()
    yield running
    running.stop()


def scrape(stack: Stack) -> Samples:
    answer = requests.get(f"{stack.core_admin_url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


def micros(header: str) -> int:
    return int(Decimal(header) * 1_000_000)


def test_a_scripted_run_is_counted_as_it_happened(stack: Stack) -> None:
    before = scrape(stack)
    sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token("acme"), max_retries=0)
    spent, prompt, completion = 0, 0, 0
    for _ in range(3):
        raw = sdk.chat.completions.with_raw_response.create(model="mock-1", messages=MESSAGES)  # type: ignore[arg-type]
        answer = raw.parse()
        assert answer.usage is not None
        spent += micros(raw.headers["x-interlock-cost"])
        prompt += answer.usage.prompt_tokens
        completion += answer.usage.completion_tokens
    stream = sdk.chat.completions.create(
        model="mock-1",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None
    prompt += usage.prompt_tokens
    completion += usage.completion_tokens
    spent += micros((usage.model_extra or {})["interlock_cost"])
    after = scrape(stack)

    def delta(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    genai = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "mock",
        "gen_ai_request_model": "mock-1",
        "gen_ai_response_model": "mock-1",
    }
    requests_ok = {"api": "openai", "gen_ai_operation_name": "chat", "outcome": "ok"}
    assert delta("interlock_requests_total", **requests_ok, tenant="acme") == 4
    tokens = "gen_ai_client_token_usage"
    assert delta(f"{tokens}_count", **genai, gen_ai_token_type="input") == 4
    assert delta(f"{tokens}_sum", **genai, gen_ai_token_type="input") == prompt
    assert delta(f"{tokens}_sum", **genai, gen_ai_token_type="output") == completion
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert delta(duration, **genai, error_type="") == 4
    assert delta("gen_ai_client_operation_time_to_first_chunk_seconds_count", **genai) == 1
    # Spend counted in micro-dollars equals what the clients were told (headers, and the
    # stream's final usage chunk).
    spend = delta(
        "interlock_spend_microdollars_total",
        gen_ai_provider_name="mock",
        gen_ai_response_model="mock-1",
        tenant="acme",
    )
    assert spend == spent > 0
    # The budget the requests fell under is shown with what is left of it.
    assert 0 < (value(after, "interlock_budget_used_ratio", budget="acme-daily") or 0) < 1


def test_failures_failovers_and_other_labels(stack: Stack) -> None:
    before = scrape(stack)
    other = f"tenant-{uuid.uuid4().hex[:6]}"
    sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(other), max_retries=0)
    sdk.chat.completions.create(model="flaky", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError):
        sdk.chat.completions.create(model="broken", messages=MESSAGES)  # type: ignore[arg-type]
    # A model no route names, served by a provider that takes any model: labelled by the
    # provider, never by the tenant's string.
    sdk.chat.completions.create(model="mock/tenant-chosen-name", messages=MESSAGES)  # type: ignore[arg-type]
    claude = anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(other), max_retries=0)
    claude.messages.create(model="mock-1", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    after = scrape(stack)

    def delta(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert delta("interlock_failovers_total", target="dead/gpt-x") >= 1
    failed = [
        (labels, n)
        for (name, labels), n in after.items()
        if name == "interlock_requests_total" and dict(labels)["outcome"] not in ("ok",)
    ]
    assert any(dict(labels)["tenant"] == "_other" for labels, _ in failed)
    assert (
        delta(
            "interlock_requests_total",
            api="anthropic",
            gen_ai_operation_name="chat",
            outcome="ok",
            tenant="_other",
        )
        == 1
    )
    names = {dict(labels).get("gen_ai_request_model") for (name, labels) in after}
    assert "mock/tenant-chosen-name" not in names and "_other" in names
    served = {dict(labels).get("gen_ai_response_model") for (name, labels) in after}
    assert "mock/*" in served and "tenant-chosen-name" not in served
    assert not any(other in str(labels) for (_, labels) in after)  # no tenant-chosen value


def test_rate_limit_refusals_are_counted(stack: Stack) -> None:
    before = value(scrape(stack), "interlock_rate_limited_total", limit="requests") or 0
    sdk = openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token("capped"), max_retries=0
    )
    refused = 0
    for _ in range(4):
        try:
            sdk.chat.completions.create(model="mock-1", messages=MESSAGES)  # type: ignore[arg-type]
        except openai.RateLimitError:
            refused += 1
    assert refused >= 1
    after = value(scrape(stack), "interlock_rate_limited_total", limit="requests") or 0
    assert after - before == refused
