"""The edge's request ids: unique, and ordered by when they were minted (edge/request_ids.py),
so the ledger's primary-key inserts land at the index's right edge."""

from __future__ import annotations

import re

import pytest

from edge import request_ids
from edge.request_ids import new_request_id

_SHAPE = re.compile(r"req_[0-9a-f]{32}")


def test_an_id_is_the_prefix_the_millisecond_and_80_random_bits() -> None:
    rid = new_request_id()
    assert _SHAPE.fullmatch(rid), rid
    millis = int(rid[4:16], 16)
    assert abs(millis - request_ids.time.time_ns() // 1_000_000) < 60_000


def test_ids_minted_later_sort_after_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_700_000_000_000_000_000, 1_700_000_100_000_000_000, 7_919_000))
    monkeypatch.setattr(request_ids.time, "time_ns", lambda: next(clock))
    ids = [new_request_id() for _ in range(2_000)]
    assert ids == sorted(ids)


def test_ids_minted_in_one_millisecond_never_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_ids.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    ids = {new_request_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert len({rid[:16] for rid in ids}) == 1  # one millisecond: only the random part differs
