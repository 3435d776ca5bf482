"""shared.client_watch: a request's client is watched from WATCH_AFTER_S after the request
began, under one timer per event loop; requests answered sooner never read the channel."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from shared import client_watch
from shared.client_watch import WATCH_AFTER_S, watched


def test_a_client_that_left_is_noticed_after_its_own_delay() -> None:
    async def scenario() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()

        async def gone() -> Message:
            return {"type": "http.disconnect"}

        async def one(delay: float) -> tuple[str, float]:
            await asyncio.sleep(delay)
            started = loop.time()
            answer = await watched(gone, asyncio.sleep(5, "answer"), lambda: "left")
            return answer, loop.time() - started

        return list(await asyncio.gather(one(0), one(0.03), one(0.07)))

    for answer, waited in asyncio.run(scenario()):
        assert answer == "left"
        assert WATCH_AFTER_S - 0.005 <= waited < WATCH_AFTER_S + 0.1


def test_a_request_answered_sooner_never_reads_the_channel() -> None:
    reads = 0

    async def scenario() -> list[str]:
        async def receive() -> Message:
            nonlocal reads
            reads += 1
            return {"type": "http.disconnect"}

        answers = [await watched(receive, asyncio.sleep(0.001, "fast"), lambda: "left")]
        answers += await asyncio.gather(
            *(watched(receive, asyncio.sleep(0.01, "fast"), lambda: "left") for _ in range(20))
        )
        await asyncio.sleep(WATCH_AFTER_S * 2)  # any timer left would have fired by now
        sweeper = client_watch._SWEEPER
        assert sweeper is not None and sweeper.due == {} and sweeper.timer is None
        return answers

    assert asyncio.run(scenario()) == ["fast"] * 21
    assert reads == 0
