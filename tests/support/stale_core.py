"""A stand-in for the core that closes kept-alive connections the way a crashed, restarted or
timed-out core does: after reading a request, without a byte of answer (or after part of one).

Only the edge talks to it, so nothing but the connection behaviour matters: every answer is a
small JSON 200. It runs on its own event loop in a thread, on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tests.support.net import free_port

ANSWER = b'{"ok":true}'


def response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


class StaleCore:
    """`mode` decides what happens to a request that is not the first on its connection:
    "drop" closes without answering, "partial" sends a status line and closes. With
    `answer_only_first` every request after the very first is treated so, on any connection.
    `answer` is the body of every 200 (a large one tests a client that stops reading).

    Like any HTTP/1.1 server it answers `Expect: 100-continue` with `100 Continue` before it
    reads the body, except where it drops the request: a connection that was already closing
    ends before any byte, 100 included (the edge may resend that elsewhere); "partial" fails
    after the 100, once the core could have acted on the request."""

    def __init__(
        self, mode: str = "drop", answer_only_first: bool = False, answer: bytes = ANSWER
    ) -> None:
        self.mode = mode
        self.response = response(answer)
        self.answer_only_first = answer_only_first
        self.port = free_port()
        self.requests = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StaleCore:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    def _answers(self, on_this_connection: int) -> bool:
        if self.answer_only_first:
            return self.requests == 1
        return on_this_connection == 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, expects = 0, False
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    expects |= name == b"expect" and value.strip().lower() == b"100-continue"
                self.requests += 1
                answers = self._answers(answered)
                if expects and not answers and self.mode == "drop":
                    break  # closing before any byte, 100 included: the body never comes
                if expects:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await reader.readexactly(length)
                if not answers:
                    if self.mode == "partial":
                        writer.write(b"HTTP/1.1 200 OK\r\n")
                        await writer.drain()
                    break
                writer.write(self.response)
                await writer.drain()
                answered += 1
        writer.close()
