"""The edge's copy of the revocation list (shared/revocation.py), refreshed in the background.

Requests check the in-memory list (two dictionary lookups); the list is re-read from its file
or URL every `auth.revocation_refresh` with the same machinery as the JWKS (edge/refresh.py).
A revoked token, cached or not, is therefore refused from the first request after the refresh
that brought the entry: the bound is one refresh interval plus the read (a file read, or a URL
fetch of at most 10 s).

Start-up is fail-closed where it matters: a revocation file or URL the operator configured
must load, or the edge does not start (an edge that silently came up with an empty list would
re-admit every revoked token after a restart or a cold start). Only the default file under the
state dir may be absent: a fresh install has revoked nothing, and the first
`interlock token revoke` creates it. A failed refresh always keeps the last good list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge.refresh import Refresher, Source, read_capped
from shared.config_edge import AuthConfig
from shared.configparse import ConfigError
from shared.revocation import EMPTY, MAX_DOCUMENT_BYTES, Revocations, parse_revocations

log = logging.getLogger("interlock.edge")


def revocation_source(auth: AuthConfig) -> Source:
    return Source(
        what="revocation list",
        kept="list",
        url=auth.revocation_url,
        url_key="auth.revocation_url",
        file=auth.revocation_file,
        file_key="auth.revocation_file",
        max_bytes=MAX_DOCUMENT_BYTES,
        interval_s=auth.revocation_refresh_s,
    )


class RevocationRefresher(Refresher[Revocations]):
    def __init__(self, auth: AuthConfig, apply: Callable[[Revocations], bool]) -> None:
        self._auth = auth
        super().__init__(revocation_source(auth), self._parse_current, apply)

    def _parse_current(self, text: str, source: str) -> Revocations:
        """Parsed, without the entries that can no longer match a valid token."""
        auth = self._auth
        return parse_revocations(text, source).pruned(time.time(), auth.max_ttl_s, auth.leeway_s)

    def load(self) -> Revocations:
        """The list at start-up from the file (a URL is fetched by start(), before serving)."""
        auth = self._auth
        if auth.revocation_url:
            return EMPTY
        try:
            text = read_capped(revocation_source(auth))
        except FileNotFoundError:
            if auth.revocation_required:
                raise ConfigError(
                    f"auth.revocation_file: {auth.revocation_file} does not exist; create it "
                    "with `interlock token revoke` or remove the setting"
                ) from None
            log.info("no revocation list at %s yet: nothing is revoked", auth.revocation_file)
            self.absent()
            return EMPTY
        except OSError as exc:
            raise ConfigError(
                f"auth.revocation_file: cannot read {auth.revocation_file} ({exc.strerror})"
            ) from None
        self.loaded(text)
        return self._parse_current(text, "auth.revocation_file")
