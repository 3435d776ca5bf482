"""Gemini context caching for Anthropic-format clients: the official anthropic SDK -> edge ->
core -> fake Gemini. A Messages request translated for Gemini keeps its cache marks, so the
marked prefix becomes a cachedContents resource exactly as for a chat request (created once,
then reused, streams too), and a mark Gemini cannot honour is named in the client's own terms
(system[0], not the translated request's messages[0])."""

from __future__ import annotations

from typing import Any

import anthropic

from tests.support.fake_gemini import FakeGemini
from tests.support.stack import Stack
from tests.test_gemini_cache_e2e import FLASH, _creations, _generations, doc, fake, stacks

__all__ = ["doc", "fake", "stacks"]  # the module's fixtures, shared by import
MARK: Any = {"type": "ephemeral"}


def _client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token("acme"), max_retries=0)


def _system(doc: str) -> Any:
    return [{"type": "text", "text": doc, "cache_control": MARK}]


def test_a_marked_system_prompt_is_cached_then_reused(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    a, b = stacks
    fake.reset()
    ask: Any = [{"role": "user", "content": "What jumps?"}]
    first = _client(a).messages.create(
        model="flash", max_tokens=50, system=_system(doc), messages=ask
    )
    [create] = _creations(fake)
    assert create["systemInstruction"] == {"parts": [{"text": doc}]}
    [name] = fake.caches.resources
    [sent] = _generations(fake)
    assert sent.json["cachedContent"] == name and "systemInstruction" not in sent.json
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": "What jumps?"}]}]
    tokens = fake.caches.resources[name].tokens
    assert first.usage.cache_read_input_tokens == tokens
    # Another core, another question: the same resource, not a second one.
    again: Any = [{"role": "user", "content": "Over what?"}]
    second = _client(b).messages.create(
        model="flash", max_tokens=50, system=_system(doc), messages=again
    )
    assert fake.caches.created[FLASH] == 1
    assert _generations(fake)[-1].json["cachedContent"] == name
    assert second.usage.cache_read_input_tokens == tokens


def test_a_marked_turn_streams_from_the_cache(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    fake.reset()
    turn: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": doc, "cache_control": MARK},
                {"type": "text", "text": "Summarise."},
            ],
        }
    ]
    with _client(stacks[0]).messages.stream(model="flash", max_tokens=50, messages=turn) as s:
        message = s.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "Hello from Gemini."
    [create] = _creations(fake)
    assert create["contents"] == [{"role": "user", "parts": [{"text": doc}]}]
    [name] = fake.caches.resources
    assert _generations(fake)[-1].json["cachedContent"] == name
    assert message.usage.cache_read_input_tokens == fake.caches.resources[name].tokens


def test_a_mark_gemini_cannot_honour_is_named_as_the_client_wrote_it(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    fake.reset()
    ask: Any = [{"role": "user", "content": "What jumps?"}]
    raw = _client(stacks[0]).messages.with_raw_response.create(
        model="pro",
        max_tokens=50,
        system=_system(doc),
        messages=ask,  # Pro: 4,096 at least
    )
    assert raw.headers["x-interlock-cache-dropped"] == "system[0]=below_minimum"
    assert _creations(fake) == []
    [sent] = _generations(fake, "gemini-2.5-pro")
    assert "cachedContent" not in sent.json
