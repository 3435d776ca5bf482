"""Which network addresses the gateway may connect to on a tenant's behalf (SSRF policy).

The policy is decided on the numeric address a socket is about to connect to, never on the text
of a URL: after IDNA/NFKC normalisation, legacy IPv4 spellings (2130706433, 0x7f.1, 0177.0.0.1,
127.1), DNS answers and rebinding, only the sockaddr handed to connect() is what really counts.
`GuardedSockets` is an aiohttp/aiohappyeyeballs socket factory, called for every address the
connector tries, whether it came from a literal or from the resolver, so no path skips it.

The tables below are written out from the IANA IPv4 and IPv6 Special-Purpose Address Registries
(plus multicast and the reserved blocks) rather than taken from `ipaddress.is_global`, whose
answers have changed between Python versions. They are deliberately stricter than "globally
reachable": every special-purpose block is refused, including the ones IANA marks reachable
(AS112, AMT, the NAT64 well-known prefix), because none of them serves images and several
(NAT64, 6to4, Teredo, IPv4-mapped/compatible) embed an IPv4 address that a translator on the
operator's network would turn into a private one. IPv6 is allow-listed to 2000::/3, the only
block IANA allocates for global unicast; the IPv6 rows outside it are listed for the record.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable

from aiohttp import AddrInfoType

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (block, why) - IANA IPv4 Special-Purpose Address Registry, multicast and reserved space.
IPV4_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this network (RFC 791); 0.0.0.0 reaches the local host"),
    ("10.0.0.0/8", "private use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local, cloud metadata services (RFC 3927)"),
    ("172.16.0.0/12", "private use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments: DS-Lite, NAT64 discovery, PCP (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "automatic multicast tunneling (RFC 7450)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private use (RFC 1918)"),
    ("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved for future use (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
)

# The only IPv6 block allocated for global unicast; everything outside it is refused.
IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")

# (block, why) - IANA IPv6 Special-Purpose Address Registry and other non-unicast space.
IPV6_REFUSED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified address (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::/96", "IPv4-compatible, deprecated (RFC 4291): embeds an IPv4 address"),
    ("::ffff:0:0/96", "IPv4-mapped (RFC 4291): embeds an IPv4 address"),
    ("::ffff:0:0:0/96", "IPv4-translated (RFC 2765): embeds an IPv4 address"),
    ("64:ff9b::/96", "NAT64 well-known prefix (RFC 6052): embeds an IPv4 address"),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215): embeds an IPv4 address"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001::/23", "IETF protocol assignments: Teredo (embeds IPv4), benchmarking, ORCHID"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056): embeds an IPv4 address"),
    ("2620:4f:8000::/48", "direct delegation AS112 service (RFC 7534)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique-local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)

_V4 = tuple((ipaddress.IPv4Network(block), why) for block, why in IPV4_REFUSED)
_V6 = tuple((ipaddress.IPv6Network(block), why) for block, why in IPV6_REFUSED)


def refusal(address: IPAddress) -> str | None:
    """Why the gateway must not connect to `address`, or None when it is public unicast."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((why for net, why in _V4 if address in net), None)
    for net, why in _V6:
        if address in net:
            return why
    if address not in IPV6_GLOBAL_UNICAST:
        return "outside IPv6 global unicast 2000::/3"
    return None


def parse_address(text: str) -> IPAddress | None:
    """A strict numeric address (scope id dropped), or None for anything else."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def address_allowed(text: str) -> bool:
    """True only for a numeric public unicast address."""
    address = parse_address(text)
    return address is not None and refusal(address) is None


class AddressRefused(PermissionError):
    """Raised instead of connecting; an OSError, so the connector reports a connect failure."""

    def __init__(self, why: str) -> None:
        super().__init__(errno.EACCES, why)


class GuardedSockets:
    """A socket factory for aiohttp's TCPConnector(socket_factory=...): every address the
    connector is about to connect to (literal or resolved) passes `check` first, so the policy
    is applied to the peer the request will really reach and no connection is ever opened to a
    refused one.

    `allow` lists exact (address, port) pairs that bypass the policy: a named internal image
    service, or a test's loopback server, without opening the rest of the private networks.
    `allow_private` turns the policy off entirely (closed networks only).
    """

    __slots__ = ("_allow", "_allow_private")

    def __init__(self, allow: Iterable[tuple[str, int]] = (), allow_private: bool = False) -> None:
        self._allow = frozenset((ipaddress.ip_address(host), port) for host, port in allow)
        self._allow_private = allow_private

    def check(self, sockaddr: tuple[object, ...]) -> None:
        host, port = sockaddr[0], sockaddr[1]
        address = parse_address(host) if isinstance(host, str) else None
        if address is None:  # never let connect() resolve a name behind the policy's back
            raise AddressRefused(f"not a numeric address: {host!r}")
        if self._allow_private or (address, port) in self._allow:
            return
        why = refusal(address)
        if why is not None:
            raise AddressRefused(f"non-public address {address}: {why}")

    def __call__(self, addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        self.check(sockaddr)
        return socket.socket(family=family, type=kind, proto=proto)
