"""Cheap token estimates for the mock provider and pre-call reservations.

Not a tokenizer: about four characters a token for English text, which is what the
reservation step needs (it settles from the provider's real usage afterwards).
"""

from __future__ import annotations

from typing import Any

PER_MESSAGE_OVERHEAD = 4
# Bounds the gateway itself relies on, refused above with a 400 (core.api.validate) and clamped to
# in every estimate (core.limits.admission), so no request can reserve an absurd number of tokens:
# - output tokens a request may ask for: the largest output any model offers today is about
#   128k; a million leaves room for growth while an estimate stays a sane integer;
MAX_OUTPUT_TOKENS = 1_000_000
# - choices per request (`n`): OpenAI's own limit;
MAX_CHOICES = 128
# - one reservation, whatever the request: the largest context windows today are 1-2M tokens.
#   A reservation settles to real usage afterwards; the ceiling only stops one request from
#   draining a tenant's or a shared provider key's token budget for everyone else.
MAX_RESERVATION_TOKENS = 2_000_000
# - one token count an upstream reports: far above any real usage, far below what sums of
#   counts need to stay a 64-bit integer (the JSON encoders' limit).
MAX_REPORTED_TOKENS = 10**12


def reported_tokens(value: Any) -> int | None:
    """An upstream's token count (an integer, or a float with no fraction as some send) from 0
    to MAX_REPORTED_TOKENS; None when absent, another type, or absurd, so that sums and the
    usage log stay sane."""
    if type(value) is float and value.is_integer():
        value = int(value)
    return value if type(value) is int and 0 <= value <= MAX_REPORTED_TOKENS else None


def token_count(mapping: Any, key: str) -> int:
    """`reported_tokens` of `mapping[key]`, 0 when there is none."""
    value = reported_tokens(mapping.get(key)) if isinstance(mapping, dict) else None
    return value or 0


def estimate_chars(chars: int) -> int:
    """Tokens for `chars` characters of text (no need to hold the text itself)."""
    return max(1, (chars + 3) // 4) if chars > 0 else 0


def estimate_text(text: str) -> int:
    return estimate_chars(len(text))


def estimate_messages(messages: list[Any]) -> int:
    total = 3
    for message in messages:
        total += PER_MESSAGE_OVERHEAD
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_text(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    if isinstance(part.get("text"), str):
                        total += estimate_text(part["text"])
                    elif part.get("type") == "image_url":
                        total += 85
    return total
