"""Findings 3 and 9 (identity on the hop), through the real edge and core: any valid `sub` and
`tier` (non-ASCII, inner spaces, 256 characters) reaches the core exactly, the request is served,
and the usage log names the exact tenant. Before, a non-ASCII sub was a 401 that blamed the
caller (latin-1 header decoding). Subs with control characters or padding are refused at the
edge as invalid tokens (tests/test_jwt_attacks.py); before, they were 500/502 at the edge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import raw
from tests.support.logs import usage_entries
from tests.support.stack import Stack

CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
ODD_TIER = "gold tier · ü"
SUBS = ["café", "a b", "é" * 256, "租户 · tab", "Ω≈ç√∫"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    overrides = {"limits": {"tiers": {ODD_TIER: {"rpm": 1000}, "default": {}}}}
    running = Stack(Path(tmp_path_factory.mktemp("hop-identity")), overrides).start()
    yield running
    running.stop()


def usage_line(stack: Stack, request_id: str) -> dict[str, Any]:
    logs = stack.wait_for_log("interlock.usage", request_id)
    for entry in usage_entries(logs):
        if entry["request_id"] == request_id:
            return entry
    raise AssertionError(request_id)


@pytest.mark.parametrize("sub", SUBS)
def test_any_sub_is_served_and_logged_exactly(stack: Stack, sub: str) -> None:
    token = stack.token(tenant=sub, models=["mock-*"])
    response = raw.post(f"{stack.edge_url}/v1/chat/completions", CHAT, token)
    assert response.status == 200, response.body
    line = usage_line(stack, response.headers["x-request-id"])
    assert line["tenant"] == sub
    listed = raw.request(
        "GET", f"{stack.edge_url}/v1/models", headers={"authorization": f"Bearer {token}"}
    )
    assert listed.status == 200 and [m["id"] for m in listed.json()["data"]] == ["mock-1"]


def test_an_odd_tier_reaches_the_core_exactly(stack: Stack) -> None:
    """The configured limits of exactly that tier apply: the core matched the exact string."""
    token = stack.token(tenant="café", tier=ODD_TIER)
    response = raw.post(f"{stack.edge_url}/v1/chat/completions", CHAT, token)
    assert response.status == 200, response.body
    assert response.headers["x-ratelimit-limit-requests"] == "1000"
    line = usage_line(stack, response.headers["x-request-id"])
    assert (line["tenant"], line["tier"]) == ("café", ODD_TIER)
