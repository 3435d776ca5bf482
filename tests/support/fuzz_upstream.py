"""Upstream data for the parser fuzzer (tests/test_fuzz_parsers.py): seeds and mutations.

Seeds are the fake providers' own answers (their pure answer builders, no server), so they
follow the same wire formats the fakes speak. Mutations: bytes flipped, inserted, deleted or cut
(`byte_mutated`); wrong JSON types anywhere (tests.support.fuzz.mutated, at random; `wrong_types`,
every path in turn); random bytes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import strategies as st

from core.providers.adapters.base import JSON, StreamEvent, Target
from shared.config import ProviderConfig
from tests.support import fake_anthropic, fake_bedrock, fake_gemini, fake_openai
from tests.support.fake_azure import PROMPT_FILTER
from tests.support.fuzz import mutated, paths
from tests.support.providers import provider_of


def target_of(kind: str, model: str, **fields: Any) -> Target:
    values: dict[str, Any] = {"base_url": None, "api_keys": ("k",), "headers": {}}
    values.update({"timeout_s": None, "allow_any_model": True, "options": {}, **fields})
    config = ProviderConfig(name=kind, kind=kind, **values)
    return Target(provider_of(config), model, "k")


OPENAI_T = target_of("openai", "gpt-x")
ANTHROPIC_T = target_of("anthropic", "claude-x")
GEMINI_T = target_of("gemini", "gemini-x")
BEDROCK_T = target_of("bedrock", "claude", options={"region": "us-east-1"})

# ---- seeds: the fakes' own answers ----------------------------------------------------------

_ANTHROPIC_BODY = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
_GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
ANTHROPIC_MESSAGES = [
    fake_anthropic.message(model, _ANTHROPIC_BODY) for model in ("claude-x", "tool-use", "thinking")
]
OPENAI_COMPLETIONS = [fake_openai._completion("gpt-x", tools) for tools in (False, True)]
GEMINI_STREAMS = [fake_gemini.script(m, _GEMINI_BODY) for m in ("text", "function-call")]
BEDROCK_ANSWERS = [fake_bedrock.answer(name, {}) for name in ("text", "tools", "reasoning")]
BEDROCK_RESPONSES = [
    {
        "output": {"message": {"role": "assistant", "content": blocks}},
        "stopReason": stop,
        "usage": fake_bedrock._usage("cache"),
    }
    for blocks, stop in BEDROCK_ANSWERS
]
OPENAI_CHUNKS = [
    chunk for tools in (False, True) for chunk in fake_openai._stream_chunks("gpt-x", True, tools)
] + [{"id": "", "choices": [], "prompt_filter_results": PROMPT_FILTER}]
ANTHROPIC_EVENTS = [
    {"type": name, **payload}
    for message in ANTHROPIC_MESSAGES
    for name, payload in fake_anthropic.stream_events(message)
]
ERROR_BODIES = [
    {"error": {"message": "bad", "type": "invalid_request_error", "param": "x", "code": "c"}},
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "quota",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"},
                {"violations": [{"quotaId": "PerDay"}], "reason": "API_KEY_INVALID"},
            ],
        }
    },
    {"__type": "ThrottlingException", "message": "slow down"},
    {"object": "error", "message": [{"loc": ["body", "x"], "msg": "bad"}]},
]
EMBEDDINGS = [
    {"data": [{"embedding": [0.5, 0.25], "index": 0}], "usage": {"prompt_tokens": 2}},
    {"embeddings": [{"values": [0.5, 0.25]}]},
    {"predictions": [{"embeddings": {"values": [0.5], "statistics": {"token_count": 2}}}]},
    {"embedding": [0.5, 0.25], "inputTextTokenCount": 2},
    {"embeddings": {"float": [[0.5, 0.25]]}},
]


def sse_bytes(payloads: list[JSON], named: bool = False) -> bytes:
    out = b""
    for payload in payloads:
        name = f"event: {payload.get('type')}\n".encode() if named else b""
        out += name + b"data: " + orjson.dumps(payload) + b"\n\n"
    return out


SSE_TRANSCRIPTS = [
    sse_bytes(OPENAI_CHUNKS) + b"data: [DONE]\n\n",
    sse_bytes(ANTHROPIC_EVENTS, named=True),
    sse_bytes([event for events in GEMINI_STREAMS for event in events]),
]
EVENTSTREAM_TRANSCRIPTS = [
    b"".join(fake_bedrock.stream_frames(blocks, stop, fake_bedrock._usage("x")))
    for blocks, stop in BEDROCK_ANSWERS
]

# ---- strategies -----------------------------------------------------------------------------


@st.composite
def byte_mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A transcript with bytes flipped, inserted, deleted or the tail cut off."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if action == "flip" and where < len(data):
            data[where] = draw(st.integers(0, 255))
        elif action == "insert":
            data[where:where] = draw(st.binary(max_size=8) | st.sampled_from([b"\n", b"\r", b":"]))
        elif action == "delete":
            del data[where : where + draw(st.integers(1, 16))]
        elif action == "cut":
            del data[where:]
    return bytes(data)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


BYTES = st.binary(max_size=512)
CUTS = st.lists(st.integers(0, 10**6), max_size=6)


def json_or_bytes(seeds: list[Any]) -> st.SearchStrategy[bytes]:
    """Wrong JSON types at every path of a seed, or random JSON, or random bytes."""
    return mutated(seeds).map(orjson.dumps) | BYTES


# Every JSON type, and the edge values of some: put at every path of every seed in turn.
WRONG: tuple[Any, ...] = (None, True, 0, -1, 2**64 - 1, 1.5, 1e308, "", "x", [], [5], {})


def wrong_types(seed: Any) -> Iterator[Any]:
    """The seed with one value replaced by each of WRONG, or deleted, at each path in turn."""
    for path in paths(seed):
        for value in (*WRONG, KeyError):
            variant = copy.deepcopy(seed)
            parent = variant
            for step in path[:-1]:
                parent = parent[step]
            if value is KeyError:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            yield variant
    yield from WRONG


def transcripts_with_one_wrong_type(transcript: list[JSON]) -> Iterator[list[JSON]]:
    for index, event in enumerate(transcript):
        for variant in wrong_types(event):
            yield [*transcript[:index], variant, *transcript[index + 1 :]]


def sse_event(data: bytes) -> StreamEvent:
    """An SSE event named by its payload's `type`, as Anthropic names its events."""
    try:
        name = orjson.loads(data).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        name = None
    return StreamEvent(name if isinstance(name, str) else None, data)


def event_lists(seeds: list[JSON]) -> st.SearchStrategy[list[StreamEvent]]:
    """A seed transcript's events mixed with mutated and random ones."""
    good = st.sampled_from(seeds).map(orjson.dumps)
    bad = json_or_bytes(seeds) | st.just(b"[DONE]")
    return st.lists(st.one_of(good, good, bad).map(sse_event), min_size=1, max_size=12)
