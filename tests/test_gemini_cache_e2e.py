"""Gemini explicit context caching end to end: the official OpenAI SDK -> edge -> core ->
fake Gemini (which serves cachedContents as the real API does), with two independent stacks
(edge + core each) sharing one private Redis, as two core replicas would."""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from core.providers.gemini_cache import EXPIRY_MARGIN_S
from tests.support.fake_gemini import FakeGemini, GeminiReceived
from tests.support.sdk import client
from tests.support.stack import Stack

MARK: Any = {"type": "ephemeral"}
FLASH = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini()
    server.start()
    yield server
    server.stop()


def _overrides(fake: FakeGemini, redis_url: str) -> dict[str, Any]:
    common = {"kind": "gemini", "base_url": fake.url, "allow_any_model": True}
    vertex = {"project": "proj-1", "location": "us-central1"}
    return {
        "state": {"redis_url": redis_url},
        "providers": {
            "gemini": {**common, "api_key": fake.api_key},
            "vertex": {**common, "api_key": fake.token, "options": {"vertex": vertex}},
        },
        "models": {
            "flash": {"provider": "gemini", "model": FLASH},
            "pro": {"provider": "gemini", "model": "gemini-2.5-pro"},
            "vertex-flash": {"provider": "vertex", "model": FLASH},
        },
    }


@pytest.fixture(scope="module")
def stacks(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeGemini, redis_url: str
) -> Iterator[tuple[Stack, Stack]]:
    started: list[Stack] = []
    try:
        for name in ("a", "b"):
            workdir = Path(tmp_path_factory.mktemp(f"gcache-{name}"))
            started.append(Stack(workdir, _overrides(fake, redis_url)).start())
        yield started[0], started[1]
    finally:
        for stack in started:
            stack.stop()


@pytest.fixture()
def doc() -> str:
    """A fresh prefix of about 1,500 tokens per test: over Flash's minimum, under Pro's."""
    return f"[{secrets.token_hex(8)}] " + "The quick brown fox jumps over the lazy dog. " * 130


def _ask(stack: Stack, model: str, messages: list[Any], tenant: str = "acme", **kw: Any) -> Any:
    sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(tenant), max_retries=0)
    return sdk.chat.completions.create(model=model, messages=messages, **kw)


def _system_marked(doc: str, question: str) -> list[Any]:
    return [
        {"role": "system", "content": doc, "cache_control": MARK},
        {"role": "user", "content": question},
    ]


def _generations(fake: FakeGemini, model: str = FLASH) -> list[GeminiReceived]:
    return [r for r in fake.for_model(model) if isinstance(r, GeminiReceived)]


def _creations(fake: FakeGemini) -> list[Any]:
    return [r.json for r in fake.received if r.path.endswith("/cachedContents")]


def test_marked_prefix_is_cached_then_reused(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    a, _ = stacks
    fake.reset()
    first = _ask(a, "flash", _system_marked(doc, "What jumps?"))
    assert fake.caches.created[FLASH] == 1
    [create] = _creations(fake)
    assert create["model"] == f"models/{FLASH}" and create["ttl"] == "300s"
    assert create["systemInstruction"] == {"parts": [{"text": doc}]}
    assert "contents" not in create
    [name] = fake.caches.resources
    [sent] = _generations(fake)
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "What jumps?"}]}],
        "cachedContent": name,
    }
    tokens = fake.caches.resources[name].tokens
    assert first.usage.prompt_tokens_details.cached_tokens == tokens

    second = _ask(a, "flash", _system_marked(doc, "Over what?"))
    assert fake.caches.created[FLASH] == 1  # reused, not created again
    assert _generations(fake)[-1].json["cachedContent"] == name
    assert second.usage.prompt_tokens_details.cached_tokens == tokens
    assert second.usage.prompt_tokens > tokens


