"""The one guard between an upstream's bytes and the gateway: parsers only raise ProviderError.

Decoders (core.wire) and parsers (the adapters' `parse_response`, stream parsers and
`parse_error`, the embeddings translators, the messages passthrough) check the shapes they rely
on and raise `invalid_upstream` for data that is not the wire format. This is the backstop for
a shape one of them missed: any other exception raised while parsing becomes the same
`invalid upstream response` ProviderError (502, TRANSIENT: it fails over before the first byte
and ends a stream with an error event after it), never a 500 that loses the usage line and
breaks the connection other requests share. The crash is the provider's data meeting a gap in a
parser, so the operator gets the exception's type and where it was raised, counted per target
for /metrics, but never its message: that can quote the upstream's content.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping

from core.providers.adapters.base import ProviderError, Target
from shared.errors import failure_class_for_status, invalid_upstream, upstream_error

log = logging.getLogger("interlock.upstream")

INVALID_RESPONSE = "an invalid response"
ErrorParser = Callable[[int, Mapping[str, str], bytes], ProviderError]

# Parser crashes by target health label: configured names only (`<provider>/*` for tenant-named
# models), so the map is bounded by the config.
_crashes: dict[str, int] = {}


def crash_counts() -> dict[str, int]:
    return dict(_crashes)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "-"
    frame = frames[-1]
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} ({frame.name})"


def parser_crash(exc: BaseException, target: Target | None) -> None:
    """Count and log a parser's crash on upstream data, without the data."""
    label = target.health_label if target is not None else "-"
    _crashes[label] = _crashes.get(label, 0) + 1
    log.warning(
        "invalid upstream response: target=%s %s at %s", label, type(exc).__name__, _where(exc)
    )


@contextlib.contextmanager
def parsing(target: Target | None) -> Iterator[None]:
    """Around any code that reads upstream data: only ProviderError leaves it."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        parser_crash(exc, target)
        raise invalid_upstream(INVALID_RESPONSE) from None


def guarded_error_parser(parse_error: ErrorParser, target: Target | None = None) -> ErrorParser:
    """`parse_error` that always returns: an error body it cannot read still leaves the HTTP
    status, which alone decides the failure class (a 429 stays a rate limit)."""

    def parse(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        try:
            return parse_error(status, headers, body)
        except Exception as exc:
            parser_crash(exc, target)
            return upstream_error(status, failure_class_for_status(status), "", {})

    return parse
