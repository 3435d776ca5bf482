"""Which targets take prompt-cache marks, and under which limits (core.wire.prompt_cache).

Per provider kind and model, from the providers' documentation: Anthropic takes four
breakpoints on every Claude model, with a minimum cacheable prefix that depends on the model;
Bedrock's Converse takes cache points for the Claude models that cache there (3.5 Haiku, 3.7
Sonnet, the 4.x family and later) and for Amazon Nova (system and messages only, no tools).
A Converse cache point takes a `ttl` ("5m" | "1h": the CachePointBlock API reference,
docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_CachePointBlock.html); the 1-hour
entry is offered for Claude Haiku 4.5, Sonnet 4.5 and Opus 4.5 (and the later Claude models
here), so only those models get a `1h` mark as one; the others cache it for five minutes.
A model name not recognised is served with the common limits (Anthropic) or not at all
(Bedrock, whose older models refuse a cachePoint with a 400).
"""

from __future__ import annotations

import re
from functools import lru_cache

from core.wire.prompt_cache import CacheSupport

# (substring of the model id, minimum tokens), first match wins.
_CLAUDE_MINIMUMS = (
    ("opus-5", 512),
    ("haiku-4-5", 4096),
    ("opus-4-5", 4096),
    ("opus-4-6", 4096),
    ("opus-4-7", 4096),
    ("3-5-haiku", 2048),
    ("3-haiku", 2048),
)
# Claude 3.5 Haiku, 3.7 Sonnet, and every model named family-first (claude-sonnet-4 and later).
_BEDROCK_CLAUDE = re.compile(r"claude-(3-5-haiku|3-7-sonnet|(sonnet|opus|haiku)-\d)")
# Claude 4.5 and later (4-5 .. 4-9, then 5 and up): Bedrock's 1-hour cache points.
_BEDROCK_HOUR = re.compile(r"claude-(sonnet|opus|haiku)-(4-[5-9]|[5-9])")


def _claude_minimum(model: str) -> int:
    lowered = model.lower()
    for needle, minimum in _CLAUDE_MINIMUMS:
        if needle in lowered:
            return minimum
    return 1024


@lru_cache(maxsize=1024)
def anthropic_support(model: str) -> CacheSupport:
    return CacheSupport("markers", 4, _claude_minimum(model))


@lru_cache(maxsize=1024)
def bedrock_support(model: str) -> CacheSupport | None:
    lowered = model.lower()
    if "anthropic.claude" in lowered:
        name = lowered.split("anthropic.", 1)[1]
        if _BEDROCK_CLAUDE.match(name):
            hour = _BEDROCK_HOUR.match(name) is not None
            return CacheSupport("cache_point", 4, _claude_minimum(name), long_ttl=hour)
        return None
    if "amazon.nova" in lowered and "canvas" not in lowered and "reel" not in lowered:
        return CacheSupport("cache_point", 4, 1000, tools=False, long_ttl=False)
    return None
