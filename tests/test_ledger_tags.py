"""Billing tags: `x-interlock-tags` validated and bounded (a 400 naming the header); the token's
`tags` claim winning over it and crossing the hop signed; the body's metadata/user taken when
they fit the rules, never refused."""

from __future__ import annotations

import base64

import orjson
import pytest

from core.api.tags import parse_tags, with_body, with_header
from shared import claims, hop
from shared.errors import GatewayError


def test_tags_are_parsed_sorted_and_trimmed() -> None:
    assert parse_tags(None) == () and parse_tags("  ") == ()
    assert parse_tags("project=search, env=prod,cost.centre=R&D 42") == (
        ("cost.centre", "R&D 42"),
        ("env", "prod"),
        ("project", "search"),
    )


@pytest.mark.parametrize(
    "header",
    [
        "project",  # no value
        "Project=x",  # key not [a-z0-9_.-]
        "k" * 65 + "=x",
        "project=",
        "project=" + "v" * 129,
        "project=caf\u00e9",  # not printable ASCII
        "project=a\x07b",
        "a=1,a=2",
        ",".join(f"k{i}=v" for i in range(11)),
    ],
)
def test_bad_tags_are_a_400_naming_the_header(header: str) -> None:
    with pytest.raises(GatewayError) as error:
        parse_tags(header)
    assert error.value.status == 400 and error.value.param == "x-interlock-tags"


def test_a_token_tag_wins_over_the_header_and_counts_toward_the_bound() -> None:
    token = (("project", "billing"), ("team", "core"))
    assert with_header(token, "project=search, env=prod") == (
        ("env", "prod"),
        ("project", "billing"),
        ("team", "core"),
    )
    assert with_header(token, None) == token
    nine = ",".join(f"k{i}=v" for i in range(9))
    with pytest.raises(GatewayError) as error:
        with_header(token, nine)  # 9 + 2 > 10: refused, never cut silently
    assert error.value.status == 400 and error.value.param == "x-interlock-tags"


def test_openai_metadata_and_user_become_tags_after_the_earlier_ones() -> None:
    payload = {
        "metadata": {"project": "mine", "customer": "c-42", "Bad Key": "x", "long": "v" * 200},
        "user": "end-user-7",
    }
    assert with_body((("project", "billing"),), "openai", payload) == (
        ("customer", "c-42"),
        ("project", "billing"),  # an earlier source's key keeps its value
        ("user", "end-user-7"),
    )


def test_body_entries_that_break_the_rules_are_not_tags_and_the_bound_holds() -> None:
    earlier = tuple((f"k{i}", "v") for i in range(8))
    payload = {"metadata": {"a": "1", "b": "2", "c": "3"}, "user": "u"}
    expected = tuple(sorted((*earlier, ("a", "1"), ("b", "2"))))
    assert with_body(earlier, "openai", payload) == expected
    odd = {"metadata": {"a": 1, "b": "x,y", "c": " pad"}, "user": "caf\u00e9"}
    assert with_body((), "openai", odd) == ()


def test_anthropic_metadata_user_id_is_the_user_tag() -> None:
    payload = {"metadata": {"user_id": "u-1", "project": "ignored"}, "user": "ignored"}
    assert with_body((), "anthropic", payload) == (("user", "u-1"),)
    assert with_body((), "anthropic", {"metadata": None}) == ()


@pytest.mark.parametrize(
    "claim",
    [
        ["project", "x"],
        {"Project": "x"},
        {"project": ""},
        {"project": 7},
        {"project": "a,b"},
        {"project": " x"},
        {f"k{i}": "v" for i in range(11)},
    ],
)
def test_a_malformed_tags_claim_is_refused_whole(claim: object) -> None:
    assert claims.parse_tags_claim(claim) is None


KEY = hop.HopKey(b"k" * 40)
IDENTITY = hop.HopIdentity("acme", "free", "*", 2_000_000_000, tags=(("project", "billing"),))


def test_tags_cross_the_hop_signed_and_a_changed_tag_fails_the_mac() -> None:
    credential = hop.sign(KEY, IDENTITY, "POST", "/v1/chat/completions", "r1", b"{}")
    read = hop.authenticate(KEY, credential, "POST", "/v1/chat/completions", "r1")
    assert read is not None and read.identity == IDENTITY
    version, payload, mac = credential.split(".")
    raw = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for tags in ({"project": "victim"}, {}, {"project": "billing", "extra": "x"}):
        forged = base64.urlsafe_b64encode(orjson.dumps({**raw, "tags": tags})).rstrip(b"=")
        tampered = f"{version}.{forged.decode()}.{mac}"
        assert hop.authenticate(KEY, tampered, "POST", "/v1/chat/completions", "r1") is None


def test_a_signed_hop_with_malformed_tags_is_refused() -> None:
    """Even a payload the MAC vouches for is refused if its tags break the rules."""
    version, payload, _mac = hop.sign(KEY, IDENTITY, "POST", "/p", "r1", b"").split(".")
    raw = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for tags in ({"Bad": "x"}, [["project", "x"]], "project=x"):
        forged = base64.urlsafe_b64encode(orjson.dumps({**raw, "tags": tags})).rstrip(b"=")
        credential = f"{version}.{forged.decode()}.{KEY.mac('POST', '/p', 'r1', forged)}"
        assert hop.authenticate(KEY, credential, "POST", "/p", "r1") is None
