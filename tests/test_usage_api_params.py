"""GET /v1/usage's parameters through a real stack on each ledger store: bad ones are 400s
naming them, the range is bounded by what it reads (core.ledger.query.MAX_SPAN_S), and no odd
query string (huge numbers, bad dates, NUL, broken UTF-8 or escapes, repeated or nameless
parameters, forged cursors) ever makes a 5xx, for a tenant or an operator."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests.support import raw
from tests.support.stack import Stack
from tests.support.usage_stack import STORES, A, admin_token, usage, usage_stack


@pytest.fixture(scope="module", params=STORES)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    yield from usage_stack(request, tmp_path_factory)


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
