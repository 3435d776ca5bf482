"""Parsing a tenant's image URL exactly as aiohttp will use it, and refusing odd hosts early.

yarl (aiohttp's URL type) applies IDNA/NFKC to the host, so full-width digits (U+FF10..) or
ideographic full stops (U+3002) become `127.0.0.1` here just as they would on the wire: every
later decision sees the normalised form, never the text the tenant typed. Hosts that are not
plain ASCII letters-digits-hyphens labels or canonical IP literals (zone ids, underscores,
numeric top-level labels such as the legacy IPv4 forms `2130706433` and `0x7f.1`) are refused
here; the address policy at connect time (core.images.netguard) is what guarantees the rest.
"""

from __future__ import annotations

import ipaddress
import re

from yarl import URL

MAX_URL_CHARS = 8192
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


class Unusable(Exception):
    """A reason the image cannot be used; logged for the operator, never shown to the tenant."""


def parse_image_url(url: str | URL) -> URL:
    """The URL aiohttp will request, or Unusable."""
    if isinstance(url, str) and len(url) > MAX_URL_CHARS:
        raise Unusable(f"URL longer than {MAX_URL_CHARS} characters")
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        host = parsed.raw_host
    except (ValueError, TypeError) as error:  # yarl: bad port, bad IDNA, bad IPv6 literal...
        raise Unusable(f"unparseable URL: {type(error).__name__}") from None
    if parsed.scheme not in ("http", "https"):
        raise Unusable(f"scheme {parsed.scheme[:16]!r} is not http(s)")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise Unusable("URL carries credentials")
    if not host or not plain_host(host):
        raise Unusable("host is not a plain DNS name or IP literal")
    if len(str(parsed)) > MAX_URL_CHARS:
        raise Unusable(f"URL longer than {MAX_URL_CHARS} characters")
    return parsed


def plain_host(host: str) -> bool:
    """An ASCII LDH name (an all-digit last label only as a canonical dotted quad) or an IP
    literal without a zone id."""
    if ":" in host:
        if "%" in host:  # a zone id (ipaddress would accept it)
            return False
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return False
    if labels[-1].isdigit():  # only a canonical dotted quad, without a trailing dot
        try:
            ipaddress.IPv4Address(host)  # refuses 127.1, 0177.0.0.1, 2130706433
        except ValueError:
            return False
    return True


def loggable(url: str) -> str:
    """The URL for an operator log: no credentials, query string or fragment, bounded."""
    try:
        parsed = URL(url[:MAX_URL_CHARS])
        shown = str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        shown = "<unparseable URL>"
    return shown[:300]
