"""Client cache markers -> a Gemini explicit context cache plan (pure: no I/O, no state).

Clients mark breakpoints the OpenAI-format way (`"cache_control": {"type": "ephemeral",
"ttl"?: "5m"|"1h"}` on a content part, on a message whose content is a string, or on a tool),
and the canonical payload keeps the markers. Gemini has no markers: it caches through a
separate `cachedContents` resource that a generateContent request names in `cachedContent`.
A request naming one may not also set `systemInstruction`, `tools` or `toolConfig` (Gemini
answers 400 "CachedContent can not be used with GenerateContent request setting
system_instruction, tools or tool_config"), so the cached prefix is always the whole system
instruction, tools and tool config, plus the contents up to and including the last marked
block. The request then carries only the remaining contents and its own generation settings.

Gemini refuses a cache below a per-model minimum size; a prefix estimated below it is sent
uncached and its markers are reported as dropped (never an error). The minimums are those of
Google's context caching page (ai.google.dev/gemini-api/docs/caching, "Min token limit"):
1,024 tokens for the Flash models (2.5 Flash, 3 Flash), 4,096 for the Pro models (2.5 Pro,
3 Pro); any other model is assumed to need 4,096, the largest listed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.providers.adapters.base import JSON
from core.providers.adapters.gemini.request import build_body, message_contents
from core.providers.adapters.gemini.settings import Settings
from core.wire.tokens import estimate_chars

DEFAULT_TTL_S = 300  # Anthropic's default, which the marker convention follows
_TTLS = {"5m": 300, "1h": 3600}
_FLASH_MIN_TOKENS, _OTHER_MIN_TOKENS = 1024, 4096
# Gemini bills each image at 258 tokens whatever its size (docs: "Image understanding").
_MEDIA_TOKENS = 258
_CACHED_KEYS = ("systemInstruction", "tools", "toolConfig")
_WHOLE = 1 << 30
_VERTEX_MODELS = re.compile(r"/(projects/[^/]+/locations/[^/]+/)publishers/google/models/$")


@dataclass(frozen=True, slots=True)
class Marker:
    """One client marker: where it sits (the client's field, as the x-interlock-cache-dropped
    header names it: tools[1], messages[0], messages[2].content[0]) and its TTL."""

    where: str
    ttl_s: int
    message: int | None = None  # index in messages; None for a tool
    part: int | None = None  # index in the message's content list; None: the whole message


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What to cache, what to send alongside a cache, and the identity of the prefix."""

    cached: JSON  # a CachedContent body without `model` and `ttl`
    rest: JSON  # the generateContent body without the cached parts (and no cachedContent yet)
    digest: str  # of the cached prefix, canonical JSON: the registry keys on it
    ttl_s: int
    tokens: int  # estimated size of the prefix
    markers: tuple[Marker, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Uncached:
    """Markers that could not be honoured, and why: a reason code for the response header
    (below_minimum, unsupported, no_suffix) and words for the operator's log."""

    markers: tuple[Marker, ...]
    reason: str
    detail: str


def ttl_of(marker: Any) -> int | None:
    """The TTL of a well-formed marker in seconds, None when `marker` is not one."""
    if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
        return None
    return _TTLS.get(marker.get("ttl"), DEFAULT_TTL_S)  # type: ignore[arg-type]


def find_markers(canonical: JSON) -> list[Marker]:
    """Every marker in the payload, in prefix order (tools first, then messages in order)."""
    found: list[Marker] = []
    tools = canonical.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        ttl = ttl_of(tool.get("cache_control")) if isinstance(tool, dict) else None
        if ttl is not None:
            found.append(Marker(f"tools[{i}]", ttl))
    messages = canonical.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict):
            continue
        ttl = ttl_of(message.get("cache_control"))
        if ttl is not None:
            found.append(Marker(f"messages[{i}]", ttl, i))
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            ttl = ttl_of(part.get("cache_control")) if isinstance(part, dict) else None
            if ttl is not None:
                found.append(Marker(f"messages[{i}].content[{j}]", ttl, i, j))
    return found


def min_cache_tokens(model: str) -> int:
    return _FLASH_MIN_TOKENS if "flash" in model.lower() else _OTHER_MIN_TOKENS


