"""Model allow-lists: exact names or shell-style globs ("gpt-4o*", "mock-*", "*")."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable


def compile_patterns(patterns: Iterable[str]) -> Callable[[str], bool]:
    """One compiled regex for the whole list, built once per token (not per request)."""
    items = [p for p in patterns if p]
    if not items or "*" in items:
        return lambda name: True
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in items))
    return lambda name: regex.match(name) is not None
