"""Upstream data can be anything: every decoder and parser raises ProviderError or nothing.

Issue 10 item 3: `"choices": 5` in a chunk raised a TypeError that escaped as a 500. The rule,
checked here by fuzzing each parser directly (no sockets: these are pure functions): random
bytes, valid answers from the fakes mutated byte by byte, and the same answers with wrong JSON
types at every path (tests.support.fuzz.mutated). Whatever a parser returns must also be
something the API encoders can render (to_message, the stream encoders), since those run on it
next. Seeds come from the fakes' own answer builders, so they follow the fakes' wire formats.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.api.embeddings.bedrock import BedrockEmbeddings
from core.api.embeddings.gemini import GEMINI as GEMINI_EMBEDDINGS
from core.api.embeddings.openai import OPENAI as OPENAI_EMBEDDINGS
from core.api.embeddings.request import validate_embeddings
from core.api.embeddings.response import Embedded, encode
from core.api.messages.passthrough import (
    PassthroughStream,
    message_usage,
    parse_upstream_error,
)
from core.api.messages.response import to_message
from core.api.messages.stream import AnthropicStreamEncoder
from core.api.relay import OpenAIStreamEncoder
from core.providers.adapters.anthropic import ADAPTER as ANTHROPIC
from core.providers.adapters.azure import ADAPTER as AZURE
from core.providers.adapters.base import JSON, ProviderError, StreamEvent, Target
from core.providers.adapters.bedrock.adapter import ADAPTER as BEDROCK
from core.providers.adapters.gemini import ADAPTER as GEMINI
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.wire.eventstream import EventStreamDecoder
from core.wire.sse import SSEDecoder
from shared.config import ProviderConfig
from tests.support import fake_anthropic, fake_bedrock, fake_gemini, fake_openai
from tests.support.eventstream_encode import event_frame
from tests.support.fake_azure import PROMPT_FILTER
from tests.support.fuzz import mutated, paths

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _target(kind: str, model: str, **fields: Any) -> Target:
    values: dict[str, Any] = {"base_url": None, "api_keys": ("k",), "headers": {}}
    values.update({"timeout_s": None, "allow_any_model": True, "options": {}, **fields})
    config = ProviderConfig(name=kind, kind=kind, **values)
    return Target(config, model, "k")


OPENAI_T = _target("openai", "gpt-x")
ANTHROPIC_T = _target("anthropic", "claude-x")
GEMINI_T = _target("gemini", "gemini-x")
BEDROCK_T = _target("bedrock", "claude", options={"region": "us-east-1"})

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


def _sse(payloads: list[JSON], named: bool = False) -> bytes:
    out = b""
    for payload in payloads:
        name = f"event: {payload.get('type')}\n".encode() if named else b""
        out += name + b"data: " + orjson.dumps(payload) + b"\n\n"
    return out


SSE_TRANSCRIPTS = [
    _sse(OPENAI_CHUNKS) + b"data: [DONE]\n\n",
    _sse(ANTHROPIC_EVENTS, named=True),
    _sse([event for events in GEMINI_STREAMS for event in events]),
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


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


BYTES = st.binary(max_size=512)
CUTS = st.lists(st.integers(0, 10**6), max_size=6)


def _json(seeds: list[Any]) -> st.SearchStrategy[bytes]:
    """Wrong JSON types at every path of a seed, or random JSON, or random bytes."""
    return mutated(seeds).map(orjson.dumps) | BYTES


def only_provider_errors(call: Callable[..., object], *args: Any) -> object:
    try:
        return call(*args)
    except ProviderError:
        return None


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


# ---- decoders -------------------------------------------------------------------------------


def _decode(decoder: SSEDecoder | EventStreamDecoder, pieces: list[bytes]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.finish()


@FUZZ
@given(BYTES | byte_mutated(SSE_TRANSCRIPTS), CUTS)
def test_sse_decoder(data: bytes, cuts: list[int]) -> None:
    only_provider_errors(lambda: _decode(SSEDecoder(65536), _splits(data, cuts)))


@FUZZ
@given(BYTES | byte_mutated(EVENTSTREAM_TRANSCRIPTS), CUTS)
def test_eventstream_decoder(data: bytes, cuts: list[int]) -> None:
    only_provider_errors(lambda: _decode(EventStreamDecoder(), _splits(data, cuts)))


# ---- stream parsers, and the encoders that render their chunks ------------------------------


def _render(chunks: list[JSON]) -> None:
    """What the relay does next with a parser's chunks: both APIs' encoders."""
    for encoder in (OpenAIStreamEncoder(True), AnthropicStreamEncoder("msg_1", "m")):
        for chunk in chunks:
            encoder.chunk(chunk)
        encoder.done()


def _parse_stream(parser: Any, events: list[StreamEvent]) -> None:
    chunks: list[JSON] = []
    try:
        for event in events:
            chunks += parser.feed(event)
        chunks += parser.finish()
    except ProviderError:
        pass
    only_provider_errors(lambda: _render(chunks))


def _safe_event(data: bytes) -> StreamEvent:
    """An SSE event named by its payload's `type`, as Anthropic names its events."""
    try:
        name = orjson.loads(data).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        name = None
    return StreamEvent(name if isinstance(name, str) else None, data)


