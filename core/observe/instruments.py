"""Counters and histograms recorded on the request path, exposed through prometheus_client.

prometheus_client's own instruments take a lock, validate labels and build a child on every
`labels()` call: a few microseconds each, several times per request. Here a series is a list
looked up by its tuple of label values (a dict get, no lock: the event loop is one thread)
and the client library only renders them, at scrape time, as metric families (`families`), so
the exposition format is the library's, never hand-built.

Label values come from configuration (core.observe.request_metrics maps everything else to a
fixed value), and each instrument is bounded all the same: past MAX_SERIES label sets, new
ones are counted under OVERFLOW values.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

MAX_SERIES = 10_000  # label sets per instrument
OVERFLOW = "_other"


class Counter:
    __slots__ = ("_values", "help", "labels", "name")

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}

    def add(self, key: tuple[str, ...], amount: float = 1) -> None:
        values = self._values
        if key not in values and len(values) >= MAX_SERIES:
            key = (OVERFLOW,) * len(self.labels)
        values[key] = values.get(key, 0) + amount

    def value(self, key: tuple[str, ...]) -> float:
        return self._values.get(key, 0)

    def series(self) -> list[tuple[tuple[str, ...], float]]:
        return list(self._values.items())

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for key, value in sorted(self._values.items()):
            family.add_metric(key, value)
        return family


@dataclass(frozen=True, slots=True)
class HistogramState:
    counts: list[int]  # per bucket, the last one above every bound
    min: float
    max: float
    sum: float


class Histogram:
    """Cumulative buckets at scrape time; per observation one bisect and two increments."""

    __slots__ = ("_series", "bounds", "help", "labels", "name")

    def __init__(
        self, name: str, help_text: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self.bounds = tuple(bounds)
        # per label set: a count per bucket (the last one: above every bound), then the
        # smallest and largest values seen (OpenTelemetry's data points carry them), the sum
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_SERIES:
                key = (OVERFLOW,) * len(self.labels)
                series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.bounds) + 4)
                series[-3] = series[-2] = value
        series[bisect_left(self.bounds, value)] += 1
        if value < series[-3]:
            series[-3] = value
        elif value > series[-2]:
            series[-2] = value
        series[-1] += value

    def count(self, key: tuple[str, ...]) -> int:
        series = self._series.get(key)
        return int(sum(series[:-3])) if series is not None else 0

    def series(self) -> list[tuple[tuple[str, ...], HistogramState]]:
        """Each label set's bucket counts (not cumulative), min, max and sum."""
        return [
            (key, HistogramState([int(c) for c in v[:-3]], v[-3], v[-2], v[-1]))
            for key, v in self._series.items()
        ]

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.help, labels=self.labels)
        for key, series in sorted(self._series.items()):
            running, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), series[:-3], strict=True):
                running += count
                buckets.append((_bound(bound), running))
            family.add_metric(list(key), buckets, series[-1])
        return family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
