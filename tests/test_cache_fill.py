"""core.cache.fill: a complete answer leaves before its store (a store round trip off the
answer's path), the flight its followers read ends only once the entry is stored, and a store
that fails ends the flight all the same."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from starlette.responses import Response

from core.cache.backend import Backend, Entry
from core.cache.coalesce import DONE, OPEN, Coalescer, Flight
from core.cache.fill import Fill

USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
BODY = b'{"choices": []}'


class GatedBackend:
    """Stores once its gate opens; or fails then, when told to."""

    def __init__(self, fails: bool = False) -> None:
        self.gate = asyncio.Event()
        self.fails = fails
        self.entries: dict[str, bytes] = {}

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.gate.wait()
        if self.fails:
            raise ConnectionError("store down")
        self.entries[key] = value


async def leading(gated: GatedBackend) -> tuple[Fill, Flight]:
    coalescer = Coalescer(None)
    joined = await coalescer.join("k:co:c", 10, 1 << 20)
    assert joined is not None and joined[1]
    fill = Fill(cast(Backend, gated), "k", "chat", 60, 1 << 20, "miss")
    fill.flight, fill.coalescer = joined[0], coalescer
    return fill, joined[0]


async def ended(flight: Flight) -> None:
    while not flight.ended:  # the wait starts before the end it waits for
        await flight.milestone(1)


def exchange() -> Any:
    return SimpleNamespace(usage=USAGE, spec=None)


def test_a_complete_answer_leaves_before_its_store_and_its_flight_ends_after() -> None:
    async def scenario() -> None:
        gated = GatedBackend()
        fill, flight = await leading(gated)
        response = Response(BODY, media_type="application/json")
        await asyncio.wait_for(fill.encoded(exchange(), response), 1)  # the store still waits
        assert response.headers["x-interlock-cache"] == "miss"
        assert (flight.state, flight.chunks, gated.entries) == (OPEN, [BODY], {})
        gated.gate.set()
        await asyncio.wait_for(ended(flight), 1)
        assert flight.state == DONE and flight.usage == USAGE
        stored = Entry.decode(gated.entries["k"])
        assert stored is not None and stored.body == BODY

    asyncio.run(scenario())


def test_a_store_that_fails_still_ends_the_flight() -> None:
    async def scenario() -> None:
        gated = GatedBackend(fails=True)
        fill, flight = await leading(gated)
        await fill.encoded(exchange(), Response(BODY, media_type="application/json"))
        gated.gate.set()
        await asyncio.wait_for(ended(flight), 1)
        assert flight.state == DONE and gated.entries == {}

    asyncio.run(scenario())
