"""The conformance matrix (issue 4): scenario x provider, gated by declared capabilities.

One Stack (real edge + core subprocesses) fronts every wire format at once: the OpenAI, Azure,
Anthropic, Gemini (AI Studio) and Bedrock (SigV4) fakes, plus two rows whose declarations differ
on the same fakes (the deepseek preset on the OpenAI fake, Anthropic without structured outputs)
and the built-in mock. Every cell goes through the edge with an official SDK over loopback:
`test_chat_completions` (openai SDK, SCENARIOS) and `test_anthropic_messages` (anthropic SDK
on /v1/messages, MESSAGES_SCENARIOS), each over PROVIDERS.

A cell's expectation is derived, never written by hand: each provider's Capabilities come from
its adapter (as core/ops/captable.py reads them) for the provider config the Stack runs. A scenario
names the Capabilities flags it needs, and its request's top-level params follow from the
request itself. If the target declares all of them the scenario must be served with the fake's
exact scripted answer (content, finish_reason, tool calls, usage numbers); otherwise the request
must be a 400 naming an unmet param (every route here is strict) that never reached the upstream.
So every cell is "mapped or rejected explicitly", and changing a declaration changes the matrix.

Documented exceptions, all visible in the ids and the summary:
- Scenarios that need a scripted upstream failure (429, error after 200, cut stream) exist only
  for providers with an upstream: the mock has none to fail.
- A provider that declares a feature it does not act on (`ignores`), and a gateway bug the
  matrix found (`known_bugs`), make those cells strict xfails on an AssertionError: they must
  keep failing until fixed, and then the entry has to go.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from core.api.messages.request import to_canonical
from core.providers.adapters.base import Capabilities, Target
from core.routing.planning import GATEWAY_PARAMS
from shared.config import ProviderConfig, parse_config
from tests.support import fake_anthropic, fake_azure, fake_bedrock, fake_gemini, fake_openai
from tests.support.fake_server import FakeServer
from tests.support.providers import provider_of
from tests.support.stack import Stack, base_config

# ---- requests ---------------------------------------------------------------------------------

HELLO: list[Any] = [{"role": "user", "content": "Say hello"}]
SYSTEM = "You are a terse assistant."
CONVERSATION: list[Any] = [
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3 + 3?"},
]
QUESTION: list[Any] = [{"role": "user", "content": "Weather in Paris, and ACME's price?"}]
B64 = base64.b64encode(fake_openai.PNG).decode()
DATA_URL = f"data:image/png;base64,{B64}"
IMAGE_QUESTION = "What is in this image?"
IMAGE: list[Any] = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": IMAGE_QUESTION},
            {"type": "image_url", "image_url": {"url": DATA_URL}},
        ],
    }
]


def _tool(name: str, argument: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} for the matrix",
            "parameters": {
                "type": "object",
                "properties": {argument: {"type": "string"}},
                "required": [argument],
            },
        },
    }


TOOLS: list[Any] = [
    _tool("get_weather", "city"),
    _tool("get_stock_price", "ticker"),
    _tool("get_time", "zone"),
]
ANTHROPIC_TOOLS: list[Any] = [
    {
        "name": t["function"]["name"],
        "description": t["function"]["description"],
        "input_schema": t["function"]["parameters"],
    }
    for t in TOOLS
]
# What the client answers for each tool, sent back in the round trips.
RESULTS = {"get_weather": "18C", "get_stock_price": "$42", "get_time": "14:05"}
RESPONSE_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
            "required": ["answer", "confidence"],
            "additionalProperties": False,
        },
    },
}

# ---- providers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]
    id: str | None = None  # None: the gateway mints the id (Gemini calls have none)


@dataclass(frozen=True)
class Urls:
    """Base URLs of the fakes; capabilities are computed with placeholders before they run."""

    openai: str
    azure: str
    anthropic: str
    gemini: str
    bedrock: str


PLACEHOLDERS = Urls(*(f"http://127.0.0.1:9/{name}" for name in ("v1", "az", "an", "ge", "br")))
FAULTS = frozenset({"rate_limit", "error_after_200", "cut_stream"})


def _quoted(results: Sequence[str]) -> str:
    return "Tool results: " + " | ".join(results)


@dataclass(frozen=True)
class Provider:
    """One row: a provider as configured in the Stack and what its fake is scripted to do."""

    name: str  # provider name in the config; clients ask for "<name>/<model>"
    fake: str | None  # which fake serves it (None: the built-in mock, no upstream)
    config: Callable[[Urls], dict[str, Any]]
    # Scripted model per role (a scenario's `role`); a missing non-fault role uses "text".
    models: dict[str, str]
    text: str = ""  # the plain answer, and its usage (prompt, completion)
    usage: tuple[int, int] = (0, 0)
    cache_usage: tuple[int, int, int] = (0, 0, 0)  # prompt, completion, cached
    calls: dict[str, tuple[Call, ...]] = field(default_factory=dict)  # tool model -> calls
    tool_content: str | None = None  # text the model says alongside its tool calls
    tool_answer: Callable[[Sequence[str]], str] = _quoted  # final answer from tool results
    json_answer: dict[str, Any] = field(default_factory=dict)
    partial: dict[str, str] = field(default_factory=dict)  # failing role -> text relayed first
    retry_after: str | None = None  # what the client's 429 should carry
    ignores: frozenset[str] = frozenset()  # declared features it does not act on
    ignores_reason: str = ""
    # "<api>/<scenario>" -> a gateway bug the matrix found (reported, not fixed here)
    known_bugs: dict[str, str] = field(default_factory=dict)

    def model_for(self, role: str) -> str | None:
        if role in self.models:
            return self.models[role]
        return None if role in FAULTS else self.models["text"]


def openai_calls(script: Any) -> tuple[Call, ...]:
    """A fake's OpenAI-shaped tool_calls as the calls the client must get."""
    return tuple(
        Call(c["function"]["name"], orjson.loads(c["function"]["arguments"]), c["id"])
        for c in script
    )


