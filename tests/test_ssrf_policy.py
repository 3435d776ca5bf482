"""The SSRF address policy (core.images.netguard) and URL parsing (core.images.url), unit by unit.

Every block of the IANA special-purpose registries has a row here: addresses inside it are
refused and, where one exists, the public address just outside it is allowed, so a block that is
too wide or too narrow by one bit fails. A completeness check keeps the table and this list in
step. Through-the-stack proofs (real sockets, a loopback listener that must never be hit) are in
tests/test_ssrf_e2e.py.
"""

# ruff: noqa: RUF001  (confusable digits and dots are the attack under test)

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from core.images.netguard import (
    IPV4_REFUSED,
    IPV6_REFUSED,
    AddressRefused,
    GuardedSockets,
    address_allowed,
    refusal,
)
from core.images.url import Unusable, loggable, parse_image_url, plain_host
from shared.config import ConfigError, CoreConfig, load_config

# (block, refused addresses inside it, public addresses adjacent to it: one below, one above)
BLOCKS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("0.0.0.0/8", ("0.0.0.0", "0.255.255.255"), ("1.0.0.0",)),
    ("10.0.0.0/8", ("10.0.0.0", "10.255.255.255"), ("9.255.255.255", "11.0.0.0")),
    ("100.64.0.0/10", ("100.64.0.0", "100.127.255.255"), ("100.63.255.255", "100.128.0.0")),
    ("127.0.0.0/8", ("127.0.0.1", "127.255.255.254"), ("126.255.255.255", "128.0.0.0")),
    ("169.254.0.0/16", ("169.254.169.254", "169.254.0.1"), ("169.253.255.255", "169.255.0.0")),
    ("172.16.0.0/12", ("172.16.0.1", "172.31.255.255"), ("172.15.255.255", "172.32.0.0")),
    ("192.0.0.0/24", ("192.0.0.8", "192.0.0.170"), ("191.255.255.255", "192.0.1.0")),
    ("192.0.2.0/24", ("192.0.2.1", "192.0.2.255"), ("192.0.1.255", "192.0.3.0")),
    ("192.31.196.0/24", ("192.31.196.1",), ("192.31.195.255", "192.31.197.0")),
    ("192.52.193.0/24", ("192.52.193.1",), ("192.52.192.255", "192.52.194.0")),
    ("192.88.99.0/24", ("192.88.99.1",), ("192.88.98.255", "192.88.100.0")),
    ("192.168.0.0/16", ("192.168.0.1", "192.168.255.255"), ("192.167.255.255", "192.169.0.0")),
    ("192.175.48.0/24", ("192.175.48.1",), ("192.175.47.255", "192.175.49.0")),
    ("198.18.0.0/15", ("198.18.0.1", "198.19.255.255"), ("198.17.255.255", "198.20.0.0")),
    ("198.51.100.0/24", ("198.51.100.7",), ("198.51.99.255", "198.51.101.0")),
    ("203.0.113.0/24", ("203.0.113.7",), ("203.0.112.255", "203.0.114.0")),
    ("224.0.0.0/4", ("224.0.0.1", "239.255.255.255"), ("223.255.255.255",)),
    ("240.0.0.0/4", ("240.0.0.1", "255.255.255.254"), ()),  # neighbours: multicast, broadcast
    ("255.255.255.255/32", ("255.255.255.255",), ()),
    ("::/128", ("::",), ()),  # outside 2000::/3, like every IPv6 row without neighbours
    ("::1/128", ("::1",), ()),
    ("::/96", ("::7f00:1", "::a9fe:a9fe", "::808:808"), ()),  # IPv4-compatible, even public
    ("::ffff:0:0/96", ("::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:8.8.8.8"), ()),
    ("::ffff:0:0:0/96", ("::ffff:0:7f00:1",), ()),
    ("64:ff9b::/96", ("64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::808:808"), ()),
    ("64:ff9b:1::/48", ("64:ff9b:1::a00:1", "64:ff9b:1:ffff::1"), ()),
    ("100::/64", ("100::1",), ()),
    (
        "2001::/23",  # Teredo 2001::/32 (embeds IPv4), benchmarking 2001:2::/48, ORCHIDv2
        ("2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:2::1", "2001:20::1"),
        ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:200::"),
    ),
    (
        "2001:db8::/32",
        ("2001:db8::1",),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::"),
    ),
    (
        "2002::/16",  # 6to4: 127.0.0.1, 169.254.169.254 and even 8.8.8.8 embedded
        ("2002:7f00:1::1", "2002:a9fe:a9fe::", "2002:808:808::"),
        ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2003::"),
    ),
    (
        "2620:4f:8000::/48",
        ("2620:4f:8000::1",),
        ("2620:4f:7fff:ffff:ffff:ffff:ffff:ffff", "2620:4f:8001::"),
    ),
    ("3fff::/20", ("3fff::1", "3fff:fff::1"), ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",)),
    ("5f00::/16", ("5f00::1",), ()),
    ("fc00::/7", ("fc00::1", "fd12:3456::1"), ()),
    ("fe80::/10", ("fe80::1", "febf::1"), ()),
    ("fec0::/10", ("fec0::1", "feff::1"), ()),
    ("ff00::/8", ("ff02::1", "ff0e::1"), ()),
]


