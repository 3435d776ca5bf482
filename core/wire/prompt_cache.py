"""Prompt-cache breakpoints on the canonical (OpenAI chat) request: found, checked, limited.

A client marks the end of a prefix it wants cached with `"cache_control": {"type":
"ephemeral"}` (optional `"ttl": "5m"|"1h"`) on a message content part, on a message (its whole
content), or on a tool definition; the canonical payload keeps the marks where the client put
them. Every adapter reads them through this module (pure, no I/O), so each provider honours the
same marks under the same limits, and the response header naming the dropped ones
(`x-interlock-cache-dropped`) says exactly what the adapter did:

- prefix order is the providers' own: tools, then system/developer messages, then the rest;
- a mark whose prefix is surely below the target's minimum cacheable size is dropped
  (`below_minimum`): the estimate is generous (three characters a token), so only prefixes that
  cannot reach the minimum are dropped; the provider would ignore them anyway, and each one
  would use up one of the breakpoints;
- with more marks than the target takes (Anthropic: four) the LAST ones are kept (`too_many`
  for the rest): the longest prefixes save the most, and a provider also looks a few blocks back
  from a breakpoint for an entry an earlier write left;
- entries must be written longest-lived first: a `1h` mark after a `5m` one is shortened to
  `5m` (`ttl_shortened`) instead of being refused by the provider;
- a target model that caches for five minutes only gets a `1h` mark as a `5m` one
  (`ttl_unsupported`; CacheSupport.long_ttl, e.g. Bedrock before the Claude 4.5 models);
- a target that takes no marks on that model drops them all (`unsupported`); OpenAI-style hosts
  cache prefixes by themselves and get no marks at all (`strip`), which is not a drop.

The same functions read an Anthropic Messages request passed through to an Anthropic target
(core.api.messages.passthrough): its top-level `system` blocks are `system[k]` (a chat request
has no such field), its tools and content blocks are named as in chat (a tool_result's own
blocks as `messages[i].content[j].content[k]`, counted like any other mark), so the header
names the client's own fields either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from shared.errors import GatewayError, bad_request

JSON = dict[str, Any]
MARK = "cache_control"
TTLS = frozenset({"5m", "1h"})
DROPPED_HEADER = "x-interlock-cache-dropped"
# The header names at most this many marks (a request may carry hundreds of marked parts).
MAX_NAMED = 16
MAX_COLLECTED = 256  # marks dropped while sending, kept per request (the header counts them)
_SYSTEM_ROLES = frozenset({"system", "developer"})
# Characters per token for the minimum-size check: generous on purpose (see the docstring).
_CHARS_PER_TOKEN = 3

# markers / cache_point: marks the adapter translates (prepare); implicit: none at all; context:
# the adapter caches the marked prefix itself at send time (Gemini's cachedContents) and
# reports what it could not honour there (report_dropped), since only the send knows.
Style = Literal["markers", "cache_point", "implicit", "context"]
# Marks dropped while sending (style `context`), per request: a list the pipeline hands out
# before dispatch (collect_dropped) that the send appends to, in the request's task context.
_sent_dropped: ContextVar[list[tuple[str, str]] | None] = ContextVar(
    "prompt_cache_sent_dropped", default=None
)


@dataclass(frozen=True, slots=True)
class CacheSupport:
    """How a target takes prompt-cache marks (a Capabilities field, per provider and model).

    `markers`: Anthropic's cache_control at the marked block; `cache_point`: Bedrock Converse's
    cachePoint block after it; `implicit`: the host caches prefixes by itself and takes no mark
    (they are removed, and that is no drop). `tools`: whether a tool may end a cached prefix;
    `long_ttl`: whether an entry may live an hour (`1h`), not only five minutes."""

    style: Style
    max_breakpoints: int = 4
    min_tokens: int = 1024
    tools: bool = True
    key: bool = False  # the host takes OpenAI's prompt_cache_key (a routing hint)
    long_ttl: bool = True


@dataclass(frozen=True, slots=True)
class Marker:
    where: str  # the client's field: tools[1], messages[0], messages[2].content[0]
    ttl: str
    prefix_tokens: int  # estimated tokens from the start of the prompt through this block
    section: str  # tools | system | messages


IMPLICIT = CacheSupport("implicit")
IMPLICIT_WITH_KEY = CacheSupport("implicit", key=True)


def check_mark(value: Any, where: str) -> None:
    """A client's mark: an object {type: "ephemeral", ttl?: "5m"|"1h"}, else a 400 naming it."""
    at = f"{where}.{MARK}"
    if not isinstance(value, dict):
        raise _invalid(at, "must be an object")
    if value.get("type") != "ephemeral":
        raise _invalid(f"{at}.type", "must be 'ephemeral'")
    ttl = value.get("ttl")
    if ttl is not None and ttl not in TTLS:
        raise _invalid(f"{at}.ttl", "must be '5m' or '1h'")
    for key in value:
        if key not in ("type", "ttl"):
            raise _invalid(f"{at}.{str(key)[:64]}", "is not a cache_control field")