def block_calls(script: Any, id_key: str) -> tuple[Call, ...]:
    """A fake's tool_use / toolUse blocks as the calls the client must get."""
    return tuple(Call(u["name"], u["input"], u[id_key]) for u in script)


OPENAI_CALLS = openai_calls(fake_openai.TOOL_CALLS)
OPENAI_MODELS = {
    "text": "gpt-matrix",
    "tools": "tool-loop",
    "parallel": "tool-loop",
    "json": "json",
    "cache": "cache",
    "rate_limit": "always-429",
    "error_after_200": "error-after-200",
    "cut_stream": "cut-stream",
}
OPENAI_ROW: dict[str, Any] = {
    "fake": "openai",
    "models": OPENAI_MODELS,
    "text": fake_openai.TEXT,
    "usage": (12, 7),
    "cache_usage": (fake_openai.CACHED_PROMPT, 7, fake_openai.CACHED),
    "calls": {"tool-loop": OPENAI_CALLS},
    "json_answer": fake_openai.JSON_ANSWER,
    "partial": {"error_after_200": "Hello from", "cut_stream": "Hello from"},
    "retry_after": "7",
}
ANTHROPIC_ROW: dict[str, Any] = {
    "fake": "anthropic",
    "models": {
        "text": "claude-matrix",
        "tools": "tool-use",
        "parallel": "tool-use",
        "json": "json",
        "cache": "cache",
        "rate_limit": "rate-limit",
        "error_after_200": "error-after-200",
        "cut_stream": "cut-stream",
    },
    "text": fake_anthropic.TEXT,
    "usage": (fake_anthropic.INPUT_TOKENS, len(fake_anthropic.TEXT.split(" "))),
    # Anthropic's input_tokens exclude cached tokens; OpenAI's prompt_tokens include them.
    "cache_usage": (
        3 + fake_anthropic.CACHE_READ + fake_anthropic.CACHE_CREATION,
        len(fake_anthropic.TEXT.split(" ")),
        fake_anthropic.CACHE_READ,
    ),
    "calls": {"tool-use": block_calls(fake_anthropic.TOOL_USES, "id")},
    "tool_content": fake_anthropic.TOOL_TEXT,
    "json_answer": fake_anthropic.JSON_ANSWER,
    "partial": {"error_after_200": "Hello f", "cut_stream": "Hello f"},
    "retry_after": "7",
}
GEMINI_KEY = "AIza-matrix-key"
GEMINI_WEATHER = Call("get_weather", {"city": "Paris"})
BEDROCK_KEYS = {
    "region": fake_bedrock.REGION,
    "access_key_id": fake_bedrock.ACCESS_KEY,
    "secret_access_key": fake_bedrock.SECRET_KEY,
    "session_token": fake_bedrock.SESSION_TOKEN,
}