def test_every_table_row_is_tested() -> None:
    tested = {block for block, _, _ in BLOCKS}
    assert tested == {block for block, _ in IPV4_REFUSED + IPV6_REFUSED}


@pytest.mark.parametrize("block,refused,public", BLOCKS, ids=[b for b, _, _ in BLOCKS])
def test_block_is_refused_and_its_neighbours_are_not(
    block: str, refused: tuple[str, ...], public: tuple[str, ...]
) -> None:
    net = ipaddress.ip_network(block)
    for text in refused:
        address = ipaddress.ip_address(text)
        assert address in net
        assert refusal(address) is not None, text
        assert not address_allowed(text)
    for text in public:
        address = ipaddress.ip_address(text)
        adjacent = int(address) in (int(net.network_address) - 1, int(net.broadcast_address) + 1)
        assert adjacent, f"{text} is not next to {block}"
        assert refusal(address) is None, text


@pytest.mark.parametrize(
    "text", ["1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "4000::", "8000::1", "e000::1"]
)
def test_ipv6_outside_global_unicast_is_refused(text: str) -> None:
    assert not address_allowed(text)


@pytest.mark.parametrize(
    "text",
    [
        "8.8.8.8",
        "1.1.1.1",
        "151.101.1.69",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2000::",
    ],
)
def test_public_unicast_is_allowed(text: str) -> None:
    assert address_allowed(text)


@pytest.mark.parametrize(
    "text", ["", "localhost", "2130706433", "0x7f.1", "127.1", "１２７.０.０.１", "fe80::1%eth0"]
)
def test_only_strict_numeric_public_addresses_pass(text: str) -> None:
    assert not address_allowed(text)


def test_socket_factory_refuses_before_creating_a_socket() -> None:
    guard = GuardedSockets()
    for sockaddr in [("127.0.0.1", 80), ("::1", 80, 0, 0), ("fe80::1%lo", 80, 0, 1)]:
        with pytest.raises(AddressRefused):
            guard((socket.AF_INET6 if ":" in sockaddr[0] else socket.AF_INET, 1, 6, "", sockaddr))
    with pytest.raises(AddressRefused):  # a name would be resolved by connect(): never
        guard.check(("example.com", 80))
    sock = guard((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80)))
    sock.close()


def test_allowlist_is_exact_address_and_port() -> None:
    guard = GuardedSockets(allow=[("127.0.0.1", 8080), ("::1", 443)])
    guard.check(("127.0.0.1", 8080))
    guard.check(("::1", 443, 0, 0))
    for sockaddr in [("127.0.0.1", 8081), ("127.0.0.2", 8080), ("::1", 8080, 0, 0)]:
        with pytest.raises(AddressRefused):
            guard.check(sockaddr)
    GuardedSockets(allow_private=True).check(("10.0.0.1", 22))


