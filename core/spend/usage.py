"""Token usage split the way providers bill it: the seam between the adapters' canonical usage
(OpenAI's shape, with interlock's cache-write extension) and everything that prices, budgets or
records a request (core.spend.cost, core.budgets, core.ledger).

Canonical usage counts every input token in `prompt_tokens` (cached reads and cache writes
included, as OpenAI does); the split takes them apart, so each part is priced once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_WORD = 32  # an image quality or size longer than this is not one


@dataclass(frozen=True, slots=True)
class UsageSplit:
    input: int = 0  # uncached input tokens
    cache_read: int = 0
    cache_write_5m: int = 0  # Anthropic's default cache TTL (and Bedrock's cache writes)
    cache_write_1h: int = 0
    output: int = 0  # every output token, reasoning included
    reasoning: int = 0  # the part of `output` spent reasoning (priced apart only if listed)
    estimated: bool = False  # the gateway's estimate (a cut stream, a provider that reports none)
    # The media units, recorded in the ledger whatever prices them: images generated
    # (/v1/images/generations), audio transcribed in milliseconds (/v1/audio/transcriptions),
    # characters spoken (/v1/audio/speech).
    images: int = 0
    audio_ms: int = 0
    characters: int = 0
    # What an image was billed as, in the provider's own words ("hd", "premium"; "1024x1792"):
    # per-image prices differ by both (core.spend.images). Empty when unknown. Not stored.
    image_quality: str = ""
    image_size: str = ""

    @property
    def input_total(self) -> int:
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h

    @classmethod
    def from_usage(cls, usage: dict[str, Any] | None) -> UsageSplit:
        """The split of a canonical usage object; zeros when there is none."""
        if not usage:
            return cls()
        prompt = _count(usage.get("prompt_tokens"))
        details = usage.get("prompt_tokens_details")
        details = details if isinstance(details, dict) else {}
        read = _count(details.get("cached_tokens"))
        write_1h = _count(details.get("cache_creation_1h_tokens"))
        write_5m = max(0, _cache_writes(details) - write_1h)
        output_details = usage.get("completion_tokens_details")
        output_details = output_details if isinstance(output_details, dict) else {}
        return cls(
            input=max(0, prompt - read - write_5m - write_1h),
            cache_read=read,
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            output=_count(usage.get("completion_tokens")),
            reasoning=_count(output_details.get("reasoning_tokens")),
            estimated=bool(usage.get("estimated")),
            images=_count(usage.get("images")),
            audio_ms=_milliseconds(usage.get("seconds")),
            characters=_count(usage.get("characters")),
            image_quality=_word(usage.get("image_quality")),
            image_size=_word(usage.get("image_size")),
        )


def _count(value: object) -> int:
    return value if type(value) is int and value > 0 else 0


def _word(value: object) -> str:
    """A quality or size as a price key: short, lower case, else "" (it may come from a
    provider's answer, so it is bounded before anything keeps it)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_WORD:
        return ""
    return value.strip().lower()


def _milliseconds(value: object) -> int:
    """Seconds of audio (a number the media APIs put in their usage) as whole milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return 0
    return min(round(value * 1000), 10**12)


def _cache_writes(details: dict[str, Any]) -> int:
    """Prompt tokens written to the cache: interlock's extension (every provider it translates
    reports it), else OpenAI's own `cache_write_tokens` (a host that charges for writes)."""
    if "cache_creation_tokens" in details:
        return _count(details.get("cache_creation_tokens"))
    return _count(details.get("cache_write_tokens"))
