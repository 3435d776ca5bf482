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
            nested = block.get("content") if isinstance(block, dict) else None
            if block.get("type") == "tool_result" and isinstance(nested, list):
                for inner in nested:  # a tool_result's own blocks hold breakpoints too
                    add(inner)
                block = {k: v for k, v in block.items() if k != "content"}
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


REFUSED = "Unrecognized request argument supplied: cache_control"


def has_cache_control(body: dict[str, Any]) -> bool:
    """Whether a cache_control key sits anywhere in the messages or tools (OpenAI refuses it)."""
    return b'"cache_control"' in orjson.dumps([body.get("messages"), body.get("tools")])


def openai_usage(cache: PromptCache, body: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI caches prompts of 1024 tokens or more by themselves, in 128-token steps of the
    longest prefix (tools, then whole messages) seen before; below that the usage stands."""
    blocks: list[tuple[Any, str | None]] = [(t, "5m") for t in body.get("tools") or ()]
    blocks += [(m, "5m") for m in body.get("messages") or ()]
    if not cacheable(blocks):
        return usage
    plain, read, write_5m, write_1h = cache.usage(blocks)
    prompt = plain + read + write_5m + write_1h
    details = {**usage["prompt_tokens_details"], "cached_tokens": read // 128 * 128}
    completion = usage["completion_tokens"]
    return {
        **usage,
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }


def anthropic_usage(
    cache: PromptCache, body: dict[str, Any], usage: dict[str, Any]
) -> dict[str, Any]:
    """Anthropic's usage for a request with breakpoints: reads, and writes by TTL."""
    blocks = anthropic_blocks(body)
    if not cacheable(blocks):
        return usage
    plain, read, write_5m, write_1h = cache.usage(blocks)
    return {
        **usage,
        "input_tokens": plain,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write_5m,
            "ephemeral_1h_input_tokens": write_1h,
        },
    }


def breakpoint_problem(body: dict[str, Any]) -> str | None:
    """Anthropic's own limits on cache_control (four at most, longer TTLs first), as its
    400 message, or None."""
    ttls = [ttl for _, ttl in anthropic_blocks(body) if ttl is not None]
    if len(ttls) > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {len(ttls)}."
    if "5m" in ttls and "1h" in ttls[ttls.index("5m") :]:
        return "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block"
    return None
