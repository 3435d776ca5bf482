"""The auth-policy parts of interlock.yaml: client networks and the revocation list source.

Parsed once at start-up (shared/config.py calls these); a bad value fails naming its key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared import claims
from shared import configparse as cp
from shared.configparse import ConfigError


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
