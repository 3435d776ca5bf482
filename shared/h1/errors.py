"""What a request through shared.h1 can fail with: one small hierarchy callers map to their own
errors (the edge to Unsent/Sent, the core to ProviderError). Every one of them means the
connection it happened on is closed, never pooled again."""

from __future__ import annotations


class H1Error(Exception):
    """Any failure of one HTTP/1.1 exchange."""


class ConnectFailed(H1Error):
    """No connection was made (refused, unreachable, name not resolved, TLS handshake failed):
    the peer cannot have seen a byte of the request."""


class Disconnected(H1Error):
    """The connection was lost. `responded` says whether a response head had arrived first: a
    loss before it (a pooled connection the peer was closing, a reset) is the retryable case;
    one after it is a body cut short."""

    def __init__(self, responded: bool) -> None:
        super().__init__("lost mid-response" if responded else "lost before any response")
        self.responded = responded


class H1Timeout(H1Error, TimeoutError):
    """A bound ran out: `kind` is "connect" or "read" (the silence between two reads)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind} timeout")
        self.kind = kind


class ProtocolError(H1Error):
    """The peer's bytes are not HTTP/1.1 as this client reads it (bad status line or header,
    bad chunk framing, a head too large, bytes where none were expected)."""


class BodyFailed(H1Error):
    """The request body's source raised while it was being sent (its exception is the cause):
    the peer saw a body cut short."""


class BodyTooLarge(H1Error):
    """The response body is larger than the cap the caller read it with."""
