"""An ASGI app under uvicorn on a real loopback socket, in a thread, for protocol-level tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from shared.server import bind


@contextlib.contextmanager
def serve(app: ASGIApp, protocol: type[asyncio.Protocol] | None = None) -> Iterator[str]:
    """The app's base URL while the block runs; `protocol`: a server protocol class
    (shared.server_protocol.configured), else uvicorn's own."""
    sock = bind("127.0.0.1", 0, 16)
    http = protocol if protocol is not None else "auto"
    config = uvicorn.Config(app, http=http, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
