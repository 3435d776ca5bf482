"""OpenAI (and Azure's v1 API) get the client's own Responses request: nothing is lost.

The body is the client's, with `model` set to the target's deployment and, when the request
continues a stored conversation (`previous_response_id`, an id of this gateway's store), the
earlier items placed before its input instead (the upstream has never seen that id);
reasoning items without `encrypted_content` are left out of those, since the upstream could
only resolve them from its own store. The client's bytes are sent unchanged when nothing
changes. A routing rule's cap (`payload_changed`) lowers `max_output_tokens`.

Answers are relayed as they come. Stream events are re-framed whole (never half an event) and
read on the side: `response.completed` / `response.incomplete` give the usage to account and
the response to store, an upstream `error` or `response.failed` event ends the relay, and a
cut stream ends with the gateway's own `error` and `response.failed` events, numbered after the
last relayed one, never a clean close. Upstream errors before the first byte are the chat
adapter's (same failure classes, so failover treats both paths alike) and leave in the
gateway's OpenAI envelope, scrubbed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from core.api.relay import UsageSink, relay_events
from core.api.responses.plan import responses_url
from core.providers.adapters.azure import ADAPTER as AZURE
from core.providers.adapters.base import JSON, ProviderError, StreamEvent, Target, UpstreamRequest
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.providers.parsing import guarded_error_parser, parsing
from core.providers.scrub import sanitize
from core.providers.transport import UpstreamBody
from core.spend.quote import CostOf, with_cost
from core.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, encode_event
from shared.errors import FailureClass, invalid_upstream, upstream_object

_ERROR_PARSER = guarded_error_parser(OPENAI.parse_error)
_FINAL = ("response.completed", "response.incomplete")
Finished = Callable[[JSON], None]


def canonical_usage(usage: Any) -> JSON | None:
    """Responses usage -> the canonical (chat) shape accounting reads."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or {}
    output = usage.get("output_tokens_details") or {}
    prompt = usage.get("input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": usage.get("total_tokens") or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": details.get("cached_tokens") or 0},
        "completion_tokens_details": {"reasoning_tokens": output.get("reasoning_tokens") or 0},
    }


def upstream_body(body: JSON, raw: bytes, history: list[Any] | None, target: Target) -> bytes:
    """The request the target gets (see the module docstring)."""
    if not history and body.get("model") == target.model:
        return raw
    return orjson.dumps({**with_history(body, history), "model": target.model})


def with_history(body: JSON, history: list[Any] | None) -> JSON:
    """The client's request with its previous response's items inlined before its own input
    (the upstream does not know the gateway's response ids)."""
    if not history:
        return body
    kept = [
        _inlined(item)
        for item in history
        if not (
            isinstance(item, dict)
            and item.get("type") == "reasoning"
            and not item.get("encrypted_content")
        )
    ]
    own = body.get("input")
    own_items = [{"role": "user", "content": own}] if isinstance(own, str) else own or []
    out = {**body, "input": [*kept, *own_items]}
    out.pop("previous_response_id", None)
    return out


def _inlined(item: Any) -> Any:
    """A history item as the upstream takes it back: the ids the gateway gave input items
    (for GET .../input_items) are its own, and OpenAI's input messages and tool outputs
    take none."""
    if not isinstance(item, dict) or "id" not in item:
        return item
    kind = item.get("type", "message")
    if kind == "function_call_output" or (kind == "message" and item.get("role") != "assistant"):
        return {k: v for k, v in item.items() if k != "id"}
    return item


def responses_request(
    target: Target, sent: bytes, stream: bool, endpoint: str = ""
) -> UpstreamRequest:
    """To the target's Responses API (`endpoint`: below it, e.g. `/input_tokens`)."""
    url = responses_url(target)
    if url is None:  # planning sends only targets that speak the API here
        raise ProviderError(
            502, "the target does not speak the Responses API", FailureClass.CLIENT_ERROR
        )
    adapter = AZURE if target.provider.kind == "azure" else OPENAI
    headers = {
        "content-type": "application/json",
        "accept": "text/event-stream" if stream else "application/json",
        **target.provider.headers,
        **adapter.auth_headers(target),
    }
    return UpstreamRequest("POST", url + endpoint, headers, sent)


def response_of(body: bytes) -> JSON:
    response = upstream_object(body, "a response that is not JSON", "a response without output")
    if not isinstance(response.get("output"), list):
        raise invalid_upstream("a response without output")
    return response


