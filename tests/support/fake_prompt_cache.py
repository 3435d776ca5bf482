"""A provider-side prompt cache for the fakes, as Anthropic and Bedrock document theirs.

The prompt is read in the providers' order (tools, system, messages) as a list of blocks; a
block carrying a breakpoint (Anthropic's cache_control, or a Converse cachePoint right after it)
ends a cacheable prefix. The longest prefix already written is read; the longest marked prefix
is written when it was not; the rest is plain input. Token counts are about four characters a
token of each block's JSON, which is all the tests need to compare two requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson


def _tokens(block: Any) -> int:
    return max(1, len(orjson.dumps(block)) // 4)


# The smallest prefix the fakes cache (the providers' common minimum): below it a breakpoint
# is ignored and the scripted usage stands, as a real provider silently caches nothing.
MINIMUM = 1024


class PromptCache:
    """Prefixes written so far (keyed by a hash of their blocks), per fake server."""

    def __init__(self) -> None:
        self.written: dict[str, str] = {}  # prefix hash -> ttl

    def reset(self) -> None:
        self.written.clear()

    def usage(self, blocks: Sequence[tuple[Any, str | None]]) -> tuple[int, int, int, int]:
        """(plain input, cache read, 5m writes, 1h writes) for blocks given as (block, ttl of
        the breakpoint it ends, or None): each stretch between breakpoints past what was read
        is written at its breakpoint's TTL."""
        digest = hashlib.sha256()
        total = 0
        read = 0
        marked: list[tuple[str, int, str]] = []
        for block, ttl in blocks:
            digest.update(orjson.dumps(block, option=orjson.OPT_SORT_KEYS))
            total += _tokens(block)
            if ttl is not None and total >= MINIMUM:
                key = digest.hexdigest()
                marked.append((key, total, ttl))
                if key in self.written:
                    read = total
        writes = {"5m": 0, "1h": 0}
        start = read
        for key, size, ttl in marked:
            if size > start:
                writes[ttl if ttl in writes else "5m"] += size - start
                start = size
            self.written.setdefault(key, ttl)
        return total - read - writes["5m"] - writes["1h"], read, writes["5m"], writes["1h"]


def cacheable(blocks: Sequence[tuple[Any, str | None]]) -> bool:
    """Whether a breakpoint ends a prefix long enough to be cached at all."""
    total = 0
    for block, ttl in blocks:
        total += _tokens(block)
        if ttl is not None and total >= MINIMUM:
            return True
    return False


def anthropic_blocks(body: dict[str, Any]) -> list[tuple[Any, str | None]]:
    """A Messages request's blocks in cache order, with their breakpoints."""
    out: list[tuple[Any, str | None]] = []

    def add(block: Any) -> None:
        mark = block.get("cache_control") if isinstance(block, dict) else None
        bare = {k: v for k, v in block.items() if k != "cache_control"} if mark else block
        out.append((bare, (mark.get("ttl") or "5m") if isinstance(mark, dict) else None))

    for tool in body.get("tools") or ():
        add(tool)
    system = body.get("system")
    if isinstance(system, str):
        add({"type": "text", "text": system})
    for block in system if isinstance(system, list) else ():
        add(block)
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, str):
            add({"type": "text", "text": content})
        for block in content if isinstance(content, list) else ():
            add(block)
    return out


def converse_blocks(body: dict[str, Any]) -> list[tuple[Any, str | None]]:
    """A Converse request's blocks in cache order; a cachePoint marks the block before it."""
    out: list[tuple[Any, str | None]] = []

    def add_all(blocks: Any) -> None:
        for block in blocks or ():
            if isinstance(block, dict) and "cachePoint" in block:
                if out:
                    out[-1] = (out[-1][0], block["cachePoint"].get("ttl") or "5m")
            else:
                out.append((block, None))

    add_all((body.get("toolConfig") or {}).get("tools"))
    add_all(body.get("system"))
    for message in body.get("messages") or ():
        add_all(message.get("content"))
    return out
