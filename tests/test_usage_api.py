"""GET /v1/usage through a real stack (edge + core subprocesses, tests/support/usage_stack.py)
on each ledger store (the embedded SQLite file and a private PostgreSQL), and `interlock usage`
against the same store: a tenant sees exactly its own ledger rows, tenant B can never read
tenant A's usage through any parameter, an operator (admin token) sees every tenant and exports
CSV (page by page), and totals equal the raw records. Parameters: test_usage_api_params.py.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from core.ops.cli import main
from core.ops.keys import load_signing_key
from tests.support import hop_client, raw
from tests.support.net import free_port
from tests.support.postgres_server import PostgresServer
from tests.support.stack import Stack
from tests.support.usage_stack import (
    STORES,
    TRAFFIC,
    A,
    B,
    admin_token,
    picked,
    records,
    sums,
    usage,
    usage_stack,
)


@pytest.fixture(scope="module", params=STORES)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    yield from usage_stack(request, tmp_path_factory)


def test_a_tenant_sees_exactly_its_ledger_rows_and_totals_equal_the_raw_records(
    stack: Stack,
) -> None:
    mine = records(stack, A)
    answer = usage(stack, stack.token(A), group_by="model")
    assert answer.status == 200, answer.body.decode()
    body = answer.json()
    assert body["object"] == "list" and body["next_cursor"] is None
    by_model = {row["model"]: picked(row) for row in body["data"]}
    assert by_model == {
        model: sums([r for r in mine if r["requested_model"] == model])
        for model in ("mock-1", "mock-2")
    }
    assert picked(body["totals"]) == sums(mine)
    micros = body["totals"]["cost_micros"]
    assert micros > 0 and body["totals"]["cost"] == f"{micros // 10**6}.{micros % 10**6:06d}"
    # A range not on whole minutes is answered from the raw records: the same totals.
    start = time.time() - 3600.5
    unaligned = usage(stack, stack.token(A), start=str(start), end=str(time.time() + 60.25))
    assert picked(unaligned.json()["totals"]) == sums(mine)


def test_pages_follow_the_cursor_to_the_same_rows(stack: Stack) -> None:
    token = stack.token(A)
    whole = usage(stack, token, group_by="model").json()["data"]
    first = usage(stack, token, group_by="model", limit=1).json()
    assert first["has_more"] and len(first["data"]) == 1
    second = usage(stack, token, group_by="model", limit=1, cursor=first["next_cursor"]).json()
    assert second["next_cursor"] is None
    assert first["data"] + second["data"] == whole


def test_tenant_b_can_never_read_tenant_a_through_any_parameter(stack: Stack) -> None:
    token = stack.token(B)
    only_b = sums(records(stack, B))
    refused = usage(stack, token, tenant=A)
    assert refused.status == 403
    assert refused.json()["error"]["param"] == "tenant"
    assert usage(stack, token, tenant=[B, A]).status == 400  # repeated: never guessed
    # Every way to group or filter shows B's own rows only.
    for params in (
        {"group_by": "tenant"},
        {"group_by": "tenant,model,provider,served_model"},
        {"group_by": "tag:project", "tag": "project:search"},
        {"group_by": "day,tenant"},
        {"tenant": B},
    ):
        body = usage(stack, token, **params).json()
        assert picked(body["totals"]) == only_b, params
        assert all(row.get("tenant", B) == B for row in body["data"]), params
        assert sum(row["requests"] for row in body["data"]) == only_b["requests"], params
    nothing = usage(stack, token, model="mock-2").json()  # only A used mock-2
    assert nothing["data"] == [] and nothing["totals"]["requests"] == 0
    # A cursor taken from A's page resumes within B's rows, never A's.
    a_page = usage(stack, stack.token(A), group_by="tenant,model", limit=1).json()
    assert a_page["next_cursor"] is not None
    resumed = usage(stack, token, group_by="tenant,model", cursor=a_page["next_cursor"]).json()
    assert all(row["tenant"] == B for row in resumed["data"])
    text = usage(stack, token, group_by="tenant", format="csv").body.decode()
    assert [row["tenant"] for row in csv.DictReader(io.StringIO(text))] == [B]


def test_an_operator_sees_every_tenant_filters_by_one_and_exports_csv(stack: Stack) -> None:
    token = admin_token(stack)
    body = usage(stack, token, group_by="tenant").json()
    assert {row["tenant"]: picked(row) for row in body["data"]} == {
        A: sums(records(stack, A)),
        B: sums(records(stack, B)),
    }
    assert picked(body["totals"]) == sums(records(stack))
    only_a = usage(stack, token, tenant=A, group_by="model").json()
    assert picked(only_a["totals"]) == sums(records(stack, A))
    for answer in (
        usage(stack, token, group_by="tenant,model", format="csv"),
        usage(stack, token, accept="text/csv", group_by="tenant,model"),
    ):
        assert answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(answer.body.decode())))
        assert sum(int(row["requests"]) for row in rows) == len(TRAFFIC)
        assert {row["tenant"] for row in rows} == {A, B}
        assert sum(int(row["cost_micros"]) for row in rows) == sums(records(stack))["cost_micros"]


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_csv_pages_follow_the_cursor_header_across_the_boundary(stack: Stack, limit: int) -> None:
    """Three groups in pages of 1, 2 or 3: every page has the header row and at most `limit`
    rows, the cursor header is there exactly while rows remain (none when the last page is
    exactly full), and the pages together are the JSON report's rows, in order."""
    token = admin_token(stack)
    params = {"group_by": "tenant,model", "format": "csv", "limit": str(limit)}
    whole = usage(stack, token, group_by="tenant,model").json()["data"]
    assert len(whole) == 3
    rows: list[dict[str, str]] = []
    cursor: str | None = None
    for _ in range(4):
        answer = usage(stack, token, **params, **({"cursor": cursor} if cursor else {}))
        assert answer.status == 200, answer.body.decode()
        text = answer.body.decode()
        assert text.startswith("tenant,model,requests,")
        page = list(csv.DictReader(io.StringIO(text)))
        assert 1 <= len(page) <= limit
        rows += page
        cursor = answer.headers.get("x-interlock-next-cursor")
        assert (cursor is None) == (len(rows) == len(whole))
        if cursor is None:
            break
    assert [(r["tenant"], r["model"], int(r["requests"])) for r in rows] == [
        (w["tenant"], w["model"], w["requests"]) for w in whole
    ]


