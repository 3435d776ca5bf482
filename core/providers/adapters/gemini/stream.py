"""streamGenerateContent?alt=sse -> canonical chunks.

Each SSE event is a whole GenerateContentResponse. Gemini sends no terminal event: the stream
is complete only once every candidate has a finishReason, so `finish()` is where a cut stream
is caught. usageMetadata repeats (and changes) on every event; the last one is the truth and
goes out as the final usage chunk. A candidate's functionCall and its STOP can arrive in
different events, so "called a function" is remembered per candidate.
"""

from __future__ import annotations

import time

from core.providers.adapters.base import JSON, StreamEvent
from core.providers.adapters.gemini.calls import tool_call_id
from core.providers.adapters.gemini.errors import error_from_payload
from core.providers.adapters.gemini.response import (
    FILTERED,
    arguments_text,
    block_reason,
    candidate_parts,
    candidates_of,
    completion_id,
    finish_reason,
    response_seed,
    usage,
)
from shared.errors import stream_incomplete, upstream_object


class _Candidate:
    __slots__ = ("calls", "finished")

    def __init__(self) -> None:
        self.calls = 0
        self.finished = False


class GeminiStreamParser:
    __slots__ = ("_base", "_candidates", "_model", "_seed", "_usage")

    def __init__(self, model: str) -> None:
        self._model = model
        self._seed: str | None = None
        self._base: JSON = {}
        self._candidates: dict[int, _Candidate] = {}
        self._usage: object = None

    def feed(self, event: StreamEvent) -> list[JSON]:
        data = event.data.strip()
        if not data or data == b"[DONE]":
            return []
        payload = upstream_object(data, "a malformed stream chunk")
        if "error" in payload:
            raise error_from_payload(200, {}, payload)
        if self._seed is None:
            self._start(payload)
        if isinstance(payload.get("usageMetadata"), dict):
            self._usage = payload["usageMetadata"]
        out: list[JSON] = []
        candidates = candidates_of(payload)
        if not candidates:
            if block_reason(payload) is not None:
                self._candidate(0, out).finished = True
                out.append(self._chunk(0, {}, FILTERED))
            return out
        for position, raw in enumerate(candidates):
            index = raw.get("index", position)
            if not isinstance(index, int):
                index = position
            state = self._candidate(index, out)
            for part in candidate_parts(raw):
                delta = self._delta(part, index, state)
                if delta is not None:
                    out.append(self._chunk(index, delta))
            reason = raw.get("finishReason")
            if isinstance(reason, str) and not state.finished:
                state.finished = True
                out.append(self._chunk(index, {}, finish_reason(reason, state.calls > 0)))
        return out

    def finish(self) -> list[JSON]:
        if not self._candidates or not all(c.finished for c in self._candidates.values()):
            raise stream_incomplete()
        return [{**self._base, "choices": [], "usage": usage(self._usage)}]

    def _start(self, payload: JSON) -> None:
        self._seed = response_seed(payload)
        model_version = payload.get("modelVersion")
        self._base = {
            "id": completion_id(self._seed),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model_version if isinstance(model_version, str) else self._model,
        }

    def _candidate(self, index: int, out: list[JSON]) -> _Candidate:
        state = self._candidates.get(index)
        if state is None:
            state = self._candidates[index] = _Candidate()
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))
        return state

    def _delta(self, part: JSON, index: int, state: _Candidate) -> JSON | None:
        call = part.get("functionCall")
        if isinstance(call, dict):
            assert self._seed is not None
            call_id = tool_call_id(self._seed, index, state.calls, part.get("thoughtSignature"))
            fragment = {
                "index": state.calls,
                "id": call_id,
                "type": "function",
                "function": {"name": str(call.get("name", "")), "arguments": arguments_text(call)},
            }
            state.calls += 1
            return {"tool_calls": [fragment]}
        text = part.get("text")
        if not isinstance(text, str) or not text:
            return None  # includes signature-only parts, which OpenAI cannot carry
        return {"reasoning_content": text} if part.get("thought") is True else {"content": text}

    def _chunk(self, index: int, delta: JSON, finish: str | None = None) -> JSON:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self._base, "choices": [choice]}
