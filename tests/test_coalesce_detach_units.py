"""The parts of a leader going on without its client (core.cache.follow.detach,
shared.client_watch's `keep`): kept while someone follows, cancelled when the last one
leaves, unless the answer has started by then; a watched request kept is not cancelled
when its client leaves, and is when its keeper says so."""

from __future__ import annotations

import asyncio
from typing import Any

from core.cache.flight import Flight
from core.cache.follow import detach
from shared.client_watch import watched


def test_detach_keeps_a_followed_pending_flight_until_its_last_follower_leaves() -> None:
    async def scenario() -> None:
        cancels: list[str] = []
        lonely = Flight(1 << 20)
        assert not await detach(lonely, lambda: cancels.append("lonely"))  # nobody follows
        followed = Flight(1 << 20)
        followed.readers = 2
        assert await detach(followed, lambda: cancels.append("followed"))
        followed.leave()
        assert cancels == []  # one still follows
        followed.leave()
        assert cancels == ["followed"]
        started = Flight(1 << 20)
        started.readers = 1
        assert await detach(started, lambda: cancels.append("started"))
        started.start({"media": "application/json"})
        started.leave()  # the answer is under way: a stream's leaving is its feed's
        assert cancels == ["followed"]
        answered = Flight(1 << 20)
        answered.readers = 1
        answered.start({})
        assert not await detach(answered, lambda: cancels.append("answered"))

    asyncio.run(scenario())


def test_detach_asks_the_other_replicas_when_nobody_follows_here() -> None:
    async def scenario() -> None:
        flight = Flight(1 << 20)

        async def ask() -> None:
            flight.heard(1)  # a follower on another replica

        flight.ask = ask
        cancelled: list[bool] = []
        assert await detach(flight, lambda: cancelled.append(True))
        flight.heard(0)  # it left (the lock's count, heard at the next heartbeat)
        assert cancelled == [True]

    asyncio.run(scenario())


def test_a_kept_request_goes_on_after_its_client_left_until_cancelled() -> None:
    async def disconnect() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def scenario() -> None:
        later: list[Any] = []

        async def keep(cancel: Any) -> bool:
            later.append(cancel)
            return True

        async def work(seconds: float) -> str:
            await asyncio.sleep(seconds)
            return "answer"

        assert await watched(disconnect, work(0.2), lambda: "left", keep) == "answer"
        task = asyncio.ensure_future(watched(disconnect, work(5), lambda: "left", keep))
        await asyncio.sleep(0.2)
        assert not task.done() and len(later) == 2
        later[1]()  # nobody waits any more
        assert await task == "left"
        refused = watched(disconnect, work(5), lambda: "left", _refuse)
        assert await asyncio.wait_for(refused, 1) == "left"  # not kept: cancelled at once

    asyncio.run(scenario())


async def _refuse(cancel: Any) -> bool:
    return False
