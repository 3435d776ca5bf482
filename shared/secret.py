"""A wrapper that keeps secrets out of reprs, logs, tracebacks and test diffs.

Provider keys, the hop secret and AWS credentials travel through config dataclasses, targets and
error paths; any of those can end up in a `repr()` (a debug log, pytest's assertion rewriting, a
traceback with locals). Wrapping the value means the only way to the plaintext is an explicit
`reveal()` at the point where it goes on the wire.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

MASK = "********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plaintext, for the one place that must send or sign with it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("secrets are not picklable")
