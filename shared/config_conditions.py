"""The condition grammar of `routing.rules[].when`, parsed into a small tree (never eval'd).

A condition is a mapping; each key is a field or a combinator, and every key must hold (all):

    when:
      api: chat                          # a scalar: eq
      tier: [free, trial]                # a list: in
      prompt_tokens: {gt: 8000}          # a mapping: operators, all must hold
      model: {glob: "gpt-*", ne: gpt-4o}
      tags.project: search               # a billing tag (token, header, body; core.api.tags)
      header.x-priority: high            # only headers listed in routing.headers
      hour: {ge: 9, lt: 17}              # 0-23, in routing.timezone (UTC by default)
      weekday: {in: [sat, sun]}          # mon tue wed thu fri sat sun
      time: {ge: "22:00"}                # HH:MM, same timezone
      budget: {name: team-a, above: 80}  # percent of the budget used (also `below`)
      content: {keywords: [def, class]}  # the last user message (or `regex`); off unless
                                         # routing.content_max_chars is set
      any: [{stream: true}, {tools: true}]
      all: [...]
      not: {tenant: acme}

Fields and their operators:

| field | kind | operators |
|---|---|---|
| model, tenant, tier, tags.K, header.H | string | eq ne in not_in glob regex |
| prompt_tokens, max_tokens, hour | integer | eq ne in not_in lt le gt ge |
| stream, tools, images, structured_output | boolean | eq ne |
| api (chat messages embeddings), weekday | one of a set | eq ne in not_in |
| time | HH:MM | eq ne lt le gt ge |

A value the request lacks (no max_tokens, no such tag or header) never equals, is never in a
list, never compares or matches: only `ne` and `not_in` hold for it. Regex and glob patterns
are at most MAX_PATTERN characters and compiled once; a regex is searched (anywhere in the
string), a glob matches the whole string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.configparse import ConfigError

STRING, INTEGER, BOOLEAN, CHOICE, TIME = "string", "integer", "boolean", "choice", "time"
APIS = ("chat", "messages", "embeddings")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FIELDS: dict[str, str] = {
    "model": STRING,
    "tenant": STRING,
    "tier": STRING,
    "api": CHOICE,
    "prompt_tokens": INTEGER,
    "max_tokens": INTEGER,
    "hour": INTEGER,
    "stream": BOOLEAN,
    "tools": BOOLEAN,
    "images": BOOLEAN,
    "structured_output": BOOLEAN,
    "weekday": CHOICE,
    "time": TIME,
}
CHOICES = {"api": APIS, "weekday": WEEKDAYS}
PREFIXED = {"tags.": STRING, "header.": STRING}
OPERATORS: dict[str, frozenset[str]] = {
    STRING: frozenset(("eq", "ne", "in", "not_in", "glob", "regex")),
    INTEGER: frozenset(("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge")),
    BOOLEAN: frozenset(("eq", "ne")),
    CHOICE: frozenset(("eq", "ne", "in", "not_in")),
    TIME: frozenset(("eq", "ne", "lt", "le", "gt", "ge")),
}
COMBINATORS = ("all", "any", "not")
MAX_PATTERN = 256  # characters of a regex, a glob or a keyword
MAX_LIST = 256  # values of an `in` list, keywords of a content test
MAX_DEPTH = 8
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True)
class Test:
    """One field under one operator. `value` is normalised: a tuple for in/not_in, minutes for
    time, (budget name, percent) for budget, the pattern text for regex/glob, a tuple of
    lower-cased keywords for content keywords."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class AllOf:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Not:
    item: Cond


Cond = Test | AllOf | AnyOf | Not


@dataclass(frozen=True)
class Scope:
    """What a condition may refer to, and the rule it belongs to (named in every error)."""

    rule: str
    headers: frozenset[str]
    budgets: frozenset[str]
    content: bool  # routing.content_max_chars > 0


def fail(path: str, why: str, scope: Scope) -> ConfigError:
    return ConfigError(f"{path}: {why} (rule {scope.rule!r})")


def parse_when(raw: Any, path: str, scope: Scope, depth: int = 0) -> Cond:
    """A condition mapping as a tree; a ConfigError naming the key and the rule if not."""
    if depth > MAX_DEPTH:
        raise fail(path, f"nested deeper than {MAX_DEPTH} levels", scope)
    if not isinstance(raw, dict) or not raw:
        raise fail(path, "expected a non-empty mapping of fields to tests", scope)
    items = tuple(
        _key(str(key), value, f"{path}.{key}", scope, depth) for key, value in raw.items()
    )
    return items[0] if len(items) == 1 else AllOf(items)


def _key(key: str, value: Any, path: str, scope: Scope, depth: int) -> Cond:
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise fail(path, "expected a non-empty list of conditions", scope)
        items = tuple(parse_when(v, f"{path}[{i}]", scope, depth + 1) for i, v in enumerate(value))
        return AllOf(items) if key == "all" else AnyOf(items)
    if key == "not":
        return Not(parse_when(value, path, scope, depth + 1))
    if key == "budget":
        return _budget(value, path, scope)
    if key == "content":
        return _content(value, path, scope)
    kind = _kind(key, path, scope)
    if isinstance(value, dict):
        if not value:
            raise fail(path, "expected at least one operator", scope)
        tests = tuple(
            _test(key, kind, str(op), v, f"{path}.{op}", scope) for op, v in value.items()
        )
        return tests[0] if len(tests) == 1 else AllOf(tests)
    op = "in" if isinstance(value, list) else "eq"
    return _test(key, kind, op, value, path, scope)