PROVIDERS: tuple[Provider, ...] = (
    Provider(
        name="openai",
        config=lambda u: {
            "kind": "openai",
            "base_url": u.openai,
            "api_key": "sk-matrix-openai",
            "options": {"preset": "openai"},
        },
        **OPENAI_ROW,
    ),
    Provider(
        name="azure",
        fake="azure",
        config=lambda u: {"kind": "azure", "base_url": u.azure, "api_key": "azure-key"},
        models={
            "text": "gpt-4o",
            "tools": "tool-calls",
            "parallel": "tool-calls",
            "json": "json",
            "cache": "cache",
            "rate_limit": "throttled",
            "error_after_200": "error-after-200",
            "cut_stream": "cut-stream",
        },
        text=fake_azure.TEXT,
        usage=(14, 7),
        cache_usage=(fake_azure.CACHED_PROMPT, 7, fake_azure.CACHED),
        calls={"tool-calls": openai_calls(fake_azure.TOOL_CALLS)},
        json_answer=fake_azure.JSON_ANSWER,
        partial={"error_after_200": "The capital of", "cut_stream": "The capital of"},
        retry_after="2",  # retry-after-ms 1500 rounded up
    ),
    Provider(
        name="anthropic",
        config=lambda u: {"kind": "anthropic", "base_url": u.anthropic, "api_key": "sk-ant-m"},
        **ANTHROPIC_ROW,
    ),
    # The same API through a model or proxy without structured outputs: json_schema is then
    # not declared, so that one cell turns into an explicit rejection.
    Provider(
        name="anthropic-plain",
        config=lambda u: {
            "kind": "anthropic",
            "base_url": u.anthropic,
            "api_key": "sk-ant-m",
            "options": {"structured_outputs": False},
        },
        **ANTHROPIC_ROW,
    ),
    Provider(
        name="gemini",
        fake="gemini",
        config=lambda u: {"kind": "gemini", "base_url": u.gemini, "api_key": GEMINI_KEY},
        models={
            "text": "gemini-2.5-flash",
            "tools": "function-call",
            "parallel": "parallel-calls",
            "json": "json",
            "cache": "cache",
            "rate_limit": "fail-429",
            "error_after_200": "error-after-200",
            "cut_stream": "cut-stream",
        },
        text=fake_gemini.TEXT,
        usage=(11, 5),
        cache_usage=(fake_gemini.CACHED_PROMPT, 5, fake_gemini.CACHED),
        calls={
            "function-call": (GEMINI_WEATHER,),
            "parallel-calls": (GEMINI_WEATHER, Call("get_time", {"zone": "CET"})),
        },
        tool_answer=lambda _: fake_gemini.TOOL_TEXT,
        json_answer=fake_gemini.JSON_ANSWER,
        partial={"error_after_200": "Hello from", "cut_stream": "Hello from"},
        retry_after="1",  # RetryInfo retryDelay 1s
    ),
    Provider(
        name="bedrock",
        fake="bedrock",
        config=lambda u: {"kind": "bedrock", "base_url": u.bedrock, "options": BEDROCK_KEYS},
        models={
            "text": "anthropic.claude-3-haiku-20240307-v1:0",
            "tools": "tools",
            "parallel": "tools",
            "cache": "cache",
            "rate_limit": "throttle",
            "error_after_200": "stream-error",
            "cut_stream": "cut-stream",
        },
        text=fake_bedrock.TEXT,
        usage=(25, 7),
        cache_usage=(13 + 1504 + 100, 5, 1504),  # inputTokens exclude cache reads and writes
        calls={"tools": block_calls(fake_bedrock.TOOL_USES, "toolUseId")},
        tool_content="Let me check.",
        json_answer=fake_bedrock.FORCED_INPUT,  # response_format emulated with a forced tool
        partial={"error_after_200": "Hello from the", "cut_stream": "Hello from"},
        retry_after=None,  # ThrottlingException carries no Retry-After
    ),
    # An OpenAI-compatible host whose preset declares less: no images, no json_schema, no
    # parallel_tool_calls. Same fake as `openai`, different declarations.
    Provider(
        name="deepseek",
        config=lambda u: {
            "kind": "openai",
            "base_url": u.openai,
            "api_key": "sk-matrix-deepseek",
            "options": {"preset": "deepseek"},
        },
        **OPENAI_ROW,
    ),
    Provider(
        name="mock",
        fake=None,
        config=lambda u: {"kind": "mock"},
        models={"text": "mock-1"},
    ),
)
PROVIDER = {p.name: p for p in PROVIDERS}


def providers_config(urls: Urls) -> dict[str, Any]:
    return {p.name: {**p.config(urls), "allow_any_model": True} for p in PROVIDERS}


def stack_overrides(urls: Urls) -> dict[str, Any]:
    return {
        "providers": providers_config(urls),
        # A 429 goes straight back: no same-target retries waiting out Retry-After.
        "core": {"resilience": {"max_retries": 0}},
    }


def _provider_configs() -> dict[str, ProviderConfig]:
    raw = {**base_config(Path("/nonexistent"), 1, 2), **stack_overrides(PLACEHOLDERS)}
    return parse_config(raw, "conformance matrix", {}).providers


CONFIGS = _provider_configs()


