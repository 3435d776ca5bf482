"""A lean pure-Python HTTP/1.1 client (no httptools, no aiohttp): shared/h1/client.py."""

from shared.h1.client import Body, Client, Response
from shared.h1.errors import (
    BodyFailed,
    BodyTooLarge,
    ConnectFailed,
    Disconnected,
    H1Error,
    H1Timeout,
    ProtocolError,
)
from shared.h1.pool import Origin, split_url

__all__ = [
    "Body",
    "BodyFailed",
    "BodyTooLarge",
    "Client",
    "ConnectFailed",
    "Disconnected",
    "H1Error",
    "H1Timeout",
    "Origin",
    "ProtocolError",
    "Response",
    "split_url",
]
