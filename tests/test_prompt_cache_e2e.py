"""Provider prompt caching end to end: official SDKs -> edge -> core -> fakes that cache.

What each upstream receives (Anthropic's cache_control in position with its TTL, Converse
cachePoint blocks, no mark at all for OpenAI but a tenant-scoped prompt_cache_key), what the
client is told (cached and written tokens, the marks a target dropped), automatic mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_bedrock import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, FakeBedrock
from tests.support.fake_openai import FakeOpenAI
from tests.support.prom import scrape, value
from tests.support.stack import Stack

SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"  # caches, for five minutes only
OLD_CLAUDE = "anthropic.claude-3-5-sonnet-20241022-v2:0"
LONG = "Always answer with one number and nothing else. " * 120  # ~5,900 characters
EPHEMERAL = {"type": "ephemeral"}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{k}",
            "description": "Looks something up. " + LONG[:1500],
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    for k in range(3)
]


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]]:
    servers = (FakeAnthropic(), FakeBedrock(), FakeOpenAI())
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI],
) -> Iterator[Stack]:
    claude, bedrock, oai = fakes
    overrides: dict[str, Any] = {
        "providers": {
            "claude": {"kind": "anthropic", "base_url": claude.url, "api_key": "sk-ant-test"},
            "bedrock": {
                "kind": "bedrock",
                "base_url": bedrock.url,
                "options": {
                    "region": "us-east-1",
                    "access_key_id": ACCESS_KEY,
                    "secret_access_key": SECRET_KEY,
                    "session_token": SESSION_TOKEN,
                },
            },
            "oai": {
                "kind": "openai",
                "base_url": oai.base_url,
                "api_key": "sk-test",
                "options": {"preset": "openai"},
            },
        },
        "models": {
            "claude": {"provider": "claude", "model": "claude-sonnet-4-5"},
            "claude-auto": {
                "provider": "claude",
                "model": "claude-sonnet-4-5",
                "prompt_cache": "auto",
            },
            "sonnet-bedrock": {"provider": "bedrock", "model": SONNET},
            "sonnet4-bedrock": {"provider": "bedrock", "model": SONNET_4},
            "old-bedrock": {"provider": "bedrock", "model": OLD_CLAUDE},
            "gpt": {"provider": "oai", "model": "gpt-4o"},
        },
    }
    running = Stack(tmp_path_factory.mktemp("prompt-cache"), overrides).start()
    yield running
    running.stop()


def chat(stack: Stack, tenant: str = "acme") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(tenant), max_retries=0
    )


def marked_messages(question: str = "What is 2 + 3?") -> list[Any]:
    return [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": LONG, "cache_control": {**EPHEMERAL, "ttl": "1h"}}
            ],
        },
        {"role": "user", "content": "Here is a document. " + LONG, "cache_control": EPHEMERAL},
        {"role": "assistant", "content": "Read."},
        {"role": "user", "content": question},
    ]


def marked_tools() -> list[Any]:
    """Tools come first in the prefix: a 1h mark there keeps the system prompt's 1h valid."""
    return [*TOOLS[:-1], {**TOOLS[-1], "cache_control": {**EPHEMERAL, "ttl": "1h"}}]


