"""The request being served, for code far from its handler.

Two concerns need the caller deep inside shared machinery without threading it through every
endpoint: the breaker board attributes an upstream failure to the tenant whose request caused
it, and the error scrubber writes the upstream's original text to the operator's log under the
request id. The core sets this once per authenticated request (core.app); a context variable
follows the request into the tasks it spawns (stream relays included) and nowhere else.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    tenant: str
    request_id: str


_CURRENT: ContextVar[RequestContext | None] = ContextVar("interlock_request", default=None)


def bind(tenant: str, request_id: str) -> Token[RequestContext | None]:
    """Each request runs in its own task (and context copy): no reset is needed after it."""
    return _CURRENT.set(RequestContext(tenant, request_id))


def current() -> RequestContext | None:
    """The request this code runs for, or None outside one (start-up, background tasks)."""
    return _CURRENT.get()
