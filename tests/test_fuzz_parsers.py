"""Upstream data can be anything: every decoder and parser raises ProviderError or nothing.

Issue 10 item 3: `"choices": 5` in a chunk raised a TypeError that escaped as a 500. The rule,
checked here by fuzzing each parser directly (no sockets: these are pure functions): random
bytes, valid answers from the fakes mutated byte by byte, and the same answers with wrong JSON
types at every path (tests.support.fuzz.mutated). Whatever a parser returns must also be
something the API encoders can render (to_message, the stream encoders), since those run on it
next. Seeds come from the fakes' own answer builders, so they follow the fakes' wire formats.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.api.embeddings.request import validate_embeddings
from core.api.embeddings.response import encode
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
from core.providers.adapters.bedrock.embeddings import BedrockEmbeddings
from core.providers.adapters.embeddings import Embedded
from core.providers.adapters.gemini import ADAPTER as GEMINI
from core.providers.adapters.gemini.embeddings import GEMINI as GEMINI_EMBEDDINGS
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.providers.adapters.openai_embeddings import OPENAI as OPENAI_EMBEDDINGS
from core.wire.eventstream import EventStreamDecoder
from core.wire.sse import SSEDecoder
from tests.support import fake_anthropic, fake_gemini, fake_openai
from tests.support.eventstream_encode import event_frame
from tests.support.fuzz_upstream import (
    ANTHROPIC_EVENTS,
    ANTHROPIC_MESSAGES,
    ANTHROPIC_T,
    BEDROCK_RESPONSES,
    BEDROCK_T,
    BYTES,
    CUTS,
    EMBEDDINGS,
    ERROR_BODIES,
    EVENTSTREAM_TRANSCRIPTS,
    GEMINI_STREAMS,
    GEMINI_T,
    OPENAI_CHUNKS,
    OPENAI_COMPLETIONS,
    OPENAI_T,
    SSE_TRANSCRIPTS,
    byte_mutated,
    event_lists,
    json_or_bytes,
    splits,
    sse_event,
    target_of,
    transcripts_with_one_wrong_type,
    wrong_types,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def only_provider_errors(call: Callable[..., object], *args: Any) -> object:
    try:
        return call(*args)
    except ProviderError:
        return None


# ---- decoders -------------------------------------------------------------------------------


def _decode(decoder: SSEDecoder | EventStreamDecoder, pieces: list[bytes]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.finish()


@FUZZ
@given(BYTES | byte_mutated(SSE_TRANSCRIPTS), CUTS)
def test_sse_decoder(data: bytes, cuts: list[int]) -> None:
    only_provider_errors(lambda: _decode(SSEDecoder(65536), splits(data, cuts)))


@FUZZ
@given(BYTES | byte_mutated(EVENTSTREAM_TRANSCRIPTS), CUTS)
def test_eventstream_decoder(data: bytes, cuts: list[int]) -> None:
    only_provider_errors(lambda: _decode(EventStreamDecoder(), splits(data, cuts)))


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
            _parse_stream(make(), [sse_event(orjson.dumps(e)) for e in variant])
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
@given(event_lists(OPENAI_CHUNKS))
def test_openai_stream_parser(events: list[StreamEvent]) -> None:
    _parse_stream(OPENAI.stream_parser({}, OPENAI_T), events)
    _parse_stream(AZURE.stream_parser({}, OPENAI_T), events)


@FUZZ
@given(event_lists(ANTHROPIC_EVENTS))
def test_anthropic_stream_parser(events: list[StreamEvent]) -> None:
    _parse_stream(ANTHROPIC.stream_parser({}, ANTHROPIC_T), events)


@FUZZ
@given(event_lists([e for events in GEMINI_STREAMS for e in events]))
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
        data = draw(st.just(seed.data) | json_or_bytes([orjson.loads(seed.data)]))
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
@given(json_or_bytes(OPENAI_COMPLETIONS))
def test_openai_response(body: bytes) -> None:
    _complete(OPENAI, OPENAI_T, body)
    _complete(AZURE, OPENAI_T, body)


@FUZZ
@given(json_or_bytes(ANTHROPIC_MESSAGES))
def test_anthropic_response(body: bytes) -> None:
    _complete(ANTHROPIC, ANTHROPIC_T, body)
    usage = only_provider_errors(message_usage, body)  # the passthrough's accounting
    assert usage is None or isinstance(usage, dict)


@FUZZ
@given(json_or_bytes([fake_gemini.merge(events) for events in GEMINI_STREAMS]))
def test_gemini_response(body: bytes) -> None:
    _complete(GEMINI, GEMINI_T, body)


@FUZZ
@given(json_or_bytes(BEDROCK_RESPONSES))
def test_bedrock_response(body: bytes) -> None:
    _complete(BEDROCK, BEDROCK_T, body)


HEADERS = st.dictionaries(
    st.sampled_from(["retry-after", "x-amzn-errortype", "content-type"]), st.text(max_size=30)
)


@FUZZ
@given(st.integers(400, 599), HEADERS, json_or_bytes(ERROR_BODIES))
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
    (OPENAI_EMBEDDINGS, target_of("openai", "text-embedding-3-small")),
    (GEMINI_EMBEDDINGS, target_of("gemini", "text-embedding-004")),
    (
        GEMINI_EMBEDDINGS,
        target_of(
            "gemini", "text-embedding-005", options={"vertex": {"project": "p", "location": "l"}}
        ),
    ),
    (
        BedrockEmbeddings(),
        target_of("bedrock", "amazon.titan-embed-text-v2:0", options={"region": "us-east-1"}),
    ),
    (
        BedrockEmbeddings(),
        target_of("bedrock", "cohere.embed-english-v3", options={"region": "us-east-1"}),
    ),
]


@FUZZ
@given(
    json_or_bytes(EMBEDDINGS),
    st.dictionaries(st.just("x-amzn-bedrock-input-token-count"), st.text()),
)
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

    async def run() -> None:
        stream = PassthroughStream(_Body(splits(data, cuts)), ANTHROPIC_T)  # type: ignore[arg-type]
        try:
            await stream.prime()
        except ProviderError:
            return
        ended: list[str] = []
        async for _ in stream.relay(lambda usage, outcome, error: ended.append(outcome)):
            pass
        assert len(ended) == 1

    asyncio.run(run())