def test_anthropic_gets_marks_in_place_and_reports_reads(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    claude = fakes[0]
    claude.reset()
    first = chat(stack).chat.completions.with_raw_response.create(
        model="claude", messages=marked_messages(), tools=marked_tools(), max_tokens=20
    )
    body = claude.received[-1].json
    assert body["system"] == [
        {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert all("cache_control" not in t for t in body["tools"][:-1])
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Here is a document. " + LONG, "cache_control": EPHEMERAL}
    ]
    assert "cache_control" not in str(body["messages"][1:])
    assert "x-interlock-cache-dropped" not in first.headers
    usage = first.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    written = usage.model_dump()["prompt_tokens_details"]["cache_creation_tokens"]
    assert written > 1000 and usage.prompt_tokens_details.cached_tokens == 0
    # The same prefix again, with another question: read from the cache.
    second = chat(stack).chat.completions.create(
        model="claude", messages=marked_messages("And 4 + 4?"), tools=marked_tools(), max_tokens=20
    )
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == written
    # OpenAI's prompt_tokens counts the cached tokens too.
    assert second.usage.prompt_tokens > written


def test_limits_drop_marks_named_in_a_header(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    claude = fakes[0]
    claude.reset()
    parts = [{"type": "text", "text": LONG, "cache_control": EPHEMERAL} for _ in range(4)]
    messages: list[Any] = [
        {"role": "system", "content": "Short.", "cache_control": EPHEMERAL},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Go", "cache_control": {**EPHEMERAL, "ttl": "1h"}}
            ],
        },
    ]
    response = chat(stack).chat.completions.with_raw_response.create(
        model="claude", messages=messages, max_tokens=20
    )
    assert response.headers["x-interlock-cache-dropped"] == (
        "messages[0]=below_minimum,messages[1].content[0]=too_many,"
        "messages[3].content[0]=ttl_shortened"
    )
    body = claude.received[-1].json
    marks = [b.get("cache_control") for m in body["messages"] for b in m["content"]]
    assert [m for m in marks if m] == [EPHEMERAL] * 4  # four, the 1h one shortened
    assert body["system"] == "Short."
    # A stream carries the header too (set before its first byte).
    with chat(stack).chat.completions.with_streaming_response.create(
        model="claude", messages=messages, max_tokens=20, stream=True
    ) as streamed:
        assert (
            streamed.headers["x-interlock-cache-dropped"]
            == response.headers["x-interlock-cache-dropped"]
        )
        assert "".join(streamed.iter_lines())


def test_bedrock_gets_cache_points_and_reports_reads(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    bedrock = fakes[1]
    bedrock.reset()
    point = {"cachePoint": {"type": "default"}}
    hour = {"cachePoint": {"type": "default", "ttl": "1h"}}  # Sonnet 4.5 caches for an hour
    first = chat(stack).chat.completions.create(
        model="sonnet-bedrock", messages=marked_messages(), tools=marked_tools(), max_tokens=20
    )
    body = bedrock.received[-1].json
    assert body["system"] == [{"text": LONG}, hour]
    assert body["toolConfig"]["tools"][-1] == hour and len(body["toolConfig"]["tools"]) == 4
    assert body["messages"][0]["content"] == [{"text": "Here is a document. " + LONG}, point]
    assert point not in body["messages"][1]["content"] + body["messages"][2]["content"]
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    written = first.usage.model_dump()["prompt_tokens_details"]["cache_creation_tokens"]
    assert written > 1000
    second = chat(stack).chat.completions.create(
        model="sonnet-bedrock",
        messages=marked_messages("4 + 4?"),
        tools=marked_tools(),
        max_tokens=20,
    )
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == written


def test_bedrock_model_without_caching_gets_no_cache_point(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    bedrock = fakes[1]
    bedrock.reset()
    response = chat(stack).chat.completions.with_raw_response.create(
        model="old-bedrock", messages=marked_messages(), max_tokens=20
    )
    assert "cachePoint" not in str(bedrock.received[-1].json)
    assert response.headers["x-interlock-cache-dropped"] == (
        "messages[0].content[0]=unsupported,messages[1]=unsupported"
    )


def test_openai_gets_no_marks_and_a_tenant_scoped_key(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    oai = fakes[2]
    oai.reset()
    first = chat(stack).chat.completions.with_raw_response.create(
        model="gpt", messages=marked_messages(), tools=marked_tools()
    )
    body = oai.received[-1].json
    assert "cache_control" not in str(body)
    key = body["prompt_cache_key"]
    assert key.startswith("ilk-") and "acme" not in key
    assert "x-interlock-cache-dropped" not in first.headers
    second = chat(stack).chat.completions.create(
        model="gpt", messages=marked_messages("4 + 4?"), tools=marked_tools()
    )
    assert oai.received[-1].json["prompt_cache_key"] == key  # same tenant, same prefix
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert (second.usage.prompt_tokens_details.cached_tokens or 0) >= 1024
    chat(stack, "globex").chat.completions.create(
        model="gpt", messages=marked_messages(), tools=marked_tools()
    )
    assert oai.received[-1].json["prompt_cache_key"] != key  # another tenant, another key


def test_a_bad_mark_is_a_400_naming_it(stack: Stack) -> None:
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "2h"}}
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        chat(stack).chat.completions.create(model="claude", messages=messages)
    assert refused.value.param == "messages[0].content[0].cache_control.ttl"
    tools: list[Any] = [{**TOOLS[0], "cache_control": {"type": "persistent"}}]
    with pytest.raises(openai.BadRequestError) as refused:
        chat(stack).chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], tools=tools
        )
    assert refused.value.param == "tools[0].cache_control.type"


