"""A condition tree (shared.config_conditions) compiled once into a closure over `Facts`.

Nothing is interpreted per request: each test becomes a function that reads its one fact and
compares it with a value prepared at start-up (a frozenset for `in`, a compiled pattern for
`regex` and `glob`). A missing fact (None) fails every test but ne/not_in. Patterns read at
most MAX_MATCHED characters of a string fact, content tests routing.content_max_chars.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable
from typing import Any

from core.routing.policy.facts import Facts
from shared.config_conditions import AllOf, AnyOf, Cond, Not, Test

Predicate = Callable[[Facts], bool]
Getter = Callable[[Facts], Any]

# Fields read as attributes of Facts (`time` is its minutes since midnight).
_ATTRIBUTES = {"time": "minutes"}
# Characters of a string fact a regex or glob reads (a header value may be kilobytes long).
MAX_MATCHED = 1024
_ORDER = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}


def compile_condition(cond: Cond | None) -> Predicate:
    """The condition as one closure; None (no `when`) always holds."""
    if cond is None:
        return _always
    if isinstance(cond, Test):
        return _test(cond)
    if isinstance(cond, Not):
        inner = compile_condition(cond.item)
        return lambda f: not inner(f)
    parts = tuple(compile_condition(item) for item in cond.items)
    if isinstance(cond, AllOf):
        return _all(parts)
    if isinstance(cond, AnyOf):
        return _any(parts)
    raise TypeError(f"not a condition: {cond!r}")


def _always(facts: Facts) -> bool:
    return True


def _all(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 2:
        first, second = parts
        return lambda f: first(f) and second(f)

    def all_of(facts: Facts) -> bool:
        for part in parts:  # noqa: SIM110 (a loop: no generator per request)
            if not part(facts):
                return False
        return True

    return all_of


def _any(parts: tuple[Predicate, ...]) -> Predicate:
    def any_of(facts: Facts) -> bool:
        for part in parts:  # noqa: SIM110 (a loop: no generator per request)
            if part(facts):
                return True
        return False

    return any_of


def getter(field: str) -> Getter:
    """How a field is read from the facts."""
    if field.startswith("tags."):
        key = field[len("tags.") :]
        return lambda f: f.tag(key)
    if field.startswith("header."):
        name = field[len("header.") :]
        return lambda f: f.header(name)
    return operator.attrgetter(_ATTRIBUTES.get(field, field))


def _test(test: Test) -> Predicate:
    if test.field == "budget":
        return _budget(test)
    if test.field == "content":
        return _content(test)
    get, op, value = getter(test.field), test.op, test.value
    if op == "eq":
        return lambda f: get(f) == value
    if op == "ne":
        return lambda f: get(f) != value
    if op in ("in", "not_in"):
        values = frozenset(value)
        if op == "in":
            return lambda f: get(f) in values
        return lambda f: get(f) not in values
    if op in _ORDER:
        compare = _ORDER[op]

        def ordered(facts: Facts) -> bool:
            actual = get(facts)
            return actual is not None and bool(compare(actual, value))

        return ordered
    pattern = re.compile(fnmatch.translate(value) if op == "glob" else value)
    match = pattern.fullmatch if op == "glob" else pattern.search

    def matches(facts: Facts) -> bool:
        actual = get(facts)
        if not isinstance(actual, str):
            return False
        return match(actual[:MAX_MATCHED]) is not None

    return matches


def _budget(test: Test) -> Predicate:
    name, percent = test.value
    compare = operator.gt if test.op == "above" else operator.lt

    def budget(facts: Facts) -> bool:
        used = facts.budget_percent(name)
        return used is not None and bool(compare(used, percent))

    return budget


def _content(test: Test) -> Predicate:
    """A regex (as written) searched in the last user message cut at
    routing.content_max_chars, or any of the (lower-cased) keywords as a substring of it
    lower-cased: plain `in` tests, a fast scan each."""
    if test.op == "regex":
        search = re.compile(test.value).search
        return lambda f: search(f.content) is not None
    words: tuple[str, ...] = test.value

    def keywords(facts: Facts) -> bool:
        text = facts.content_lower
        for word in words:  # noqa: SIM110 (a loop: no generator per request)
            if word in text:
                return True
        return False

    return keywords
