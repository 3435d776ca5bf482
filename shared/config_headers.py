"""`routing.headers`: the client headers the core's routing rules may read, which the edge
relays to the core. Its own module because the edge reads this one key of the core's `routing`
section: the edge's config load then imports none of the routing grammar (conditions, routes,
strategies), which a cold start would pay for and never use.
"""

from __future__ import annotations

import re
from typing import Any

from shared import configparse as cp
from shared import hop
from shared.configparse import ConfigError

_HEADER = re.compile(r"[a-z0-9-]{1,64}")
# Headers rules may never read: the edge would relay them to the core (credentials, the hop
# credential and request id it sets itself, framing). Billing tags are `tags.<key>` facts.
RESERVED_HEADERS = frozenset(
    (
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "cookie",
        hop.HOP_HEADER,
        hop.REQUEST_ID_HEADER,
        hop.TRACEPARENT_HEADER,
        "host",
        "connection",
        "content-type",
        "content-length",
        "transfer-encoding",
    )
)


def policy_headers(routing: Any) -> tuple[str, ...]:
    """`routing.headers`, lower-cased: the request headers rules may read, which the edge
    relays to the core (it reads only this key of the section)."""
    if not isinstance(routing, dict):
        return ()
    headers = tuple(dict.fromkeys(h.lower() for h in cp.string_list(routing, "headers", "routing")))
    for header in headers:
        if not _HEADER.fullmatch(header):
            raise ConfigError(f"routing.headers: {header!r} is not a header name")
        if header in RESERVED_HEADERS or header.startswith("x-interlock-"):
            raise ConfigError(f"routing.headers: {header!r} is not for rules to read")
    return headers