def declared(provider: str, model: str) -> Capabilities:
    """What the core reads for this target: the adapter's (or the mock's) declaration."""
    config = CONFIGS[provider]
    built = provider_of(config)
    target = Target(built, model, config.api_keys[0] if config.api_keys else None)
    return built.upstream.capabilities(target)


# The param a 400 names when a Capabilities flag is missing (core/routing/planning.py's contract).
FEATURE_PARAM = {
    "stream": "stream",
    "tools": "tools",
    "vision": "messages",
    "json_schema": "response_format",
}


def unmet(caps: Capabilities, needs: frozenset[str], params: frozenset[str]) -> tuple[str, ...]:
    """The params a strict route must name for this target; empty when it can serve."""
    missing = [FEATURE_PARAM[f] for f in sorted(needs) if not getattr(caps, f)]
    if caps.params is not None:
        missing += sorted(params - caps.params)
    return tuple(missing)


# ---- running a cell -------------------------------------------------------------------------


@dataclass
class Ctx:
    provider: Provider
    model: str  # as the client asks for it: "<provider>/<scripted model>"
    chat: openai.OpenAI
    messages_api: anthropic.Anthropic
    fake: FakeServer | None
    config: ProviderConfig

    @property
    def scripted(self) -> str:
        return self.model.split("/", 1)[1]

    def create(self, **kwargs: Any) -> Any:
        return self.chat.chat.completions.create(model=self.model, **kwargs)

    def sent(self) -> dict[str, Any]:
        """The body the upstream received last (this cell's request)."""
        assert self.fake is not None and self.fake.received
        body = self.fake.received[-1].json
        assert isinstance(body, dict)
        return body

    def plain(self, messages: list[Any]) -> tuple[str, int, int]:
        """(text, prompt tokens, completion tokens) of the plain answer to `messages`."""
        if self.fake is not None:
            return self.provider.text, *self.provider.usage
        # The mock is deterministic: its own answer for the same request is the oracle.
        target = Target(provider_of(self.config), self.scripted, None)
        answer = asyncio.run(
            target.provider.upstream.complete(
                {"model": self.scripted, "messages": messages}, target
            )
        )
        usage = answer["usage"]
        return (
            answer["choices"][0]["message"]["content"],
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )

    def mock_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The mock is deterministic: its own answer to the same request is the oracle."""
        target = Target(provider_of(self.config), self.scripted, None)
        answer = asyncio.run(
            target.provider.upstream.complete({"model": self.scripted, **request}, target)
        )
        message: dict[str, Any] = answer["choices"][0]["message"]
        return message

    def expected_calls(self, request: dict[str, Any]) -> tuple[Call, ...]:
        if self.fake is None:
            return openai_calls(self.mock_answer(request).get("tool_calls") or [])
        return self.provider.calls.get(self.scripted, ())

    def anthropic_oracle(self, body: dict[str, Any]) -> dict[str, Any]:
        """For /v1/messages on the mock: the gateway's own translation, then the mock."""
        canonical = to_canonical({"model": self.model, "max_tokens": 256, **body}).canonical
        return self.mock_answer({k: v for k, v in canonical.items() if k != "model"})

    def tool_answer(self, follow_up: dict[str, Any], results: list[str]) -> str:
        if self.fake is None:
            return str(self.mock_answer(follow_up)["content"])
        return self.provider.tool_answer(results)

    def json_answer(self, request: dict[str, Any]) -> Any:
        if self.fake is None:
            return orjson.loads(self.mock_answer(request)["content"])
        return self.provider.json_answer


def consume(result: Any) -> None:
    if isinstance(result, openai.Stream):
        for _ in result:
            pass


def assert_chunks(chunks: list[Any]) -> None:
    """One completion's chunks: a single id, the role first (the canonical chunk contract)."""
    assert chunks and {c.id for c in chunks} == {chunks[0].id}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices and chunks[0].choices[0].delta.role == "assistant"


