"""Bedrock's `CountTokens` (`POST /model/{id}/count-tokens`) for the fake
(tests/support/fake_bedrock.py), signed like every call to it.

Checked as Bedrock checks it: the body is `{"input": {"converse": {...}}}` whose fields are
Converse's input only (`messages`, `system`, `toolConfig`, `additionalModelRequestFields`;
`inferenceConfig` is refused), and only Claude models count (others: ValidationException).
The count is a quarter of every string's length in what was sent, so a test can tell that the
system prompt and the tools were counted.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.support.fake_gemini_cache import count_tokens

CONVERSE_FIELDS = {"messages", "system", "toolConfig", "additionalModelRequestFields"}


def count_answer(model: str, raw: bytes) -> web.Response:
    from tests.support.fake_bedrock import aws_error

    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return aws_error(400, "ValidationException", "Malformed input request")
    converse = body.get("input", {}).get("converse") if isinstance(body, dict) else None
    if not isinstance(converse, dict) or not isinstance(converse.get("messages"), list):
        return aws_error(400, "ValidationException", "input.converse.messages is required")
    extra = sorted(set(converse) - CONVERSE_FIELDS)
    if extra:
        message = f"extraneous key [{extra[0]}] is not permitted"
        return aws_error(400, "ValidationException", message)
    if "anthropic.claude" not in model:
        message = "The provided model doesn't support counting tokens."
        return aws_error(400, "ValidationException", message)
    answer = {"inputTokens": count_tokens(converse)}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")
