"""Which core pool serves a request: first matching route by model and tenant, else default."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from shared.config_edge import EdgeConfig
from shared.patterns import compile_patterns


class PoolRouter:
    def __init__(self, edge: EdgeConfig) -> None:
        self._routes: list[tuple[Callable[[str], bool], frozenset[str], str]] = [
            (compile_patterns(r.models), frozenset(r.tenants), r.pool) for r in edge.routes
        ]
        self._pools = edge.pools
        self._default = edge.default_pool
        self._counters: dict[str, Iterator[int]] = {name: itertools.count() for name in edge.pools}

    def pool_for(self, model: str | None, tenant: str) -> str:
        if model is not None:
            for matches, tenants, pool in self._routes:
                if (not tenants or tenant in tenants) and matches(model):
                    return pool
        return self._default

    def urls(self, pool: str) -> list[str]:
        """The pool's core URLs, rotated round-robin; callers try them in order."""
        urls = self._pools[pool]
        if len(urls) == 1:
            return list(urls)
        start = next(self._counters[pool]) % len(urls)
        return list(urls[start:] + urls[:start])
