"""Per-tenant network allowlists: which client addresses may use a tenant's tokens.

Two sources, both enforced when present: the token's own `cidrs` claim and the operator's
`auth.tenant_cidrs`. The client address is the TCP peer, unless that peer is one of
`edge.trusted_proxies`: then X-Forwarded-For is read right to left, skipping trusted hops, and
the first address not trusted is the client. Entries to the left of it were written by the
client itself and are never believed; a malformed entry reached in the walk makes the address
unknown, and an unknown address matches no allowlist (fail closed).

Behind AWS Lambda Web Adapter (a Function URL), the adapter connects from loopback and the
Function URL appends the address it saw to X-Forwarded-For, so set
`edge.trusted_proxies: [127.0.0.1/32, ::1/128]`; add the load balancer's or CloudFront's
origin-facing ranges when one sits in front.

Nothing here runs for a request unless its tenant or token has an allowlist.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from shared.claims import Network
from shared.errors import GatewayError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_XFF = b"x-forwarded-for"


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
    return address


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(scope: dict[str, Any], trusted: tuple[Network, ...]) -> Address | None:
    """The client's address, or None when it cannot be determined."""
    client = scope.get("client")
    if not client:
        return None
    peer = _address(str(client[0]))
    if peer is None or not trusted or not _within(peer, trusted):
        return peer
    # Every X-Forwarded-For header, in order, as one list (RFC 9110 5.3 field combination).
    hops = [
        part
        for name, value in scope["headers"]
        if name == _XFF
        for part in value.decode("latin-1").split(",")
    ]
    address = peer
    for entry in reversed(hops):
        hop = _address(entry)
        if hop is None:
            return None
        address = hop
        if not _within(hop, trusted):
            return hop
    return address  # every hop trusted: the leftmost is the furthest known client


class NetworkPolicy:
    def __init__(
        self, tenant_cidrs: dict[str, tuple[Network, ...]], trusted: tuple[Network, ...]
    ) -> None:
        self._tenants = tenant_cidrs
        self._trusted = trusted

    def check(self, tenant: str, token_cidrs: tuple[Network, ...] | None, scope: Any) -> None:
        """403 unless the client address is inside every allowlist that applies."""
        configured = self._tenants.get(tenant)
        if configured is None and token_cidrs is None:
            return
        address = client_address(scope, self._trusted)
        if (
            address is None
            or (configured is not None and not _within(address, configured))
            or (token_cidrs is not None and not _within(address, token_cidrs))
        ):
            raise GatewayError(
                403,
                "this token may not be used from this network address",
                code="address_not_allowed",
            )
