"""Bedrock's `CountTokens` (`POST /model/{id}/count-tokens`) for the fake
(tests/support/fake_bedrock.py), signed like every call to it.

Checked as Bedrock checks it: the body is `{"input": {"converse": {...}}}` whose fields are
Converse's input only (`messages`, `system`, `toolConfig`, `additionalModelRequestFields`;
`inferenceConfig` is refused), and only Claude 3.5 and later foundation model ids count
(others, profile ids and ARNs: ValidationException).
The count is a quarter of every string's length in what was sent, so a test can tell that the
system prompt and the tools were counted.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from tests.support.fake_gemini_cache import count_tokens

CONVERSE_FIELDS = {"messages", "system", "toolConfig", "additionalModelRequestFields"}
# The model ids CountTokens counts for: Claude foundation models from 3.5 on (not an inference
# profile's id, not an ARN). A model id containing "uncounted" is refused too, as Bedrock
# refuses some newer models in some regions.
COUNTING = re.compile(r"^anthropic\.claude-(?!instant|v\d|3-(?:haiku|sonnet|opus))")
NO_COUNT = "The provided model doesn't support counting tokens."


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
    if not COUNTING.match(model) or "uncounted" in model:
        return aws_error(400, "ValidationException", NO_COUNT)
    answer = {"inputTokens": count_tokens(converse)}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")
