"""The chaos test's load and its record: closed-loop clients over real sockets, each request's
start, end and what the client saw, so faults can be matched to the requests they overlapped.

A request counts as served only as a client would judge it: a 200 whose JSON has a choice, or
a stream that ends with `data: [DONE]` and carries no error event. Everything else (an error
status, an error event, a cut, a client-side timeout) is a client-visible failure.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.support.logs import usage_entries


@dataclass(slots=True)
class Record:
    stream: bool
    started: float  # monotonic
    ended: float = 0.0
    status: int = 0
    served: bool = False
    request_id: str | None = None
    problem: str = ""

    def overlaps(self, moment: float) -> bool:
        """In flight at `moment`."""
        return self.started <= moment <= self.ended


@dataclass(slots=True)
class Load:
    url: str
    token: str
    model: str
    client_timeout_s: float
    records: list[Record] = field(default_factory=list)

    async def run(self, workers: int, until: float) -> list[Record]:
        timeout = aiohttp.ClientTimeout(total=self.client_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._worker(session, n, until) for n in range(workers)))
        return self.records

    async def _worker(self, session: aiohttp.ClientSession, number: int, until: float) -> None:
        count = 0
        while time.monotonic() < until:
            record = Record(stream=(number + count) % 2 == 0, started=time.monotonic())
            count += 1
            self.records.append(record)
            try:
                await self._one(session, record)
            except TimeoutError:
                record.problem = "client timeout (hung request)"
            except aiohttp.ClientError as exc:
                record.problem = f"connection: {type(exc).__name__}"
            record.ended = time.monotonic()

    async def _one(self, session: aiohttp.ClientSession, record: Record) -> None:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "chaos"}],
            "stream": record.stream,
        }
        headers = {"authorization": f"Bearer {self.token}"}
        async with session.post(
            f"{self.url}/v1/chat/completions", data=orjson.dumps(body), headers=headers
        ) as response:
            record.status = response.status
            record.request_id = response.headers.get("x-request-id")
            data = await response.read()
        if record.status != 200:
            record.problem = f"status {record.status}: {data[:200]!r}"
        elif record.stream:
            record.served = data.rstrip().endswith(b"data: [DONE]") and b'"error"' not in data
            record.problem = "" if record.served else f"stream: {data[-300:]!r}"
        else:
            choices = orjson.loads(data).get("choices")
            record.served = isinstance(choices, list) and len(choices) == 1
            record.problem = "" if record.served else f"body: {data[:200]!r}"


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def usage_lines(logs: str) -> dict[str, str]:
    """request_id -> outcome, from every usage line in the logs."""
    return {entry["request_id"]: entry["outcome"] for entry in usage_entries(logs)}
