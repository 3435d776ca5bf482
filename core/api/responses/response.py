"""Canonical chat completion -> a Responses `response` object, and the pieces the stream
encoder shares (ids, usage, status, the response envelope).

Output items, in the order OpenAI emits them: a `reasoning` item (its summary is the
reasoning text the provider gave: DeepSeek's reasoning_content, Anthropic's thinking, Gemini's
thought summaries), then a `message` with one `output_text` part, then one `function_call`
per tool call, each with the provider's call id as `call_id`. `status` is `completed`, or
`incomplete` with `incomplete_details.reason` (`max_output_tokens` for a length stop,
`content_filter` for a filtered answer).
"""

from __future__ import annotations

import os
import time
from typing import Any

from core.api.messages.response import reasoning_text
from core.providers.adapters.base import JSON
from core.wire.tokens import token_count

# Fields of the request echoed in the response object, as OpenAI does.
_ECHOED = (
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
    "user",
)
_DEFAULTS: JSON = {
    "metadata": {},
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """OpenAI-shaped item ids (msg_, fc_, rs_, resp_): random, so a stored response's id
    reveals nothing and cannot be guessed."""
    return prefix + os.urandom(16).hex()


def responses_usage(usage: Any) -> JSON | None:
    """Canonical usage in the Responses shape (cached and reasoning tokens in their details)."""
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage, "prompt_tokens")
    completion = token_count(usage, "completion_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": token_count(usage.get("prompt_tokens_details"), "cached_tokens")
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": token_count(
                usage.get("completion_tokens_details"), "reasoning_tokens"
            )
        },
        "total_tokens": token_count(usage, "total_tokens") or prompt + completion,
    }


def envelope(request: JSON, response_id: str, model: str, created: int | None = None) -> JSON:
    """The response object around its output (status in_progress until finished)."""
    reasoning = request.get("reasoning")
    text = request.get("text")
    response: JSON = {
        "id": response_id,
        "object": "response",
        "created_at": created if created is not None else int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "reasoning": reasoning if isinstance(reasoning, dict) else {"effort": None},
        "store": request.get("store") is not False,
        "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": None,
    }
    for key in _ECHOED:
        value = request.get(key)
        response[key] = value if value is not None else _DEFAULTS.get(key)
    return response


def finish(response: JSON, finish_reason: Any, usage: Any) -> JSON:
    """Sets the final status (and the incomplete reason) and the usage."""
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    response["usage"] = responses_usage(usage)
    return response


def reasoning_item(text: str, item_id: str | None = None) -> JSON:
    return {
        "id": item_id or new_id("rs_"),
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}],
    }


def message_item(text: str, item_id: str | None = None, status: str = "completed") -> JSON:
    return {
        "id": item_id or new_id("msg_"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text(text)],
    }


def output_text(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(
    call_id: str, name: str, arguments: str, item_id: str | None = None, status: str = "completed"
) -> JSON:
    return {
        "id": item_id or new_id("fc_"),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def _text_of(message: JSON) -> str:
    text = message.get("content")
    if isinstance(text, list):  # some hosts answer with content parts
        text = "".join(
            p["text"] for p in text if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    refusal = message.get("refusal")
    if not text and isinstance(refusal, str):
        text = refusal
    return text if isinstance(text, str) else ""


def output_items(message: JSON) -> list[JSON]:
    """A canonical assistant message's output items."""
    items: list[JSON] = []
    thinking = reasoning_text(message)
    if thinking:
        items.append(reasoning_item(thinking))
    text = _text_of(message)
    if text:
        items.append(message_item(text))
    for k, call in enumerate(message.get("tool_calls") or ()):
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        call_id = call.get("id") or f"call_{k}_{new_id('')}"
        arguments = function.get("arguments")
        items.append(
            call_item(
                call_id,
                str(function.get("name") or ""),
                arguments if isinstance(arguments, str) else "{}",
            )
        )
    return items


def to_response(completion: JSON, request: JSON, response_id: str, model: str) -> JSON:
    """The Responses object for a canonical completion."""
    choices = completion.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    response = envelope(request, response_id, str(completion.get("model") or model))
    response["output"] = output_items(message if isinstance(message, dict) else {})
    return finish(response, choice.get("finish_reason"), completion.get("usage"))