def _events(seeds: list[JSON]) -> st.SearchStrategy[list[StreamEvent]]:
    """A seed transcript's events mixed with mutated and random ones."""
    good = st.sampled_from(seeds).map(orjson.dumps)
    bad = _json(seeds) | st.just(b"[DONE]")
    return st.lists(st.one_of(good, good, bad).map(_safe_event), min_size=1, max_size=12)


def test_stream_parsers_with_a_wrong_type_at_every_path() -> None:
    """Exhaustive where random mutation is thin: each event of each seed transcript, each path,
    each JSON type; the rest of the transcript stays valid so the parser is in a real state."""
    cases: list[tuple[Callable[[], Any], list[JSON]]] = [
        (lambda: OPENAI.stream_parser({}, OPENAI_T), fake_openai._stream_chunks("m", True, t))
        for t in (False, True)
    ]
    cases += [
        (lambda: ANTHROPIC.stream_parser({}, ANTHROPIC_T), [{"type": n, **p} for n, p in events])
        for events in map(fake_anthropic.stream_events, ANTHROPIC_MESSAGES)
    ]
    cases += [(lambda: GEMINI.stream_parser({}, GEMINI_T), events) for events in GEMINI_STREAMS]
    for make, transcript in cases:
        for variant in transcripts_with_one_wrong_type(transcript):
            _parse_stream(make(), [_safe_event(orjson.dumps(e)) for e in variant])
    for data in EVENTSTREAM_TRANSCRIPTS:
        events = EventStreamDecoder().feed(data)
        payloads = [orjson.loads(e.data) for e in events]
        for variant in transcripts_with_one_wrong_type(payloads):
            replaced = [
                StreamEvent(e.event, orjson.dumps(v), e.headers)
                for e, v in zip(events, variant, strict=True)
            ]
            _parse_stream(BEDROCK.stream_parser({}, BEDROCK_T), replaced)


def test_whole_answers_with_a_wrong_type_at_every_path() -> None:
    cases: list[tuple[Any, Target, list[JSON]]] = [
        (OPENAI, OPENAI_T, OPENAI_COMPLETIONS),
        (ANTHROPIC, ANTHROPIC_T, ANTHROPIC_MESSAGES),
        (GEMINI, GEMINI_T, [fake_gemini.merge(events) for events in GEMINI_STREAMS]),
        (BEDROCK, BEDROCK_T, BEDROCK_RESPONSES),
    ]
    for adapter, target, seeds in cases:
        for seed in seeds:
            for variant in wrong_types(seed):
                _complete(adapter, target, orjson.dumps(variant))
    for seed in ANTHROPIC_MESSAGES:
        for variant in wrong_types(seed):
            only_provider_errors(message_usage, orjson.dumps(variant))
    for seed in ERROR_BODIES:
        for variant in wrong_types(seed):
            test_error_parsers_return_a_provider_error.hypothesis.inner_test(  # type: ignore[attr-defined]
                429, {}, orjson.dumps(variant)
            )
    for seed in EMBEDDINGS:
        for variant in wrong_types(seed):
            test_embeddings_translators.hypothesis.inner_test(orjson.dumps(variant), {})  # type: ignore[attr-defined]
    for count in ("99999999999999999999999", "12"):
        header = {"x-amzn-bedrock-input-token-count": count}
        test_embeddings_translators.hypothesis.inner_test(orjson.dumps(EMBEDDINGS[4]), header)  # type: ignore[attr-defined]


@FUZZ
@given(_events(OPENAI_CHUNKS))
def test_openai_stream_parser(events: list[StreamEvent]) -> None:
    _parse_stream(OPENAI.stream_parser({}, OPENAI_T), events)
    _parse_stream(AZURE.stream_parser({}, OPENAI_T), events)


@FUZZ
@given(_events(ANTHROPIC_EVENTS))
def test_anthropic_stream_parser(events: list[StreamEvent]) -> None:
    _parse_stream(ANTHROPIC.stream_parser({}, ANTHROPIC_T), events)


@FUZZ
@given(_events([e for events in GEMINI_STREAMS for e in events]))
def test_gemini_stream_parser(events: list[StreamEvent]) -> None:
    _parse_stream(GEMINI.stream_parser({}, GEMINI_T), events)


BEDROCK_EVENTS = [
    event for data in EVENTSTREAM_TRANSCRIPTS for event in EventStreamDecoder().feed(data)
]


@st.composite
def bedrock_events(draw: st.DrawFn) -> list[StreamEvent]:
    events = []
    for _ in range(draw(st.integers(1, 12))):
        seed = draw(st.sampled_from(BEDROCK_EVENTS))
        data = draw(st.just(seed.data) | _json([orjson.loads(seed.data)]))
        kind = draw(st.sampled_from(["event", "event", "exception", "error"]))
        events.append(StreamEvent(seed.event, data, {**seed.headers, ":message-type": kind}))
    return events


