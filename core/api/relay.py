"""Relaying a canonical chunk stream to a client in its API's format.

Once the first byte is out, an upstream failure can no longer change the status: the stream
ends with an error event in the client's format, and the partial usage is still accounted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from core.providers.adapters.base import JSON, ProviderError, StreamEvent, Target
from core.providers.parsing import INVALID_RESPONSE, parser_crash, parsing
from core.providers.scrub import sanitize
from core.providers.transport import UpstreamBody
from core.resilience.dispatch import close
from core.spend.quote import CostOf, with_cost
from core.wire.sse import DONE, SSEDecoder, encode_data
from core.wire.tokens import estimate_chars
from shared.errors import GatewayError, invalid_upstream

# A stream's end: its usage, its outcome (ok, cut:<class>, cancelled) and, for a cut, the error.
UsageSink = Callable[[dict[str, Any] | None, str, ProviderError | None], None]


class StreamEncoder(Protocol):
    def chunk(self, chunk: JSON) -> bytes | None: ...

    def done(self) -> bytes: ...

    def error(self, error: GatewayError) -> bytes: ...


class OpenAIStreamEncoder:
    """The usage chunk (empty choices) is always requested upstream, shown only if asked, with
    its cost (core.spend.quote)."""

    __slots__ = ("cost_of", "include_usage")

    def __init__(self, include_usage: bool, cost_of: CostOf | None = None) -> None:
        self.include_usage = include_usage
        self.cost_of = cost_of

    def chunk(self, chunk: JSON) -> bytes | None:
        usage = chunk.get("usage")
        if usage is not None:
            if not chunk.get("choices"):
                if not self.include_usage:
                    return None
                if isinstance(usage, dict) and usage:
                    chunk = {**chunk, "usage": with_cost(usage, usage, self.cost_of)}
                return encode_data(chunk)
            if not self.include_usage:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
        return encode_data(chunk)

    def done(self) -> bytes:
        return DONE

    def error(self, error: GatewayError) -> bytes:
        return b"data: " + error.openai_body() + b"\n\n"


def _strings(mapping: JSON, keys: tuple[str, ...]) -> int:
    return sum(len(value) for key in keys if isinstance(value := mapping.get(key), str))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _streamed_chars(chunk: JSON) -> int:
    """Characters of generated output in a chunk: the basis of a cut stream's usage estimate."""
    total = 0
    for choice in _list(chunk.get("choices")):
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        total += _strings(delta, ("content", "reasoning_content", "refusal"))
        for call in _list(delta.get("tool_calls")):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                total += _strings(function, ("arguments", "name"))
    return total


def estimated_usage(prompt_tokens: int, streamed_chars: int) -> dict[str, Any]:
    completion = estimate_chars(streamed_chars)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "estimated": True,
    }


def _usage_of(chunk: JSON) -> dict[str, Any] | None:
    usage = chunk.get("usage")
    return usage if isinstance(usage, dict) and usage else None


def _as_provider_error(exc: Exception) -> ProviderError:
    """What ends a stream: a ProviderError as it is; anything else (an encoder or a chunk
    source meeting data it cannot handle) as the invalid upstream response it stands for."""
    if isinstance(exc, ProviderError):
        return exc
    parser_crash(exc, None)
    return invalid_upstream(INVALID_RESPONSE)


async def relay(
    first: JSON | None,
    chunks: AsyncIterator[JSON],
    encoder: StreamEncoder,
    on_end: UsageSink,
    prompt_estimate: int = 0,
) -> AsyncIterator[bytes]:
    """When a stream is cut before its usage arrives, the usage recorded is an estimate
    (prompt estimate + streamed characters), flagged `estimated`, never nothing. Whatever goes
    wrong after the first byte ends the stream with an error event in the client's format and
    an accounted end, never a broken connection (which the edge's other requests share)."""
    usage: dict[str, Any] | None = None
    outcome = "ok"
    failure: ProviderError | None = None
    streamed = 0
    try:
        if first is not None:
            usage = _usage_of(first) or usage
            streamed += _streamed_chars(first)
            out = encoder.chunk(first)
            if out:
                yield out
        async for chunk in chunks:
            usage = _usage_of(chunk) or usage
            streamed += _streamed_chars(chunk)
            out = encoder.chunk(chunk)
            if out:
                yield out
        yield encoder.done()
    except Exception as exc:
        failure = _as_provider_error(exc)
        outcome = f"cut:{failure.failure_class}"
        # HTTP upstreams scrub their errors already (with the target's keys); this catches any
        # other source of chunks, so nothing unscrubbed ends a stream.
        yield encoder.error(sanitize(failure, None))
    except (GeneratorExit, asyncio.CancelledError):
        outcome = "cancelled"  # the client went away: still settled, from what was streamed
        raise
    finally:
        await close(chunks)
        if usage is None and (outcome != "ok" or streamed):
            usage = estimated_usage(prompt_estimate, streamed)
        on_end(usage, outcome, failure)


class Relayed(Protocol):
    """A passthrough stream's own steps (the Messages and Responses passthroughs): the
    upstream's events re-framed for the client, when it is over, and what a cut or an early
    end sends in its API's format."""

    def framed(self, events: list[StreamEvent]) -> bytes: ...

    def over(self) -> bool: ...

    def failed(self, error: ProviderError) -> bytes: ...

    def unfinished(self) -> bytes: ...


async def relay_events(
    body: UpstreamBody,
    decoder: SSEDecoder,
    target: Target,
    first: list[StreamEvent],
    steps: Relayed,
) -> AsyncIterator[bytes]:
    """The upstream's events from `first` on, read and re-framed until the stream is over,
    cut (`failed`'s events end it) or ends early (`unfinished`'s)."""
    events: list[StreamEvent] | None = first
    while events is not None:
        out = steps.framed(events)
        if out:
            yield out
        if steps.over():
            return
        try:
            raw = await body.read()
            with parsing(target):
                events = decoder.feed(raw) if raw else None
        except ProviderError as error:  # cut, reset, stalled, timed out, invalid
            yield steps.failed(error)
            return
    yield steps.unfinished()