def _invalid(param: str, message: str) -> GatewayError:
    return bad_request(f"{param} {message}", param=param, code="invalid_value")


def ttl_of(mark: Any) -> str:
    ttl = mark.get("ttl") if isinstance(mark, dict) else None
    return ttl if ttl in TTLS else "5m"


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return len(value["text"])
    if isinstance(value, dict | list):
        return len(orjson.dumps(value))
    return 0


def _ordered(canonical: JSON) -> list[tuple[int, JSON]]:
    """Messages in prefix order (system first, as Anthropic and Converse lift them)."""
    messages = canonical.get("messages")
    if not isinstance(messages, list):
        return []
    pairs = [(i, m) for i, m in enumerate(messages) if isinstance(m, dict)]
    system = [(i, m) for i, m in pairs if m.get("role") in _SYSTEM_ROLES]
    return system + [(i, m) for i, m in pairs if m.get("role") not in _SYSTEM_ROLES]


def find_markers(canonical: JSON) -> list[Marker]:
    """Every mark on the canonical request, in prefix order, with its prefix's size."""
    found: list[Marker] = []
    chars = 0
    tools = canonical.get("tools")
    for k, tool in enumerate(tools if isinstance(tools, list) else ()):
        chars += _chars(tool)
        if isinstance(tool, dict) and MARK in tool:
            found.append(Marker(f"tools[{k}]", ttl_of(tool[MARK]), _tokens(chars), "tools"))
    system = canonical.get("system")  # Anthropic's top-level system prompt (passthrough)
    chars += _chars(system) if isinstance(system, str) else 0
    for k, block in enumerate(system if isinstance(system, list) else ()):
        chars += _chars(block)
        if isinstance(block, dict) and MARK in block:
            found.append(Marker(f"system[{k}]", ttl_of(block[MARK]), _tokens(chars), "system"))
    for i, message in _ordered(canonical):
        section = "system" if message.get("role") in _SYSTEM_ROLES else "messages"
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                where, before = f"messages[{i}].content[{j}]", chars
                for k, block in enumerate(inner(part)):  # a tool_result's blocks come first
                    chars += _chars(block)
                    if isinstance(block, dict) and MARK in block:
                        at = f"{where}.content[{k}]"
                        found.append(Marker(at, ttl_of(block[MARK]), _tokens(chars), section))
                chars = before + _chars(part)
                if isinstance(part, dict) and MARK in part:
                    found.append(Marker(where, ttl_of(part[MARK]), _tokens(chars), section))
        else:
            chars += _chars(content) + _chars(message.get("tool_calls"))
        if MARK in message:
            where = f"messages[{i}]"
            found.append(Marker(where, ttl_of(message[MARK]), _tokens(chars), section))
    return found


def inner(part: Any) -> list[Any]:
    """A tool_result block's own content blocks (Anthropic's shape), which may carry marks
    that count against the same limit as any other: [] for every other part."""
    if isinstance(part, dict) and part.get("type") == "tool_result":
        content = part.get("content")
        if isinstance(content, list):
            return content
    return []


