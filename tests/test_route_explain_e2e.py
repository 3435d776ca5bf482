"""Route explanation end to end: a real core (and edge) with routing rules and a multi-target
`cost` route; explained through the admin listener's POST /admin/route/explain and through
`interlock route explain`, and checked against what a real request through the SDK got."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from core.ops.cli import main
from tests.support import raw
from tests.support.raw import RawResponse
from tests.support.stack import Stack

HI: Any = [{"role": "user", "content": "hi"}]


def target(provider: str, model: str) -> dict[str, str]:
    return {"provider": provider, "model": model}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "claude": {"kind": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "sk-x"},
        },
        "routing": {
            "headers": ["x-policy"],
            "routes": {
                "mixed": {
                    "strategy": "cost",
                    "targets": [
                        target("claude", "claude-test"),
                        target("mock", "dear"),
                        target("mock", "cheap"),
                    ],
                },
            },
            "rules": [
                {"id": "no", "when": {"header.x-policy": "no"}, "refuse": "not here"},
                {"id": "mixed", "when": {"header.x-policy": "mixed"}, "route": "mixed"},
            ],
        },
        "prices": {
            "models": {
                "mock/dear": {"input": "5.00", "output": "15.00"},
                "mock/cheap": {"input": "0.10", "output": "0.40"},
                "claude/claude-test": {"input": "1.00", "output": "2.00"},
            }
        },
    }
    running = Stack(Path(tmp_path_factory.mktemp("route-explain")), overrides).start()
    yield running
    running.stop()


def explain(stack: Stack, body: dict[str, Any], url: str | None = None) -> RawResponse:
    return raw.post(f"{url or stack.core_admin_url}/admin/route/explain", body)


def mixed(request: dict[str, Any]) -> dict[str, Any]:
    return {"tenant": "acme", "headers": {"x-policy": "mixed"}, "request": request}


def test_the_endpoint_shows_the_rule_the_candidates_and_the_skips(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)
    request = {"model": "mock-1", "messages": HI, "max_tokens": 20}
    served = client.chat.completions.with_raw_response.create(
        **request, extra_headers={"x-policy": "mixed"}
    )
    request["response_format"] = {"type": "json_object"}  # claude cannot: a capability skip
    response = explain(stack, mixed(request))
    assert response.status == 200, response.body
    body = response.json()
    assert (body["rule"], body["route"], body["strategy"]) == (
        served.headers["x-interlock-route"],
        "mixed",
        served.headers["x-interlock-strategy"],
    )
    rows = {c["target"]: c for c in body["candidates"]}
    assert list(rows) == ["claude/claude-test", "mock/dear", "mock/cheap"]
    assert rows["claude/claude-test"]["skipped"] == "capability"
    assert "response_format" in rows["claude/claude-test"]["why"]
    assert rows["mock/dear"]["skipped"] is None and rows["mock/cheap"]["skipped"] is None
    assert float(rows["mock/cheap"]["cost_usd"]) < float(rows["mock/dear"]["cost_usd"])
    # The cost strategy served the cheapest, and its latency is now estimated.
    assert served.headers["x-interlock-model"] == "cheap"
    assert rows["mock/cheap"]["latency_ms"] is not None
    assert (rows["mock/cheap"]["order"], rows["mock/dear"]["order"]) == (1, 2)


def test_a_refusal_and_the_default_route(stack: Stack) -> None:
    refused = explain(
        stack, {**mixed({"model": "mock-1", "messages": HI}), "headers": {"x-policy": "no"}}
    )
    assert refused.json()["refused"] == "not here" and refused.json()["rule"] == "no"
    default = explain(stack, {"tenant": "acme", "request": {"model": "mock-1", "messages": HI}})
    assert (default.json()["rule"], default.json()["route"]) == ("default", "mock-1")


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"request": {"model": "mock-1", "messages": HI}}, "tenant", 400),
        ({"tenant": "a", "request": {"model": "mock-1"}}, "request.messages", 400),
        ({"tenant": "a", "request": {"model": "nope", "messages": HI}}, "request.model", 404),
        ({"tenant": "a", "api": "x", "request": {}}, "api", 400),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    stack: Stack, body: dict[str, Any], param: str, status: int
) -> None:
    response = explain(stack, body)
    assert response.status == status, response.body
    assert response.json()["error"]["param"] == param


def test_only_the_admin_listener_serves_it(stack: Stack) -> None:
    response = explain(stack, mixed({"model": "mock-1", "messages": HI}), stack.core_url)
    assert response.status == 404
    via_edge = explain(stack, mixed({"model": "mock-1", "messages": HI}), stack.edge_url)
    assert via_edge.status in (401, 404)


def test_the_cli_prints_a_table_and_the_json(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"messages": HI, "response_format": {"type": "json_object"}}))
    base = ["--config", str(stack.config_path), "route", "explain", "--tenant", "acme"]
    args = [*base, "--model", "mock-1", "--header", "x-policy=mixed", str(request)]
    assert main(args) == 0  # the admin port from the config
    text = capsys.readouterr().out
    assert "rule:     mixed" in text and "strategy: cost" in text
    claude = next(line for line in text.splitlines() if "claude/claude-test" in line)
    assert "skipped: capability" in claude and claude.startswith("-")
    assert main([*args, "--json", "--core", stack.core_admin_url]) == 0
    assert json.loads(capsys.readouterr().out)["route"] == "mixed"
    assert main([*base, "--model", "nope"]) == 2
    assert "request.model" in capsys.readouterr().err
    assert main([*base, "--model", "mock-1", "--core", "http://127.0.0.1:9"]) == 2
