"""core.wire.prompt_cache and the stage's pure helpers: marks found in prefix order, the limits
(minimum size, four breakpoints keeping the last, 1h before 5m), prepared copies, auto mode and
the tenant-scoped prompt_cache_key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from core.api.messages.request import to_canonical
from core.pipeline.prompt_cache import place_auto, with_cache_key
from core.providers.adapters.cache_support import bedrock_support
from core.wire import prompt_cache as pc
from shared.config_models import parse_models
from shared.config_routing import _routes
from shared.configparse import ConfigError
from shared.errors import GatewayError

BIG = "x" * 4000  # well above 1024 tokens at three characters a token
MARK = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
SUPPORT = pc.CacheSupport("markers", 4, 1024)


def test_marks_are_found_in_prefix_order_tools_system_messages() -> None:
    payload: dict[str, Any] = {
        "tools": [{"type": "function", "function": {"name": "t"}, "cache_control": MARK}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": BIG, "cache_control": MARK}]},
            {"role": "system", "content": BIG, "cache_control": HOUR},
        ],
    }
    found = pc.find_markers(payload)
    assert [(m.where, m.ttl, m.section) for m in found] == [
        ("tools[0]", "5m", "tools"),
        ("messages[1]", "1h", "system"),
        ("messages[0].content[0]", "5m", "messages"),
    ]
    assert found[0].prefix_tokens < found[1].prefix_tokens < found[2].prefix_tokens


def test_select_applies_every_limit() -> None:
    def mark(where: str, ttl: str, tokens: int) -> pc.Marker:
        return pc.Marker(where, ttl, tokens, "messages")

    markers = [
        mark("a", "5m", 10),  # below the minimum
        mark("b", "5m", 2000),  # the earliest of five usable: too many
        mark("c", "5m", 3000),
        mark("d", "1h", 4000),  # after a 5m: shortened
        mark("e", "5m", 5000),
        mark("f", "5m", 6000),
    ]
    kept, dropped = pc.select(markers, SUPPORT)
    assert kept == {"c": "5m", "d": "5m", "e": "5m", "f": "5m"}
    assert dropped == [("a", "below_minimum"), ("b", "too_many"), ("d", "ttl_shortened")]
    assert pc.select(markers, None) == ({}, [(m.where, "unsupported") for m in markers])
    assert pc.select(markers, pc.IMPLICIT) == ({}, [])
    no_tools = pc.CacheSupport("cache_point", 4, 10, tools=False)
    tool = pc.Marker("tools[0]", "5m", 50, "tools")
    assert pc.select([tool], no_tools) == ({}, [("tools[0]", "unsupported")])


def test_prepare_moves_message_marks_to_parts_and_never_mutates() -> None:
    payload: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": BIG, "cache_control": HOUR},
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": MARK}]},
        ]
    }
    before = copy.deepcopy(payload)
    prepared, dropped = pc.prepare(payload, SUPPORT)
    assert payload == before
    assert prepared["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": BIG, "cache_control": HOUR}]},
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": MARK}]},
    ]
    assert dropped == []
    assert "cache_control" not in str(pc.strip(payload))
    plain: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    assert pc.prepare(plain, SUPPORT) == (plain, []) and pc.strip(plain) is plain


@pytest.mark.parametrize(
    ("mark", "param"),
    [
        ("yes", "m.cache_control"),
        ({"type": "persistent"}, "m.cache_control.type"),
        ({"type": "ephemeral", "ttl": "2h"}, "m.cache_control.ttl"),
        ({"type": "ephemeral", "scope": "global"}, "m.cache_control.scope"),
    ],
)
def test_a_bad_mark_names_its_field(mark: Any, param: str) -> None:
    with pytest.raises(GatewayError) as refused:
        pc.check_mark(mark, "m")
    assert refused.value.param == param and refused.value.status == 400


def test_the_header_is_bounded() -> None:
    dropped = [(f"messages[{i}]", "too_many") for i in range(40)]
    header = pc.dropped_header(dropped)[pc.DROPPED_HEADER]
    assert header.count("=") == pc.MAX_NAMED and header.endswith(",+24")
    assert pc.dropped_header([]) == {}


def test_auto_places_the_longest_stable_prefixes_and_keeps_client_marks() -> None:
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
    messages: list[Any] = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first", "cache_control": HOUR},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "last"},
    ]
    payload = {"model": "m", "tools": tools, "messages": messages}
    placed = place_auto(payload)
    assert payload["messages"] is messages and "cache_control" not in messages[2]  # a copy
    assert [i for i, m in enumerate(placed["messages"]) if "cache_control" in m] == [0, 1, 2]
    assert placed["messages"][1]["cache_control"] == HOUR  # the client's own, as it was
    assert "cache_control" in placed["tools"][-1] and "cache_control" not in placed["tools"][0]
    # Never more than four in all.
    full = {"messages": [{"role": "user", "content": "x", "cache_control": MARK}] * 4}
    assert place_auto(full) is full


def test_the_cache_key_is_per_tenant_and_prefix_and_hides_the_tenant() -> None:
    payload: dict[str, Any] = {"messages": [{"role": "system", "content": "s"}]}
    key = with_cache_key(payload, "acme")["prompt_cache_key"]
    assert key.startswith("ilk-") and "acme" not in key and len(key) <= 64
    assert with_cache_key(payload, "acme")["prompt_cache_key"] == key
    assert with_cache_key(payload, "globex")["prompt_cache_key"] != key
    other = {"messages": [{"role": "system", "content": "t"}]}
    assert with_cache_key(other, "acme")["prompt_cache_key"] != key
    own = {**payload, "prompt_cache_key": "mine"}
    assert with_cache_key(own, "acme")["prompt_cache_key"] != "mine"
    assert "prompt_cache_key" not in payload


def test_the_mode_is_configured_per_model_and_named_route_with_the_key_path_in_errors() -> None:
    models = parse_models({"m": {"provider": "p", "prompt_cache": "auto"}}, {"p"})
    assert models["m"].prompt_cache == "auto"
    assert parse_models({"m": {"provider": "p"}}, {"p"})["m"].prompt_cache == "markers"
    with pytest.raises(ConfigError, match=r"models\.m\.prompt_cache"):
        parse_models({"m": {"provider": "p", "prompt_cache": "always"}}, {"p"})
    route = {"r": {"targets": [{"provider": "p", "model": "x"}], "prompt_cache": "off"}}
    assert _routes(route, {"p"})["r"].prompt_cache == "off"
    with pytest.raises(ConfigError, match=r"routing\.routes\.r\.prompt_cache"):
        _routes({"r": {**route["r"], "prompt_cache": 1}}, {"p"})


def test_anthropic_system_blocks_are_read_and_prepared_in_place() -> None:
    """A Messages request passed through: its top-level system blocks are `system[k]`,
    between the tools and the messages."""
    payload: dict[str, Any] = {
        "tools": [{"name": "t", "input_schema": {}, "cache_control": MARK}],
        "system": [{"type": "text", "text": BIG, "cache_control": MARK}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
    }
    found = pc.find_markers(payload)
    assert [(m.where, m.section) for m in found] == [("tools[0]", "tools"), ("system[0]", "system")]
    prepared, dropped = pc.prepare(payload, SUPPORT)
    assert dropped == [("tools[0]", "below_minimum")]
    assert "cache_control" not in prepared["tools"][0]
    assert prepared["system"][0]["cache_control"] == MARK
    assert payload["tools"][0]["cache_control"] == MARK  # the client's payload is untouched


def test_an_hour_is_five_minutes_where_the_model_caches_no_longer() -> None:
    payload = {"messages": [{"role": "system", "content": BIG, "cache_control": HOUR}]}
    short = pc.CacheSupport("cache_point", 4, 1024, long_ttl=False)
    assert pc.select(pc.find_markers(payload), short) == (
        {"messages[0]": "5m"},
        [("messages[0]", "ttl_unsupported")],
    )
    assert pc.select(pc.find_markers(payload), SUPPORT) == ({"messages[0]": "1h"}, [])


@pytest.mark.parametrize(
    ("model", "hour"),
    [
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", True),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", True),
        ("global.anthropic.claude-opus-4-6-v1", True),
        ("anthropic.claude-sonnet-4-20250514-v1:0", False),
        ("anthropic.claude-3-7-sonnet-20250219-v1:0", False),
        ("amazon.nova-pro-v1:0", False),
    ],
)
def test_bedrock_offers_the_hour_from_claude_4_5(model: str, hour: bool) -> None:
    support = bedrock_support(model)
    assert support is not None and support.long_ttl is hour


def _anthropic_request(marks: list[Any]) -> dict[str, Any]:
    tool, system, user, assistant = marks
    return {
        "model": "m",
        "max_tokens": 5,
        "tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": tool}],
        "system": [{"type": "text", "text": "s", "cache_control": system}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "u", "cache_control": user}]},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a", "cache_control": assistant}],
            },
            {"role": "user", "content": "q"},
        ],
    }


def test_marks_dropped_after_translation_are_named_as_the_client_wrote_them() -> None:
    client = _anthropic_request([dict(MARK) for _ in range(4)])  # as parsed from JSON
    canonical = to_canonical(client).canonical
    dropped = pc.prepare(canonical, SUPPORT)[1]  # every prefix is under the minimum
    assert [w for w, _ in dropped] == [
        "tools[0]",
        "messages[0].content[0]",
        "messages[1].content[0]",
        "messages[2]",
    ]
    assert pc.in_client_terms(dropped, client, canonical) == [
        ("tools[0]", "below_minimum"),
        ("system[0]", "below_minimum"),
        ("messages[0].content[0]", "below_minimum"),
        ("messages[1].content[0]", "below_minimum"),
    ]
    # A mark the client did not write keeps its name; the client's own request is as it is.
    assert pc.in_client_terms([("messages[9]", "too_many")], client, canonical) == [
        ("messages[9]", "too_many")
    ]
    assert pc.in_client_terms(dropped, canonical, canonical) == dropped
    # One mark object in several places cannot be traced back: the names stay.
    shared = _anthropic_request([MARK] * 4)
    canonical = to_canonical(shared).canonical
    dropped = pc.prepare(canonical, SUPPORT)[1]
    assert pc.in_client_terms(dropped, shared, canonical) == dropped
