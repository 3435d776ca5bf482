"""The prompt-cache stage: the request's mode, the breakpoints the gateway places, the
tenant-scoped `prompt_cache_key`, and the header naming marks a target had to drop.

Runs after resolve (the route's mode is known) and before plan, in one place for every API:

- mode: the `x-interlock-prompt-cache` request header (off | markers | auto), else the route's
  `prompt_cache` (routing.routes.<r> or models.<m>), else `markers` (the client's marks only);
- off: every mark is removed; auto: breakpoints are added on the longest stable prefix (the end
  of the tools, the end of the system prompt, the turn before the last user message), keeping
  the client's own and never exceeding four in all (core.wire.prompt_cache selects per target);
- Anthropic-format requests get the same three places in Anthropic's shape (a string system
  prompt or content becoming one text block), passed through or translated;
- when a target of the route takes it (CacheSupport.key: OpenAI, Azure's v1 API),
  `prompt_cache_key` becomes a hash of the tenant and the client's key, or of the tenant and the
  stable prefix (tools, system, marked prefix), so those hosts route requests that share a
  prefix together without a tenant ever sharing another's key or seeing its id (for a Messages
  request, its translated targets get it: core.api.messages.plan);
- affinity (core.cache.affinity): a request that carries marks once the mode is applied gets
  a fingerprint, the same tenant-scoped hash of its stable prefix (computed once, and reused
  as its prompt_cache_key), when its route has a choice to make (two targets, or a key pool)
  and affinity on; a request without marks costs nothing more.
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.cache.affinity import LOOKBACK, ticket
from core.pipeline.exchange import Exchange
from core.pipeline.prefix import fingerprint, has_mark, has_mark_any, prefixes, scope
from core.wire import prompt_cache as pc
from shared.errors import GatewayError

AnyExchange = Exchange[Any, Any, Any]
HEADER = "x-interlock-prompt-cache"
MODES = frozenset({"off", "markers", "auto"})


class _Auto(dict[str, str]):
    """A breakpoint the gateway placed (serialised as a plain object): the header naming
    dropped marks names the client's own only."""


_AUTO = _Auto(type="ephemeral")


def mode_of(x: AnyExchange) -> str:
    asked = x.http.headers.get(HEADER)
    if asked is None:
        mode: str = getattr(x.route, "prompt_cache", "markers")
        return mode
    asked = asked.strip().lower()
    if asked not in MODES:
        raise GatewayError(
            400,
            f"the {HEADER} header must be off, markers or auto",
            param=HEADER,
            code="invalid_value",
        )
    return asked


class PromptCache:
    """See the module docstring; `affinity`: fingerprint marked requests (the core has an
    affinity registry)."""

    name = "prompt_cache"

    def __init__(self, affinity: bool = False) -> None:
        self._affinity = affinity

    async def __call__(self, x: AnyExchange) -> None:
        payload = getattr(x.request, "payload", None)
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return  # embeddings
        mode = mode_of(x)
        keyed = _takes_key(x.route)
        if x.spec.api == "anthropic":
            changed = anthropic_mode(payload, mode)
            if changed is not payload:
                x.request.payload = x.payload = changed
                x.request.payload_changed()  # passthrough sends it, not the client's bytes
            prefix = self._fingerprint(x, changed)
            if keyed:  # for the translated targets that take it (core.api.messages.plan)
                x.request.cache_key = cache_key(changed, x.caller.tenant, prefix)
            return
        if mode == "off":
            payload = pc.strip(payload)
        elif mode == "auto":
            payload = place_auto(payload)
        prefix = self._fingerprint(x, payload)
        if keyed or "prompt_cache_key" in payload:  # a client's own key is scoped too
            payload = with_cache_key(payload, x.caller.tenant, prefix)
        x.request.payload = x.payload = payload

    def _fingerprint(self, x: AnyExchange, payload: dict[str, Any]) -> str | None:
        """The request's affinity ticket (x.affinity), when it is marked and its route has a
        choice; its fingerprint (the longest prefix's), or None."""
        route = x.route
        if not (self._affinity and getattr(route, "affinity", False) and _has_choice(route)):
            return None
        ttl = longest_mark(payload)
        if ttl is None:
            return None
        tenant = x.caller.tenant
        prints = prefixes(payload, tenant, LOOKBACK)
        x.affinity = ticket(prints, ttl == "1h", scope(tenant))
        return prints[0]


