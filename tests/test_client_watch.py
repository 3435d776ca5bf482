"""shared.client_watch: a request's client is watched from WATCH_AFTER_S after the request
began, under one timer per event loop; requests answered sooner never read the channel."""

from __future__ import annotations

import asyncio
import gc

from starlette.types import Message, Receive

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


def test_a_watch_is_freed_with_its_request_without_the_cycle_collector() -> None:
    """A watch holds its task and its watcher, whose frames (a cancelled watcher's kept in its
    CancelledError's traceback) hold the watch: stop() lets go of both, so nothing waits for
    the cyclic collector, whether the request was answered or its client left."""

    async def scenario() -> list[str]:
        async def gone() -> Message:
            return {"type": "http.disconnect"}

        async def still_there() -> Message:
            await asyncio.sleep(60)
            return {"type": "http.disconnect"}

        async def one(receive: Receive, work: float) -> str:
            return await watched(receive, asyncio.sleep(work, "answer"), lambda: "left")

        answers = await asyncio.gather(
            *(one(still_there, WATCH_AFTER_S * 2) for _ in range(5)),  # watcher cancelled
            *(one(gone, 5) for _ in range(5)),  # the client left
        )
        await asyncio.sleep(0.01)  # the cancelled watchers end
        return list(answers)

    gc.collect()
    gc.disable()
    try:
        assert asyncio.run(scenario()) == ["answer"] * 5 + ["left"] * 5
        live = [o for o in gc.get_objects() if type(o) is client_watch.ClientWatch]
        assert live == []
    finally:
        gc.enable()
