"""A request's stable prefix, fingerprinted at message boundaries (core.pipeline.prompt_cache
uses the longest as prompt_cache_key; core.cache.affinity looks up the holder of each).

The fingerprint is a hash chained over the tenant, the tools and a top-level system prompt,
then each message in order, with the marks stripped: a marked and an unmarked copy of a
message agree, so the boundary a turn's last mark ended on is found again by the next turn,
whose own marks sit elsewhere (auto mode moves its last one every turn).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from core.wire import prompt_cache as pc

_SYSTEM = ("system", "developer")


def has_mark(message: dict[str, Any]) -> bool:
    """Whether a message carries a mark: on itself, a content part, or a block nested in one."""
    content = message.get("content")
    return pc.MARK in message or (
        isinstance(content, list) and any(pc.marked_part(p) for p in content)
    )


def has_mark_any(items: list[Any]) -> bool:
    return any(isinstance(item, dict) and pc.MARK in item for item in items)


def fingerprint(payload: dict[str, Any], tenant: str) -> str:
    """A hash of the tenant and the stable prefix (through the last marked message): the
    prompt_cache_key, and the affinity registry's key (core.cache.affinity)."""
    return prefixes(payload, tenant, 0)[0]


def scope(tenant: str) -> str:
    """The tenant's tag in the affinity registry's keys (its Redis hash tag): a digest, so
    an odd tenant name never shapes a key."""
    return hashlib.blake2b(tenant.encode(), digest_size=8).hexdigest()


def prefixes(payload: dict[str, Any], tenant: str, lookback: int) -> list[str]:
    """Fingerprints of the stable prefix at message boundaries, longest first: through the
    last marked message (what a target holds once it answered), then the `lookback` earlier
    boundaries, those before the last three user messages (where auto mode's mark sat in
    earlier turns, however many tool messages came since) and those of the other marks: what
    an earlier turn of the same conversation left. In auto mode the last mark moves every turn
    (the turn before the last user message), so turn N+1 finds turn N's entry among these.

    One hash chained message by message over the request with its marks stripped (a marked
    and an unmarked copy of a message agree): tenant, tools and a top-level system prompt,
    then each message in order; a boundary's fingerprint is the chain's digest there."""
    messages = payload.get("messages") or []
    marked = [  # a message's own mark first: the cheap test, and auto mode's
        i
        for i, m in enumerate(messages)
        if pc.MARK in m or (type(m.get("content")) is list and has_mark(m))
    ]
    last, marked_set = (marked[-1] if marked else -1), set(marked)
    wanted = {last, *marked[-4:], *range(max(-1, last - lookback), last)}
    users = 0
    for i in range(last - 1, 0, -1) if lookback else ():  # where auto mode's mark sat in
        if messages[i].get("role") == "user":  # earlier turns, however long their tool loops
            wanted.add(i - 1)
            users += 1
            if users == 3:
                break
    if last >= 0 and not (
        _marked_list(payload.get("tools")) or _marked_list(payload.get("system"))
    ):
        wanted.discard(-1)  # nothing cached ends before the first message
    chain = hashlib.sha256(tenant.encode())
    head = [_bare_list(payload.get("tools")), _bare_list(payload.get("system"))]
    system = [_bare(m) for m in messages if m.get("role") in _SYSTEM] if last < 0 else None
    if system:  # no message marked: the system messages are the stable part (the key's)
        head.append(system)
    chain.update(b"\0p" + orjson.dumps(head))
    found = {-1: chain.copy().hexdigest()} if -1 in wanted else {}
    start = 0
    for end in sorted(i for i in wanted if i >= 0):  # each message's JSON, then a comma
        run = messages[start : end + 1]
        run = [_bare(m) if i in marked_set else m for i, m in enumerate(run, start)]
        chain.update(memoryview(orjson.dumps(run))[1:-1])  # one dump per run: the same bytes
        chain.update(b",")
        found[end], start = chain.copy().hexdigest(), end + 1
    return ["ilk-" + found[i][:40] for i in sorted(found, reverse=True)]


def _bare(message: Any) -> Any:
    """A message without its marks (on itself, its parts, a tool_result's blocks): only
    marked containers are copied."""
    if not isinstance(message, dict) or not has_mark(message):
        return message
    out = {k: v for k, v in message.items() if k != pc.MARK}
    if isinstance(out.get("content"), list):
        out["content"] = [_bare(_unmarked(p)) for p in out["content"]]
    return out


def _unmarked(item: Any) -> Any:
    if isinstance(item, dict) and pc.MARK in item:
        return {k: v for k, v in item.items() if k != pc.MARK}
    return item


def _bare_list(blocks: Any) -> Any:
    return [_unmarked(b) for b in blocks] if isinstance(blocks, list) else blocks


def _marked_list(blocks: Any) -> bool:
    return isinstance(blocks, list) and has_mark_any(blocks)