def _kind(key: str, path: str, scope: Scope) -> str:
    kind = FIELDS.get(key)
    if kind is not None:
        return kind
    for prefix, prefixed_kind in PREFIXED.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            if prefix == "header." and key[len(prefix) :].lower() not in scope.headers:
                raise fail(path, "this header is not listed in routing.headers", scope)
            return prefixed_kind
    known = ", ".join((*FIELDS, "tags.<key>", "header.<name>", "budget", "content", *COMBINATORS))
    raise fail(path, f"unknown field (known: {known})", scope)


def _test(field: str, kind: str, op: str, value: Any, path: str, scope: Scope) -> Test:
    if op not in OPERATORS[kind]:
        known = ", ".join(sorted(OPERATORS[kind]))
        raise fail(path, f"unknown operator {op!r} for {field} (known: {known})", scope)
    if field.startswith("header."):
        field = field.lower()
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise fail(path, f"expected a list of 1 to {MAX_LIST} values", scope)
        return Test(field, op, tuple(_value(field, kind, v, path, scope) for v in value))
    if op in ("glob", "regex"):
        return Test(field, op, _pattern(value, op, path, scope))
    return Test(field, op, _value(field, kind, value, path, scope))


def _value(field: str, kind: str, value: Any, path: str, scope: Scope) -> Any:
    if kind == STRING and isinstance(value, str):
        return value
    if kind == INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == BOOLEAN and isinstance(value, bool):
        return value
    if kind == CHOICE and value in CHOICES[field]:
        return value
    if kind == TIME and isinstance(value, str) and (match := _TIME.fullmatch(value)):
        return int(match.group(1)) * 60 + int(match.group(2))
    expected = {
        STRING: "a string",
        INTEGER: "an integer",
        BOOLEAN: "true or false",
        TIME: 'a time of day such as "09:30"',
        CHOICE: "one of " + ", ".join(CHOICES.get(field, ())),
    }[kind]
    raise fail(path, f"expected {expected}", scope)


def _pattern(value: Any, op: str, path: str, scope: Scope) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_PATTERN:
        raise fail(path, f"expected a {op} pattern of 1 to {MAX_PATTERN} characters", scope)
    if op == "regex":
        try:
            re.compile(value)
        except re.error as exc:
            raise fail(path, f"not a valid regex ({exc})", scope) from None
        if nested_repetition(value):
            why = "a repeated group that itself repeats, e.g. (a+)+, can take exponential time"
            raise fail(path, why, scope)
    return value


def nested_repetition(pattern: str) -> bool:
    """Whether a group holding an unbounded repeat (`*`, `+`, `{n,}`) is itself repeated:
    the classic catastrophic-backtracking shape, refused at start-up (Python's re has no
    time limit; the searched text is also capped, see routing.content_max_chars)."""
    groups: list[bool] = []  # per open group: does it hold an unbounded repeat?
    closed_repeats = False  # the group just closed held one
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        unbounded = char in "*+" or (char == "{" and bool(re.match(r"\{\d*,\}", pattern[i:])))
        if unbounded and closed_repeats:
            return True
        closed_repeats = False
        if char == "\\":
            i += 2
            continue
        if char == "[":  # a class: skip to its end
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] == "]" else i + 1)
            i = n if end < 0 else end + 1
            continue
        if char == "(":
            groups.append(False)
        elif char == ")" and groups:
            closed_repeats = groups.pop()
            if closed_repeats and groups:
                groups[-1] = True
        elif unbounded and groups:
            groups[-1] = True
        i += 1
    return False


def _budget(value: Any, path: str, scope: Scope) -> Test:
    """`budget: {name: X, above: 80}`: more than 80% of budget X used (`below`: less)."""
    if not isinstance(value, dict) or set(value) - {"name", "above", "below"}:
        raise fail(path, "expected {name: <budget>, above: <percent>} (or below)", scope)
    name = value.get("name")
    if name not in scope.budgets:
        raise fail(f"{path}.name", f"no budget named {name!r} in budgets", scope)
    ops = [op for op in ("above", "below") if op in value]
    if len(ops) != 1:
        raise fail(path, "expected exactly one of above or below", scope)
    percent = value[ops[0]]
    if not isinstance(percent, int | float) or isinstance(percent, bool) or percent < 0:
        raise fail(f"{path}.{ops[0]}", "expected a percentage such as 80", scope)
    return Test("budget", ops[0], (str(name), float(percent)))


def _content(value: Any, path: str, scope: Scope) -> Test:
    """`content: {regex: ...}` or `content: {keywords: [...]}` over the last user message."""
    if not scope.content:
        raise fail(path, "content conditions are off: set routing.content_max_chars", scope)
    if (
        not isinstance(value, dict)
        or len(value) != 1
        or next(iter(value))
        not in (
            "regex",
            "keywords",
        )
    ):
        raise fail(path, "expected exactly one of {regex: <pattern>} or {keywords: [...]}", scope)
    op, raw = next(iter(value.items()))
    if op == "regex":
        return Test("content", "regex", _pattern(raw, "regex", f"{path}.regex", scope))
    ok = isinstance(raw, list) and 0 < len(raw) <= MAX_LIST
    if not ok or not all(isinstance(k, str) and 0 < len(k) <= MAX_PATTERN for k in raw):
        raise fail(f"{path}.keywords", f"expected a list of 1 to {MAX_LIST} words", scope)
    return Test("content", "keywords", tuple(sorted({k.lower() for k in raw})))


def fields_of(cond: Cond) -> tuple[str, ...]:
    """The fields a condition reads, in order, each once."""
    seen: dict[str, None] = {}
    stack: list[Cond] = [cond]
    while stack:
        node = stack.pop(0)
        if isinstance(node, Test):
            seen[node.field] = None
        elif isinstance(node, Not):
            stack.insert(0, node.item)
        else:
            stack[0:0] = list(node.items)
    return tuple(seen)
