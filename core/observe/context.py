"""The request being served, for code far from its handler.

Two concerns need the caller deep inside shared machinery without threading it through every
endpoint: the breaker board attributes an upstream failure to the tenant whose request caused
it, and the error scrubber writes the upstream's original text to the operator's log under the
request id. The core sets this once per authenticated request (core.app); a context variable
follows the request into the tasks it spawns (stream relays included) and nowhere else.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    tenant: str
    request_id: str
    trace_id: str | None = None


_CURRENT: ContextVar[RequestContext | None] = ContextVar("interlock_request", default=None)


def bind(tenant: str, request_id: str, trace_id: str | None = None) -> Token[RequestContext | None]:
    """Each request runs in its own task (and context copy): no reset is needed after it."""
    return _CURRENT.set(RequestContext(tenant, request_id, trace_id))


def current() -> RequestContext | None:
    """The request this code runs for, or None outside one (start-up, background tasks)."""
    return _CURRENT.get()


class RequestIds(logging.Filter):
    """Puts the request id and trace id on every log record written while serving a request
    (a failover warning, a scrubbed upstream error), as the `request_id` and `trace_id`
    attributes both of shared.logs' formats write out, so a tenant's complaint (the
    x-request-id it got) leads to the line and to the trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _CURRENT.get()
        if ctx is not None and not hasattr(record, "request_id"):
            record.request_id = ctx.request_id
            record.trace_id = ctx.trace_id
        return True


_FILTER = RequestIds()


def install_log_ids(logger: logging.Logger) -> None:
    """On every handler of `logger` (a handler's filter sees its child loggers' records too,
    a logger's would not); once, however often the core starts in one process."""
    for handler in logger.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
