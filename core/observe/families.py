"""Metric families for what the core already counts (a gauge, a counter per label), built at
scrape time and rendered by prometheus_client: the exposition format is the library's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def gauge(name: str, help_text: str, value: float) -> Metric:
    return GaugeMetricFamily(name, help_text, value=value)


def counter(name: str, help_text: str, value: float) -> Metric:
    return CounterMetricFamily(name, help_text, value=value)


Samples = Iterable[tuple[tuple[str, ...], float]]  # (label values, value) pairs: dict.items()


def gauges(name: str, help_text: str, labels: Iterable[str], samples: Samples) -> Metric:
    family = GaugeMetricFamily(name, help_text, labels=list(labels))
    for key, value in sorted(samples):
        family.add_metric(list(key), value)
    return family


def counters(name: str, help_text: str, labels: Iterable[str], samples: Samples) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=list(labels))
    for key, value in sorted(samples):
        family.add_metric(list(key), value)
    return family


def by(label_values: Mapping[str, float]) -> Samples:
    """One-label samples from a plain {label value: number} dict."""
    return [((key,), value) for key, value in label_values.items()]
