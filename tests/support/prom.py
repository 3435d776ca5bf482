"""Metric families as a scraper sees them: rendered by prometheus_client's exposition and read
back with its official parser, into {(sample name, sorted labels): value}."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from core.observe import exposition
from tests.support import raw

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def page_of(families: Sequence[Metric]) -> str:
    body, _ = exposition.render(exposition.registry_of([lambda: families]), None)
    return body.decode()


def samples(page: str) -> Samples:
    """Every sample of a text-format page, parsed by the official parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def scrape(admin_url: str) -> Samples:
    """A core's /metrics (its admin listener), parsed."""
    answer = raw.request("GET", f"{admin_url}/metrics")
    assert answer.status == 200, answer.status
    return samples(answer.body.decode())


def by_label(found: Samples, name: str, label: str) -> dict[str, int]:
    """One metric's samples keyed by one label's value (for a metric with that one label)."""
    return {
        dict(labels)[label]: int(v)
        for (sample, labels), v in found.items()
        if sample == name and label in dict(labels)
    }