@FUZZ
@given(bedrock_events())
def test_bedrock_stream_parser(events: list[StreamEvent]) -> None:
    _parse_stream(BEDROCK.stream_parser({}, BEDROCK_T), events)


@FUZZ
@given(byte_mutated([event_frame("contentBlockDelta", {"delta": {"text": "x"}})]))
def test_bedrock_frames_through_the_parser(data: bytes) -> None:
    def run() -> None:
        _parse_stream(BEDROCK.stream_parser({}, BEDROCK_T), EventStreamDecoder().feed(data))

    only_provider_errors(run)


# ---- whole answers and error bodies ---------------------------------------------------------


def _complete(adapter: Any, target: Target, body: bytes) -> None:
    result = only_provider_errors(lambda: adapter.parse_response(body, target))
    if isinstance(result, dict):  # the messages API renders it next
        only_provider_errors(lambda: to_message(copy.deepcopy(result), "msg_1", "m", ("x",)))


@FUZZ
@given(_json(OPENAI_COMPLETIONS))
def test_openai_response(body: bytes) -> None:
    _complete(OPENAI, OPENAI_T, body)
    _complete(AZURE, OPENAI_T, body)


@FUZZ
@given(_json(ANTHROPIC_MESSAGES))
def test_anthropic_response(body: bytes) -> None:
    _complete(ANTHROPIC, ANTHROPIC_T, body)
    usage = only_provider_errors(message_usage, body)  # the passthrough's accounting
    assert usage is None or isinstance(usage, dict)


@FUZZ
@given(_json([fake_gemini.merge(events) for events in GEMINI_STREAMS]))
def test_gemini_response(body: bytes) -> None:
    _complete(GEMINI, GEMINI_T, body)


@FUZZ
@given(_json(BEDROCK_RESPONSES))
def test_bedrock_response(body: bytes) -> None:
    _complete(BEDROCK, BEDROCK_T, body)


HEADERS = st.dictionaries(
    st.sampled_from(["retry-after", "x-amzn-errortype", "content-type"]), st.text(max_size=30)
)


@FUZZ
@given(st.integers(400, 599), HEADERS, _json(ERROR_BODIES))
def test_error_parsers_return_a_provider_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """An error parser returns its error: raising anything, even a ProviderError, is a bug."""
    for adapter in (OPENAI, AZURE, ANTHROPIC, GEMINI, BEDROCK):
        assert isinstance(adapter.parse_error(status, headers, body), ProviderError)
    assert isinstance(parse_upstream_error(status, headers, body), ProviderError)
    for translator in (OPENAI_EMBEDDINGS, GEMINI_EMBEDDINGS, BedrockEmbeddings()):
        assert isinstance(translator.parse_error(status, headers, body), ProviderError)


# ---- embeddings translators and the messages passthrough's usage ----------------------------

EMBED_REQUEST = validate_embeddings({"model": "m", "input": "hello"})
EMBED_TARGETS = [
    (OPENAI_EMBEDDINGS, _target("openai", "text-embedding-3-small")),
    (GEMINI_EMBEDDINGS, _target("gemini", "text-embedding-004")),
    (
        GEMINI_EMBEDDINGS,
        _target(
            "gemini", "text-embedding-005", options={"vertex": {"project": "p", "location": "l"}}
        ),
    ),
    (
        BedrockEmbeddings(),
        _target("bedrock", "amazon.titan-embed-text-v2:0", options={"region": "us-east-1"}),
    ),
    (
        BedrockEmbeddings(),
        _target("bedrock", "cohere.embed-english-v3", options={"region": "us-east-1"}),
    ),
]


@FUZZ
@given(_json(EMBEDDINGS), st.dictionaries(st.just("x-amzn-bedrock-input-token-count"), st.text()))
def test_embeddings_translators(body: bytes, headers: dict[str, str]) -> None:
    for translator, target in EMBED_TARGETS:
        embedded = only_provider_errors(translator.parse, [(headers, body)], EMBED_REQUEST, target)
        if isinstance(embedded, Embedded):  # what the endpoint does next
            orjson.dumps(encode(embedded.body, "base64"))


class _Body:
    """An UpstreamBody that hands out a transcript in fixed pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def read(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


@FUZZ
@given(BYTES | byte_mutated([SSE_TRANSCRIPTS[1]]), CUTS)
def test_passthrough_stream(data: bytes, cuts: list[int]) -> None:
    """The passthrough relays events as they are: whatever comes, it ends with bytes and a
    usage record, never an exception (ProviderError only before the first event)."""
    import asyncio

    async def run() -> None:
        stream = PassthroughStream(_Body(_splits(data, cuts)), ANTHROPIC_T)  # type: ignore[arg-type]
        try:
            await stream.prime()
        except ProviderError:
            return
        ended: list[str] = []
        async for _ in stream.relay(lambda usage, outcome: ended.append(outcome)):
            pass
        assert len(ended) == 1

    asyncio.run(run())
