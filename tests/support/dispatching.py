"""Driving a Dispatcher directly in tests, the way the chat API does: `Dispatcher.run` with the
call that completes (`completion_call`) or opens a stream (`stream_call`) on each attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator

from core.providers.adapters.base import JSON
from core.resilience.dispatch import (
    Attempt,
    Dispatcher,
    ImageInliner,
    Outcome,
    completion_call,
    stream_call,
)


async def run_completion(
    dispatcher: Dispatcher,
    attempts: list[Attempt],
    inliner: ImageInliner | None = None,
    tokens: int = 0,
) -> tuple[JSON, Outcome]:
    return await dispatcher.run(attempts, completion_call(inliner), tokens)


async def run_stream(
    dispatcher: Dispatcher,
    attempts: list[Attempt],
    inliner: ImageInliner | None = None,
    tokens: int = 0,
) -> tuple[JSON | None, AsyncIterator[JSON], Outcome]:
    """The first chunk in hand (or None for an empty stream), the rest, and who serves it."""
    (first, chunks), outcome = await dispatcher.run(
        attempts, stream_call(inliner), tokens, streaming=True
    )
    return first, chunks, outcome