def texts(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finishes(chunks: list[Any]) -> list[str]:
    return [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]


def assert_calls(actual: list[tuple[str, str, str]], expected: tuple[Call, ...]) -> None:
    """(id, name, arguments JSON) as the client got them, against the fake's script."""
    assert expected, "the provider row scripts no tool calls for this model"
    assert [(name, orjson.loads(args)) for _, name, args in actual] == [
        (c.name, c.arguments) for c in expected
    ]
    for (call_id, _, _), call in zip(actual, expected, strict=True):
        assert call_id and (call.id is None or call_id == call.id)
    assert len({call_id for call_id, _, _ in actual}) == len(actual)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def native_turns(kind: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of every turn the upstream received, system first, in canonical roles."""
    if kind in ("openai", "azure"):
        return [(m["role"], _text_of(m["content"])) for m in body["messages"]]
    turns: list[tuple[str, str]] = []
    if kind == "gemini":
        if "systemInstruction" in body:
            turns.append(("system", _text_of(body["systemInstruction"]["parts"])))
        roles = {"user": "user", "model": "assistant"}
        return turns + [(roles[c["role"]], _text_of(c["parts"])) for c in body["contents"]]
    if body.get("system"):  # anthropic and bedrock
        turns.append(("system", _text_of(body["system"])))
    return turns + [(m["role"], _text_of(m["content"])) for m in body["messages"]]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


# ---- chat scenarios ---------------------------------------------------------------------------


def check_text(ctx: Ctx, request: dict[str, Any]) -> None:
    completion = ctx.create(**request)
    assert completion.object == "chat.completion" and completion.id
    text, prompt, out = ctx.plain(request["messages"])
    [choice] = completion.choices
    assert (choice.message.content, choice.finish_reason) == (text, "stop")
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        prompt,
        out,
        prompt + out,
    )


def check_text_stream(ctx: Ctx, request: dict[str, Any]) -> None:
    chunks = list(ctx.create(**request))
    assert_chunks(chunks)
    text, _, _ = ctx.plain(request["messages"])
    assert texts(chunks) == text
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # streamed
    assert finishes(chunks) == ["stop"]
    assert all(c.usage is None for c in chunks)  # not asked for: not shown


def check_turns(ctx: Ctx, request: dict[str, Any]) -> None:
    """The answer, and every turn reaching the upstream in its native shape."""
    check_text(ctx, request)
    if ctx.fake is not None:
        expected = [(m["role"], m["content"]) for m in request["messages"]]
        assert native_turns(ctx.config.kind, ctx.sent()) == expected


def tool_calls_of(message: Any) -> list[tuple[str, str, str]]:
    return [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]


def check_tools(ctx: Ctx, request: dict[str, Any]) -> None:
    completion = ctx.create(**request)
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert_calls(tool_calls_of(choice.message), ctx.expected_calls(request))
    assert (choice.message.content or None) == ctx.provider.tool_content


def check_tool_round_trip(ctx: Ctx, request: dict[str, Any]) -> None:
    [asked] = ctx.create(**request).choices
    assert asked.finish_reason == "tool_calls"
    first = asked.message
    calls = tool_calls_of(first)
    assert_calls(calls, ctx.expected_calls(request))
    follow_up = [
        *request["messages"],
        {
            "role": "assistant",
            "content": first.content,
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in calls
            ],
        },
        *({"role": "tool", "tool_call_id": i, "content": RESULTS[n]} for i, n, _ in calls),
    ]
    second = ctx.create(messages=follow_up, tools=request["tools"])
    [choice] = second.choices
    results = [RESULTS[n] for _, n, _ in calls]
    assert (choice.message.content, choice.finish_reason) == (
        ctx.tool_answer({"messages": follow_up, "tools": request["tools"]}, results),
        "stop",
    )
    if ctx.fake is not None:
        sent = set(strings(ctx.sent()))
        assert set(results) <= sent  # every result reached the upstream
        assert {c.id for c in ctx.expected_calls(request) if c.id} <= sent  # the upstream's ids


def check_streamed_tools(ctx: Ctx, request: dict[str, Any]) -> None:
    chunks = list(ctx.create(**request))
    assert_chunks(chunks)
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                function = delta.function
                if delta.index not in calls:  # id and name come with the first fragment only
                    assert delta.id and function and function.name
                    calls[delta.index] = [delta.id, function.name, function.arguments or ""]
                else:
                    assert delta.id is None and (function is None or not function.name)
                    calls[delta.index][2] += (function.arguments if function else None) or ""
    assert finishes(chunks) == ["tool_calls"]
    assert sorted(calls) == list(range(len(calls)))
    ordered = [(i, n, a) for i, n, a in (calls[k] for k in sorted(calls))]
    assert_calls(ordered, ctx.expected_calls(request))
    assert (texts(chunks) or None) == ctx.provider.tool_content


def check_images(ctx: Ctx, request: dict[str, Any]) -> None:
    check_text(ctx, request)
    if ctx.fake is not None:
        sent = list(strings(ctx.sent()))
        assert IMAGE_QUESTION in sent
        assert B64 in sent or DATA_URL in sent  # the image bytes reached the upstream


def check_json_schema(ctx: Ctx, request: dict[str, Any]) -> None:
    completion = ctx.create(**request)
    [choice] = completion.choices
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    try:
        answer = orjson.loads(choice.message.content or "")
    except orjson.JSONDecodeError:
        raise AssertionError(f"not JSON: {choice.message.content!r}") from None
    assert answer == ctx.json_answer(request)


def cache_expectation(ctx: Ctx, messages: list[Any]) -> tuple[int, int, int]:
    if ctx.fake is None:  # the mock caches nothing and says so
        _, prompt, out = ctx.plain(messages)
        return prompt, out, 0
    return ctx.provider.cache_usage


def usage_with_cache(usage: Any) -> tuple[int, int, int | None]:
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None else None
    return usage.prompt_tokens, usage.completion_tokens, cached


def check_cache_usage(ctx: Ctx, request: dict[str, Any]) -> None:
    completion = ctx.create(**request)
    assert completion.choices[0].message.content == ctx.plain(request["messages"])[0]
    assert usage_with_cache(completion.usage) == cache_expectation(ctx, request["messages"])


def check_cache_usage_stream(ctx: Ctx, request: dict[str, Any]) -> None:
    chunks = list(ctx.create(**request))
    assert texts(chunks) == ctx.plain(request["messages"])[0]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert usage_with_cache(chunks[-1].usage) == cache_expectation(ctx, request["messages"])


def check_rate_limit(ctx: Ctx, request: dict[str, Any]) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        consume(ctx.create(**request))
    response = info.value.response
    assert response.status_code == 429
    envelope = response.json()
    assert set(envelope) == {"error"}
    error = envelope["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert response.headers.get("retry-after") == ctx.provider.retry_after
    assert (error["type"], error["param"], error["code"]) == (
        "rate_limit_error",
        None,
        "rate_limit_exceeded",  # OpenAI's code, as the gateway's own limiter and keypool send
    )


def check_broken_stream(ctx: Ctx, request: dict[str, Any], role: str) -> None:
    received: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in ctx.create(**request):
            received.append(chunk)
    assert type(info.value) is openai.APIError  # an error event, not a dropped connection
    assert texts(received) == ctx.provider.partial[role]  # what came first was relayed
    assert finishes(received) == []


def check_include_usage(ctx: Ctx, request: dict[str, Any]) -> None:
    chunks = list(ctx.create(**request))
    assert_chunks(chunks)
    text, prompt, out = ctx.plain(request["messages"])
    assert texts(chunks) == text and finishes(chunks) == ["stop"]
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (prompt, out)


Check = Callable[[Ctx, dict[str, Any]], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    needs: frozenset[str]  # Capabilities flags it requires
    request: dict[str, Any]  # the (first) request, without `model`
    check: Check  # runs the scenario on a target that serves it, asserting the result
    role: str = "text"  # which scripted model of the provider serves it

    @property
    def params(self) -> frozenset[str]:
        return frozenset(self.request) - GATEWAY_PARAMS


def _broken(role: str) -> Check:
    return lambda ctx, request: check_broken_stream(ctx, request, role)


STREAM = frozenset({"stream"})
TOOLED = frozenset({"tools"})
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("text", frozenset(), {"messages": HELLO}, check_text),
        Scenario("text_stream", STREAM, {"messages": HELLO, "stream": True}, check_text_stream),
        Scenario(
            "system_prompt",
            frozenset(),
            {"messages": [{"role": "system", "content": SYSTEM}, *HELLO]},
            check_turns,
        ),
        Scenario("multi_turn", frozenset(), {"messages": CONVERSATION}, check_turns),
        Scenario("tools", TOOLED, {"messages": QUESTION, "tools": TOOLS}, check_tools, "tools"),
        Scenario(
            "tool_round_trip",
            TOOLED,
            {"messages": QUESTION, "tools": TOOLS},
            check_tool_round_trip,
            "tools",
        ),
        Scenario(
            "parallel_tools",
            TOOLED,
            {"messages": QUESTION, "tools": TOOLS, "parallel_tool_calls": True},
            check_tools,
            "parallel",
        ),
        Scenario(
            "streamed_tools",
            STREAM | TOOLED,
            {"messages": QUESTION, "tools": TOOLS, "stream": True},
            check_streamed_tools,
            "parallel",
        ),
        Scenario("images", frozenset({"vision"}), {"messages": IMAGE}, check_images),
        Scenario(
            "json_schema",
            frozenset({"json_schema"}),
            {"messages": HELLO, "response_format": RESPONSE_FORMAT},
            check_json_schema,
            "json",
        ),
        Scenario("cache_usage", frozenset(), {"messages": HELLO}, check_cache_usage, "cache"),
        Scenario(
            "cache_usage_stream",
            STREAM,
            {"messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
            check_cache_usage_stream,
            "cache",
        ),
        Scenario("rate_limit", frozenset(), {"messages": HELLO}, check_rate_limit, "rate_limit"),
        Scenario(
            "rate_limit_stream",
            STREAM,
            {"messages": HELLO, "stream": True},
            check_rate_limit,
            "rate_limit",
        ),
        Scenario(
            "error_after_200",
            STREAM,
            {"messages": HELLO, "stream": True},
            _broken("error_after_200"),
            "error_after_200",
        ),
        Scenario(
            "cut_stream",
            STREAM,
            {"messages": HELLO, "stream": True},
            _broken("cut_stream"),
            "cut_stream",
        ),
        Scenario(
            "include_usage",
            STREAM,
            {"messages": HELLO, "stream": True, "stream_options": {"include_usage": True}},
            check_include_usage,
        ),
    )
}

# ---- Anthropic Messages scenarios -------------------------------------------------------------


def m_check_text(ctx: Ctx) -> None:
    message = ctx.messages_api.messages.create(model=ctx.model, max_tokens=256, messages=HELLO)
    text, prompt, out = ctx.plain(HELLO)
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", text)]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (prompt, out)


def m_check_stream(ctx: Ctx) -> None:
    with ctx.messages_api.messages.stream(
        model=ctx.model, max_tokens=256, messages=HELLO
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expected, prompt, out = ctx.plain(HELLO)
    assert text == expected
    assert [(b.type, getattr(b, "text", None)) for b in final.content] == [("text", expected)]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (prompt, out)


def m_check_tool_round_trip(ctx: Ctx) -> None:
    sdk = ctx.messages_api
    first = sdk.messages.create(
        model=ctx.model, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=QUESTION
    )
    assert first.stop_reason == "tool_use"
    uses = [
        (b.id, b.name, orjson.dumps(b.input).decode())
        for b in first.content
        if b.type == "tool_use"
    ]
    if ctx.fake is None:
        oracle = ctx.anthropic_oracle({"tools": ANTHROPIC_TOOLS, "messages": QUESTION})
        expected_uses = tuple(Call(c.name, c.arguments) for c in openai_calls(oracle["tool_calls"]))
        assert_calls(uses, expected_uses)
    else:
        assert_calls(uses, ctx.expected_calls({}))
    said = [b.text for b in first.content if b.type == "text"]
    assert said == ([ctx.provider.tool_content] if ctx.provider.tool_content else [])
    follow_up = [
        *QUESTION,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": i, "content": RESULTS[n]} for i, n, _ in uses
            ],
        },
    ]
    second = sdk.messages.create(
        model=ctx.model, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=follow_up
    )
    if ctx.fake is None:
        oracle = ctx.anthropic_oracle({"tools": ANTHROPIC_TOOLS, "messages": follow_up})
        expected = oracle["content"]
    else:
        expected = ctx.provider.tool_answer([RESULTS[n] for _, n, _ in uses])
    assert [(b.type, getattr(b, "text", None)) for b in second.content] == [("text", expected)]
    assert second.stop_reason == "end_turn"


def m_check_rate_limit(ctx: Ctx) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        ctx.messages_api.messages.create(model=ctx.model, max_tokens=256, messages=HELLO)
    assert info.value.status_code == 429
    body = info.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@dataclass(frozen=True)
class MessagesScenario:
    name: str
    needs: frozenset[str]
    params: frozenset[str]  # canonical params the translated request carries
    check: Callable[[Ctx], None]
    role: str = "text"


MESSAGES_SCENARIOS: dict[str, MessagesScenario] = {
    s.name: s
    for s in (
        MessagesScenario("text", frozenset(), frozenset({"max_tokens"}), m_check_text),
        MessagesScenario("text_stream", STREAM, frozenset({"max_tokens"}), m_check_stream),
        MessagesScenario(
            "tool_round_trip",
            TOOLED,
            frozenset({"max_tokens", "tools"}),
            m_check_tool_round_trip,
            "tools",
        ),
        MessagesScenario(
            "rate_limit", frozenset(), frozenset({"max_tokens"}), m_check_rate_limit, "rate_limit"
        ),
    )
}


def m_rejection_request(ctx: Ctx, scenario: MessagesScenario) -> None:
    extra: dict[str, Any] = {"tools": ANTHROPIC_TOOLS} if "tools" in scenario.needs else {}
    result = ctx.messages_api.messages.create(
        model=ctx.model, max_tokens=256, messages=HELLO, stream="stream" in scenario.needs, **extra
    )
    if "stream" in scenario.needs:
        list(result)


# ---- the matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    scenario: str
    provider: str
    model: str  # "<provider>/<scripted model>"
    rejects: tuple[str, ...]  # params the target cannot honour; empty: must be served


def xfail(reason: str) -> Any:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


def _cell(
    api: str,
    scenario: str,
    provider: Provider,
    role: str,
    needs: frozenset[str],
    params: frozenset[str],
    passthrough: bool = False,
) -> Any:
    scripted = provider.model_for(role)
    if scripted is None:
        return None
    rejects = () if passthrough else unmet(declared(provider.name, scripted), needs, params)
    marks = []
    if not rejects and needs & provider.ignores:
        marks.append(xfail(provider.ignores_reason))
    bug = provider.known_bugs.get(f"{api}/{scenario}")
    if bug is not None:
        marks.append(xfail(bug))
    cell = Cell(scenario, provider.name, f"{provider.name}/{scripted}", rejects)
    outcome = "rejected" if rejects else "served"
    return pytest.param(cell, id=f"{scenario}-{provider.name}-{outcome}", marks=marks)


def chat_cells() -> list[Any]:
    cells = (
        _cell("chat", s.name, p, s.role, s.needs, s.params)
        for s in SCENARIOS.values()
        for p in PROVIDERS
    )
    return [c for c in cells if c is not None]


def messages_cells() -> list[Any]:
    cells = (
        # Anthropic targets get /v1/messages by passthrough: they always qualify.
        _cell(
            "messages",
            s.name,
            p,
            s.role,
            s.needs,
            s.params,
            passthrough=CONFIGS[p.name].kind == "anthropic",
        )
        for s in MESSAGES_SCENARIOS.values()
        for p in PROVIDERS
    )
    return [c for c in cells if c is not None]


@dataclass
class Matrix:
    stack: Stack
    fakes: dict[str, FakeServer]
    chat: openai.OpenAI
    messages_api: anthropic.Anthropic
    configs: dict[str, ProviderConfig]

    def ctx(self, cell: Cell) -> Ctx:
        provider = PROVIDER[cell.provider]
        fake = self.fakes[provider.fake] if provider.fake else None
        return Ctx(
            provider, cell.model, self.chat, self.messages_api, fake, self.configs[cell.provider]
        )


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    fakes: dict[str, FakeServer] = {
        "openai": fake_openai.FakeOpenAI(),
        "azure": fake_azure.FakeAzure(api_key="azure-key"),
        "anthropic": fake_anthropic.FakeAnthropic(),
        "gemini": fake_gemini.FakeGemini(api_key=GEMINI_KEY),
        "bedrock": fake_bedrock.FakeBedrock(),
    }
    for fake in fakes.values():
        fake.start()
    urls = Urls(
        openai=f"{fakes['openai'].url}/v1",
        azure=fakes["azure"].url,
        anthropic=fakes["anthropic"].url,
        gemini=fakes["gemini"].url,
        bedrock=fakes["bedrock"].url,
    )
    stack = Stack(tmp_path_factory.mktemp("conformance"), stack_overrides(urls)).start()
    try:
        token = stack.token(ttl=900)
        yield Matrix(
            stack,
            fakes,
            openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0),
            anthropic.Anthropic(base_url=stack.edge_url, api_key=token, max_retries=0),
            stack.config.providers,
        )
    finally:
        stack.stop()
        for fake in fakes.values():
            fake.stop()


def assert_rejected(
    ctx: Ctx,
    attempt: Callable[[], None],
    error_class: type[openai.APIStatusError] | type[anthropic.APIStatusError],
) -> dict[str, Any]:
    """The request is a 400 and never reached the upstream; returns the error body."""
    before = len(ctx.fake.received) if ctx.fake is not None else 0
    with pytest.raises(error_class) as info:
        attempt()
    error = info.value
    assert isinstance(error, openai.APIStatusError | anthropic.APIStatusError)
    assert error.status_code == 400
    after = len(ctx.fake.received) if ctx.fake is not None else 0
    assert after == before  # refused by the gateway, never sent upstream
    body: dict[str, Any] = error.response.json()
    return body


def _names(param: str, message: str) -> bool:
    return (f"'{param}'" in message) or (param == "messages" and "image" in message)


@pytest.mark.parametrize("cell", chat_cells())
def test_chat_completions(matrix: Matrix, cell: Cell) -> None:
    scenario = SCENARIOS[cell.scenario]
    ctx = matrix.ctx(cell)
    if not cell.rejects:
        scenario.check(ctx, scenario.request)
        return
    envelope = assert_rejected(
        ctx, lambda: consume(ctx.create(**scenario.request)), openai.BadRequestError
    )
    error = envelope["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("invalid_request_error", "unsupported_parameter")
    assert error["param"] in cell.rejects
    assert _names(error["param"], error["message"]) and cell.model in error["message"]


@pytest.mark.parametrize("cell", messages_cells())
def test_anthropic_messages(matrix: Matrix, cell: Cell) -> None:
    scenario = MESSAGES_SCENARIOS[cell.scenario]
    ctx = matrix.ctx(cell)
    if not cell.rejects:
        scenario.check(ctx)
        return
    body = assert_rejected(
        ctx, lambda: m_rejection_request(ctx, scenario), anthropic.BadRequestError
    )
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert any(_names(p, body["error"]["message"]) for p in cell.rejects)
