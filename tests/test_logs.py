"""Structured logs: one JSON object per line with the same envelope for every logger (the usage
lines included), the request's ids when a request is being served, exceptions by type and
stack, the plain format on request, and breaker state changes logged once where they happen."""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

import orjson
import pytest

from core.observe.usagelog import UsageLog
from core.providers.adapters.base import ProviderError
from core.resilience.circuit import BreakerPolicy
from core.resilience.circuit_board import BreakerBoard
from core.state.store import MemoryStore
from shared.errors import FailureClass
from shared.logs import JsonFormatter, TextFormatter, timestamp


def record(msg: str, **extra: Any) -> logging.LogRecord:
    entry = logging.LogRecord("interlock.core", logging.WARNING, __file__, 1, msg, ("x",), None)
    entry.created = 1_764_662_400.25  # 2025-12-02T08:00:00.250Z
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_a_line_is_one_json_object_with_the_envelope_and_the_request_ids() -> None:
    line = JsonFormatter().format(record("failover from %s", request_id="req_1", trace_id="ab"))
    assert "\n" not in line
    assert orjson.loads(line) == {
        "ts": "2025-12-02T08:00:00.250Z",
        "level": "warning",
        "logger": "interlock.core",
        "msg": "failover from x",
        "request_id": "req_1",
        "trace_id": "ab",
    }
    plain = orjson.loads(JsonFormatter().format(record("no request %s")))
    assert set(plain) == {"ts", "level", "logger", "msg"}


def test_an_exception_gives_its_type_and_stack() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = record("failed %s")
        entry.exc_info = sys.exc_info()
    line = orjson.loads(JsonFormatter().format(entry))
    assert line["error"] == "ValueError" and "Traceback" in line["stack"]


def test_the_text_format_ends_with_the_ids() -> None:
    text = TextFormatter().format(record("failover from %s", request_id="req_9"))
    assert text.endswith("WARNING interlock.core failover from x request_id=req_9")


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert timestamp(0.001) == "1970-01-01T00:00:00.001Z"
    assert timestamp(1_764_662_400.999) == "2025-12-02T08:00:00.999Z"


def test_usage_lines_have_the_same_envelope() -> None:
    stream = io.BytesIO()
    usage = UsageLog(stream)
    usage.write({"request_id": "req_2", "tenant": "acme", "outcome": "ok"})
    line = orjson.loads(stream.getvalue())
    assert line["logger"] == "interlock.usage" and line["level"] == "info"
    assert line["msg"] == "request" and line["ts"].endswith("Z")
    assert (line["request_id"], line["tenant"], line["outcome"]) == ("req_2", "acme", "ok")


def test_breaker_changes_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    board = BreakerBoard(BreakerPolicy(min_requests=2, open_s=0.0), MemoryStore())
    failure = ProviderError(503, "down", FailureClass.TRANSIENT)
    with caplog.at_level(logging.INFO, logger="interlock.core"):
        for _ in range(3):
            board.record("p/m", failure)
        probe = board.permit("p/m")
        assert probe
        board.record("p/m", None, probe)
    changes = [r.getMessage() for r in caplog.records if "circuit of" in r.getMessage()]
    assert changes == [
        "circuit of p/m: closed -> open (transient failures)",
        "circuit of p/m: open -> half_open (open period over: one probe)",
        "circuit of p/m: half_open -> closed (the probe succeeded)",
    ]
    assert [r.levelname for r in caplog.records if "circuit of" in r.getMessage()] == [
        "WARNING",
        "INFO",
        "INFO",
    ]