@pytest.mark.parametrize(
    "url,connects_to",
    [
        ("http://①②⑦.0.0.1:81/", "127.0.0.1"),  # circled digits
        ("http://１２７.０.０.１/", "127.0.0.1"),  # full-width digits
        ("http://127。0。0。1/", "127.0.0.1"),  # ideographic full stops
        ("http://𝟏𝟐𝟕.𝟎.𝟎.𝟏/", "127.0.0.1"),  # mathematical bold digits
        ("http://①⑥⑨.②⑤④.①⑥⑨.②⑤④/", "169.254.169.254"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
        ("http://EXAMPLE.com/a.png", "example.com"),
        ("http://exämple.com/a.png", "xn--exmple-cua.com"),
    ],
)
def test_urls_are_judged_in_their_normalised_form(url: str, connects_to: str) -> None:
    """What aiohttp connects to is what the policy sees (then refused by the address check)."""
    assert parse_image_url(url).raw_host == connects_to


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "http://user:pw@example.com/a.png",
        "http://user@example.com/a.png",
        "http:///a.png",
        "http://example.com:99999/a.png",
        "http://[::1%25eth0]/",  # zone id
        "http://a_b.example/",
        "http://2130706433/",  # legacy IPv4 spellings: numeric last label, not a dotted quad
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://127.0.0.1./",
        "http://" + "a" * 64 + ".com/",
        "http://example.com/" + "a" * 9000,
    ],
)
def test_odd_urls_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(Unusable):
        parse_image_url(url)


@pytest.mark.parametrize(
    "host,ok",
    [
        ("example.com", True),
        ("example.com.", True),
        ("xn--exmple-cua.com", True),
        ("1.2.3.4", True),
        ("2001:db8::1", True),
        ("0x7f000001", True),  # an LDH name: getaddrinfo maps it to 127.0.0.1 (connect check)
        ("-a.com", False),
        ("a-.com", False),
        ("a..com", False),
    ],
)
def test_plain_host(host: str, ok: bool) -> None:
    assert plain_host(host) is ok


def test_logged_url_drops_query_credentials_and_fragment() -> None:
    shown = loggable("http://u:p@example.com:8080/a.png?sig=SECRET#frag")
    assert shown == "http://example.com:8080/a.png"
    assert "SECRET" not in loggable("http://exa mple/?sig=SECRET")


CONFIG = "providers: {mock: {kind: mock}}\nmodels: {m1: {provider: mock}}\n"


def _core(tmp_path: Path, core: str) -> CoreConfig:
    path = tmp_path / "interlock.yaml"
    path.write_text(CONFIG + f"core: {core}\n")
    return load_config(path, env={}).core


def test_image_limit_defaults(tmp_path: Path) -> None:
    core = _core(tmp_path, "{}")
    assert (core.image_max_bytes, core.image_max_total_bytes, core.image_max_count) == (
        5 * 1024 * 1024,
        15 * 1024 * 1024,
        16,
    )
    assert (core.image_fetch_concurrency, core.image_max_concurrent_fetches) == (4, 32)
    assert not core.image_allow_private_networks and core.image_allow_hosts == ()


def test_image_keys_parse(tmp_path: Path) -> None:
    core = _core(
        tmp_path,
        "{image_max_total_bytes: 8MiB, image_max_count: 4, image_fetch_concurrency: 2,"
        " image_max_concurrent_fetches: 8, image_allow_hosts: ['10.0.0.5:443', '[::1]:8080']}",
    )
    assert (core.image_max_total_bytes, core.image_max_count) == (8 * 1024 * 1024, 4)
    assert (core.image_fetch_concurrency, core.image_max_concurrent_fetches) == (2, 8)
    assert core.image_allow_hosts == (("10.0.0.5", 443), ("::1", 8080))


@pytest.mark.parametrize(
    "entry", ["images.internal:443", "10.0.0.5", "10.0.0.5:0", "10.0.0.5:99999", "[::1]", ":80"]
)
def test_allow_hosts_must_be_numeric_address_and_port(tmp_path: Path, entry: str) -> None:
    with pytest.raises(ConfigError, match=r"^core\.image_allow_hosts: expected numeric"):
        _core(tmp_path, f"{{image_allow_hosts: ['{entry}']}}")


@pytest.mark.parametrize("key", ["image_max_count: 0", "image_fetch_concurrency: 0"])
def test_image_counts_must_be_positive(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=r"^core\.image_"):
        _core(tmp_path, f"{{{key}}}")
