"""CPU of the routing policy per request: ten rules, the request's facts and the decision.

    python -m tests.bench.policy_rules [--requests 200000]

Builds the policy as the core does (config -> registry -> compiled rules) and times, in one
process, what resolve adds for a chat request: `facts_of` (the request's facts) and
`Policy.decide` over ten rules, in the worst case (no rule matches: all ten are evaluated)
and with each kind of fact the rules can read. Reports microseconds per request (CPU time,
median of 5 runs); asserts nothing. Timings never belong in tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from core.api.identity import Caller
from core.limits.admission import prompt_estimate
from core.pipeline.exchange import Exchange
from core.pipeline.route_policy import facts_of
from core.routing.policy.rules import Policy, build_policy
from core.routing.registry import ModelRegistry
from shared.config import parse_config
from tests.support.pipeline import FakeApi, FakeRequest
from tests.support.providers import providers_of

# Ten rules, none of which matches the benchmark's request: every one is evaluated.
RULES: list[dict[str, Any]] = [
    {"id": "long", "when": {"prompt_tokens": {"gt": 8000}}, "route": "long"},
    {"id": "code", "when": {"content": {"keywords": ["def ", "class ", "```"]}}, "model": "m"},
    {"id": "rt", "when": {"header.x-priority": "realtime"}, "latency_ceiling_ms": 200},
    {"id": "cheap", "when": {"tags.kind": {"in": ["classify", "extract"]}}, "model": "m"},
    {"id": "free", "when": {"tier": "free", "api": {"in": ["chat", "messages"]}}, "model": "m"},
    {"id": "tools", "when": {"tools": True, "model": {"glob": "gpt-*"}}, "route": "long"},
    {"id": "pressure", "when": {"budget": {"name": "b", "above": 80}}, "model": "m"},
    # Reads the clock, never holds (whatever the hour the bench runs at).
    {
        "id": "never",
        "when": {"any": [{"hour": {"gt": 23}}, {"time": {"lt": "00:00"}}]},
        "model": "m",
    },
    {"id": "big", "when": {"max_tokens": {"gt": 16000}}, "cap": {"max_tokens": 16000}},
    {"id": "banned", "when": {"tenant": {"regex": "^blocked-"}}, "refuse": "no"},
]


class Gauge:
    def used_share(self, name: str) -> float | None:
        return 0.5


def policy() -> tuple[Policy, ModelRegistry]:
    raw = {
        "providers": {"mock": {"kind": "mock"}},
        "models": {"m": {"provider": "mock"}},
        "budgets": {"b": {"limit": "10.00"}},
        "routing": {
            "headers": ["x-priority"],
            "content_max_chars": 2000,
            "routes": {"long": {"targets": [{"provider": "mock", "model": "l"}]}},
            "rules": RULES,
        },
    }
    config = parse_config(raw, "bench", {})
    registry = ModelRegistry(config, providers_of(config))
    built = build_policy(config.routing, registry.named, lambda m: True)
    built.attach(Gauge())
    return built, registry


def exchange() -> Any:
    """A paid-tier chat request with a 2,000-character prompt, a header and two tags."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"x-priority", b"batch"), (b"content-type", b"application/json")],
    }
    caller = Caller("acme", "paid", "req_1", lambda m: True, (("kind", "chat"), ("team", "a")))
    x: Exchange[Any, Any, Any] = Exchange(FakeApi(), None, Request(scope), caller, b"")  # type: ignore[arg-type]
    x.payload = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are helpful. " * 20},
            {"role": "user", "content": "Summarise this text please. " * 60},
        ],
        "max_tokens": 800,
    }
    x.request = FakeRequest("m", False)
    return x


def per_request(work: Callable[[], object], requests: int) -> float:
    """Microseconds of CPU per call, median of 5 runs."""
    runs = []
    for _ in range(5):
        start = time.process_time_ns()
        for _ in range(requests):
            work()
        runs.append((time.process_time_ns() - start) / requests / 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--per-rule", action="store_true", help="each rule alone, with facts")
    args = parser.parse_args()
    built, _ = policy()
    setting = built.setting
    x = exchange()  # facts_of makes new Facts each time: lazy facts are computed afresh
    assert built.decide(facts_of(x, setting)) is None  # all ten evaluated
    facts_only = per_request(lambda: facts_of(x, setting), args.requests)
    decide = per_request(lambda: built.decide(facts_of(x, setting)), args.requests)
    prompt = per_request(lambda: prompt_estimate(x.payload), args.requests)
    print(f"facts of a request:                       {facts_only:6.2f} us")
    print(f"facts + ten rules (none matches):         {decide:6.2f} us")
    print(f"  of which the prompt estimate (1 rule):  {prompt:6.2f} us")
    for rule in built.rules if args.per_rule else ():
        matches = rule.matches
        alone = per_request(lambda: matches(facts_of(x, setting)), args.requests // 5)  # noqa: B023
        print(f"  facts + rule {rule.id!r:<12}                {alone:6.2f} us")


if __name__ == "__main__":
    main()