def marked_part(part: Any) -> bool:
    """Whether a content part carries a mark, on itself or on a block nested in it."""
    if not isinstance(part, dict):
        return False
    return MARK in part or any(isinstance(b, dict) and MARK in b for b in inner(part))


def _tokens(chars: int) -> int:
    return (chars + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def select(
    markers: list[Marker], support: CacheSupport | None
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(kept marks: where -> ttl, dropped marks: (where, reason)) under the target's limits."""
    dropped: list[tuple[str, str]] = []
    if support is None:
        return {}, [(m.where, "unsupported") for m in markers]
    if support.style in ("implicit", "context"):
        return {}, []
    usable: list[Marker] = []
    for m in markers:
        if m.section == "tools" and not support.tools:
            dropped.append((m.where, "unsupported"))
        elif m.prefix_tokens < support.min_tokens:
            dropped.append((m.where, "below_minimum"))
        else:
            usable.append(m)
    excess = len(usable) - support.max_breakpoints
    if excess > 0:
        dropped.extend((m.where, "too_many") for m in usable[:excess])
        usable = usable[excess:]
    kept: dict[str, str] = {}
    short = False
    for m in usable:
        ttl = m.ttl
        if ttl == "1h" and not support.long_ttl:
            ttl = "5m"
            dropped.append((m.where, "ttl_unsupported"))
        elif ttl == "1h" and short:
            ttl = "5m"
            dropped.append((m.where, "ttl_shortened"))
        short = short or ttl == "5m"
        kept[m.where] = ttl
    return kept, dropped


def dropped_header(dropped: list[tuple[str, str]]) -> dict[str, str]:
    """x-interlock-cache-dropped: `where=reason` pairs, comma-separated; nothing when none."""
    if not dropped:
        return {}
    named = [f"{where}={reason}" for where, reason in dropped[:MAX_NAMED]]
    if len(dropped) > MAX_NAMED:
        named.append(f"+{len(dropped) - MAX_NAMED}")
    return {DROPPED_HEADER: ",".join(named)}


def in_client_terms(
    dropped: list[tuple[str, str]], client: Any, served: JSON
) -> list[tuple[str, str]]:
    """`dropped`, named as the client wrote its request. A Messages request translated to the
    canonical shape keeps each mark object by reference (core.api.messages.request), so a
    mark's place in `served` (messages[0].content[0]: the system prompt) leads back to its
    place in the client's request (system[0]); a mark the client did not write (auto mode),
    or one object the client put in several places, keeps its name. Only computed when
    something was dropped."""
    if not dropped or not isinstance(client, dict) or client is served:
        return dropped
    theirs: dict[int, str | None] = {}
    for where, mark in _marks_at(client):
        theirs[id(mark)] = None if id(mark) in theirs else where  # None: ambiguous
    names = {where: theirs.get(id(mark)) or where for where, mark in _marks_at(served)}
    return [(names.get(where, where), reason) for where, reason in dropped]


def _marks_at(payload: JSON) -> Iterable[tuple[str, Any]]:
    """(where, mark object) for every mark, named as find_markers names them."""
    for field in ("tools", "system"):
        blocks = payload.get(field)
        for k, block in enumerate(blocks if isinstance(blocks, list) else ()):
            if isinstance(block, dict) and MARK in block:
                yield f"{field}[{k}]", block[MARK]
    messages = payload.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict):
            continue
        if MARK in message:
            yield f"messages[{i}]", message[MARK]
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            for k, block in enumerate(inner(part)):
                if isinstance(block, dict) and MARK in block:
                    yield f"messages[{i}].content[{j}].content[{k}]", block[MARK]
            if isinstance(part, dict) and MARK in part:
                yield f"messages[{i}].content[{j}]", part[MARK]


def collect_dropped() -> list[tuple[str, str]]:
    """A fresh list that marks dropped while sending are appended to, from here on in this
    request's task (and the tasks it starts). The dispatch stage calls it once."""
    found: list[tuple[str, str]] = []
    _sent_dropped.set(found)
    return found


def report_dropped(dropped: Iterable[tuple[str, str]]) -> None:
    """Marks a send could not honour (where, reason), for the request's header; bounded."""
    found = _sent_dropped.get()
    if found is None:
        return
    for item in dropped:
        if len(found) >= MAX_COLLECTED:
            return
        found.append(item)


def has_marks(canonical: JSON) -> bool:
    """Whether any mark is present (cheap: one pass, no copies)."""
    for blocks in (canonical.get("tools"), canonical.get("system")):
        if isinstance(blocks, list) and any(isinstance(b, dict) and MARK in b for b in blocks):
            return True
    messages = canonical.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        if MARK in message:
            return True
        content = message.get("content")
        if isinstance(content, list) and any(marked_part(p) for p in content):
            return True
    return False


def prepare(canonical: JSON, support: CacheSupport | None) -> tuple[JSON, list[tuple[str, str]]]:
    """The canonical request as the target should see it, and the marks dropped for it.

    Kept marks sit on content parts, tools or (Anthropic) system blocks only, with the TTL
    decided here (a message's mark moves to its last content part, a string content becoming
    one text part); every other mark is removed. The client's payload is never modified:
    touched containers are copied."""
    if not has_marks(canonical):
        return canonical, []
    kept, dropped = select(find_markers(canonical), support)
    out = dict(canonical)
    for field in ("tools", "system"):
        blocks = canonical.get(field)
        if isinstance(blocks, list):
            out[field] = [_retag(b, kept.get(f"{field}[{k}]")) for k, b in enumerate(blocks)]
    out["messages"] = [_message(m, i, kept) for i, m in enumerate(canonical["messages"])]
    return out, dropped


def strip(canonical: JSON) -> JSON:
    """The canonical request without any mark (for hosts that take none)."""
    return prepare(canonical, None)[0] if has_marks(canonical) else canonical


def _retag(item: Any, ttl: str | None) -> Any:
    if not isinstance(item, dict) or (ttl is None and MARK not in item):
        return item
    out = {k: v for k, v in item.items() if k != MARK}
    if ttl is not None:
        out[MARK] = {"type": "ephemeral", "ttl": ttl} if ttl == "1h" else {"type": "ephemeral"}
    return out


def _message(message: Any, i: int, kept: dict[str, str]) -> Any:
    if not isinstance(message, dict):
        return message
    where = f"messages[{i}]"
    content = message.get("content")
    whole = kept.get(where)
    if not isinstance(content, list):
        if MARK not in message:
            return message
        out = {k: v for k, v in message.items() if k != MARK}
        if whole is not None and isinstance(content, str) and content:
            out["content"] = [_retag({"type": "text", "text": content}, whole)]
        return out
    if MARK not in message and not any(marked_part(p) for p in content):
        return message
    parts = [_part(p, f"{where}.content[{j}]", kept) for j, p in enumerate(content)]
    if whole is not None and parts:
        parts[-1] = _retag(
            parts[-1], _longer(whole, kept.get(f"{where}.content[{len(parts) - 1}]"))
        )
    out = {k: v for k, v in message.items() if k != MARK}
    out["content"] = parts
    return out


def _part(part: Any, where: str, kept: dict[str, str]) -> Any:
    """A content part retagged, and the blocks nested in it (a tool_result's) too."""
    out = _retag(part, kept.get(where))
    blocks = inner(part)
    if not any(isinstance(b, dict) and MARK in b for b in blocks):
        return out
    out = dict(out)
    out["content"] = [_retag(b, kept.get(f"{where}.content[{k}]")) for k, b in enumerate(blocks)]
    return out


def _longer(a: str, b: str | None) -> str:
    return "1h" if "1h" in (a, b) else "5m"


def marked(item: Any) -> str | None:
    """The TTL of a kept mark on a prepared part or tool, or None."""
    if isinstance(item, dict) and isinstance(item.get(MARK), dict):
        return ttl_of(item[MARK])
    return None