def test_the_query_string_is_bound_into_the_hop_credential(stack: Stack) -> None:
    """A hop credential signed for B's query cannot be replayed with another query."""
    secret = stack.env["INTERLOCK_HOP_SECRET"]
    signed_for = "/v1/usage?tenant=beta"
    headers, _ = hop_client.signed(secret, None, path=signed_for, method="GET", tenant=B)
    tampered = raw.request("GET", f"{stack.core_url}/v1/usage?tenant=acme", headers=headers)
    assert tampered.status == 401
    headers, _ = hop_client.signed(secret, None, path=signed_for, method="GET", tenant=B)
    honest = raw.request("GET", f"{stack.core_url}{signed_for}", headers=headers)
    assert honest.status == 200 and honest.json()["totals"]["requests"] == 1


def test_the_cli_prints_the_same_report_from_the_store(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(stack.config_path)]
    assert main([*config, "usage", "--group-by", "tenant", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {row["tenant"]: int(row["requests"]) for row in rows} == {A: 3, B: 1}
    assert main([*config, "usage", "--tenant", A, "--group-by", "model"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["model", "requests"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["mock-1", "2"],
        ["mock-2", "1"],
        ["total", "3"],
    ]
    assert main([*config, "usage", "--group-by", "week"]) == 2
    assert "--group-by" in capsys.readouterr().err
    # Every page is followed: pages of one row print the same report.
    whole = ["usage", "--group-by", "tenant,model", "--csv"]
    assert main([*config, *whole]) == 0
    one = capsys.readouterr().out
    assert main([*config, *whole, "--page-size", "1"]) == 0
    assert capsys.readouterr().out == one and len(one.splitlines()) == 4  # header, 3 groups
    # The store's own rules name the option too (a tag needs whole minutes).
    tagged = ["usage", "--tag", "project:search", "--start", "100.5", "--end", "200"]
    assert main([*config, *tagged]) == 2
    assert capsys.readouterr().err.startswith("interlock: --start: ")


def test_the_cli_says_when_the_store_is_unreachable_and_never_prints_its_url(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"postgresql://postgres:pw-secret-1@127.0.0.1:{free_port()}/ledger"
    missing = postgres.url.replace("postgres@", "postgres:pw-secret-1@") + "_no_such_db"
    for n, url in enumerate((closed, missing)):
        config = Stack(tmp_path / str(n), {"ledger": {"url": url}}).config_path
        assert main(["--config", str(config), "usage"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("interlock: the ledger store is unavailable (")
        assert "pw-secret" not in err and "Traceback" not in err


def test_an_admin_claim_that_is_not_true_or_false_is_refused(stack: Stack) -> None:
    """Only a boolean `admin` claim counts: a truthy string is a 401, never an operator."""
    private, alg, kid = load_signing_key(stack.config.auth)
    now = int(time.time())
    claims = {
        "iss": stack.config.auth.issuer,
        "aud": stack.config.auth.audience,
        "sub": B,
        "iat": now,
        "exp": now + 300,
        "jti": "forged-admin",
        "admin": "true",
    }
    token = jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})
    answer = usage(stack, token, group_by="tenant")
    assert answer.status == 401 and b"admin" in answer.body
