"""GET /v1/usage through a real stack (edge + core subprocesses), on each ledger store (the
embedded SQLite file and a private PostgreSQL), and `interlock usage` against the same store:
a tenant sees exactly its own ledger rows, tenant B
can never read tenant A's usage through any parameter, an operator (admin token) sees every
tenant and exports CSV, totals equal the raw records, and bad parameters are 400s naming them.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from core.ops.cli import main
from core.ops.keys import load_signing_key
from tests.support import hop_client, raw
from tests.support.ledger_load import ledger_rows
from tests.support.postgres_server import PostgresServer
from tests.support.sdk import client
from tests.support.stack import Stack

A, B = "acme", "beta"
# (tenant, model, tags) per request made through the official SDK.
TRAFFIC = [
    (A, "mock-1", "project=search"),
    (A, "mock-1", "project=search"),
    (A, "mock-2", "project=ads"),
    (B, "mock-1", "project=search"),
]


Row = Mapping[str, Any]  # a raw ledger record, read straight from the store's database


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The same stack and traffic on each store: SQLite (the default) or PostgreSQL."""
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


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start": "yesterday"}, "start"),
        ({"start": "nan"}, "start"),
        ({"start": "100", "end": "50"}, "end"),
        ({"group_by": "week"}, "group_by"),
        ({"group_by": "model,model"}, "group_by"),
        ({"group_by": "tag:a,tag:b"}, "group_by"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "\u00b2"}, "limit"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "start"),
        ({"cursor": "not-a-cursor", "group_by": "model"}, "cursor"),
        ({"tag": "project"}, "tag"),
        ({"format": "xml"}, "format"),
        ({"modle": "mock-1"}, "modle"),
        ({"model": "m" * 600}, "model"),
    ],
)
def test_bad_parameters_are_400s_naming_them(
    stack: Stack, params: dict[str, str], param: str
) -> None:
    answer = usage(stack, stack.token(A), **params)
    assert answer.status == 400, answer.body.decode()
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


DAY = 86400


@pytest.mark.parametrize(
    ("params", "longest", "step"),
    [
        ({"start": "100.5"}, 7 * DAY, 1),  # raw records
        ({"start": str(DAY), "group_by": "minute"}, 7 * DAY, 60),  # minute rollups
        ({"start": str(DAY + 60)}, 7 * DAY, 60),  # minute rollups (range on whole minutes)
        ({"start": str(DAY), "group_by": "hour"}, 92 * DAY, 3600),
        ({"start": str(DAY), "group_by": "model"}, 3660 * DAY, DAY),  # day rollups
    ],
)
def test_the_range_is_bounded_by_what_it_reads(
    stack: Stack, params: dict[str, str], longest: int, step: int
) -> None:
    """The longest range (core.ledger.query.MAX_SPAN_S) is answered; one step of its grain
    more is a 400 naming `end`, whose message says how long it may be."""
    start = float(params["start"])
    token = stack.token(A)
    at_most = usage(stack, token, **params, end=str(start + longest))
    assert at_most.status == 200, at_most.body.decode()
    beyond = usage(stack, token, **params, end=str(start + longest + step))
    assert beyond.status == 400
    error = beyond.json()["error"]
    assert error["param"] == "end" and f"at most {longest // DAY} days" in error["message"]
    assert usage(stack, token, limit="1001").json()["error"]["param"] == "limit"


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


def test_an_oversized_query_string_is_refused_at_the_edge(stack: Stack) -> None:
    answer = usage(stack, stack.token(A), group_by="model", tag="k:" + "v" * 5000)
    assert answer.status == 400 and answer.json()["error"]["code"] == "query_too_long"


def _cursor(data: object) -> str:
    """A forged cursor (json, not orjson: it must carry integers beyond 64 bits)."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


ODD_QUERIES = [
    "start=1e400",
    "start=-1",
    "start=" + "9" * 400,
    "start=2026-02-30",
    "start=2026-01-01T25:00",
    "start=%00",
    "start=%F0%9F%98%80",
    "start=0x10",
    "start=1_780_000_000",
    "start=-infinity",
    "end=1e-9",
    "start=1780000000&end=1780000000.0000001",
    "start=0&end=253402300799",
    "start=0001-01-01T00:00:00-23:59",
    "start=9999-12-31T23:59:59-23:59",
    "start=2026-01-01T00:00:00.1234567890123Z",
    "start=2026-W01-1",
    "start=%E2%80%8B1780000000",
    "start=%EF%BC%91%EF%BC%97",
    "start=1780000000&end=1780000000",
    "limit=" + "9" * 400,
    "limit=-1",
    "limit=1.5",
    "limit=%EF%BC%91",
    "limit=",
    "model=%00",
    "model=%FF%FE",
    "model=%ED%A0%80",
    "model=%C3%A9%F0%9F%98%80",
    "tag=k:%00",
    "tag=%00:v",
    "group_by=tag:%00",
    "group_by=tag:%C3%A9&tag=%C3%A9:%00",
    "group_by=%2C%2C",
    "group_by=",
    "cursor=",
    "cursor=%00&group_by=model",
    "format=CSV",
    "limit=1&limit=2",
    "%C3%A9=1",
    "%ZZ=%ZZ",
    "model=%E0%A4%A",
    "=1&&&;",
    "group_by=model;limit=1",
    "group_by=+model+",
    "tag=%3A%3A%3A",
    "tag=k:v:w&group_by=tag:k",
    "%00=1",
    "tenant=%00",
    "served_model=" + "%F0%9F%98%80" * 128,
    "group_by=day&cursor=" + _cursor({"g": ["day"], "v": [2**70]}),
    "group_by=day&cursor=" + _cursor({"g": ["day"], "v": [2**63]}),
    "group_by=day&cursor=" + _cursor({"g": ["day"], "v": [-(2**63)]}),
    "group_by=day&cursor=" + _cursor({"g": ["day"], "v": [True]}),
    "group_by=model&cursor=" + _cursor({"g": ["model"], "v": ["\x00"]}),
    "group_by=model&cursor=" + _cursor({"g": ["model"], "v": ["x" * 400]}),
    "group_by=model&cursor=eyJnIjpbIm1vZGVsIl0sInYiOlsiXHVkODAwIl19",  # a lone surrogate
]


@pytest.mark.parametrize("admin", [False, True], ids=["tenant", "admin"])
def test_no_query_string_makes_a_5xx(stack: Stack, admin: bool) -> None:
    """Odd input in every parameter is a 200, or a 4xx whose JSON names the parameter (""
    for one with no name)."""
    token = admin_token(stack) if admin else stack.token(A)
    headers = {"authorization": f"Bearer {token}"}
    for query in ODD_QUERIES:
        answer = raw.request("GET", f"{stack.edge_url}/v1/usage?{query}", headers=headers)
        assert answer.status < 500, (query, answer.body[:300])
        if answer.status != 200:
            error = answer.json()["error"]
            assert error["param"] or query.startswith("="), (query, error)
