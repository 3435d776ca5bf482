"""Affinity for growing conversations, in parts: the fingerprints of a prefix's message
boundaries (marks stripped, tenant-scoped, bounded), the registry's longest-match lookup in
one read (one MGET against a real Redis, shared by two registries as by two replicas), and
its write rule when a conversation grows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from core.cache import affinity as aff
from core.cache.affinity import Affinities, entry_key, ticket
from core.pipeline.prompt_cache import anthropic_mode, fingerprint, place_auto, prefixes, scope
from core.providers.adapters.base import Target
from core.resilience.key_pools import key_id
from core.routing.signals import Holder
from core.spend.usage import UsageSplit
from core.state.redis_store import RedisStore
from core.state.store import MemoryStore
from tests.test_affinity_units import KEYS, _target

READ = UsageSplit(input=5, cache_read=2000)
SYSTEM = {"role": "system", "content": "You answer in numbers. " * 50}


def conversation(turns: int) -> dict[str, Any]:
    """A chat request at its `turns`th user message, the gateway's auto marks placed."""
    messages: list[Any] = [SYSTEM]
    for n in range(turns):
        if n:
            messages.append({"role": "assistant", "content": f"{n}"})
        messages.append({"role": "user", "content": f"What is {n} + {n}?"})
    return place_auto({"model": "m", "messages": messages})


def test_each_turn_finds_the_previous_turns_longest_prefix() -> None:
    for turns in range(2, 12):
        before, now = (
            prefixes(conversation(turns - 1), "acme", aff.LOOKBACK),
            prefixes(conversation(turns), "acme", aff.LOOKBACK),
        )
        assert before[0] != now[0]  # the last mark moved: a new longest prefix
        assert before[0] in now[1:]  # ... and the previous turn's is among the boundaries
        assert len(now) <= aff.MAX_LOOKUP


def test_marks_do_not_change_a_boundarys_fingerprint() -> None:
    marked = conversation(3)
    bare = {"model": "m", "messages": [dict(m) for m in marked["messages"]]}
    for message in bare["messages"]:
        message.pop("cache_control", None)
    bare["messages"][2]["cache_control"] = {"type": "ephemeral"}  # one mark, at turn 2
    assert prefixes(bare, "acme", 8)[0] in prefixes(marked, "acme", 8)
    assert fingerprint(bare, "acme") == prefixes(marked, "acme", 8)[2]
    assert fingerprint(bare, "acme") != fingerprint(bare, "globex")  # tenants never share
    assert scope("acme") != scope("globex") and "acme" not in scope("acme")


def test_the_lookup_prefers_the_longest_prefix_found() -> None:
    async def scenario() -> None:
        registry = Affinities()
        grown = ticket(["long", "mid", "short"], False)
        registry.served(ticket(["short"], False), "r", _target("a"), READ)
        registry.served(ticket(["mid"], False), "r", _target("b", KEYS[1]), READ)
        assert await registry.lookup(grown, "r") == Holder("p/b", key_id(KEYS[1]))
        assert grown.found == "mid"
        assert await registry.lookup(ticket(["other", "short"], False), "r") == Holder(
            "p/a", key_id(KEYS[0])
        )

    asyncio.run(scenario())


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = self.sets = 0

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        self.reads += 1
        return await super().mget(keys)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.sets += 1
        await super().set(key, value, ttl_s)


def test_one_read_per_lookup_and_one_write_per_grown_turn() -> None:
    async def turn(registry: Affinities, turns: int, target: Target) -> Holder | None:
        found = ticket(prefixes(conversation(turns), "acme", aff.LOOKBACK), False)
        holder = await registry.lookup(found, "r")
        registry.served(found, "r", target, READ)
        await asyncio.sleep(0)  # the background write
        return holder

    async def scenario() -> None:
        store = CountingStore()
        registry = Affinities(store)
        assert await turn(registry, 1, _target("a")) is None
        for turns in range(2, 6):
            assert await turn(registry, turns, _target("b")) == Holder("p/a", key_id(KEYS[0]))
            assert await turn(registry, turns, _target("a")) is not None
        assert store.reads == 9  # one read per lookup, whatever the boundaries
        # the first turn's, then per turn: the grown prefix, and the holder moving to b and back
        assert store.sets == 1 + 4 * 2

    asyncio.run(scenario())


def test_replicas_follow_a_grown_conversation_through_one_mget(redis_url: str) -> None:
    async def scenario() -> None:
        first, second = RedisStore(redis_url), RedisStore(redis_url)
        one, two = Affinities(first), Affinities(second)
        tenant = f"t-{time.time_ns()}"
        earlier = ticket(prefixes(conversation(2), tenant, 8), False, scope(tenant))
        one.served(earlier, "r", _target("b", KEYS[2]), READ)
        await asyncio.sleep(0.05)
        grown = ticket(prefixes(conversation(3), tenant, 8), False, scope(tenant))
        assert await two.lookup(grown, "r") == Holder("p/b", key_id(KEYS[2]))
        assert grown.found == earlier.fingerprint
        key = entry_key(earlier.fingerprint, "r", scope(tenant))
        assert key.startswith(f"il:aff:{{{scope(tenant)}}}:")  # the tenant's hash tag
        assert await second.get(key) is not None
        other = ticket(prefixes(conversation(3), "globex", 8), False, scope("globex"))
        assert await two.lookup(other, "r") is None  # another tenant: nothing
        await first.close()
        await second.close()

    asyncio.run(scenario())


def test_a_messages_conversation_grows_the_same_way() -> None:
    """Anthropic's shape (passthrough): auto mode marks a content block, strings become
    blocks; the previous turn's longest prefix is still among the next turn's boundaries."""

    def turn(turns: int) -> dict[str, Any]:
        messages: list[Any] = []
        for n in range(turns):
            if n:
                messages.append({"role": "assistant", "content": f"{2 * n}"})
            messages.append({"role": "user", "content": [{"type": "text", "text": f"{n}?"}]})
        payload = {"system": "You answer in numbers. " * 50, "messages": messages}
        return anthropic_mode(payload, "auto")

    for turns in range(2, 8):
        before = prefixes(turn(turns - 1), "acme", aff.LOOKBACK)
        assert before[0] in prefixes(turn(turns), "acme", aff.LOOKBACK)[1:]


def test_a_turn_after_a_long_tool_loop_still_finds_the_previous_turn() -> None:
    """Chat's tool messages do not move auto mode's mark (it sits before the last *user*
    message): a loop of twenty tool calls between two user turns moves it past LOOKBACK, and
    the boundary before the previous user message is looked up all the same."""
    before = conversation(3)
    earlier = prefixes(before, "acme", aff.LOOKBACK)[0]
    messages = [{k: v for k, v in m.items() if k != "cache_control"} for m in before["messages"]]
    for n in range(10):
        call = {"id": f"c{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{n}", "content": "42"})
    messages += [{"role": "assistant", "content": "done"}, {"role": "user", "content": "Next?"}]
    after = place_auto({"model": "m", "messages": messages})
    now = prefixes(after, "acme", aff.LOOKBACK)
    assert earlier in now[1:]
    assert len(now) <= aff.MAX_LOOKUP
    assert earlier not in prefixes(after, "acme", 8)[: 1 + aff.LOOKBACK]  # not by lookback