def test_auto_mode_places_breakpoints(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    claude = fakes[0]
    claude.reset()
    messages: list[Any] = [
        {"role": "system", "content": LONG},
        {"role": "user", "content": "Summarise this. " + LONG},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Now shorter."},
    ]
    chat(stack).chat.completions.create(
        model="claude-auto", messages=messages, tools=TOOLS, max_tokens=20
    )
    body = claude.received[-1].json
    assert body["system"] == [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]
    assert body["tools"][-1]["cache_control"] == EPHEMERAL
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Done.", "cache_control": EPHEMERAL}
    ]
    assert "cache_control" not in str(body["messages"][0]) + str(body["messages"][2])
    # The header turns it off for one request, client marks included.
    chat(stack).chat.completions.create(
        model="claude-auto",
        messages=marked_messages(),
        max_tokens=20,
        extra_headers={"x-interlock-prompt-cache": "off"},
    )
    assert "cache_control" not in str(claude.received[-1].json)
    # ...or on, for a model whose default is the client's marks only.
    chat(stack).chat.completions.create(
        model="claude",
        messages=messages,
        max_tokens=20,
        extra_headers={"x-interlock-prompt-cache": "auto"},
    )
    assert claude.received[-1].json["system"][0]["cache_control"] == EPHEMERAL
    # Breakpoints the gateway placed and had to drop are not named; the client's own are.
    short: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "cache_control": EPHEMERAL},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    response = chat(stack).chat.completions.with_raw_response.create(
        model="claude-auto", messages=short, max_tokens=20
    )
    assert response.headers["x-interlock-cache-dropped"] == "messages[1]=below_minimum"
    assert "cache_control" not in str(claude.received[-1].json)


