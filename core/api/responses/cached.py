"""The Responses API in the response cache and request coalescing: the `Cached` seam of the
one cache stage (core.cache.stage), so lookups, storing, Cache-Control, rate limits, the free
ledger record and coalescing are the stage's own, as for chat.

What it adds, because a Responses answer is an object of its own:

- The key (`key_payload`) is the client's request, not its canonical translation: the
  translation drops what only passthrough targets read (built-in tools, `include`, reasoning
  items), which does change their answer. Left out as for chat (core.cache.key.IGNORED):
  `model`, `stream`, `store`, `metadata`, `user`, `prompt_cache_key`, ...; and
  `previous_response_id`, replaced by the history it resolves to (the items the history
  stage loaded), less their ids: two requests are the same when the model is told the same
  thing, whatever the ids of the turns before. Keying on the id instead would be wrong (a
  response id is not its content) and bypassing would make every agent turn a miss.
  A routing rule's cap is keyed too.
- What is kept (`entry_of`): the `response` object of a completed or incomplete answer (a
  stream's from its `response.completed` / `response.incomplete` event, its price taken out);
  a failed or cut one never.
- A hit or a coalesced follower gets the answer as its own response (`fresh`): a new response
  id and new item ids (call ids are the model's, kept), this request's `metadata`, `user`,
  `store` and `previous_response_id`, and it is stored under that id before it is sent when
  `store` is not false, so GET /v1/responses/{id} and `previous_response_id` find it. A
  streamed hit is the complete object replayed as a Responses event stream
  (core.cache.replay); a streamed follower gets the leader's events rewritten event by event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from core.api.responses.response import new_id
from core.cache.replay import responses_stream
from core.pipeline.exchange import SSE_HEADERS
from core.providers.adapters.base import JSON
from core.resilience.dispatch import close
from core.spend.quote import COST_FIELD
from core.wire.sse import encode_data, encode_event

KIND = "responses"
_ENDED = frozenset(("response.completed", "response.incomplete"))
_KEPT = frozenset(("completed", "incomplete"))
# The request's own fields a response echoes, set from the request a kept answer serves.
_OWN = ("metadata", "user", "store", "previous_response_id", "prompt_cache_key")
Save = Callable[[JSON], Awaitable[None]]


def key_payload(body: JSON, history: list[Any] | None, max_tokens: Any, capped: bool) -> JSON:
    """The request part of the cache key (see the module docstring)."""
    keyed = {k: v for k, v in body.items() if k != "previous_response_id"}
    if history:
        keyed["history"] = [
            {k: v for k, v in item.items() if k != "id"} if isinstance(item, dict) else item
            for item in history
        ]
    if capped:
        keyed["max_output_tokens"] = max_tokens
    return keyed


def _frames(pending: bytearray, chunk: bytes) -> list[tuple[bytes, bytes]]:
    """The whole events in `pending` + `chunk` as (name, data), the rest left pending. The
    streams read here are the gateway's own encoding (core.wire.sse.encode_event: one `event:`
    and one `data:` line of JSON, which holds no raw line end), so lines are split, not
    scanned byte by byte as an upstream's stream must be (several times faster)."""
    if not pending and chunk.endswith(b"\n\n"):  # the usual case: whole events
        whole = chunk[:-2]
    else:
        pending += chunk
        end = pending.rfind(b"\n\n")
        if end < 0:
            return []
        whole = bytes(pending[:end])
        del pending[: end + 2]
    out = []
    for frame in whole.split(b"\n\n"):
        name = data = b""
        for line in frame.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if name or data:
            out.append((name, data))
    return out


def _final(raw: bytes) -> Any:
    """The response a stream ended with, if its last event completed it: its last line."""
    line = raw.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
    last = _loads(line[5:]) if line.startswith(b"data:") else None
    if not isinstance(last, dict) or last.get("type") not in _ENDED:
        return None
    return last.get("response")


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def entry_of(raw: bytes, streamed: bool) -> bytes | None:
    """The entry kept for an answer sent (see the module docstring)."""
    response = _final(raw) if streamed else _loads(raw)
    if not _a_response(response) or response.get("status") not in _KEPT:
        return None
    kept = without_price(response)  # what the first request paid is not a hit's price
    return raw if kept is response and not streamed else orjson.dumps(kept)


def _a_response(value: Any) -> bool:
    return isinstance(value, dict) and value.get("object") == "response"


def _renamed(item: Any, ids: dict[str, str]) -> Any:
    """`item` with a new id of the same kind (its prefix), the same one for the same old id."""
    old = item.get("id") if isinstance(item, dict) else None
    if not isinstance(old, str):
        return item
    new = ids.get(old)
    if new is None:
        new = ids[old] = new_id(old[: old.index("_") + 1] if "_" in old else "item_")
    return {**item, "id": new}


