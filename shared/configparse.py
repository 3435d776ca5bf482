"""Typed readers for untrusted config mappings.

Every reader takes the dotted path of the value so that a bad config fails at start-up with a
message naming the exact key, never later at request time.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """Invalid configuration; the message starts with the dotted key at fault."""


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def interpolate(value: Any, path: str, env: Mapping[str, str] | None = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string, recursively."""
    environ = os.environ if env is None else env
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and environ[name] != "":
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set")

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: interpolate(v, f"{path}.{k}" if path else str(k), environ) for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]", environ) for i, v in enumerate(value)]
    return value


_READ_FROM = "interlock.config_keys"


def read_from(*keys: str) -> dict[str, tuple[str, ...]]:
    """Field metadata, for a field not read from the key of its own name: the key(s) it is
    read from (`fail_open` from `on_redis_down`; `api_keys` from `api_key` and `api_keys`), or
    none for a field no key sets (the name a section is filed under, a derived value).
    Usage: `fail_open: bool = field(metadata=read_from("on_redis_down"))`."""
    return {_READ_FROM: keys}


def keys_of(settings_type: type[Any]) -> frozenset[str]:
    """The keys a config section accepts, taken from the one declaration of its settings: the
    dataclass's field names, a duration's `_s` (seconds) suffix dropped (the field
    `connect_timeout_s` is read from the key `connect_timeout`), or the keys its `read_from`
    metadata names. Adding a key is adding a field: no second list to keep in step."""
    return frozenset(
        key
        for f in dataclasses.fields(settings_type)
        for key in f.metadata.get(_READ_FROM, (f.name.removesuffix("_s"),))
    )


def section(raw: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    """A mapping whose keys must all be known: a typo is an error, not a silent default."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping")
    for key in raw:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"{path}.{key}: unknown key (known: {known})")
    return raw


def named(raw: Any, path: str, of: str) -> dict[Any, Any]:
    """A mapping of names to entries (`models`, `aliases`, tiers, tenants ...), empty when
    absent; `of` says what it maps, for the error (e.g. "model name to targets"). The names
    are as written: callers that require strings check them."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of {of}")
    return raw


def string(raw: dict[str, Any], key: str, path: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None:
        raise ConfigError(f"{path}.{key}: required")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}.{key}: expected a non-empty string")
    return value


def optional_string(raw: dict[str, Any], key: str, path: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}.{key}: expected a string")
    return value


def integer(raw: dict[str, Any], key: str, path: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{path}.{key}: expected an integer from {lo} to {hi}")
    return value


def boolean(raw: dict[str, Any], key: str, path: str, default: bool) -> bool:
    value = raw.get(key, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}: expected true or false")
    return value


def duration(raw: dict[str, Any], key: str, path: str, default: float) -> float:
    """Seconds from 30, "30s", "15m", "1h", "250ms"."""
    value = raw.get(key, default)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ConfigError(f"{path}.{key}: expected a duration such as 30s, 15m or 1h")
    if seconds < 0:
        raise ConfigError(f"{path}.{key}: must not be negative")
    return seconds


def size(raw: dict[str, Any], key: str, path: str, default: int) -> int:
    """Bytes from 1048576, "512KiB", "8MiB"."""
    value = raw.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    raise ConfigError(f"{path}.{key}: expected a size such as 1048576 or 8MiB")


def string_list(
    raw: dict[str, Any], key: str, path: str, default: tuple[str, ...] = ()
) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{path}.{key}: expected a list of non-empty strings")
    return tuple(value)


def string_map(raw: dict[str, Any], key: str, path: str) -> dict[str, str]:
    value = raw.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{path}.{key}: expected a mapping of strings to strings")
    return dict(value)


def port_setting(
    s: dict[str, Any], path: str, env_name: str, env: dict[str, str], default: int
) -> int:
    """`port`, else the environment variable, else the default."""
    if "port" not in s and env.get(env_name):
        s = {**s, "port": env[env_name]}
    return integer(s, "port", path, default, 0, 65535)
