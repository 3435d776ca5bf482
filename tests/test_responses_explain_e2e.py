"""Route explanation for the Responses API, end to end: POST /admin/route/explain with
`"api": "responses"` on a real core's admin listener (and `interlock route explain --api
responses`), checked against what a real `responses.create` through the edge got.

The Responses request is explained as it runs: its routing rule and route, the candidates
priced for its translated estimate, translated targets skipped with `capability` for what only
a target speaking the API serves (built-in tools), the `previous_response_id` history read
from the tenant's own store (it grows the estimate; another tenant's id is a 404 naming it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from core.ops.cli import main
from tests.support import raw
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack


def target(provider: str, model: str) -> dict[str, str]:
    return {"provider": provider, "model": model}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Stack]:
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "claude": {"kind": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "sk-x"},
            "native": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_key": "sk-up",
                "options": {"preset": "openai"},
                "allow_any_model": True,
            },
        },
        "routing": {
            "headers": ["x-policy"],
            "routes": {
                "mixed": {
                    "strategy": "cost",
                    "targets": [
                        target("claude", "claude-test"),
                        target("native", "gpt-5"),
                        target("mock", "cheap"),
                    ],
                },
            },
            "rules": [{"id": "mixed", "when": {"header.x-policy": "mixed"}, "route": "mixed"}],
        },
        "prices": {
            "models": {
                "native/gpt-5": {"input": "5.00", "output": "15.00"},
                "mock/cheap": {"input": "0.10", "output": "0.40"},
                "claude/claude-test": {"input": "1.00", "output": "2.00"},
            }
        },
    }
    running = Stack(Path(tmp_path_factory.mktemp("responses-explain")), overrides).start()
    yield running
    running.stop()


def explain(stack: Stack, request: dict[str, Any], tenant: str = "acme") -> raw.RawResponse:
    body = {
        "tenant": tenant,
        "api": "responses",
        "headers": {"x-policy": "mixed"},
        "request": request,
    }
    return raw.post(f"{stack.core_admin_url}/admin/route/explain", body)


def client(stack: Stack, tenant: str = "acme") -> openai.OpenAI:
    token = stack.token(tenant=tenant)
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)


def test_a_responses_request_is_explained_as_it_is_served(stack: Stack) -> None:
    request = {"model": "mock-1", "input": "hi", "max_output_tokens": 20}
    served = client(stack).responses.with_raw_response.create(
        **request, extra_headers={"x-policy": "mixed"}
    )
    answer = explain(stack, request)
    assert answer.status == 200, answer.body
    body = answer.json()
    assert (body["rule"], body["route"], body["strategy"]) == (
        served.headers["x-interlock-route"],
        "mixed",
        served.headers["x-interlock-strategy"],
    )
    assert body["estimate"]["max_output_tokens"] == 20
    rows = {c["target"]: c for c in body["candidates"]}
    assert list(rows) == ["claude/claude-test", "native/gpt-5", "mock/cheap"]
    assert all(row["skipped"] is None for row in rows.values())
    assert served.headers["x-interlock-model"] == "cheap" and rows["mock/cheap"]["order"] == 1


def test_built_in_tools_skip_the_translated_targets(stack: Stack) -> None:
    request = {"model": "mock-1", "input": "search", "tools": [{"type": "web_search"}]}
    rows = {c["target"]: c for c in explain(stack, request).json()["candidates"]}
    for translated in ("claude/claude-test", "mock/cheap"):
        assert rows[translated]["skipped"] == "capability"
        assert "tools[0].type" in rows[translated]["why"]
    assert rows["native/gpt-5"]["skipped"] is None and rows["native/gpt-5"]["order"] == 1


def test_previous_response_id_is_read_from_the_tenants_store(stack: Stack) -> None:
    earlier = client(stack).responses.create(
        model="mock-1", input="a long first turn " * 200, extra_headers={"x-policy": "mixed"}
    )
    alone = explain(stack, {"model": "mock-1", "input": "and now?"}).json()
    continued = explain(
        stack, {"model": "mock-1", "input": "and now?", "previous_response_id": earlier.id}
    ).json()
    assert continued["estimate"]["input_tokens"] > alone["estimate"]["input_tokens"] + 200
    theirs = explain(
        stack, {"model": "mock-1", "input": "x", "previous_response_id": earlier.id}, "globex"
    )
    assert theirs.status == 404
    assert theirs.json()["error"]["param"] == "request.previous_response_id"


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"model": "mock-1"}, "request.input"),
        ({"model": "mock-1", "input": "x", "temperature": "hot"}, "request.temperature"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(
    stack: Stack, request_body: dict[str, Any], param: str
) -> None:
    answer = explain(stack, request_body)
    assert answer.status == 400, answer.body
    assert answer.json()["error"]["param"] == param


def test_the_cli_explains_a_responses_request(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--config", str(stack.config_path), "route", "explain", "--tenant", "acme"]
    args = [*base, "--api", "responses", "--model", "mock-1", "--header", "x-policy=mixed"]
    assert main([*args, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["route"] == "mixed" and len(body["candidates"]) == 3
