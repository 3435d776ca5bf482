"""UsageSplit: canonical usage taken apart the way providers bill it."""

from __future__ import annotations

from core.spend.cost import Cost
from core.spend.usage import UsageSplit


def test_cached_reads_and_writes_leave_the_uncached_input() -> None:
    usage = {
        "prompt_tokens": 1500,
        "completion_tokens": 300,
        "prompt_tokens_details": {
            "cached_tokens": 1000,
            "cache_creation_tokens": 300,
            "cache_creation_1h_tokens": 100,
        },
        "completion_tokens_details": {"reasoning_tokens": 120},
    }
    split = UsageSplit.from_usage(usage)
    assert split == UsageSplit(
        input=200,
        cache_read=1000,
        cache_write_5m=200,
        cache_write_1h=100,
        output=300,
        reasoning=120,
    )
    assert split.input_total == 1500


def test_missing_or_malformed_counts_are_zero_and_estimates_are_marked() -> None:
    assert UsageSplit.from_usage(None) == UsageSplit()
    odd = {"prompt_tokens": "12", "completion_tokens": -3, "prompt_tokens_details": 5}
    assert UsageSplit.from_usage(odd) == UsageSplit()
    assert UsageSplit.from_usage({"prompt_tokens": 7, "estimated": True}).estimated


def test_cost_prints_exact_dollars() -> None:
    assert Cost(123, None).dollars == "0.000123"
    assert Cost(12_345_678, "p@2026-01-01").dollars == "12.345678"
