"""A document the edge keeps in memory and refreshes in the background: JWKS, revocation list.

Both have the same life: read at start-up (a file) or fetched before serving (a URL: no
document, no service), re-read every N seconds off the hot path (file reads in a thread, URL
fetches on a small session of their own), swapped in whole, and kept as they are when the new
copy is unreachable, too large or invalid. Requests never wait for any of it.

aiohttp is imported only by a refresher that fetches a URL, when it starts: an edge whose
documents are files (the usual Lambda set-up) never pays for its import on a cold start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from shared.configparse import ConfigError
from shared.periodic import Periodic

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("interlock.edge")

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """Where a document lives: a URL (if set) or a file, and the config keys that name them."""

    what: str  # for logs: "JWKS", "revocation list"
    kept: str  # what a failed refresh keeps, for logs: "keys", "list"
    url: str | None
    url_key: str  # e.g. "auth.jwks_url"
    file: Path
    file_key: str  # e.g. "auth.jwks_file"
    max_bytes: int
    interval_s: float  # 0: never refresh


def read_capped(source: Source) -> str:
    """The file's text, refusing one over the cap before reading it all (blocking: callers at
    request time run it in a thread)."""
    with source.file.open("rb") as handle:
        data = handle.read(source.max_bytes + 1)
    if len(data) > source.max_bytes:
        raise ConfigError(f"{source.file_key}: larger than {source.max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source.file_key}: not UTF-8 text") from None


class Refresher(Generic[T]):
    def __init__(
        self,
        source: Source,
        parse: Callable[[str, str], T],
        apply: Callable[[T], bool],
    ) -> None:
        self._source = source
        self._parse = parse  # (text, config key) -> document; raises ConfigError
        self._apply = apply  # swaps the document in; True if anything changed
        self._periodic = Periodic(f"{source.what} refresh", source.interval_s, self.refresh)
        self._session: aiohttp.ClientSession | None = None
        self._last_text: str | None = None
        self._last_error: str | None = None
        self._absent = False  # see absent()

    async def _fetch_url(self, url: str) -> str:
        source = self._source
        if self._session is None:
            raise ConfigError(f"{source.url_key}: the refresher is not started")
        import aiohttp  # loaded by start(): a dictionary look-up here

        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with self._session.get(url, timeout=timeout) as response:
                if response.status != 200:
                    raise ConfigError(f"{source.url_key}: HTTP {response.status}")
                data = await response.content.read(source.max_bytes + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConfigError(f"{source.url_key}: cannot fetch ({type(exc).__name__})") from None
        if len(data) > source.max_bytes:
            raise ConfigError(f"{source.url_key}: larger than {source.max_bytes} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{source.url_key}: not UTF-8 text") from None

    async def _text(self) -> tuple[str, str]:
        source = self._source
        if source.url:
            return await self._fetch_url(source.url), source.url_key
        return await asyncio.to_thread(read_capped, source), source.file_key

    async def fetch(self) -> T:
        text, key = await self._text()
        document = await asyncio.to_thread(self._parse, text, key)
        self._last_text = text
        return document

    async def refresh(self) -> bool:
        """True if the document changed. An unchanged text is not parsed again; a failure keeps
        the current document and is logged once per distinct failure, not every interval. A
        file still missing since start-up (`absent`) is no failure; one that was read and is
        gone is."""
        what = self._source.what
        try:
            text, key = await self._text()
            if text == self._last_text:
                return False
            # Validating a large list is Python work: in a thread, so the GIL is shared with
            # the event loop instead of holding it for the whole parse.
            document = await asyncio.to_thread(self._parse, text, key)
        except Exception as exc:
            if self._absent and isinstance(exc, FileNotFoundError):
                return False  # still no file, as at start-up: nothing to keep, nothing wrong
            message = self._failure(exc)
            if message != self._last_error:
                log.warning(
                    "%s refresh failed, keeping the current %s: %s",
                    what,
                    self._source.kept,
                    message,
                )
                self._last_error = message
            return False
        self._last_text, self._last_error, self._absent = text, None, False
        changed = self._apply(document)
        if changed:
            log.info("%s refreshed from %s", what, key)
        return changed

    def _failure(self, exc: Exception) -> str:
        if isinstance(exc, ConfigError):
            return str(exc)
        if isinstance(exc, OSError):
            return f"{self._source.file_key}: cannot read ({type(exc).__name__})"
        return f"{self._source.what}: unexpected {type(exc).__name__} while loading"

    def absent(self) -> None:
        """The owner started without the file (an optional list nobody has written yet, e.g.
        revocations on a fresh install): until it appears, its absence is not a failure."""
        self._absent = True

    def loaded(self, text: str) -> None:
        """Record the text the owner loaded at start-up, so an unchanged file is not re-parsed."""
        self._last_text = text

    async def start(self) -> None:
        """With a URL the first fetch must succeed (raises ConfigError): no document, no
        service. A file was read at start-up by the owner."""
        if self._source.url:
            import aiohttp

            self._session = aiohttp.ClientSession(trust_env=True)
            self._apply(await self.fetch())
        if self._source.interval_s > 0:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