def test_anthropic_sdk_passthrough_reports_cache_reads(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    claude = fakes[0]
    claude.reset()
    client = anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(), max_retries=0)
    system: Any = [
        {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    first = client.messages.create(
        model="claude", max_tokens=20, system=system, messages=[{"role": "user", "content": "Hi"}]
    )
    assert claude.received[-1].json["system"] == system
    assert first.usage.cache_creation_input_tokens and first.usage.cache_read_input_tokens == 0
    second = client.messages.create(
        model="claude", max_tokens=20, system=system, messages=[{"role": "user", "content": "Yo"}]
    )
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens < 100  # Anthropic's input_tokens excludes both


def test_anthropic_sdk_auto_mode_and_translation_to_bedrock(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    claude, bedrock = fakes[0], fakes[1]
    claude.reset()
    bedrock.reset()
    client = anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(), max_retries=0)
    history: Any = [
        {"role": "user", "content": "Read this. " + LONG},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Shorter?"},
    ]
    client.messages.create(model="claude-auto", max_tokens=20, system=LONG, messages=history)
    body = claude.received[-1].json
    assert body["system"] == [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Done.", "cache_control": EPHEMERAL}
    ]
    assert "cache_control" not in str(body["messages"][0]) + str(body["messages"][2])
    # Translated for Converse: the client's mark becomes a cache point at the same place.
    system: Any = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
    ask: Any = [{"role": "user", "content": "Hi"}]
    first = client.messages.create(
        model="sonnet-bedrock", max_tokens=20, system=system, messages=ask
    )
    assert bedrock.received[-1].json["system"] == [
        {"text": LONG},
        {"cachePoint": {"type": "default"}},
    ]
    second = client.messages.create(
        model="sonnet-bedrock", max_tokens=20, system=system, messages=ask
    )
    assert first.usage.cache_creation_input_tokens and not first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


@pytest.mark.parametrize(
    ("model", "usages", "costs"),
    [
        # Sonnet 4.5 on Anthropic: input $3/M, 5m write $3.75, 1h write $6, read $0.30, out $15.
        # The system prompt is marked 1h (1446 tokens written for an hour), the first user
        # turn 5m (1451 more written for five minutes).
        (
            "claude",
            [(2913, 0, 2897, 1446, 6), (2912, 2897, 0, 0, 6)],
            # first: 16*3 + 1446*6 + 1451*3.75 + 6*15 = 48 + 8676 + 5441.25 + 90
            #        = 14255.25 -> 14255
            # second: 15*3 + 2897*0.30 + 6*15 = 45 + 869.1 + 90 = 1004.1 -> 1004
            ["0.014255", "0.001004"],
        ),
        # Sonnet 4.5 through a us. cross-region profile on Bedrock: the same rates plus 10%.
        # Its cache points take the 1h TTL: the system prompt's 1442 tokens are written for an
        # hour (cacheDetails), the first user turn's 1447 for five minutes.
        (
            "sonnet-bedrock",
            [(2899, 0, 2889, 1442, 7), (2898, 2889, 0, 0, 7)],
            # first: (10*3 + 1447*3.75 + 1442*6 + 7*15) * 1.1 = (30 + 5426.25 + 8652 + 105)
            #        * 1.1 = 14213.25 * 1.1 = 15634.575 -> 15635
            # second: (9*3 + 2889*0.30 + 7*15) * 1.1 = 998.7 * 1.1 = 1098.57 -> 1099
            ["0.015635", "0.001099"],
        ),
    ],
)
def test_cached_requests_are_priced_by_hand(
    stack: Stack,
    fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI],
    model: str,
    usages: list[tuple[int, int, int, int, int]],
    costs: list[str],
) -> None:
    for fake in fakes:
        fake.reset()
    seen = []
    for question in ("What is 2 + 3?", "And 4 + 4?"):
        response = chat(stack).chat.completions.with_raw_response.create(
            model=model, messages=marked_messages(question), max_tokens=20
        )
        usage = response.parse().usage
        assert usage is not None and usage.prompt_tokens_details is not None
        details = usage.prompt_tokens_details
        seen.append(
            (
                usage.prompt_tokens,
                details.cached_tokens,
                details.cache_write_tokens,
                usage.model_dump()["prompt_tokens_details"].get("cache_creation_1h_tokens") or 0,
                usage.completion_tokens,
                response.headers["x-interlock-cost"],
            )
        )
    assert seen == [(*u, c) for u, c in zip(usages, costs, strict=True)]
    # The target's cache use is watched for writes nobody reads (core.observe.cache_writes).
    label = "claude/claude-sonnet-4-5" if model == "claude" else f"bedrock/{SONNET}"
    unread = "interlock_prompt_cache_writes_unread_total"
    assert value(scrape(stack.core_admin_url), unread, target=label) == 0


def test_anthropic_sdk_translated_to_openai_gets_a_key_and_no_marks(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
) -> None:
    oai = fakes[2]
    oai.reset()
    client = anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(), max_retries=0)
    system: Any = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
    ask: Any = [{"role": "user", "content": "Hi"}]
    first = client.messages.create(model="gpt", max_tokens=20, system=system, messages=ask)
    body = oai.received[-1].json
    assert "cache_control" not in str(body)
    assert body["prompt_cache_key"].startswith("ilk-")
    second = client.messages.create(model="gpt", max_tokens=20, system=system, messages=ask)
    assert oai.received[-1].json["prompt_cache_key"] == body["prompt_cache_key"]
    assert not first.usage.cache_read_input_tokens
    assert (second.usage.cache_read_input_tokens or 0) >= 1024
