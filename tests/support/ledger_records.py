"""LedgerRecords for the ledger's tests, and the totals they should add up to (computed in
Python from the records themselves, never through a store)."""

from __future__ import annotations

import random
from collections.abc import Iterable

from core.ledger.periods import GRAINS
from core.ledger.record import LedgerRecord, Tags
from core.ledger.store import TIME_BUCKETS, UsageQuery
from core.spend.usage import UsageSplit

DAY = 86400
T0 = 1_780_000_000 // DAY * DAY  # a UTC midnight in 2026


def record(
    request_id: str,
    ts: float,
    tenant: str = "acme",
    tags: Tags = (),
    model: str = "gpt-x",
    provider: str | None = "openai",
    tokens: int = 10,
    cost: int = 100,
    media: tuple[int, int, int] = (0, 0, 0),
) -> LedgerRecord:
    """`media`: images, milliseconds of audio, characters."""
    images, audio_ms, characters = media
    return LedgerRecord(
        request_id=request_id,
        ts=ts,
        tenant=tenant,
        tags=tags,
        api="openai",
        requested_model=model,
        served_model=None if provider is None else f"{model}-2026",
        provider=provider,
        key_id=None if provider is None else "k_0123abcd",
        usage=UsageSplit(
            input=tokens,
            cache_read=tokens // 2,
            cache_write_5m=1,
            output=tokens,
            images=images,
            audio_ms=audio_ms,
            characters=characters,
        ),
        cost_micros=cost,
        price_version=None,
        unpriced=True,
        outcome="ok" if provider else "timeout",
        attempts=1,
        latency_ms=12.5,
        ttft_ms=None,
    )


def random_records(n: int, seed: int = 7, days: int = 3) -> list[LedgerRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tags: list[tuple[str, str]] = []
        if rng.random() < 0.7:
            tags.append(("project", rng.choice(["search", "chat", "ads"])))
        if rng.random() < 0.5:
            tags.append(("env", rng.choice(["prod", "dev"])))
        out.append(
            record(
                f"req-{seed}-{i}",
                T0 + rng.random() * days * DAY,
                tenant=rng.choice(["acme", "acme", "globex"]),
                tags=tuple(sorted(tags)),
                model=rng.choice(["gpt-x", "claude-y", "mistral-z"]),
                provider=rng.choice(["openai", "anthropic", None]),
                tokens=rng.randrange(0, 5000),
                cost=rng.randrange(0, 100_000),
                media=_media(rng),
            )
        )
    return out


def _media(rng: random.Random) -> tuple[int, int, int]:
    """Some records are media requests: images, audio or speech (a third each), else none."""
    kind = rng.randrange(6)
    return (
        rng.randrange(1, 11) if kind == 0 else 0,
        rng.randrange(1, 3_600_000) if kind == 1 else 0,
        rng.randrange(1, 4097) if kind == 2 else 0,
    )


def _value(r: LedgerRecord, name: str) -> str | None:
    if name in TIME_BUCKETS:
        seconds = GRAINS[name]
        return str(int(r.ts // seconds) * seconds)
    if name.startswith("tag:"):
        return dict(r.tags).get(name[4:])
    return {
        "tenant": r.tenant,
        "model": r.requested_model,
        "provider": r.provider or "",
        "served_model": r.served_model or "",
    }[name]


def expected(records: Iterable[LedgerRecord], q: UsageQuery) -> dict[tuple[str, ...], list[int]]:
    """Group -> [requests, input, cache reads, cache writes, output, cost, images, audio ms,
    characters] over the raw records."""
    out: dict[tuple[str, ...], list[int]] = {}
    for r in records:
        if not q.start <= r.ts < q.end or (q.tenant is not None and r.tenant != q.tenant):
            continue
        if any(_value(r, k) != v for k, v in q.filters.items()):
            continue
        group = tuple(_value(r, g) for g in q.group_by)
        if None in group:
            continue  # a record without the grouped tag has no row in that grouping
        u = r.usage
        sums = out.setdefault(group, [0] * 9)  # type: ignore[arg-type]
        values = (1, u.input, u.cache_read, u.cache_write_5m + u.cache_write_1h, u.output)
        media = (u.images, u.audio_ms, u.characters)
        for i, v in enumerate((*values, r.cost_micros, *media)):
            sums[i] += v
    return out
