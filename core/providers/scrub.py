"""Upstream error text -> what a tenant may see; the original goes to the operator's log.

Providers' error messages are written for the key's owner, not for the gateway's tenants: they
can echo the key, a signed URL, an internal host behind an OpenAI-compatible proxy, or a stack
trace. Every upstream error passes through `sanitize` once, wherever it was parsed (a non-stream
body, a mid-stream error event, a passthrough relay), before any tenant can see it:

- status and failure class are the gateway's own (already mapped by the adapter);
- `code` is kept only from a known set, `param` only when it looks like a field path, `type`
  only when it is one of the API's documented error types;
- the message is a fixed, gateway-written sentence for failures that are the operator's or the
  provider's business (rate limits, quota, outages, timeouts, credentials), and the provider's
  own words, scrubbed, for failures the tenant can fix (invalid request, context length,
  content filter): anything that looks like a credential or an internal address is replaced,
  and so is any of the target's own keys, verbatim.

The fixed sentences are one table, shared.errors.withheld_message; the adapters' factory
(shared.errors.upstream_error) applies its credentials sentence as an error is made, so an
auth failure's words never exist in a ProviderError, even before this module sees it.

The original text is logged at WARNING with the request id (and the target's keys masked), so
the operator keeps what the tenant is not shown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from core.observe import context as requestctx
from core.providers.adapters.base import Target
from core.resilience.key_pools import key_id
from shared.errors import OVERLOADED as OVERLOADED
from shared.errors import ProviderError, withheld_message

log = logging.getLogger("interlock.upstream")

MAX_MESSAGE_CHARS = 1000  # a tenant-facing message; longer provider text is cut
MAX_LOGGED_CHARS = 4000  # the operator's copy of the original
# Scrubbing is linear but not free (about 2.5 ms per 4,000 characters): longer text is cut at a
# word boundary first, so an upstream echoing a huge body cannot stall the event loop.
MAX_SCRUBBED_CHARS = 4000

KNOWN_CODES = frozenset(
    {
        # OpenAI and the compatible hosts
        "invalid_value",
        "invalid_type",
        "invalid_request_error",
        "missing_required_parameter",
        "unknown_parameter",
        "unsupported_parameter",
        "unsupported_value",
        "integer_below_min_value",
        "integer_above_max_value",
        "decimal_below_min_value",
        "decimal_above_max_value",
        "string_above_max_length",
        "array_above_max_length",
        "empty_array",
        "invalid_image",
        "invalid_image_url",
        "image_parse_error",
        "model_not_found",
        "context_length_exceeded",
        "content_filter",
        "content_policy_violation",
        "rate_limit_exceeded",
        "insufficient_quota",
        "server_error",
        # the gateway's own (shared.errors.openai_code_for)
        "upstream_timeout",
        "upstream_unavailable",
        "upstream_auth_failed",
        # Google RPC status names, lower-cased by the Gemini adapter
        "invalid_argument",
        "failed_precondition",
        "out_of_range",
        "not_found",
        "resource_exhausted",
        "unavailable",
        "internal",
        "deadline_exceeded",
        "cancelled",
        "aborted",
        "unimplemented",
        "unknown",
    }
)
KNOWN_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
        "server_error",
        "insufficient_quota",
    }
)
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]-]{0,127}$")

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Labels of a generic FQDN start with a letter, so field paths like messages.0.content survive.
_NAME_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PRIVATE_SUFFIXES = (
    r"internal|local|localdomain|lan|corp|intranet|intra|private|home\.arpa|svc|cluster|consul"
)
# Order matters: whole URLs and key=value pairs before the bare shapes they contain.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b[a-z][a-z0-9+.-]{1,15}://[^\s'\"<>]+"), "[url]"),
    (
        re.compile(
            r"(?i)\b(api[_-]?key|access[_-]?key(?:[_-]?id)?|secret(?:[_-]?access[_-]?key)?|"
            r"session[_-]?token|token|password|passwd|auth(?:orization)?|signature|"
            r"credential|key)(['\"]?\s*[=:]\s*)(?:bearer\s+)?['\"]?[^\s'\",;&)]+"
        ),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), "[redacted-key]"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"), "[redacted-key]"),
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{12,}\b"), "[redacted-key]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted-token]"),
    (re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}"), "[redacted-token]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "[address]"),
    (
        re.compile(
            r"(?i)\[?(?<![\w:])(?=[0-9a-f:]*[0-9a-f])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}"
            r"(?:\](?::\d{1,5})?)?"
        ),
        "[address]",
    ),
    (
        re.compile(rf"(?i)(?<![\w.-])(?:{_HOST_LABEL}\.)+(?:{_PRIVATE_SUFFIXES})\b(?::\d{{1,5}})?"),
        "[host]",
    ),
    (
        re.compile(rf"(?i)(?<![\w.-])(?:{_NAME_LABEL}\.){{2,}}[a-z]{{2,24}}\b(?::\d{{1,5}})?"),
        "[host]",
    ),
    (re.compile(rf"(?i)(?<![\w.-])(?:localhost|{_HOST_LABEL}):\d{{2,5}}\b"), "[address]"),
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and anything credential- or address-shaped replaced."""
    if len(text) > MAX_SCRUBBED_CHARS:
        # Drop the last, possibly cut, word: half a key would no longer match its pattern.
        text = text[:MAX_SCRUBBED_CHARS].rsplit(None, 1)[0] + " ..."
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "[redacted-key]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "..."
    return text


def _masked_for_log(text: str, target: Target | None) -> str:
    """The original for the operator, minus the target's own keys (logs never hold keys):
    every value a key has now (a referenced key's recent values too, during a rotation)."""
    if target is not None:
        for key in target.provider.api_keys:
            for value in key.accepted():
                if len(value) >= 4:
                    text = text.replace(value, f"[key {key_id(key)}]")
    return text[:MAX_LOGGED_CHARS]


def _keep_known_fields(error: ProviderError) -> None:
    """A provider's code, param and type reach the tenant only when they are known shapes."""
    if error.code is not None and error.code not in KNOWN_CODES:
        error.code = None
    if error.param is not None and not _PARAM.match(error.param):
        error.param = None
    if error.type is not None and error.type not in KNOWN_TYPES:
        error.type = None


def sanitize(error: ProviderError, target: Target | None) -> ProviderError:
    """Make an upstream error safe to show a tenant (in place; idempotent) and keep the
    original in the operator's log. Returns the same error, for `raise sanitize(e, t)`."""
    if error.sanitized:
        return error
    error.sanitized = True
    original = error.message
    keys = [v for k in target.provider.api_keys for v in k.accepted()] if target else []
    if error.upstream_status is None:
        # Written by the gateway (transport failures, adapters' own checks): only a scrub,
        # since some quote a tenant-chosen model name.
        error.message = scrub(original, keys)
    else:
        error.message = withheld_message(error.failure_class, error.upstream_status) or scrub(
            original, keys
        )
        _keep_known_fields(error)
    error.args = (error.message,)
    if error.message != original:
        context = requestctx.current()
        log.warning(
            "upstream error not relayed verbatim: request_id=%s target=%s upstream_status=%s "
            "class=%s original=%r",
            context.request_id if context else "-",
            target.health_label if target is not None else "-",
            error.upstream_status,
            error.failure_class,
            _masked_for_log(original, target),
        )
    return error