class ResponsesPassthrough:
    """Sends through the target's provider's transport, like every other call; stream events
    are capped at `max_event_bytes`."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes

    async def complete(self, target: Target, sent: bytes) -> tuple[bytes, JSON]:
        """The upstream's response bytes and the response object (for usage and the store)."""
        _, body = await target.provider.transport.fetch(
            responses_request(target, sent, False), target, _ERROR_PARSER
        )
        with parsing(target):
            return body, response_of(body)

    async def open_stream(self, target: Target, sent: bytes) -> ResponsesStream:
        """Returns once the first event is in hand, so failures before it can still fail over."""
        body = await target.provider.transport.open(
            responses_request(target, sent, True), target, _ERROR_PARSER
        )
        stream = ResponsesStream(body, target, SSEDecoder(self._max_event_bytes))
        try:
            await stream.prime()
        except BaseException:
            body.close()
            raise
        return stream


class ResponsesStream:
    """A relayed Responses event stream (see the module docstring)."""

    def __init__(self, body: UpstreamBody, target: Target, decoder: SSEDecoder) -> None:
        self._body = body
        self._target = target
        self._decoder = decoder
        self._first: list[StreamEvent] = []
        self._sequence = 0
        self._snapshot: JSON = {}
        self._final: JSON | None = None
        self._error: ProviderError | None = None
        self._usage: JSON | None = None
        self._cost_of: CostOf | None = None
        self._finished: Finished | None = None

    async def prime(self) -> None:
        try:
            with parsing(self._target):
                self._first = await self._body.first_events(self._decoder)
                first = _loads(self._first[0].data)
                if isinstance(first, dict) and first.get("type") == "error":
                    raise ProviderError(
                        502, "the upstream failed the response", FailureClass.TRANSIENT
                    )
        except ProviderError as error:
            raise sanitize(error, self._target) from None

    async def relay(
        self, on_end: UsageSink, cost_of: CostOf | None, finished: Finished
    ) -> AsyncIterator[bytes]:
        self._cost_of, self._finished = cost_of, finished
        outcome = "cancelled"
        try:
            first, self._first = self._first, []
            async for out in relay_events(self._body, self._decoder, self._target, first, self):
                yield out
            outcome = "ok" if self._error is None else f"cut:{self._error.failure_class}"
        finally:
            if self._final is not None:
                self._body.release()
            else:
                self._body.close()
            on_end(self._usage, outcome, self._error)

    # The steps core.api.relay.relay_events takes.
    def framed(self, events: list[StreamEvent]) -> bytes:
        return self._framed(events)

    def over(self) -> bool:
        return self._final is not None or self._error is not None

    def failed(self, error: ProviderError) -> bytes:
        return self._fail(error)

    def unfinished(self) -> bytes:
        ended = "the upstream stream ended before completion"
        return self._fail(ProviderError(502, ended, FailureClass.TRANSIENT))

    def _fail(self, error: ProviderError) -> bytes:
        """The gateway's `error` and `response.failed` events after a cut."""
        self._error = sanitize(error, self._target)
        code = self._error.code or "server_error"
        message = self._error.message
        out = self._event("error", code=code, message=message, param=None)
        failed = {**self._snapshot, "status": "failed", "error": {"code": code, "message": message}}
        return out + self._event("response.failed", response=failed)

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return encode_event(kind, payload)

    def _framed(self, events: list[StreamEvent]) -> bytes:
        parts: list[bytes] = []
        for event in events:
            payload = _loads(event.data)
            if not isinstance(payload, dict):
                parts.append(self._fail(invalid_upstream("an event that is not JSON")))
                break
            kind = payload.get("type")
            sequence = payload.get("sequence_number")
            if isinstance(sequence, int):
                self._sequence = sequence + 1
            if kind in ("error", "response.failed"):
                self._error = ProviderError(
                    502, "the upstream failed the response", FailureClass.TRANSIENT
                )
            data = self._observe(kind, payload, event.data)
            parts.append(encode_event(str(kind), data) if data is not None else b"")
            if self._final is not None or self._error is not None:
                break
        return b"".join(parts)

    def _observe(self, kind: Any, payload: JSON, data: bytes) -> Any:
        """What to relay for the event: its data, or the final response with its cost."""
        response = payload.get("response")
        if not isinstance(response, dict):
            return orjson.Fragment(data)
        self._snapshot = response
        if kind not in _FINAL:
            return orjson.Fragment(data)
        self._final = response
        self._usage = canonical_usage(response.get("usage"))
        if self._finished is not None:
            self._finished(response)
        usage = response.get("usage")
        if not isinstance(usage, dict) or self._usage is None or self._cost_of is None:
            return orjson.Fragment(data)
        shown = with_cost(usage, self._usage, self._cost_of)
        return {**payload, "response": {**response, "usage": shown}}


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
