"""The core's HTTP client for providers: shared.h1 (a lean pure-Python HTTP/1.1 client), with
what the provider traffic asks of it on top. core.providers.transport drives it.

- TLS: the default verified context (`ssl.create_default_context()`: the system's CAs, as
  aiohttp used), ALPN `http/1.1`, built once per process; no proxies (trust_env was False);
- a bound on connections in use (`core.pool_size`, aiohttp's connector `limit`: shared.h1's
  `max_active`): a request waits for a slot (under its total timeout) and frees it when its
  answer ends (or, dropped unended, when it is collected); idle ones are
  kept per origin for 15 s (below a provider's usual 60 s keep-alive), at most `pool_size`;
- compression: requests say `Accept-Encoding: gzip, deflate` (what aiohttp sent) and answers
  so encoded are inflated as they are read (streams incrementally), at most STEP bytes out per
  step, so bandwidth from providers does not grow and a small compressed chunk never becomes a
  giant bytes object in one go (a whole answer's cap counts inflated bytes);
- headers: a response's are lower-cased by shared.h1 and looked up case-insensitively here.

An answer is ended by reading it to its end, `release` (the connection is pooled only if it
was read to its end) or `close`.
"""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Iterator, Mapping
from typing import Self

from shared.h1 import Body, Client, Response

STEP = 256 * 1024  # inflated bytes out of one decompression step
IDLE_S = 15.0
_DEFAULTS = {
    "accept-encoding": "gzip, deflate",
    "user-agent": "interlock",
    "accept": "*/*",
}


def provider_tls() -> ssl.SSLContext:
    """What aiohttp used for a verified HTTPS request: the default context, ALPN http/1.1."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def outgoing(headers: Mapping[str, str], traceparent: str | None) -> dict[str, str]:
    """`headers` plus the defaults it lacks (compared case-insensitively: a provider's or an
    adapter's own Accept or User-Agent wins), and the attempt's `traceparent`."""
    given = {name.lower() for name in headers}
    sent = {**headers}
    for name, value in _DEFAULTS.items():
        if name not in given:
            sent[name] = value
    if traceparent is not None:
        sent["traceparent"] = traceparent
    return sent


class Headers(Mapping[str, str]):
    """A response's headers (lower-cased by shared.h1), looked up case-insensitively."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields

    def __getitem__(self, name: str) -> str:
        fields = self.fields
        return fields[name] if name in fields else fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)


class Inflater:
    """A gzip or deflate body inflated piece by piece. Deflate is zlib-wrapped by the RFC and
    raw from some servers: the first byte tells (as aiohttp does). A body that ends before its
    compressed stream does is a zlib.error."""

    __slots__ = ("_gzip", "_z")

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._z: zlib._Decompress | None = None  # made at the first byte

    @property
    def pending(self) -> bool:
        return self._z is not None and bool(self._z.unconsumed_tail)

    def feed(self, data: bytes) -> bytes:
        z = self._z
        if z is None:
            wbits = 16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS
            if not self._gzip and data[0] & 0x0F != 8:
                wbits = -zlib.MAX_WBITS
            z = self._z = zlib.decompressobj(wbits)
        return z.decompress(data, STEP)

    def more(self) -> bytes:
        """The next inflated bytes of what the last `feed` left (`pending`)."""
        assert self._z is not None
        return self._z.decompress(self._z.unconsumed_tail, STEP)

    def finish(self) -> None:
        if self._z is not None and not self._z.eof:
            raise zlib.error("the compressed body was cut short")


def inflater(encoding: str | None) -> Inflater | None:
    if encoding is None:
        return None
    coding = encoding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        return Inflater(gzip=True)
    return Inflater(gzip=False) if coding == "deflate" else None


class Answer:
    """A provider's answer whose head is in: its status, headers and body (inflated)."""

    __slots__ = ("_inflater", "_response", "headers", "status")

    def __init__(self, response: Response) -> None:
        self._response = response
        self.status = response.status
        self.headers = Headers(response.headers)
        self._inflater = inflater(response.headers.get("content-encoding"))

    @property
    def content_length(self) -> int | None:
        """As announced (compressed, when the body is)."""
        return self._response.content_length

    async def chunk(self) -> bytes:
        """The next bytes of the body, inflated; b"" at its end. Raises an H1Error or a
        zlib.error, and the answer is then closed."""
        try:
            inflating = self._inflater
            if inflating is None:
                data = await self._response.next_chunk()
            else:
                data = (inflating.pending and inflating.more()) or await self._inflated(inflating)
        except BaseException:
            self.close()
            raise
        return data

    async def _inflated(self, inflating: Inflater) -> bytes:
        while data := await self._response.next_chunk():
            if out := inflating.feed(data):
                return out
        inflating.finish()
        return b""

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


class ProviderClient:
    """One per core process, built in its lifespan (core/app.py) and shared by every
    provider's Transport."""

    __slots__ = ("_client",)

    def __init__(self, pool_size: int, tls: ssl.SSLContext | None = None) -> None:
        self._client = Client(
            tls or provider_tls(), idle_s=IDLE_S, max_idle=pool_size, max_active=pool_size
        )

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body,
        connect_timeout_s: float | None,
    ) -> Answer:
        """The answer's head, once it is in (after waiting for a free slot). The URL goes out
        byte for byte; raises what shared.h1 raises (and ValueError for a URL or a header it
        cannot send)."""
        response = await self._client.request(
            method, url, headers, body, connect_timeout=connect_timeout_s
        )
        return Answer(response)

    def close(self) -> None:
        self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
