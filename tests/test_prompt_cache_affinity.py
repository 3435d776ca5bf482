"""Prompt-cache affinity end to end: the official openai SDK -> edge -> core -> two fake
Anthropic servers that cache marked prefixes (tests/support/fake_prompt_cache.py), every
request counted at the fakes (which server, which API key).

Requests sharing a marked prefix go to the target and key that wrote it (a weighted 50/50
route, a pool of two keys); unmarked ones, and a route with `affinity: off`, spread; a holder
that fails is left and the target that served instead becomes the holder; another tenant
with the same prefix gets none of the first tenant's affinity; a second core sharing the
first's Redis follows the holder the first recorded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.support import raw
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.prom import by_label, scrape
from tests.support.stack import Stack

MODEL = "claude-sonnet-4-5"
LONG = "Always answer with one number and nothing else. " * 120  # ~5,900 characters
EPHEMERAL = {"type": "ephemeral"}
ONE, TWO = f"one/{MODEL}", f"two/{MODEL}"


def target(provider: str) -> dict[str, Any]:
    return {"provider": provider, "model": MODEL, "weight": 1}


def overrides(one: FakeAnthropic, two: FakeAnthropic) -> dict[str, Any]:
    split = {"strategy": "weighted", "targets": [target("one"), target("two")]}
    return {
        "providers": {
            "one": {"kind": "anthropic", "base_url": one.url, "api_key": "sk-ant-one"},
            "two": {"kind": "anthropic", "base_url": two.url, "api_key": "sk-ant-two"},
            "pool": {
                "kind": "anthropic",
                "base_url": one.url,
                "api_keys": ["sk-ant-key-a", "sk-ant-key-b"],
            },
        },
        "models": {
            "split": split,
            "split-off": {**split, "affinity": "off"},
            "pooled": {"provider": "pool", "model": MODEL},
        },
    }


@pytest.fixture(scope="module")
def other() -> Iterator[FakeAnthropic]:
    """A second fake Anthropic: the route's other target (its own prompt cache)."""
    server = FakeAnthropic()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, claude: FakeAnthropic, other: FakeAnthropic
) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("affinity"), overrides(claude, other)).start()
    yield running
    running.stop()


def chat(stack: Stack, tenant: str = "acme") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(tenant), max_retries=0
    )


def messages(tag: str, question: str, marked: bool = True) -> list[Any]:
    """A system prompt long enough to be cached, unique to `tag`, marked or not."""
    system: dict[str, Any] = {"role": "system", "content": f"[{tag}] {LONG}"}
    if marked:
        system["cache_control"] = EPHEMERAL
    return [system, {"role": "user", "content": question}]


def ask(stack: Stack, model: str, tag: str, n: int, tenant: str = "acme", **kw: Any) -> str:
    """The provider that served the `n`th question under the prefix `tag`."""
    response = chat(stack, tenant).chat.completions.with_raw_response.create(
        model=model, messages=messages(tag, f"What is {n} + {n}?", **kw), max_tokens=10
    )
    return response.headers["x-interlock-provider"]


def seen(fake: FakeAnthropic, tag: str) -> list[str]:
    """The API key of every request `fake` received under the prefix `tag`."""
    out = []
    for received in fake.received:
        if received.json and f"[{tag}]" in str(received.json.get("system")):
            headers = {k.lower(): v for k, v in received.headers.items()}
            out.append(headers["x-api-key"])
    return out


def explain(stack: Stack, tag: str, tenant: str = "acme", model: str = "split") -> Any:
    request = {"model": model, "messages": messages(tag, "?"), "max_tokens": 10}
    answer = raw.post(
        f"{stack.core_admin_url}/admin/route/explain", {"tenant": tenant, "request": request}
    )
    assert answer.status == 200, answer.body
    return answer.json()


def lookups(stack: Stack) -> dict[str, int]:
    found = scrape(stack.core_admin_url)
    return by_label(found, "interlock_prompt_cache_affinity_lookups_total", "result")


def test_requests_sharing_a_marked_prefix_stay_on_one_target_and_key(
    stack: Stack, claude: FakeAnthropic, other: FakeAnthropic
) -> None:
    for _ in range(6):  # the first of each goes either way (50/50): then all follow it
        tag = uuid.uuid4().hex
        served = {ask(stack, "split", tag, n) for n in range(4)}
        assert len(served) == 1, served
        at_one, at_two = seen(claude, tag), seen(other, tag)
        assert sorted((len(at_one), len(at_two))) == [0, 4]
        assert set(at_one or at_two) == {"sk-ant-one" if at_one else "sk-ant-two"}


def test_unmarked_requests_and_a_route_with_affinity_off_spread(stack: Stack) -> None:
    tag = uuid.uuid4().hex
    assert {ask(stack, "split", tag, n, marked=False) for n in range(16)} == {"one", "two"}
    assert {ask(stack, "split-off", tag, n) for n in range(16)} == {"one", "two"}
    assert explain(stack, tag, model="split-off")["affinity"]["enabled"] is False


def test_a_key_pool_lends_the_key_that_holds_the_prefix(
    stack: Stack, claude: FakeAnthropic
) -> None:
    for _ in range(4):
        tag = uuid.uuid4().hex
        for n in range(4):
            ask(stack, "pooled", tag, n)
        keys = seen(claude, tag)
        assert len(keys) == 4 and len(set(keys)) == 1, keys
    tag = uuid.uuid4().hex
    for n in range(4):
        ask(stack, "pooled", tag, n, marked=False)
    assert set(seen(claude, tag)) == {"sk-ant-key-a", "sk-ant-key-b"}  # round robin