def plan_cache(canonical: JSON, model: str, settings: Settings) -> CachePlan | Uncached | None:
    """None without markers; else a plan, or the markers dropped and why. Raises what
    build_body raises for a payload it cannot translate."""
    markers = tuple(find_markers(canonical))
    if not markers:
        return None
    body = build_body(canonical, model, settings)
    if model.startswith("tunedModels/"):
        return Uncached(markers, "unsupported", "tuned models cannot use a context cache")
    last = max(markers, key=_position)
    cut = _cut(canonical, body["contents"], last)
    if cut is None:
        return Uncached(markers, "no_suffix", "nothing would be left to send after the prefix")
    cached_contents, rest_contents = cut
    cached: JSON = {k: body[k] for k in _CACHED_KEYS if k in body}
    if cached_contents:
        cached["contents"] = cached_contents
    tokens = estimate_tokens(cached)
    minimum = min_cache_tokens(model)
    if tokens < minimum:
        return Uncached(
            markers, "below_minimum", f"prefix of about {tokens} tokens is under {minimum}"
        )
    rest = {k: v for k, v in body.items() if k not in _CACHED_KEYS}
    rest["contents"] = rest_contents
    canonical_json = orjson.dumps(cached, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(canonical_json, digest_size=16).hexdigest()
    ttl = max(m.ttl_s for m in markers)
    return CachePlan(cached, rest, digest, ttl, tokens, markers)


def _position(marker: Marker) -> tuple[int, int]:
    """Prefix order: tools, then messages; a whole-message marker after its message's parts."""
    if marker.message is None:
        return (-1, 0)
    return (marker.message, _WHOLE if marker.part is None else marker.part)


def _cut(
    canonical: JSON, contents: list[JSON], last: Marker
) -> tuple[list[JSON], list[JSON]] | None:
    """(cached contents, remaining contents); None when no turn would remain uncached.

    The prefix's own contents locate the cut: its last turn may stop part-way through the
    full conversation's turn (consecutive messages of one role merge into one turn)."""
    if last.message is None:
        count, parts = 0, 0
    else:
        messages = list(canonical["messages"][: last.message + 1])
        if last.part is not None:
            message = messages[-1]
            messages[-1] = {**message, "content": message["content"][: last.part + 1]}
        prefix = message_contents(messages)
        count, parts = len(prefix), len(prefix[-1]["parts"]) if prefix else 0
    cached = [dict(c) for c in contents[:count]]
    if cached:
        cached[-1]["parts"] = cached[-1]["parts"][:parts]
    rest: list[JSON] = []
    if count and parts < len(contents[count - 1]["parts"]):
        turn = contents[count - 1]
        rest.append({"role": turn["role"], "parts": turn["parts"][parts:]})
    rest.extend(contents[count:])
    if not rest:
        if len(contents) < 1 or not cached:
            return None
        # Marked to the end: the last turn stays in the request, Gemini needs one there.
        cached, rest = [dict(c) for c in contents[:-1]], [contents[-1]]
    return cached, rest


def estimate_tokens(cached: JSON) -> int:
    """Characters of text (names, descriptions and schemas included) at about four to a token,
    media at Gemini's flat rate per item."""
    chars, media = 0, 0
    stack: list[Any] = [cached]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, dict):
            if "inlineData" in value or "fileData" in value:
                media += 1
                continue
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return estimate_chars(chars) + media * _MEDIA_TOKENS


def cached_request(plan: CachePlan, name: str) -> JSON:
    """The generateContent body that names the cache `name` and omits what it holds."""
    return {**plan.rest, "cachedContent": name}


def cache_resource(plan: CachePlan, model_name: str, display_name: str) -> JSON:
    """The body of `POST .../cachedContents`: the prefix, its model and its TTL ("300s")."""
    return {
        **plan.cached,
        "model": model_name,
        "ttl": f"{plan.ttl_s}s",
        "displayName": display_name,
    }


def cache_locations(models_url: str, model: str) -> tuple[str, str]:
    """(URL of the cachedContents collection, the model's resource name) for a provider whose
    generateContent URLs start with `models_url` (settings.py): AI Studio's `.../v1beta/models/`
    gives `.../v1beta/cachedContents` and `models/<id>`; Vertex AI's
    `.../projects/P/locations/L/publishers/google/models/` gives
    `.../projects/P/locations/L/cachedContents` and the full publisher model name."""
    model = model.removeprefix("models/")
    vertex = _VERTEX_MODELS.search(models_url)
    if vertex is None:
        return models_url.removesuffix("models/") + "cachedContents", f"models/{model}"
    scope = vertex.group(1)
    collection = models_url[: vertex.start()] + f"/{scope}cachedContents"
    return collection, f"{scope}publishers/google/models/{model}"
