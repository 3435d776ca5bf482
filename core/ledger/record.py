"""One ledger record per request outcome: what the ledger stores and the usage API reads.

Never any prompt or completion content, never a key (only the key's id).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.spend.usage import UsageSplit

Tags = tuple[tuple[str, str], ...]  # sorted (key, value) pairs, validated and bounded


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    request_id: str
    ts: float  # unix seconds, when the outcome was known
    tenant: str
    tags: Tags
    api: str  # "openai" (chat, embeddings) or "anthropic" (messages)
    requested_model: str  # bounded (core.observe.usagelog.bounded_name)
    served_model: str | None
    provider: str | None
    key_id: str | None  # a stable id of the provider key (a digest), never the key
    usage: UsageSplit
    cost_micros: int
    price_version: str | None
    unpriced: bool
    outcome: str  # ok, cancelled, cut:<class>, cache_hit, coalesced, or the failure class
    attempts: int
    latency_ms: float
    ttft_ms: float | None  # streams: time to the first chunk
    # A response-cache hit (outcome cache_hit) or a request answered by another's upstream
    # call (coalesced): the tokens it saved, kept apart from `usage` (which is what was
    # billed: nothing). Zero for every other outcome.
    saved_input: int = 0
    saved_output: int = 0
    # The W3C trace id the request ran under (32 hex digits): a complaint about one record
    # leads to its trace. None for records written before the column existed.
    trace_id: str | None = None
