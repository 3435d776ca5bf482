"""CPU of prompt-cache affinity per fingerprinted request (core.cache.affinity).

    python -m tests.bench.affinity [--requests 20000] [--system-chars 6000] [--turns 2]

Times, in one process, what affinity adds to a marked chat request on a two-target weighted
route: the fingerprints (the mark scan and the hash chained over the tenant and the stable
prefix's messages, marks stripped, with the digests of up to LOOKBACK earlier boundaries; the
longest is reused as prompt_cache_key), the lookup and the record in the in-process registry
(a hit, the same holder: no write), and the ordering with a holder against the ordering
without one. `--turns`: the conversation's length (auto mode's marks). Redis adds one MGET
round trip at plan (and a SET only when the holder changes, the prefix grew, or it nears its
end), not measured here. Reports microseconds per request
(CPU time, median of 5 runs); asserts nothing. Timings never belong in tests.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Coroutine
from typing import Any

from core.cache.affinity import LOOKBACK, Affinities, ticket
from core.pipeline.prompt_cache import longest_mark, place_auto, prefixes
from core.providers.adapters.base import Capabilities, Target
from core.routing.ordering import order
from core.routing.registry import Candidate, Route
from core.routing.signals import Demand, Holder, Signals
from core.spend.usage import UsageSplit
from shared.config import ProviderConfig
from shared.secret import Secret
from tests.bench.policy_rules import per_request
from tests.support.providers import provider_of


def _payload(system_chars: int, turns: int) -> dict[str, Any]:
    """A conversation at its `turns`th user message, marked as auto mode marks it (the
    system prompt, the turn before the last user message)."""
    system = ("You answer in numbers. " * (system_chars // 23 + 1))[:system_chars]
    messages: list[Any] = [{"role": "system", "content": system}]
    for n in range(turns):
        if n:
            messages.append({"role": "assistant", "content": f"{2 * n} is the answer."})
        messages.append({"role": "user", "content": f"What is {n} + {n}?"})
    return place_auto({"model": "m", "messages": messages})


def _route() -> tuple[Route, Target]:
    config = ProviderConfig("p", "mock", None, (Secret("sk-a"),), {}, None, False)
    provider = provider_of(config)
    candidates = tuple(
        Candidate(Target(provider, name, Secret("sk-a")), object(), Capabilities())  # type: ignore[arg-type]
        for name in ("a", "b")
    )
    return Route("m", candidates, True, True, "weighted", (1.0, 1.0)), candidates[1].target


def _drive(coroutine: Coroutine[Any, Any, object]) -> object:
    """A coroutine that never suspends (the in-memory lookup), run without an event loop's
    overhead, as an `await` in the plan stage runs it."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the lookup suspended")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--system-chars", type=int, default=6_000)
    parser.add_argument("--turns", type=int, default=2)
    args = parser.parse_args()
    payload, (route, holder_target) = _payload(args.system_chars, args.turns), _route()
    signals, rng = Signals(), random.Random(1)
    registry = Affinities()
    prints = prefixes(payload, "acme", LOOKBACK)
    stamp = ticket(prints, False)
    registry.served(stamp, "m", holder_target, UsageSplit(cache_read=2000))
    holder = Demand(holder=Holder("p/b", ""))

    def fingerprinting() -> object:
        return longest_mark(payload) and prefixes(payload, "acme", LOOKBACK)

    def registry_use() -> object:
        found = ticket(prints, False)
        _drive(registry.lookup(found, "m"))
        registry.served(found, "m", holder_target, UsageSplit(cache_read=2000))
        return found

    rows = {
        "fingerprint (mark scan + hash)": per_request(fingerprinting, args.requests),
        "registry lookup + record (memory)": per_request(registry_use, args.requests),
        "order, weighted, with a holder": per_request(
            lambda: order(route, signals, rng, holder), args.requests
        ),
        "order, weighted, no holder": per_request(
            lambda: order(route, signals, rng), args.requests
        ),
        "unmarked: the mark scan only": per_request(
            lambda: longest_mark({"messages": payload["messages"][1:]}), args.requests
        ),
    }
    for name, micros in rows.items():
        print(f"{name:40} {micros:8.2f} us")
    added = sum(list(rows.values())[:3]) - rows["order, weighted, no holder"]
    print(f"{'affinity added per marked request':40} {added:8.2f} us")


if __name__ == "__main__":
    main()
