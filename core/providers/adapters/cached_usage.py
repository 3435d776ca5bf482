"""The canonical (OpenAI) usage of a provider that counts cached prompt tokens apart.

Anthropic's `input_tokens` and Bedrock Converse's `inputTokens` exclude cache reads and writes,
while OpenAI's `prompt_tokens` include them: both are added back so cost accounting sees every
prompt token exactly once, and reported again in `prompt_tokens_details` (reads as OpenAI's
`cached_tokens`; writes, all TTLs, as OpenAI's `cache_write_tokens` and as interlock's earlier
extension `cache_creation_tokens`; `cache_creation_1h_tokens` the part of them written for an
hour, which is priced higher). Written once here for every such adapter.
"""

from __future__ import annotations

from core.providers.adapters.base import JSON


def cached_usage(
    uncached: int, read: int, written: int, completion: int, written_1h: int | None = None
) -> JSON:
    """`written_1h`: the 1-hour part of `written` when the provider says it (None: unknown)."""
    prompt = uncached + read + written
    details: JSON = {
        "cached_tokens": read,
        "cache_write_tokens": written,
        "cache_creation_tokens": written,
    }
    if written_1h is not None:
        details["cache_creation_1h_tokens"] = min(written, written_1h)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }
