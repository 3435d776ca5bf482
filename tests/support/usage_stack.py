"""The usage API's end-to-end stack: edge + core subprocesses on one ledger store (the embedded
SQLite file or a private PostgreSQL), the same traffic from two tenants through the official
SDK, and helpers to ask the API and to read the raw records straight from the database."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import pytest

from core.ops.cli import main
from tests.support import raw
from tests.support.ledger_load import ledger_rows
from tests.support.postgres_server import PostgresServer
from tests.support.sdk import client
from tests.support.stack import Stack

STORES = ["sqlite", "postgres"]
A, B = "acme", "beta"
# (tenant, model, tags) per request made through the official SDK.
TRAFFIC = [
    (A, "mock-1", "project=search"),
    (A, "mock-1", "project=search"),
    (A, "mock-2", "project=ads"),
    (B, "mock-1", "project=search"),
]


Row = Mapping[str, Any]  # a raw ledger record, read straight from the store's database


def usage_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A module fixture's body: the stack and traffic on the store `request.param` names."""
    models = {
        "mock-1": {"provider": "mock", "model": "mock-1"},
        "mock-2": {"provider": "mock", "model": "mock-2"},
    }
    ledger: dict[str, str] = {"flush_interval": "50ms"}
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        ledger["url"] = server.database()
    overrides = {"models": models, "ledger": ledger}
    stack = Stack(tmp_path_factory.mktemp(f"usage-{request.param}"), overrides).start()
    assert stack.config.ledger.url.startswith(ledger.get("url", "sqlite:///"))
    try:
        for tenant, model, tags in TRAFFIC:
            sdk = client(stack).with_options(api_key=stack.token(tenant))
            sdk.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"hello from {tenant}"}],
                extra_headers={"x-interlock-tags": tags},
            )
        assert len(ledger_rows(stack.config.ledger.url, len(TRAFFIC))) == len(TRAFFIC)  # flushed
        yield stack
    finally:
        stack.stop()


def records(stack: Stack, tenant: str | None = None) -> list[Row]:
    rows = ledger_rows(stack.config.ledger.url, len(TRAFFIC))
    return [row for row in rows if tenant is None or row["tenant"] == tenant]


def usage(stack: Stack, token: str, accept: str = "", **params: Any) -> raw.RawResponse:
    headers = {"authorization": f"Bearer {token}", **({"accept": accept} if accept else {})}
    query = urlencode(params, doseq=True)
    return raw.request("GET", f"{stack.edge_url}/v1/usage?{query}", headers=headers)


def admin_token(stack: Stack) -> str:
    """An operator token, as an operator gets one: `interlock token issue --admin`."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = ["--tenant", "ops", "--models", "*", "--ttl", "10m", "--admin"]
        assert main(["--config", str(stack.config_path), "token", "issue", *args]) == 0
    return out.getvalue().strip()


def sums(rows: list[Row]) -> dict[str, int]:
    return {
        "requests": len(rows),
        "input_tokens": sum(r["input"] for r in rows),
        "output_tokens": sum(r["output"] for r in rows),
        "cost_micros": sum(r["cost_micros"] for r in rows),
    }


def picked(fields: dict[str, Any]) -> dict[str, int]:
    return {name: fields[name] for name in ("requests", "input_tokens", "output_tokens")} | {
        "cost_micros": fields["cost_micros"]
    }
