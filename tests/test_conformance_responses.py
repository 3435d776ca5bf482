"""The conformance matrix's Responses column: POST /v1/responses per provider, through the
same Stack, fakes and declarations as tests/test_conformance_matrix.py (its `matrix` fixture
and PROVIDERS rows), with the official openai SDK's `client.responses`.

Scenarios: text (complete, with usage), stream (the SDK's `responses.stream()` helper checks
the event sequence), a function tools round trip continued with `previous_response_id`
(each provider's scripted calls, then its answer from the tool results), JSON schema output,
and a cut stream (error + response.failed, never response.completed). Targets that speak the
Responses API (the `openai` row's OpenAI preset, Azure's v1 API) are served by passthrough
from the fakes' Responses endpoint (tests/support/fake_openai_responses.py); the rest are
translated. A cell's expectation is derived from the declarations as in the chat matrix: a
target without json_schema must refuse that scenario with a 400 naming `text.format` that
never reached the upstream.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from core.api.responses.plan import responses_url
from core.providers.adapters.base import Target
from tests.support import fake_openai_responses
from tests.support.providers import provider_of
from tests.test_conformance_matrix import (
    CONFIGS,
    PROVIDERS,
    RESPONSE_FORMAT,
    RESULTS,
    Matrix,
    Provider,
    declared,
    matrix,
)

__all__ = ["matrix"]  # the chat matrix's fixture: one Stack for both
SCHEMA: Any = {"type": "json_schema", **RESPONSE_FORMAT["json_schema"]}  # Responses shape
TOOLS: Any = [
    {
        "type": "function",
        "name": name,
        "description": f"{name} of something",
        "parameters": {"type": "object", "properties": {arg: {"type": "string"}}},
    }
    for name, arg in (("get_weather", "city"), ("get_stock_price", "ticker"), ("get_time", "zone"))
]
PASSTHROUGH_USAGE = (12, 7)  # what the fakes' Responses endpoint reports


def native(provider: Provider) -> bool:
    """Whether the row's target speaks the Responses API (served by passthrough)."""
    config = CONFIGS[provider.name]
    built = provider_of(config)
    return responses_url(Target(built, "m", None)) is not None


def cells(scenario: str) -> list[Any]:
    out = []
    for provider in PROVIDERS:
        role = {"cut": "cut_stream", "tools": "tools", "json": "json"}.get(scenario, "text")
        model = provider.model_for(role)
        if model is None or (scenario != "text" and provider.fake is None):
            continue
        out.append(pytest.param(provider, model, id=f"{scenario}-{provider.name}"))
    return out


def model_of(provider: Provider, model: str) -> str:
    return f"{provider.name}/{model}"


@pytest.mark.parametrize(("provider", "model"), cells("text"))
def test_text(matrix: Matrix, provider: Provider, model: str) -> None:
    response = matrix.chat.responses.create(
        model=model_of(provider, model), input="Say hello", store=False
    )
    assert response.status == "completed"
    usage = response.usage
    assert usage is not None
    if provider.fake is None:  # the mock: deterministic text of its own
        assert response.output_text
        return
    assert response.output_text == provider.text
    expected = PASSTHROUGH_USAGE if native(provider) else provider.usage
    assert (usage.input_tokens, usage.output_tokens) == expected


@pytest.mark.parametrize(("provider", "model"), cells("stream"))
def test_stream(matrix: Matrix, provider: Provider, model: str) -> None:
    with matrix.chat.responses.stream(
        model=model_of(provider, model), input="Say hello", store=False
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == provider.text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"


@pytest.mark.parametrize(("provider", "model"), cells("tools"))
def test_tools_round_trip(matrix: Matrix, provider: Provider, model: str) -> None:
    name = model_of(provider, model)
    first = matrix.chat.responses.create(model=name, input="Weather and price?", tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    if native(provider):
        expected = [(c, n, json.loads(a)) for c, n, a in fake_openai_responses.CALLS]
        answer = "Tool results: 18C | $42"
    else:
        scripted = provider.calls[model]
        expected = [(c.id, c.name, c.arguments) for c in scripted]
        answer = provider.tool_answer([RESULTS[c.name] for c in scripted])
    got = [(c.call_id, c.name, json.loads(c.arguments)) for c in calls]
    assert [(n, a) for _, n, a in got] == [(n, a) for _, n, a in expected]
    assert all(i is None or i == c for (c, _, _), (i, _, _) in zip(got, expected, strict=True))
    assert all(c.call_id for c in calls)
    outputs: Any = [
        {"type": "function_call_output", "call_id": c.call_id, "output": RESULTS[c.name]}
        for c in calls
    ]
    second = matrix.chat.responses.create(
        model=name, input=outputs, tools=TOOLS, previous_response_id=first.id, store=False
    )
    assert second.output_text == answer


@pytest.mark.parametrize(("provider", "model"), cells("json"))
def test_json_schema(matrix: Matrix, provider: Provider, model: str) -> None:
    name = model_of(provider, model)
    if native(provider) or declared(provider.name, model).json_schema:
        response = matrix.chat.responses.create(
            model=name, input="answer", text={"format": SCHEMA}, store=False
        )
        if not native(provider):  # the Responses fake does not script JSON
            assert json.loads(response.output_text) == provider.json_answer
        return
    fake = matrix.fakes[provider.fake or ""]
    before = len(fake.received)
    with pytest.raises(openai.BadRequestError) as info:
        matrix.chat.responses.create(model=name, input="x", text={"format": SCHEMA}, store=False)
    assert info.value.response.json()["error"]["param"] == "text.format"
    assert len(fake.received) == before


@pytest.mark.parametrize(("provider", "model"), cells("cut"))
def test_cut_stream(matrix: Matrix, provider: Provider, model: str) -> None:
    events = list(
        matrix.chat.responses.create(
            model=model_of(provider, model), input="Say hello", stream=True, store=False
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