def _takes_key(route: Any) -> bool:
    """Whether any of the route's targets takes prompt_cache_key: the key (a hash of the
    prefix) is computed only then."""
    for candidate in getattr(route, "candidates", ()):
        support = candidate.capabilities.prompt_cache
        if support is not None and support.key:
            return True
    return False


def _has_choice(route: Any) -> bool:
    """Two targets or more, or a key pool: somewhere affinity can choose."""
    candidates = getattr(route, "candidates", ())
    return len(candidates) > 1 or any(len(c.target.provider.api_keys) > 1 for c in candidates)


def longest_mark(payload: dict[str, Any]) -> str | None:
    """ "1h" if a mark asks for it, else "5m" if the request carries a mark, else None (either
    API's shape: Anthropic's system blocks, OpenAI's marks on messages or their parts)."""
    system = payload.get("system")
    found: str | None = None
    groups = [payload.get("tools"), system if isinstance(system, list) else None]
    for message in payload.get("messages") or ():
        if isinstance(message, dict):
            content = message.get("content")
            groups.append([message])
            groups.append(content)
            if type(content) is list:  # a tool_result's own blocks (Anthropic's shape)
                groups += [pc.inner(part) for part in content]
    for group in groups:
        for item in group if isinstance(group, list) else ():
            if isinstance(item, dict) and pc.MARK in item:
                if pc.ttl_of(item[pc.MARK]) == "1h":
                    return "1h"
                found = "5m"
    return found


def anthropic_mode(payload: dict[str, Any], mode: str) -> dict[str, Any]:
    """A Messages request under the mode: its own marks removed (off), or the gateway's added
    at the same three places as for chat (auto), in Anthropic's shape; else unchanged."""
    if mode == "markers":
        return payload
    blocks = _anthropic_blocks(payload)
    marked = sum(1 for block in blocks if pc.MARK in block)
    if mode == "off":
        if not marked:
            return payload
        return _anthropic_copy(payload, lambda b: {k: v for k, v in b.items() if k != pc.MARK})
    out = _anthropic_copy(payload, dict)
    messages = out["messages"]
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    spots: list[dict[str, Any]] = []
    if last_user > 0 and messages[last_user - 1]["content"]:
        spots.append(messages[last_user - 1]["content"][-1])
    if out.get("system"):
        spots.append(out["system"][-1])
    if out.get("tools"):
        spots.append(out["tools"][-1])
    room = 4 - marked
    for block in spots:
        if room > 0 and pc.MARK not in block:
            block[pc.MARK] = _AUTO
            room -= 1
    return out


def _anthropic_blocks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    system = payload.get("system")
    blocks = [b for b in payload.get("tools") or () if isinstance(b, dict)]
    blocks += [b for b in system if isinstance(b, dict)] if isinstance(system, list) else []
    for message in payload["messages"]:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            blocks += [b for b in content if isinstance(b, dict)]
            blocks += [b for part in content for b in pc.inner(part) if isinstance(b, dict)]
    return blocks


def _anthropic_copy(payload: dict[str, Any], block: Any) -> dict[str, Any]:
    """A copy with every block passed through `block` (strings become one text block)."""

    def blocks(value: Any) -> Any:
        if isinstance(value, str):
            return [block({"type": "text", "text": value})] if value else []
        if isinstance(value, list):
            return [block(b) if isinstance(b, dict) else b for b in value]
        return value

    out = dict(payload)
    if isinstance(payload.get("tools"), list):
        out["tools"] = blocks(payload["tools"])
    if payload.get("system"):
        out["system"] = blocks(payload["system"])
    out["messages"] = [
        {**m, "content": blocks(m.get("content"))} if isinstance(m, dict) else m
        for m in payload["messages"]
    ]
    return out


