"""The resolved configuration as text, secrets masked: the first part of `interlock config
explain` (core/ops/explain_config.py).

Resolved means after ${VAR} interpolation, defaults and units: what the core runs with, as the
frozen dataclasses of shared.config hold it (a duration field `x_s` is shown as key `x`, in
its largest whole unit). Nothing that may be a credential is printed: a `Secret` prints as its
own repr (shared/secret.py); so does any string under a key or header whose name says secret,
password, token, api key, access key, private key, credential, authorization, cookie,
signature or webhook (webhook URLs carry their token in the path), and the password of any URL
(`redis://:pw@host`, a ledger DSN). A provider's raw `options` are shown the same way, and the
options its adapter wraps as Secrets (Bedrock's credentials) are masked by name as well,
whatever they are called. Names that only point at a secret (`*_file`, `*_url`) are shown.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from shared.config_conditions import AllOf, AnyOf, Cond, Not, Test
from shared.secret import MASK, Secret

# Names (keys, option names, header names) whose values are never printed.
_SECRET_NAME = re.compile(
    r"secret|passw|token|api.?key|access.?key|private.?key|credential|authoriz|cookie|signature|webhook",
    re.IGNORECASE,
)
# Names that only point at a secret (a file path, a URL to fetch keys from): shown.
_POINTER = re.compile(r"(_file|_url|_dir)$")
_MASKED = repr(Secret(""))
_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


class Seconds(float):
    """A duration field's value (`x_s`), printed in the largest whole unit: 400d, 15m, 250ms."""

    def __str__(self) -> str:
        for unit, size in _UNITS:
            if self >= size and float(self) % size == 0:
                return f"{float(self) / size:g}{unit}"
        seconds = float(self)
        return f"{seconds:g}s" if seconds >= 1 or seconds == 0 else f"{seconds * 1000:g}ms"


_INDENT = "  "


def secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _POINTER.search(name)


def without_password(url: str) -> str:
    """The URL with the password of its userinfo masked (anything else left as written)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not parts.scheme or not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", f":{MASK}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def condition(cond: Cond) -> str:
    """A routing condition in one line: `model eq auto and tier in (free, trial)`."""
    if isinstance(cond, Test):
        value = cond.value
        if isinstance(value, tuple):
            value = f"({', '.join(str(v) for v in value)})"
        return f"{cond.field} {cond.op} {value}"
    if isinstance(cond, Not):
        return f"not ({condition(cond.item)})"
    joiner = " and " if isinstance(cond, AllOf) else " or "
    text = joiner.join(condition(item) for item in cond.items)
    return f"({text})" if isinstance(cond, AnyOf) else text


def scalar(value: Any) -> str:
    """One value as the config would write it."""
    if isinstance(value, Secret):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Seconds):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, Decimal, PurePath)):
        return str(value)
    if isinstance(value, (Test, AllOf, AnyOf, Not)):
        return condition(value)
    text = without_password(str(value))
    return text if _plain(text) else repr(text)


def _plain(text: str) -> bool:
    """Whether YAML reads `text` back unquoted as this very string."""
    try:
        return bool(text) and yaml.safe_load(text) == text and "#" not in text
    except yaml.YAMLError:
        return False


def _entries(value: Any) -> list[tuple[str, Any]]:
    """The (key, value) pairs of a dataclass or mapping, durations renamed to their key."""
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    out = []
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if f.name.endswith("_s") and (item is None or type(item) in (int, float)):
            out.append((f.name.removesuffix("_s"), item if item is None else Seconds(item)))
        else:
            out.append((f.name, item))
    return out


def _composite(value: Any) -> bool:
    if isinstance(value, (Test, AllOf, AnyOf, Not)):
        return False
    return isinstance(value, Mapping) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )


def render(value: Any, masked: frozenset[str] = frozenset(), depth: int = 0) -> list[str]:
    """A dataclass or mapping as indented `key: value` lines. `masked`: more names whose
    values are secrets (the provider's Secret-typed options)."""
    lines: list[str] = []
    pad = _INDENT * depth
    for key, item in _entries(value):
        if isinstance(item, (Secret, str)) and (secret_name(key) or key in masked):
            lines.append(f"{pad}{key}: {_MASKED if item else scalar(item)}")
        elif _composite(item):
            inner = render(item, masked | _secret_keys(key, item), depth + 1)
            lines.append(f"{pad}{key}:" + ("" if inner else " {}"))
            lines += inner
        elif isinstance(item, (list, tuple, set, frozenset)):
            lines += _sequence(key, item, masked, depth)
        else:
            lines.append(f"{pad}{key}: {scalar(item)}")
    return lines


def _secret_keys(key: str, item: Any) -> frozenset[str]:
    """Under `headers`, every secret-sounding header is masked by name already; a mapping
    under a secret name (`secrets: {...}`) is masked whole."""
    if secret_name(key) and isinstance(item, Mapping):
        return frozenset(str(k) for k in item)
    return frozenset()


def _sequence(key: str, items: Any, masked: frozenset[str], depth: int) -> list[str]:
    pad = _INDENT * depth
    values = sorted(items, key=str) if isinstance(items, (set, frozenset)) else list(items)
    if secret_name(key) or key in masked:
        values = [item if isinstance(item, Secret) else Secret(str(item)) for item in values]
    if not any(_composite(item) for item in values):
        return [f"{pad}{key}: [{', '.join(scalar(item) for item in values)}]"]
    lines = [f"{pad}{key}:"]
    for item in values:
        inner = render(item, masked, depth + 2) if _composite(item) else [scalar(item)]
        first = inner[0].strip() if inner else "{}"
        lines.append(f"{pad}{_INDENT}- {first}")
        lines += inner[1:]
    return lines
