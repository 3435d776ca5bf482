"""Process logging set-up: one JSON object per line, the same envelope for every line of both
tiers (operator messages and the core's usage lines alike), so one log pipeline parses all.

    {"ts": "2026-12-02T08:50:01.123Z", "level": "warning", "logger": "interlock.core",
     "msg": "failover from openai/gpt-4o: transient", "request_id": "req_...",
     "trace_id": "4bf9..."}

`request_id` and `trace_id` are on every line written while a request is served (the core puts
them on the record: core.observe.context), so a tenant's complaint (the x-request-id it got)
leads to the lines and to the trace. An exception adds `error` (its type) and `stack`.
`INTERLOCK_LOG_FORMAT=text` gives the plain format for a terminal; `INTERLOCK_LOG_LEVEL` the
level (INFO). Content (prompts, completions, keys) is never logged by default.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

# Record attributes carried into the line when a filter or the call site set them.
CONTEXT_FIELDS = ("request_id", "trace_id", "tenant")


_second: list[Any] = [-1, ""]  # the last whole second formatted (usage lines come in bursts)


def timestamp(seconds: float) -> str:
    """UTC, millisecond precision, as every line gives it."""
    whole = int(seconds)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int((seconds - whole) * 1000):03d}Z"


def envelope(seconds: float, level: str, logger: str, msg: str) -> dict[str, Any]:
    return {"ts": timestamp(seconds), "level": level, "logger": logger, "msg": msg}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = envelope(record.created, record.levelname.lower(), record.name, record.getMessage())
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["stack"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The plain format, with the request's ids at the end when there are any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None)]
        return f"{text} {' '.join(ids)}" if ids else text


def json_format() -> bool:
    return os.environ.get("INTERLOCK_LOG_FORMAT", "json").strip().lower() != "text"


def configure_logging() -> None:
    """The gateway's loggers, and uvicorn's (started with log_config=None: shared.server), on
    one stderr handler in one format."""
    level = os.environ.get("INTERLOCK_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format() else TextFormatter())
    for name, at in (("interlock", level), ("uvicorn", "INFO")):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(at)
        logger.propagate = False