def test_streams_use_the_cache_and_report_cached_tokens(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    a, _ = stacks
    fake.reset()
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": doc, "cache_control": MARK},
                {"type": "text", "text": "Summarise."},
            ],
        },
    ]
    stream = client(a).chat.completions.create(
        model="flash", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Gemini."
    [create] = _creations(fake)
    assert create["contents"] == [{"role": "user", "parts": [{"text": doc}]}]
    [name] = fake.caches.resources
    [sent] = _generations(fake)
    assert sent.json["cachedContent"] == name
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": "Summarise."}]}]
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == fake.caches.resources[name].tokens


def test_one_hour_marker_asks_for_an_hour(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    fake.reset()
    messages = [
        {"role": "system", "content": doc, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"role": "user", "content": "q"},
    ]
    _ask(stacks[0], "flash", messages)
    assert [c["ttl"] for c in _creations(fake)] == ["3600s"]


def test_prefix_under_the_minimum_goes_uncached(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    a, _ = stacks
    fake.reset()
    sdk = openai.OpenAI(base_url=f"{a.edge_url}/v1", api_key=a.token("acme"), max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model="pro",
        messages=_system_marked(doc, "What jumps?"),  # Pro needs 4,096 tokens
    )
    assert raw.parse().choices[0].message.content == "Hello from Gemini."
    # The client hears which mark went unused, and why: never an error.
    assert raw.headers["x-interlock-cache-dropped"] == "messages[0]=below_minimum"
    assert _creations(fake) == []
    [sent] = _generations(fake, "gemini-2.5-pro")
    assert "cachedContent" not in sent.json
    assert sent.json["systemInstruction"] == {"parts": [{"text": doc}]}
    a.wait_for_log("gemini context cache not used for gemini/gemini-2.5-pro", "below_minimum")
    with urllib.request.urlopen(f"{a.core_admin_url}/metrics") as response:
        metrics = response.read().decode()
    assert 'interlock_gemini_context_cache_total{event="dropped"}' in metrics


def test_a_resource_gemini_lost_is_recreated_once(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    a, _ = stacks
    fake.reset()
    _ask(a, "flash", _system_marked(doc, "one"))
    [old] = fake.caches.resources
    fake.caches.expire()  # Gemini dropped it early: the registry still names it
    answer = _ask(a, "flash", _system_marked(doc, "two"))
    assert answer.choices[0].message.content == "Hello from Gemini."
    assert fake.caches.created[FLASH] == 2
    names = [r.json["cachedContent"] for r in _generations(fake)]
    [new] = fake.caches.resources
    assert names == [old, old, new]  # the 403 on the old name, then the retry on the new one
    answer = _ask(a, "flash", _system_marked(doc, "three"))
    assert fake.caches.created[FLASH] == 2 and _generations(fake)[-1].json["cachedContent"] == new


def test_an_expired_resource_is_replaced_before_use(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    a, _ = stacks
    fake.reset()
    fake.caches.lifetime_s = EXPIRY_MARGIN_S + 1.0  # usable for one second
    try:
        _ask(a, "flash", _system_marked(doc, "one"))
        time.sleep(1.2)
        _ask(a, "flash", _system_marked(doc, "two"))
    finally:
        fake.caches.lifetime_s = None
    assert fake.caches.created[FLASH] == 2
    first, second = (r.json["cachedContent"] for r in _generations(fake))
    assert first != second  # no request was sent naming the expired one


def test_two_cores_share_one_resource(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    a, b = stacks
    fake.reset()
    _ask(a, "flash", _system_marked(doc, "from core a"))
    answer = _ask(b, "flash", _system_marked(doc, "from core b"))
    assert fake.caches.created[FLASH] == 1
    [name] = fake.caches.resources
    assert [r.json["cachedContent"] for r in _generations(fake)] == [name, name]
    assert answer.usage.prompt_tokens_details.cached_tokens == fake.caches.resources[name].tokens


def test_concurrent_first_requests_on_two_cores_create_once(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    fake.reset()
    fake.caches.create_delay_s = 0.5  # every request arrives while the first creation runs
    jobs = [(stacks[i % 2], f"question {i}") for i in range(8)]
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda j: _ask(j[0], "flash", _system_marked(doc, j[1])), jobs))
    finally:
        fake.caches.create_delay_s = 0.0
    assert all(a.choices[0].message.content == "Hello from Gemini." for a in answers)
    assert fake.caches.created[FLASH] == 1
    [name] = fake.caches.resources
    assert {r.json.get("cachedContent") for r in _generations(fake)} == {name}


def test_tenants_never_share_a_resource(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    a, _ = stacks
    fake.reset()
    _ask(a, "flash", _system_marked(doc, "q"), tenant="acme")
    _ask(a, "flash", _system_marked(doc, "q"), tenant="globex")
    assert fake.caches.created[FLASH] == 2
    first, second = (r.json["cachedContent"] for r in _generations(fake))
    assert first != second


def test_vertex_caches_live_in_the_project(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    fake.reset()
    answer = _ask(stacks[0], "vertex-flash", _system_marked(doc, "q"))
    scope = "projects/proj-1/locations/us-central1/"
    [create] = [r for r in fake.received if r.path.endswith("/cachedContents")]
    assert create.path == f"/v1/{scope}cachedContents"
    assert create.json["model"] == f"{scope}publishers/google/models/{FLASH}"
    [name] = fake.caches.resources
    assert name.startswith(f"{scope}cachedContents/")
    assert _generations(fake)[-1].json["cachedContent"] == name
    assert answer.usage.prompt_tokens_details.cached_tokens == fake.caches.resources[name].tokens


def test_requests_without_markers_are_untouched(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    fake.reset()
    _ask(stacks[0], "flash", [{"role": "system", "content": doc}, {"role": "user", "content": "q"}])
    assert _creations(fake) == []
    assert "cachedContent" not in _generations(fake)[-1].json


def test_cached_tokens_are_priced_as_cache_reads(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    """Gemini 2.5 Flash (the shipped catalogue): $0.30 per 1M input tokens, $0.03 cached,
    $2.50 output; so micro-dollars are tokens times those figures."""
    fake.reset()
    _ask(stacks[0], "flash", _system_marked(doc, "warm up"))
    sdk = client(stacks[0])
    raw = sdk.chat.completions.with_raw_response.create(
        model="flash", messages=_system_marked(doc, "priced")
    )
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens
    assert cached is not None and cached > 1000
    uncached = usage.prompt_tokens - cached
    expected = uncached * 0.30 + cached * 0.03 + usage.completion_tokens * 2.50
    dollars = raw.headers["x-interlock-cost"]
    whole, _, fraction = dollars.partition(".")
    assert abs(int(whole) * 1_000_000 + int(fraction) - expected) < 1


def test_a_marked_tool_caches_tools_and_system(
    fake: FakeGemini, stacks: tuple[Stack, Stack], doc: str
) -> None:
    """A request naming a cache may not set tools, a system instruction or a tool config, so
    all of them go into the cache; the turns stay in the request."""
    fake.reset()
    tool: Any = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": doc,
            "parameters": {"type": "object", "properties": {"term": {"type": "string"}}},
        },
        "cache_control": MARK,
    }
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Look up foxes."},
    ]
    _ask(stacks[0], "flash", messages, tools=[tool], tool_choice="auto")
    [create] = _creations(fake)
    assert create["tools"][0]["functionDeclarations"][0]["description"] == doc
    assert create["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert create["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    [name] = fake.caches.resources
    assert _generations(fake)[-1].json == {
        "contents": [{"role": "user", "parts": [{"text": "Look up foxes."}]}],
        "cachedContent": name,
    }
