"""`interlock token revoke`: add an entry to the revocation list the edges read.

The list lives in `auth.revocation_file` (default `<state_dir>/revocations.json`). Each change
reads the current list under an exclusive lock (two operators revoking at once both land),
drops entries no valid token can match any more, adds the new one, and writes the file
atomically with mode 0600. Edges pick it up within `auth.revocation_refresh`; with
`auth.revocation_url`, publish the file at that URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from core.ops.keys import write_private
from shared import claims
from shared.config import AuthConfig
from shared.revocation import (
    EMPTY,
    MAX_DOCUMENT_BYTES,
    MAX_JTIS,
    MAX_TENANTS,
    Revocations,
    parse_revocations,
)


@contextlib.contextmanager
def _locked(file: Path) -> Iterator[None]:
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(file.with_name(f".{file.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _current(auth: AuthConfig, now: float) -> Revocations:
    """The list as it is now; a missing file is an empty list, an invalid one is an error
    (never silently replaced: it may hold revocations someone still relies on)."""
    try:
        text = auth.revocation_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return EMPTY
    revocations = parse_revocations(text, str(auth.revocation_file))
    return revocations.pruned(now, auth.max_ttl_s, auth.leeway_s)


def _update(auth: AuthConfig, now: float, change: Revocations) -> Revocations:
    with _locked(auth.revocation_file):
        current = _current(auth, now)
        jtis = {**current.jtis}
        for jti, exp in change.jtis.items():
            jtis[jti] = max(exp, jtis.get(jti, exp))
        tenants = {**current.tenants}
        for tenant, not_before in change.tenants.items():
            tenants[tenant] = max(not_before, tenants.get(tenant, not_before))
        if len(jtis) > MAX_JTIS or len(tenants) > MAX_TENANTS:
            raise ValueError(
                f"the revocation list is full ({MAX_JTIS} tokens, {MAX_TENANTS} tenants); "
                "revoke the tenant instead (--tenant), which covers all of its tokens"
            )
        updated = replace(current, jtis=jtis, tenants=tenants)
        data = updated.to_json().encode()
        if len(data) > MAX_DOCUMENT_BYTES:  # the edges would refuse it and keep the old list
            raise ValueError(
                f"the revocation list would exceed {MAX_DOCUMENT_BYTES} bytes; "
                "revoke the tenant instead (--tenant), which covers all of its tokens"
            )
        write_private(auth.revocation_file, data)
        return updated


def revoke_token(auth: AuthConfig, jti: str, exp: float | None, now: float | None = None) -> float:
    """Deny one token by its jti until `exp` (default: the longest any token issued by now can
    live). Returns the exp recorded; the entry is dropped once exp + leeway has passed."""
    current = time.time() if now is None else now
    if not claims.valid_name(jti, claims.MAX_TOKEN_ID_LENGTH):
        raise ValueError(f"--jti must be 1 to {claims.MAX_TOKEN_ID_LENGTH} printable characters")
    latest = current + auth.max_ttl_s + auth.leeway_s  # iat <= now + leeway, exp <= iat + ttl
    until = latest if exp is None else min(exp, latest)
    _update(auth, current, Revocations(jtis={jti: until}))
    return until


def revoke_tenant(
    auth: AuthConfig, tenant: str, before: float | None, now: float | None = None
) -> float:
    """Revoke every token of `tenant` issued before `before` (default: the end of the current
    second, so a token issued this second is covered too; tokens carry whole-second iat)."""
    current = time.time() if now is None else now
    if not claims.valid_name(tenant, claims.MAX_SUBJECT_LENGTH):
        raise ValueError("--tenant is not a valid tenant id")
    latest = float(math.floor(current) + 1)
    if before is not None and before > latest:
        raise ValueError("--before must not be in the future: revocation covers issued tokens")
    not_before = latest if before is None else before
    _update(auth, current, Revocations(tenants={tenant: not_before}))
    return not_before
