"""Rules that can never match: an earlier rule matches every request they would (first match
wins), found by construction of the conditions, for `interlock check-config`.

A later rule B is shadowed by an earlier rule A when B's condition implies A's: A has no
condition; or every test of A (its top-level `all`) is implied by some test of B. One test
implies another when they are equal, or they read the same field and one's accepted values
are within the other's: `eq: x` within `in: [x, y]`, `in` within a larger `in`, `eq`/`in`
within `ne`/`not_in` of other values, `gt: 9000` within `gt: 8000` (integer ranges, `time`
too), `budget above: 90` within `above: 80` of the same budget, an `any` whose every branch
implies the test, or a test that implies one branch of an `any`. This finds the common
mistakes (a catch-all too early, the same conditions twice, a narrower rule after a broader
one); it is sound (what it reports can never match) but does not find every dead rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.config_conditions import FIELDS, INTEGER, TIME, AllOf, AnyOf, Cond, Not, Test
from shared.config_routing import RuleConfig

_RANGED = frozenset(f for f, kind in FIELDS.items() if kind in (INTEGER, TIME))


@dataclass(frozen=True)
class Shadowed:
    index: int
    rule: str
    by_index: int
    by_rule: str

    def __str__(self) -> str:
        return (
            f"routing.rules[{self.index}] (rule {self.rule!r}) can never match: "
            f"routing.rules[{self.by_index}] (rule {self.by_rule!r}) before it matches "
            "every request it would"
        )


def shadowed_rules(rules: tuple[RuleConfig, ...]) -> list[Shadowed]:
    """Each rule that an earlier one always pre-empts (the first such earlier rule)."""
    found = []
    for j, later in enumerate(rules):
        for i in range(j):
            if implies(later.when, rules[i].when):
                found.append(Shadowed(j, later.id, i, rules[i].id))
                break
    return found


def implies(a: Cond | None, b: Cond | None) -> bool:
    """Every request that satisfies `a` satisfies `b` (None: no condition, always true)."""
    if b is None:
        return True
    if a is None:
        return False
    held = _conjuncts(a)
    return all(any(_atom_implies(x, y) for x in held) for y in _conjuncts(b))


def _conjuncts(cond: Cond) -> list[Cond]:
    if isinstance(cond, AllOf):
        return [part for item in cond.items for part in _conjuncts(item)]
    return [cond]


def _atom_implies(a: Cond, b: Cond) -> bool:
    if a == b:
        return True
    if isinstance(b, AnyOf) and any(implies(a, item) for item in b.items):
        return True
    if isinstance(a, AnyOf):
        return all(implies(item, b) for item in a.items)
    if isinstance(a, AllOf):
        return implies(a, b)
    if isinstance(a, Test) and isinstance(b, Test) and a.field == b.field:
        return _test_implies(a, b)
    return isinstance(a, Not) and isinstance(b, Not) and implies(b.item, a.item)


def _test_implies(a: Test, b: Test) -> bool:
    if a.field == "budget":
        (name_a, pa), (name_b, pb) = a.value, b.value
        if name_a != name_b or a.op != b.op:
            return False
        return bool(pa >= pb) if a.op == "above" else bool(pa <= pb)
    accepted = _values(a)
    if accepted is not None:
        if b.op in ("eq", "in"):
            return accepted <= _values_of(b)
        if b.op in ("ne", "not_in"):
            return not accepted & _values_of(b)
    if a.op in ("ne", "not_in") and b.op in ("ne", "not_in"):
        return _values_of(b) <= _values_of(a)
    if a.field in _RANGED:
        inner, outer = _range(a), _range(b)
        return (
            inner is not None and outer is not None and outer[0] <= inner[0] <= inner[1] <= outer[1]
        )
    return False


def _values(test: Test) -> frozenset[object] | None:
    """The values a test accepts when it names them (eq, in), else None."""
    if test.op == "eq":
        return frozenset((test.value,))
    if test.op == "in":
        return frozenset(test.value)
    return None


def _values_of(test: Test) -> frozenset[object]:
    return frozenset(test.value) if test.op in ("in", "not_in") else frozenset((test.value,))


def _range(test: Test) -> tuple[float, float] | None:
    """The integers an ordering test accepts, as a closed range."""
    v = test.value
    ranges = {
        "eq": (v, v),
        "lt": (-math.inf, v - 1),
        "le": (-math.inf, v),
        "gt": (v + 1, math.inf),
        "ge": (v, math.inf),
    }
    return ranges.get(test.op)
