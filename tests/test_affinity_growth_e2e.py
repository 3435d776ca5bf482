"""Prompt-cache affinity follows a growing conversation in auto mode, end to end: the official
openai SDK -> edge -> two core replicas sharing a real redis-server -> two fake Anthropic
servers that cache marked prefixes (tests/support/fake_prompt_cache.py), every request
counted at the fake that received it.

In auto mode the gateway's last breakpoint moves every turn (the turn before the last user
message), so each turn's longest prefix is new; the lookup also reads the earlier message
boundaries in the same round trip and finds the one the previous turn recorded. Turns
alternate between the two replicas. Health (the holder gone) and budgets (the holder's
provider out of budget) still override the preference.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.stack import Stack
from tests.test_prompt_cache_affinity import LONG, overrides

TURNS = 3


def settings(one: FakeAnthropic, two: FakeAnthropic, redis_url: str) -> dict[str, Any]:
    base = overrides(one, two)
    base["models"]["split"]["prompt_cache"] = "auto"
    return {**base, "state": {"redis_url": redis_url}}


@pytest.fixture(scope="module")
def other() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    claude: FakeAnthropic,
    other: FakeAnthropic,
    redis_url: str,
) -> Iterator[tuple[Stack, Stack]]:
    """Two cores (each with its edge) sharing one Redis, as two replicas do."""
    config = settings(claude, other, redis_url)
    first = Stack(tmp_path_factory.mktemp("growth-r1"), config).start()
    second = Stack(tmp_path_factory.mktemp("growth-r2"), config).start()
    yield first, second
    first.stop()
    second.stop()


def chat(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)


class Conversation:
    """One conversation (a system prompt unique to it), grown a turn at a time."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex
        self.messages: list[Any] = [{"role": "system", "content": f"[{self.tag}] {LONG}"}]

    def turn(self, stack: Stack, n: int) -> tuple[str, int]:
        """The provider that served turn `n`, and the cached tokens it reported."""
        self.messages.append({"role": "user", "content": f"Question {n}: what is {n} + {n}?"})
        raw = chat(stack).chat.completions.with_raw_response.create(
            model="split", messages=self.messages, max_tokens=10
        )
        answer = raw.parse()
        self.messages.append({"role": "assistant", "content": answer.choices[0].message.content})
        details = answer.usage.prompt_tokens_details if answer.usage else None
        return raw.headers["x-interlock-provider"], (details.cached_tokens or 0) if details else 0

    def seen(self, fake: FakeAnthropic) -> int:
        return sum(
            1 for r in fake.received if r.json and f"[{self.tag}]" in str(r.json.get("system"))
        )


def test_a_growing_conversation_stays_where_its_cache_is_across_replicas(
    replicas: tuple[Stack, Stack], claude: FakeAnthropic, other: FakeAnthropic
) -> None:
    for _ in range(6):  # without following, all three turns agree 1 time in 4 (per run)
        talk = Conversation()
        served = []
        for n in range(TURNS):
            provider, cached = talk.turn(replicas[n % 2], n)
            served.append(provider)
            if n:  # the previous turn's prefix is read back where it was written
                assert cached > 0, (n, served)
        assert len(set(served)) == 1, served
        assert sorted((talk.seen(claude), talk.seen(other))) == [0, TURNS]


def test_health_overrides_a_growing_conversations_holder(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> None:
    fakes = {"one": FakeAnthropic(), "two": FakeAnthropic()}
    for fake in fakes.values():
        fake.start()
    running = Stack(
        tmp_path_factory.mktemp("growth-health"), settings(*fakes.values(), redis_url)
    ).start()
    try:
        talk = Conversation()
        holder = {talk.turn(running, n)[0] for n in range(2)}
        assert len(holder) == 1
        fakes.pop(holder.pop()).stop()  # the holder goes away
        survivor, _ = talk.turn(running, 2)
        for n in range(3, 5):  # the survivor holds the grown prefix now: it stays there
            provider, cached = talk.turn(running, n)
            assert provider == survivor and cached > 0
    finally:
        running.stop()
        for fake in fakes.values():
            fake.stop()


def test_a_budget_overrides_a_growing_conversations_holder(
    tmp_path_factory: pytest.TempPathFactory,
    replicas: tuple[Stack, Stack],
    claude: FakeAnthropic,
    other: FakeAnthropic,
    redis_url: str,
) -> None:
    """A third replica whose budgets leave provider `one` no room: a conversation held by
    `one` is served by `two` there, then stays with `two` (its new holder)."""
    config = settings(claude, other, redis_url)
    config["budgets"] = {"no-one": {"provider": "one", "period": "day", "limit": "0.000001"}}
    broke = Stack(tmp_path_factory.mktemp("growth-budget"), config).start()
    try:
        for _ in range(20):  # a conversation held by `one` (1 in 2 each)
            talk = Conversation()
            if {talk.turn(replicas[0], n)[0] for n in range(2)} == {"one"}:
                break
        else:
            pytest.fail("no conversation landed on provider one")
        assert talk.turn(broke, 2)[0] == "two"  # the budget overrides the preference
        assert [talk.turn(replicas[n % 2], n)[0] for n in range(3, 5)] == ["two", "two"]
    finally:
        broke.stop()


def test_a_growing_messages_conversation_stays_too(
    replicas: tuple[Stack, Stack], claude: FakeAnthropic, other: FakeAnthropic
) -> None:
    """The Messages API, passed through to Anthropic: auto mode marks content blocks in
    Anthropic's shape, and the conversation follows its cache the same way."""
    for _ in range(4):
        tag, served = uuid.uuid4().hex, set()
        system, messages = f"[{tag}] {LONG}", []
        for n in range(TURNS):
            messages.append({"role": "user", "content": f"Question {n}: what is {n} + {n}?"})
            sdk = anthropic.Anthropic(
                base_url=replicas[n % 2].edge_url, api_key=replicas[n % 2].token(), max_retries=0
            )
            raw = sdk.messages.with_raw_response.create(
                model="split", system=system, messages=messages, max_tokens=10
            )
            answer = raw.parse()
            served.add(raw.headers["x-interlock-provider"])
            if n:
                assert answer.usage.cache_read_input_tokens, (n, served)
            messages.append({"role": "assistant", "content": answer.content[0].text})  # type: ignore[union-attr]
        assert len(served) == 1, served