def test_explain_shows_the_holder_and_a_stream_records_it(stack: Stack) -> None:
    tag = uuid.uuid4().hex
    before = explain(stack, tag)
    assert before["affinity"] == {
        "enabled": True,
        "fingerprinted": True,
        "holder": None,
        "key": None,
    }
    stream = chat(stack).chat.completions.create(
        model="split", messages=messages(tag, "1 + 1?"), max_tokens=10, stream=True
    )
    assert list(stream)
    after = wait_for_holder(stack, tag)
    holder = after["affinity"]["holder"]
    assert holder in (ONE, TWO) and len(after["affinity"]["key"]) == 12
    views = {c["target"]: c for c in after["candidates"]}
    assert views[holder]["affinity"] == 1.0 and views[holder]["order"] is None  # weighted
    assert {ask(stack, "split", tag, n) for n in range(6)} == {holder.split("/")[0]}


def wait_for_holder(stack: Stack, tag: str, tenant: str = "acme") -> Any:
    """The explanation once a holder is recorded (a stream's, or another core's, lands
    when the stream ends or the write arrives): polled, never slept blindly."""
    deadline = time.monotonic() + 5
    while True:
        found = explain(stack, tag, tenant)
        if found["affinity"]["holder"] is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_another_tenant_never_gets_the_first_tenants_affinity(stack: Stack) -> None:
    tag = uuid.uuid4().hex
    ask(stack, "split", tag, 1, tenant="acme")
    assert explain(stack, tag, "acme")["affinity"]["holder"] in (ONE, TWO)
    assert explain(stack, tag, "globex")["affinity"] == {
        "enabled": True,
        "fingerprinted": True,
        "holder": None,
        "key": None,
    }
    before = lookups(stack)
    explain(stack, tag, "globex")  # an explanation only reads: it counts nothing
    assert lookups(stack) == before
    ask(stack, "split", tag, 2, tenant="globex")  # the same prefix, another tenant: a miss
    after = lookups(stack)
    assert after["miss"] == before["miss"] + 1 and after["hit"] == before["hit"]
    ask(stack, "split", tag, 3, tenant="acme")
    assert lookups(stack)["hit"] == after["hit"] + 1


def test_a_failing_holder_is_left_and_the_target_that_served_holds_the_prefix(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    fakes = {"one": FakeAnthropic(), "two": FakeAnthropic()}
    for fake in fakes.values():
        fake.start()
    running = Stack(tmp_path_factory.mktemp("affinity-failing"), overrides(*fakes.values()))
    running.start()
    try:
        tag = uuid.uuid4().hex
        holder = ask(running, "split", tag, 0)
        fakes.pop(holder).stop()  # the holder goes away
        response = chat(running).chat.completions.with_raw_response.create(
            model="split", messages=messages(tag, "2 + 2?"), max_tokens=10
        )
        survivor = response.headers["x-interlock-provider"]
        assert survivor != holder
        for n in range(3):  # the survivor holds the prefix now: tried first, no failover
            response = chat(running).chat.completions.with_raw_response.create(
                model="split", messages=messages(tag, f"{n} + 3?"), max_tokens=10
            )
            assert response.headers["x-interlock-provider"] == survivor
            assert response.headers["x-interlock-failovers"] == "0"
    finally:
        running.stop()
        for fake in fakes.values():
            fake.stop()


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    claude: FakeAnthropic,
    other: FakeAnthropic,
    redis_url: str,
) -> Iterator[tuple[Stack, Stack]]:
    """Two cores (each with its edge) sharing one Redis, as two replicas do."""
    settings = {**overrides(claude, other), "state": {"redis_url": redis_url}}
    first = Stack(tmp_path_factory.mktemp("affinity-r1"), settings).start()
    second = Stack(tmp_path_factory.mktemp("affinity-r2"), settings).start()
    yield first, second
    first.stop()
    second.stop()


def test_a_second_core_follows_the_holder_the_first_recorded(
    replicas: tuple[Stack, Stack],
) -> None:
    first, second = replicas
    for _ in range(6):  # without sharing, the second core's first pick matches 1 in 2^6
        tag = uuid.uuid4().hex
        served = ask(first, "split", tag, 0)
        found = wait_for_holder(second, tag)
        assert found["affinity"]["holder"] == f"{served}/{MODEL}"
        assert ask(second, "split", tag, 1) == served
    assert lookups(second)["hit"] >= 6


def test_messages_requests_follow_their_holder_too(stack: Stack) -> None:
    """The Messages API (passed through to Anthropic): its marks, in Anthropic's shape, are
    fingerprinted the same way."""
    client = anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(), max_retries=0)
    for _ in range(4):
        tag = uuid.uuid4().hex
        system: Any = [{"type": "text", "text": f"[{tag}] {LONG}", "cache_control": EPHEMERAL}]
        served = set()
        for n in range(4):
            response = client.messages.with_raw_response.create(
                model="split",
                system=system,
                messages=[{"role": "user", "content": f"What is {n} + 1?"}],
                max_tokens=10,
            )
            served.add(response.headers["x-interlock-provider"])
        assert len(served) == 1, served
