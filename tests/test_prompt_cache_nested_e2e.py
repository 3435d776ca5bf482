"""Marks nested in a tool_result's content blocks count (official anthropic SDK -> edge ->
core -> the Anthropic fake, which refuses a fifth breakpoint wherever it sits, as Anthropic
does): passthrough keeps the last four, nested ones included, and names what it dropped
with the nested block's own path.
"""

from __future__ import annotations

from typing import Any

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_bedrock import FakeBedrock
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack
from tests.test_prompt_cache_e2e import EPHEMERAL, LONG, fakes, stack
from tests.test_prompt_cache_gaps_e2e import _client, _document

__all__ = ["fakes", "stack"]  # the module-scoped fixtures, shared by import
Fakes = tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]


def _conversation(nested: int) -> list[Any]:
    """A tool call answered by a tool_result whose own blocks carry `nested` marks."""
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [_document(10 + n) for n in range(nested)] + [{"type": "text", "text": "ok"}],
    }
    return [
        {"role": "user", "content": [_document(0), {"type": "text", "text": "Look it up."}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}],
        },
        {"role": "user", "content": [result, {"type": "text", "text": "And?"}]},
    ]


def _all_marks(body: dict[str, Any]) -> list[str]:
    """Where each breakpoint the upstream received sits, nested blocks included."""
    found = [f"system[{k}]" for k, b in enumerate(body.get("system") or ()) if "cache_control" in b]
    for i, message in enumerate(body["messages"]):
        for j, block in enumerate(message["content"]):
            for k, inner in enumerate(block.get("content") or ()):
                if isinstance(inner, dict) and "cache_control" in inner:
                    found.append(f"messages[{i}].content[{j}].content[{k}]")
            if "cache_control" in block:
                found.append(f"messages[{i}].content[{j}]")
    return found


def test_nested_marks_count_towards_four(stack: Stack, fakes: Fakes) -> None:
    claude = fakes[0]
    claude.reset()
    system: Any = [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]
    raw = _client(stack).messages.with_raw_response.create(
        model="claude", max_tokens=20, system=system, messages=_conversation(4)
    )
    assert raw.status_code == 200  # six breakpoints would be Anthropic's 400
    # The first two of six give way: the system prompt's and the first document's.
    assert raw.headers["x-interlock-cache-dropped"] == (
        "system[0]=too_many,messages[0].content[0]=too_many"
    )
    sent = claude.received[-1].json
    assert _all_marks(sent) == [f"messages[2].content[0].content[{k}]" for k in range(4)]
    assert sent["system"] == [{"type": "text", "text": LONG}]


def test_a_nested_fifth_mark_is_not_sent(stack: Stack, fakes: Fakes) -> None:
    claude = fakes[0]
    claude.reset()
    system: Any = [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]
    raw = _client(stack).messages.with_raw_response.create(
        model="claude", max_tokens=20, system=system, messages=_conversation(3)
    )
    assert raw.status_code == 200
    assert raw.headers["x-interlock-cache-dropped"] == "system[0]=too_many"
    assert _all_marks(claude.received[-1].json) == [
        "messages[0].content[0]",
        *(f"messages[2].content[0].content[{k}]" for k in range(3)),
    ]


def test_nested_marks_within_the_limit_are_sent_as_written(stack: Stack, fakes: Fakes) -> None:
    claude = fakes[0]
    claude.reset()
    raw = _client(stack).messages.with_raw_response.create(
        model="claude", max_tokens=20, messages=_conversation(2)
    )
    assert raw.status_code == 200
    assert "x-interlock-cache-dropped" not in raw.headers
    assert _all_marks(claude.received[-1].json) == [
        "messages[0].content[0]",
        "messages[2].content[0].content[0]",
        "messages[2].content[0].content[1]",
    ]


def test_auto_mode_counts_nested_marks_in_its_room() -> None:
    from core.pipeline.prompt_cache import anthropic_mode, longest_mark

    messages = _conversation(4)
    payload: Any = {"system": [{"type": "text", "text": LONG}], "messages": messages}
    out = anthropic_mode(payload, "auto")
    assert "cache_control" not in out["system"][-1]  # four nested marks leave no room
    assert "cache_control" not in out["messages"][1]["content"][-1]
    only_nested = _conversation(1)
    del only_nested[0]["content"][0]["cache_control"]
    assert longest_mark({"messages": only_nested}) == "5m"  # affinity sees it marked