def place_auto(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with the gateway's breakpoints added (a copy; the client's marks kept)."""
    room = 4 - len(pc.find_markers(payload))
    if room <= 0:
        return payload
    out = dict(payload)
    messages = list(payload.get("messages") or ())
    out["messages"] = messages
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    systems = [i for i, m in enumerate(messages) if m.get("role") in ("system", "developer")]
    spots: list[int] = []
    if last_user > 0 and messages[last_user - 1].get("role") not in ("system", "developer"):
        spots.append(last_user - 1)
    if systems:
        spots.append(systems[-1])
    for i in spots:
        if room > 0 and not has_mark(messages[i]):
            messages[i] = {**messages[i], pc.MARK: _AUTO}
            room -= 1
    tools = payload.get("tools")
    if room > 0 and isinstance(tools, list) and tools and not has_mark_any(tools):
        out["tools"] = [*tools[:-1], {**tools[-1], pc.MARK: _AUTO}]
    return out


def with_cache_key(
    payload: dict[str, Any], tenant: str, prefix: str | None = None
) -> dict[str, Any]:
    """The payload with its tenant-scoped prompt_cache_key (never the raw tenant id)."""
    return {**payload, "prompt_cache_key": cache_key(payload, tenant, prefix)}


def cache_key(payload: dict[str, Any], tenant: str, prefix: str | None = None) -> str:
    """A hash of the tenant and the client's own key, or of the tenant and the stable prefix
    (`prefix`: that fingerprint, when already computed)."""
    own = payload.get("prompt_cache_key")
    if isinstance(own, str):
        return _digest(tenant, b"k" + own.encode())
    return prefix or fingerprint(payload, tenant)


def _digest(tenant: str, tagged: bytes) -> str:
    digest = hashlib.sha256(tenant.encode())
    digest.update(b"\0")
    digest.update(tagged)
    return "ilk-" + digest.hexdigest()[:40]


def dropped_headers(x: AnyExchange) -> dict[str, str]:
    """x-interlock-cache-dropped for the target that served: the client's marks it dropped."""
    outcome = getattr(x, "outcome", None)
    target = getattr(outcome, "target", None)
    adapter = getattr(getattr(target, "provider", None), "adapter", None)
    if adapter is None or target is None:
        return {}
    payload = _served_payload(x, target)
    if payload is None or not pc.has_marks(payload):
        return {}
    support = adapter.capabilities(target).prompt_cache
    ours = _auto_marks(payload)
    dropped = [d for d in pc.prepare(payload, support)[1] + x.sent_dropped if d[0] not in ours]
    client = getattr(x.request, "payload", None)
    return pc.dropped_header(pc.in_client_terms(dropped, client, payload))


def _auto_marks(payload: dict[str, Any]) -> set[str]:
    """Where the gateway placed breakpoints itself (auto mode)."""
    found = {f"tools[{k}]" for k, t in enumerate(payload.get("tools") or ()) if _auto(t)}
    system = payload.get("system")  # Anthropic's system blocks (passthrough)
    found |= {f"system[{k}]" for k, b in enumerate(system or ()) if _auto(b)}
    for i, message in enumerate(payload.get("messages") or ()):
        if _auto(message):
            found.add(f"messages[{i}]")
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if _auto(part):
                found.add(f"messages[{i}].content[{j}]")
    return found


def _auto(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get(pc.MARK), _Auto)


def _served_payload(x: AnyExchange, target: object) -> dict[str, Any] | None:
    for step in getattr(x, "steps", ()):
        if getattr(step, "target", None) is target and isinstance(
            getattr(step, "payload", None), dict
        ):
            payload: dict[str, Any] = step.payload
            return payload
    return None