def fresh(response: JSON, body: JSON, ids: dict[str, str], response_id: str, created: int) -> JSON:
    """A kept (or shared) response as this request's own (see the module docstring)."""
    out = {**response, "id": response_id, "created_at": created}
    for key in _OWN:
        if key in response or key == "store":
            value = body.get(key)
            if key == "store":
                value = value is not False
            elif key == "metadata" and value is None:
                value = {}
            out[key] = value
    output = response.get("output")
    if isinstance(output, list):
        out["output"] = [_renamed(item, ids) for item in output]
    return out


def without_price(response: JSON) -> JSON:
    usage = response.get("usage")
    if isinstance(usage, dict) and COST_FIELD in usage:
        return {**response, "usage": {k: v for k, v in usage.items() if k != COST_FIELD}}
    return response


def read(body: bytes) -> JSON | None:
    """A kept response, or None when the entry is not one (a miss, never an error)."""
    kept = _loads(body)
    return kept if _a_response(kept) else None


async def hit(kept: JSON, request: JSON, headers: dict[str, str], save: Save | None) -> Response:
    """A hit: the kept response as this request's own, stored first, complete or streamed."""
    response = fresh(kept, request, {}, new_id("resp_"), int(time.time()))
    if save is not None:
        await save(response)
    if request.get("stream"):
        stream = responses_stream(response)
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
        )
    return Response(orjson.dumps(response), media_type="application/json", headers=headers)


async def follow(response: Response, request: JSON, save: Save | None) -> None:
    """A coalesced follower's response (the leader's answer) made its own, in place."""
    if isinstance(response, StreamingResponse):
        rewrite = _Rewrite(request, save)
        response.body_iterator = rewrite.stream(response.body_iterator)
        return
    shared = _loads(bytes(response.body))
    if not _a_response(shared):
        return
    own = fresh(shared, request, {}, new_id("resp_"), int(time.time()))
    if save is not None:
        await save(own)
    response.body = orjson.dumps(own)
    response.headers["content-length"] = str(len(response.body))


class _Rewrite:
    """The leader's events with this follower's response id, item ids and own fields; its
    response stored before the event that ends the stream is sent. A shared stream cut short
    ends with the coalescing's error (core.cache.follow, in chat's shape): it becomes the
    Responses API's own end, an `error` event and `response.failed`, numbered on."""

    __slots__ = ("created", "done", "ids", "request", "response_id", "save", "sequence", "snapshot")

    def __init__(self, request: JSON, save: Save | None) -> None:
        self.request = request
        self.save = save
        self.ids: dict[str, str] = {}
        self.response_id = new_id("resp_")
        self.created = int(time.time())
        self.sequence = -1  # the last sequence number sent
        self.snapshot: JSON = {}  # the response as the last lifecycle event showed it
        self.done: list[Any] = []  # output items finished so far

    async def stream(self, body: AsyncIterable[Any]) -> AsyncIterator[bytes]:
        pending, chunks = bytearray(), aiter(body)
        try:
            async for chunk in chunks:
                data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
                out = [await self._event(*event) for event in _frames(pending, data)]
                if out:
                    yield b"".join(out)
            tail = [await self._event(*event) for event in _frames(pending, b"\n\n")]
            if tail:
                yield b"".join(tail)
        finally:
            await close(chunks)

    async def _event(self, name: bytes, data: bytes) -> bytes:
        payload = _loads(data)
        if isinstance(payload, dict) and "type" not in payload and "error" in payload:
            return self._failed(payload["error"])
        if isinstance(payload, dict):
            self._own(payload)
            ended = payload.get("response") if payload.get("type") in _ENDED else None
            if isinstance(ended, dict) and self.save is not None:
                await self.save(without_price(ended))
            if name:
                return encode_event(name.decode(), payload)
            return encode_data(payload)
        head = b"event: " + name + b"\n" if name else b""
        return head + b"data: " + data + b"\n\n"

    def _own(self, payload: JSON) -> None:
        sequence = payload.get("sequence_number")
        if isinstance(sequence, int):
            self.sequence = max(self.sequence, sequence)
        response = payload.get("response")
        if isinstance(response, dict):
            made = fresh(response, self.request, self.ids, self.response_id, self.created)
            payload["response"] = self.snapshot = made
        if isinstance(payload.get("item"), dict):
            payload["item"] = _renamed(payload["item"], self.ids)
            if payload.get("type") == "response.output_item.done":
                self.done.append(payload["item"])
        item_id = payload.get("item_id")
        if isinstance(item_id, str):
            payload["item_id"] = _renamed({"id": item_id}, self.ids)["id"]

    def _failed(self, error: Any) -> bytes:
        """The stream's end when the shared answer was cut (see the class docstring)."""
        shown = error if isinstance(error, dict) else {}
        code = shown.get("code") or shown.get("type") or "server_error"
        message = shown.get("message") or "the shared answer ended early"
        self.sequence += 1
        first = {"type": "error", "sequence_number": self.sequence, "code": code}
        first.update(message=message, param=shown.get("param"))
        self.sequence += 1
        response = {**self.snapshot, "status": "failed", "output": self.done}
        response["error"] = {"code": code, "message": message}
        last = {"type": "response.failed", "sequence_number": self.sequence, "response": response}
        return encode_event("error", first) + encode_event("response.failed", last)
