"""ConverseStream events -> canonical chunks, with explicit per-stream state.

Bedrock numbers content blocks across text, reasoning and tool blocks alike (contentBlockIndex),
while OpenAI clients route tool-call fragments by a tool-only `index`; the parser keeps the map
between the two. Text blocks get no contentBlockStart, tool blocks always do. A stream is
complete only after both messageStop (the finish reason) and metadata (the usage): the usage
chunk is held until both have arrived so it is always the last chunk.
"""

from __future__ import annotations

import time

from core.providers.adapters.base import JSON, StreamEvent
from core.providers.adapters.bedrock.errors import stream_exception
from core.providers.adapters.bedrock.request import RESPONSE_TOOL
from core.providers.adapters.bedrock.response import (
    completion_id,
    convert_usage,
    finish_reason,
    string,
)
from shared.errors import stream_incomplete, upstream_object

_RESPONSE_BLOCK = -1  # the block carries the response_format answer: its input is content


class ConverseStreamParser:
    __slots__ = ("_base", "_blocks", "_finished", "_started", "_tools", "_usage")

    def __init__(self, model: str) -> None:
        self._base: JSON = {
            "id": completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._blocks: dict[int, int] = {}  # contentBlockIndex -> tool index (or _RESPONSE_BLOCK)
        self._tools = 0
        self._started = False
        self._finished = False
        self._usage: JSON | None = None

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        return {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def _start(self, out: list[JSON]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def feed(self, event: StreamEvent) -> list[JSON]:
        message_type = event.headers.get(":message-type", "event")
        if message_type != "event":
            raise stream_exception(event.event, event.data, event.headers)
        payload = upstream_object(event.data, "a malformed stream event") if event.data else {}
        out: list[JSON] = []
        name = event.event
        if name == "messageStart":
            self._start(out)
        elif name == "contentBlockStart":
            self._start(out)
            self._block_start(payload, out)
        elif name == "contentBlockDelta":
            self._start(out)
            self._block_delta(payload, out)
        elif name == "messageStop":
            self._start(out)
            self._finished = True
            real_tools = self._tools > 0
            out.append(self._chunk({}, finish_reason(payload.get("stopReason"), real_tools)))
            self._flush_usage(out)
        elif name == "metadata":
            self._usage = convert_usage(payload.get("usage"))
            self._flush_usage(out)
        return out  # contentBlockStop and unknown events carry nothing for the client

    def _block_start(self, payload: JSON, out: list[JSON]) -> None:
        start = payload.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        block = payload.get("contentBlockIndex")
        if not isinstance(use, dict) or not isinstance(block, int):
            return
        if use.get("name") == RESPONSE_TOOL:
            self._blocks[block] = _RESPONSE_BLOCK
            return
        index = self._tools
        self._tools += 1
        self._blocks[block] = index
        call = {
            "index": index,
            "id": string(use, "toolUseId"),
            "type": "function",
            "function": {"name": string(use, "name"), "arguments": ""},
        }
        out.append(self._chunk({"tool_calls": [call]}))

    def _block_delta(self, payload: JSON, out: list[JSON]) -> None:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            return
        text = delta.get("text")
        if isinstance(text, str):
            if text:
                out.append(self._chunk({"content": text}))
            return
        use = delta.get("toolUse")
        if isinstance(use, dict):
            fragment = use.get("input")
            block = payload.get("contentBlockIndex")
            index = self._blocks.get(block) if isinstance(block, int) else None
            if not isinstance(fragment, str) or not fragment or index is None:
                return
            if index == _RESPONSE_BLOCK:
                out.append(self._chunk({"content": fragment}))
            else:
                call = {"index": index, "function": {"arguments": fragment}}
                out.append(self._chunk({"tool_calls": [call]}))
            return
        reasoning = delta.get("reasoningContent")
        if (
            isinstance(reasoning, dict)
            and isinstance(reasoning.get("text"), str)
            and reasoning["text"]
        ):
            out.append(self._chunk({"reasoning_content": reasoning["text"]}))

    def _flush_usage(self, out: list[JSON]) -> None:
        if self._finished and self._usage is not None:
            out.append({**self._base, "choices": [], "usage": self._usage})

    def finish(self) -> list[JSON]:
        if not (self._finished and self._usage is not None):
            raise stream_incomplete()
        return []
