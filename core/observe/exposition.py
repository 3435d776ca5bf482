"""The core's /metrics page: every source's metric families, collected at scrape time into one
prometheus_client registry and rendered by the library (the text format, content negotiation
for OpenMetrics), never by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

Source = Callable[[], Sequence[Metric]]


class Scrape:
    """A collector over the sources (each returns its families when asked)."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self._sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source()


def registry_of(sources: Sequence[Source]) -> CollectorRegistry:
    """A registry of this process's core only (not the library's global one, which would also
    collect the interpreter's default collectors and every other app built in the process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Scrape(sources))
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The page and its content type, in the format the scraper asked for."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
