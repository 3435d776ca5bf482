"""Relaying a canonical chunk stream to a client in its API's format.

Once the first byte is out, an upstream failure can no longer change the status: the stream
ends with an error event in the client's format, and the partial usage is still accounted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from core.adapters.base import JSON, ProviderError
from core.dispatch import close
from core.sse import DONE, encode_data
from shared.errors import GatewayError

UsageSink = Callable[[dict[str, Any] | None, str], None]


class StreamEncoder(Protocol):
    def chunk(self, chunk: JSON) -> bytes | None: ...

    def done(self) -> bytes: ...

    def error(self, error: GatewayError) -> bytes: ...


class OpenAIStreamEncoder:
    """The usage chunk (empty choices) is always requested upstream, shown only if asked."""

    __slots__ = ("include_usage",)

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def chunk(self, chunk: JSON) -> bytes | None:
        if chunk.get("usage") is not None:
            if not chunk.get("choices"):
                return encode_data(chunk) if self.include_usage else None
            if not self.include_usage:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
        return encode_data(chunk)

    def done(self) -> bytes:
        return DONE

    def error(self, error: GatewayError) -> bytes:
        return b"data: " + error.openai_body() + b"\n\n"


async def relay(
    first: JSON | None,
    chunks: AsyncIterator[JSON],
    encoder: StreamEncoder,
    on_end: UsageSink,
) -> AsyncIterator[bytes]:
    usage: dict[str, Any] | None = None
    outcome = "ok"
    try:
        if first is not None:
            usage = first.get("usage") or usage
            out = encoder.chunk(first)
            if out:
                yield out
        async for chunk in chunks:
            usage = chunk.get("usage") or usage
            out = encoder.chunk(chunk)
            if out:
                yield out
        yield encoder.done()
    except ProviderError as error:
        outcome = f"cut:{error.failure_class}"
        yield encoder.error(error)
    finally:
        await close(chunks)
        on_end(usage, outcome)
