"""The auth-policy parts of interlock.yaml: client networks, the revocation list source, and
how referenced secrets are checked and refreshed (`secrets:`).

Parsed once at start-up (shared/config.py calls these); a bad value fails naming its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import claims
from shared import configparse as cp
from shared.configparse import ConfigError
from shared.secret import SecretRef
from shared.secret_sources import as_secret


def networks(raw: Any, path: str) -> tuple[claims.Network, ...]:
    """A list of CIDRs (or single addresses), each checked strictly at start-up; a
    comma-separated string is accepted too, so the list can come from one ${VARIABLE}."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a list of CIDRs such as 10.0.0.0/8")
    out = []
    for i, value in enumerate(raw):
        network = claims.parse_network(value)
        if network is None:
            raise ConfigError(f"{path}[{i}]: {value!r} is not a CIDR (host bits must be zero)")
        out.append(network)
    return tuple(out)


def tenant_cidrs(raw: Any) -> dict[str, tuple[claims.Network, ...]]:
    out = {}
    for tenant, cidrs in cp.named(raw, "auth.tenant_cidrs", "tenant to a list of CIDRs").items():
        path = f"auth.tenant_cidrs.{tenant}"
        out[str(tenant)] = networks(cidrs, path)
        if not out[str(tenant)]:
            raise ConfigError(f"{path}: needs at least one CIDR")
    return out


def revocation_settings(s: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    url = cp.optional_string(s, "revocation_url", "auth")
    if url is not None and not url.startswith(("https://", "http://")):
        raise ConfigError("auth.revocation_url: expected an http(s) URL")
    file = cp.optional_string(s, "revocation_file", "auth")
    return {
        "revocation_file": Path(file) if file else state_dir / "revocations.json",
        "revocation_url": url,
        "revocation_refresh_s": cp.duration(s, "revocation_refresh", "auth", 10),
        "revocation_required": bool(file or url),
    }


@dataclass(frozen=True)
class SecretsConfig:
    """`secrets:` how referenced secrets (aws-sm://...) are kept fresh: each is re-read every
    `refresh_s` on its own (0: read once at start-up); a rotated value is used from the next
    read on, and on an upstream 401 a provider key is re-read at once."""

    refresh_s: float = 300.0


_SECRETS = cp.keys_of(SecretsConfig)


def parse_secrets(raw: Any) -> SecretsConfig:
    s = cp.section(raw, "secrets", _SECRETS)
    refresh = cp.duration(s, "refresh", "secrets", SecretsConfig.refresh_s)
    if 0 < refresh < 1:
        raise ConfigError("secrets.refresh: expected 0 (off) or at least 1s")
    return SecretsConfig(refresh_s=refresh)


def check_secret(value: str, path: str, min_chars: int = 1) -> None:
    """A literal secret's length is checked now; a reference's syntax now and its value when
    it is read at start-up (shared.secret_refresh)."""
    if isinstance(as_secret(value, path), SecretRef):
        return
    if len(value) < min_chars:
        raise ConfigError(f"{path}: must be at least {min_chars} characters")
