"""The token revocation list: the document `interlock token revoke` writes and the edge reads.

Two kinds of entry, both checked at the edge from memory (no network on the hot path):

- a `jti` denylist: one token, kept until that token could no longer be valid anyway
  (its `exp` plus the leeway);
- a per-tenant "not before": every token of the tenant issued (`iat`) before that time is
  revoked, kept until the longest-lived such token has expired (not before + max TTL + leeway).

Document (JSON, version 1):

    {"version": 1, "jtis": {"<jti>": <exp, epoch s>}, "tenants": {"<tenant>": <epoch s>}}

Parsing is strict and bounded (entry counts, string lengths, finite numbers): a document that
breaks a rule is refused as a whole, and the edge keeps the last good list.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from shared import claims
from shared.configparse import ConfigError

VERSION = 1
MAX_JTIS = 100_000
MAX_TENANTS = 100_000
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # 100k entries of 32-character jtis take ~5 MB


@dataclass(frozen=True, slots=True)
class Revocations:
    jtis: dict[str, float] = field(default_factory=dict)  # jti -> the token's exp
    tenants: dict[str, float] = field(default_factory=dict)  # tenant -> not before (epoch s)

    def revokes(self, tenant: str, jti: str, issued_at: float) -> bool:
        """Two dictionary lookups: cheap enough for every request, cached tokens included."""
        if jti in self.jtis:
            return True
        not_before = self.tenants.get(tenant)
        return not_before is not None and issued_at < not_before

    def pruned(self, now: float, max_ttl_s: float, leeway_s: float) -> Revocations:
        """Without the entries no still-valid token can match: the list stays bounded."""
        return Revocations(
            {j: exp for j, exp in self.jtis.items() if exp + leeway_s >= now},
            {t: nb for t, nb in self.tenants.items() if nb + max_ttl_s + leeway_s >= now},
        )

    def to_json(self) -> str:
        document = {"version": VERSION, "jtis": self.jtis, "tenants": self.tenants}
        return json.dumps(document, sort_keys=True, indent=1) + "\n"


EMPTY = Revocations()


def _timestamp(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a time in epoch seconds")
    return float(value)


def _entries(raw: Any, where: str, max_entries: int, max_key: int) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    if len(raw) > max_entries:
        raise ConfigError(f"{where}: more than {max_entries} entries")
    out: dict[str, float] = {}
    for key, value in raw.items():
        if not claims.valid_name(key, max_key):
            raise ConfigError(f"{where}: invalid key {str(key)[:40]!r}")
        out[key] = _timestamp(value, f"{where}.{key[:40]}")
    return out


def parse_revocations(text: str, source: str) -> Revocations:
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ConfigError(f"{source}: not valid JSON") from None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ConfigError(f"{source}: expected a revocation list object with version {VERSION}")
    unknown = set(document) - {"version", "jtis", "tenants"}
    if unknown:
        raise ConfigError(f"{source}: unknown key {sorted(unknown)[0][:40]!r}")
    return Revocations(
        _entries(document.get("jtis"), f"{source}.jtis", MAX_JTIS, claims.MAX_TOKEN_ID_LENGTH),
        _entries(
            document.get("tenants"), f"{source}.tenants", MAX_TENANTS, claims.MAX_SUBJECT_LENGTH
        ),
    )
