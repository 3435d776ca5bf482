"""A wrapper that keeps secrets out of reprs, logs, tracebacks and test diffs.

Provider keys, the hop secret and AWS credentials travel through config dataclasses, targets and
error paths; any of those can end up in a `repr()` (a debug log, pytest's assertion rewriting, a
traceback with locals). Wrapping the value means the only way to the plaintext is an explicit
`reveal()` at the point where it goes on the wire.

A `SecretRef` is a Secret whose value lives elsewhere (`aws-sm://...`, shared/secret_sources.py)
and changes under it when the secret is rotated (shared/secret_refresh.py). Everything that holds
a Secret (key pools, targets, the hop key) holds the same object for the life of the process and
reads `reveal()` when it sends: a rotation reaches every holder at once, with no snapshot to
update. Its identity (equality, hash, the key id in metrics and the ledger) is the reference,
not the value, so it survives a rotation.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from shared.secret_sources import SecretSource

MASK = "********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plaintext, for the one place that must send or sign with it."""
        return self._value

    def accepted(self) -> tuple[str, ...]:
        """Every value a verifier accepts now (a referenced secret mid-rotation has more)."""
        return (self._value,)

    def id_material(self) -> str:
        """What a stable, non-reversible id of this secret is hashed from: the value itself for
        a literal (ids unchanged from before references existed), the reference otherwise."""
        return self._value

    @property
    def version(self) -> int:
        """Bumped each time the value changes (a literal never does)."""
        return 0

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret) or isinstance(other, SecretRef):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("secrets are not picklable")


Reread = Callable[[], Awaitable[bool]]


class SecretRef(Secret):
    """A secret read from a SecretSource: its current value (what is sent or signed with),
    the pending one during a rotation (AWSPENDING: accepted by a verifier, never sent), and
    the value it replaced, accepted for `grace_s` more so that a peer that has not refreshed
    yet (an edge signing hops) is not refused. Updated only on the event loop's thread."""

    __slots__ = (
        "_pending",
        "_previous",
        "_previous_until",
        "_reread",
        "_version",
        "changed_at",
        "reference",
        "refreshed_at",
        "setting",
        "source",
        "wants_pending",
    )

    def __init__(
        self, reference: str, setting: str, source: SecretSource, wants_pending: bool = False
    ) -> None:
        super().__init__("")
        self.reference = reference  # e.g. aws-sm://prod/openai#key: configuration, not secret
        self.setting = setting  # the dotted config key it was given for (errors, metrics)
        self.source = source
        self.wants_pending = wants_pending  # verifiers (the hop secret) read AWSPENDING too
        self._pending: str | None = None
        self._previous: str | None = None
        self._previous_until = 0.0
        self._version = 0
        self._reread: Reread | None = None
        self.refreshed_at = 0.0  # monotonic time of the last successful read (0: never)
        self.changed_at = 0.0  # monotonic time the current value was first seen

    @property
    def resolved(self) -> bool:
        return self.refreshed_at > 0.0

    @property
    def version(self) -> int:
        return self._version

    def reveal(self) -> str:
        if not self.resolved:
            # A programming error (start-up resolves every reference before serving), never
            # a request's: say which setting, never a value.
            raise RuntimeError(f"{self.setting}: {self.reference} was used before it was read")
        return self._value

    def accepted(self) -> tuple[str, ...]:
        values = [self._value]
        if self._pending and self._pending != self._value:
            values.append(self._pending)
        if self._previous and time.monotonic() < self._previous_until:
            values.append(self._previous)
        return tuple(values)

    def id_material(self) -> str:
        return "ref:" + self.reference

    def update(self, current: str, pending: str | None, grace_s: float) -> bool:
        """Record a successful read; True when the current value changed."""
        now = time.monotonic()
        changed = current != self._value
        if changed:
            if self.resolved:
                self._previous, self._previous_until = self._value, now + grace_s
            self._value = current
            self._version += 1
            self.changed_at = now
        self._pending = pending
        self.refreshed_at = now
        return changed

    def attach(self, reread: Reread) -> None:
        """The refresher's on-demand read, for `reread` (a key the upstream refused)."""
        self._reread = reread

    async def reread(self) -> bool:
        """Read the secret again now; True when its value changed (worth one more try)."""
        return await self._reread() if self._reread is not None else False

    def __repr__(self) -> str:
        return f"SecretRef({self.reference!r}, '{MASK}')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return True  # configured; its value is checked non-empty when read

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)
