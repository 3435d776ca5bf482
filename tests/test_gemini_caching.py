"""Cache markers -> Gemini context cache plans (core.providers.adapters.gemini.caching), and
the registry's pieces that need no upstream (core.providers.gemini_cache)."""

from __future__ import annotations

from typing import Any

import pytest

from core.providers.adapters.gemini.caching import (
    CachePlan,
    Uncached,
    cache_locations,
    cache_resource,
    cached_request,
    find_markers,
    min_cache_tokens,
    plan_cache,
)
from core.providers.adapters.gemini.settings import Settings
from core.providers.gemini_cache import Entry, parse_expiry

SETTINGS = Settings(
    models_url="https://generativelanguage.googleapis.com/v1beta/models/",
    vertex=False,
    headers={},
    safety_settings=(),
    include_thoughts=False,
    token_file=None,
)
DOC = "The quick brown fox jumps over the lazy dog. " * 120  # about 1,350 tokens
MARK: Any = {"type": "ephemeral"}
TOOL: Any = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a term up",
        "parameters": {"type": "object", "properties": {"term": {"type": "string"}}},
    },
}


def test_markers_are_found_in_prefix_order_with_their_ttl() -> None:
    canonical = {
        "tools": [TOOL, {**TOOL, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {"role": "system", "content": DOC, "cache_control": MARK},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "text", "text": "b", "cache_control": MARK},
                ],
            },
            {"role": "user", "content": "c", "cache_control": {"type": "other"}},
        ],
    }
    found = find_markers(canonical)
    assert [(m.where, m.ttl_s) for m in found] == [
        ("tools[1]", 3600),
        ("messages[0]", 300),
        ("messages[1].content[1]", 300),
    ]


def test_no_markers_no_plan() -> None:
    assert (
        plan_cache({"messages": [{"role": "user", "content": DOC}]}, "gemini-2.5-flash", SETTINGS)
        is None
    )


def test_system_marker_caches_system_and_tools_and_sends_the_rest() -> None:
    canonical = {
        "tools": [TOOL],
        "tool_choice": "auto",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": DOC, "cache_control": MARK},
            {"role": "user", "content": "What is a fox?"},
        ],
    }
    plan = plan_cache(canonical, "gemini-2.5-flash", SETTINGS)
    assert isinstance(plan, CachePlan)
    assert plan.cached["systemInstruction"] == {"parts": [{"text": DOC}]}
    assert plan.cached["tools"][0]["functionDeclarations"][0]["name"] == "lookup"
    assert plan.cached["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert "contents" not in plan.cached
    body = cached_request(plan, "cachedContents/abc")
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "What is a fox?"}]}],
        "generationConfig": {"temperature": 0.2},
        "cachedContent": "cachedContents/abc",
    }
    assert plan.ttl_s == 300 and plan.tokens >= min_cache_tokens("gemini-2.5-flash")


def test_part_marker_cuts_inside_a_merged_turn() -> None:
    """Two user messages merge into one Gemini turn; the cut falls between their parts."""
    canonical = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": DOC, "cache_control": MARK},
                    {"type": "text", "text": "first question"},
                ],
            },
            {"role": "user", "content": "second question"},
        ]
    }
    plan = plan_cache(canonical, "gemini-2.5-flash", SETTINGS)
    assert isinstance(plan, CachePlan)
    assert plan.cached["contents"] == [{"role": "user", "parts": [{"text": DOC}]}]
    assert plan.rest["contents"] == [
        {"role": "user", "parts": [{"text": "first question"}, {"text": "second question"}]}
    ]


def test_marker_on_the_last_turn_leaves_that_turn_in_the_request() -> None:
    canonical = {
        "messages": [
            {"role": "user", "content": DOC},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "Summarise " + DOC, "cache_control": MARK},
        ]
    }
    plan = plan_cache(canonical, "gemini-2.5-flash", SETTINGS)
    assert isinstance(plan, CachePlan)
    assert [c["role"] for c in plan.cached["contents"]] == ["user", "model"]
    assert plan.rest["contents"] == [{"role": "user", "parts": [{"text": "Summarise " + DOC}]}]


def test_the_same_prefix_has_the_same_digest_whatever_follows() -> None:
    def plan_for(question: str) -> CachePlan:
        messages = [
            {"role": "system", "content": DOC, "cache_control": MARK},
            {"role": "user", "content": question},
        ]
        plan = plan_cache({"messages": messages}, "gemini-2.5-flash", SETTINGS)
        assert isinstance(plan, CachePlan)
        return plan

    assert plan_for("one").digest == plan_for("two").digest
    other = plan_cache(
        {
            "messages": [
                {"role": "system", "content": DOC + "!", "cache_control": MARK},
                {"role": "user", "content": "one"},
            ]
        },
        "gemini-2.5-flash",
        SETTINGS,
    )
    assert isinstance(other, CachePlan) and other.digest != plan_for("one").digest


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("gemini-2.5-flash", 1024),
        ("gemini-3-flash-preview", 1024),
        ("gemini-2.5-pro", 4096),
        ("gemini-3-pro-preview", 4096),
        ("some-new-model", 4096),
    ],
)
def test_minimums(model: str, minimum: int) -> None:
    assert min_cache_tokens(model) == minimum


def test_prefix_below_the_minimum_is_dropped_with_its_paths() -> None:
    canonical = {
        "messages": [
            {"role": "system", "content": DOC, "cache_control": MARK},
            {"role": "user", "content": "q"},
        ]
    }
    plan = plan_cache(canonical, "gemini-2.5-pro", SETTINGS)  # 4,096 needed
    assert isinstance(plan, Uncached)
    assert [m.where for m in plan.markers] == ["messages[0]"]
    assert plan.reason == "below_minimum" and "under 4096" in plan.detail


def test_nothing_left_to_send_is_dropped() -> None:
    canonical = {"messages": [{"role": "user", "content": DOC, "cache_control": MARK}]}
    plan = plan_cache(canonical, "gemini-2.5-flash", SETTINGS)
    assert isinstance(plan, Uncached)


def test_cache_locations_ai_studio_and_vertex() -> None:
    assert cache_locations(SETTINGS.models_url, "gemini-2.5-flash") == (
        "https://generativelanguage.googleapis.com/v1beta/cachedContents",
        "models/gemini-2.5-flash",
    )
    vertex = "https://h/v1/projects/p1/locations/us-central1/publishers/google/models/"
    assert cache_locations(vertex, "gemini-2.5-pro") == (
        "https://h/v1/projects/p1/locations/us-central1/cachedContents",
        "projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-pro",
    )


def test_cache_resource_body() -> None:
    canonical = {
        "messages": [
            {"role": "system", "content": DOC, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"role": "user", "content": "q"},
        ]
    }
    plan = plan_cache(canonical, "gemini-2.5-flash", SETTINGS)
    assert isinstance(plan, CachePlan)
    body = cache_resource(plan, "models/gemini-2.5-flash", "x")
    assert body["ttl"] == "3600s" and body["model"] == "models/gemini-2.5-flash"
    assert body["systemInstruction"] == {"parts": [{"text": DOC}]}


def test_expiry_parsing_takes_nanoseconds() -> None:
    assert parse_expiry("2026-01-01T00:00:00.123456789Z", 0.0) == pytest.approx(1767225600.123456)
    assert parse_expiry("2026-01-01T00:00:00Z", 0.0) == 1767225600.0
    assert parse_expiry("not a time", 42.0) == 42.0
    assert parse_expiry(None, 42.0) == 42.0


def test_an_entry_is_not_used_just_before_it_expires() -> None:
    assert Entry("cachedContents/a", 1000.0).usable(900.0)
    assert not Entry("cachedContents/a", 1000.0).usable(990.0)
