"""`:countTokens` for the fake Gemini (tests/support/fake_gemini.py), AI Studio and Vertex AI.

Checked as each checks it: AI Studio takes `contents` or a `generateContentRequest` (whose
`model` must name the model of the path; a system instruction or tools at the top level are
unknown names there), Vertex AI takes `contents`, `systemInstruction`, `tools` and
`generationConfig` at the top level (a `generateContentRequest` is an unknown name there).
The count is the fake's usual one (a quarter of every string's length) over everything
counted, so a test can tell that the system instruction and the tools were sent.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tests.support.fake_gemini_cache import count_tokens

if TYPE_CHECKING:
    from tests.support.fake_gemini import FakeGemini

STUDIO = re.compile(r"^/(v1beta|v1)/models/([^/:]+):countTokens$")
VERTEX = re.compile(
    r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+)"
    r":countTokens$"
)
_STUDIO_KEYS = {"contents", "generateContentRequest"}
_REQUEST_KEYS = {
    "model",
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
}
_VERTEX_KEYS = {"contents", "systemInstruction", "tools", "generationConfig", "instances"}


def _unknown(keys: set[str], allowed: set[str]) -> str | None:
    extra = sorted(keys - allowed)
    return f'Invalid JSON payload received. Unknown name "{extra[0]}"' if extra else None


def _counted(body: dict[str, Any], model: str, vertex: bool) -> dict[str, Any] | str:
    """What is counted, or why the request is invalid."""
    if vertex:
        return _unknown(set(body), _VERTEX_KEYS) or body
    problem = _unknown(set(body), _STUDIO_KEYS)
    if problem is not None:
        return problem
    inner = body.get("generateContentRequest")
    if inner is None:
        return body
    if not isinstance(inner, dict):
        return "generateContentRequest must be an object"
    problem = _unknown(set(inner), _REQUEST_KEYS)
    if problem is not None:
        return problem
    if inner.get("model") != f"models/{model}":
        return f"generateContentRequest.model must be models/{model}"
    return {key: value for key, value in inner.items() if key != "model"}


async def count_answer(fake: FakeGemini, request: web.Request) -> web.Response:
    from tests.support.fake_gemini import error_response

    studio, vertex = STUDIO.match(request.path), VERTEX.match(request.path)
    if studio is None and vertex is None:
        return error_response(404, "NOT_FOUND", f"Requested entity was not found: {request.path}")
    model = studio.group(2) if studio else vertex.group(4)  # type: ignore[union-attr]
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    denied = fake.admit(request, raw, body, f"count:{model}", vertex)
    if denied is not None:
        return denied
    if not isinstance(body, dict) or (
        not body.get("contents") and "generateContentRequest" not in body
    ):
        return error_response(400, "INVALID_ARGUMENT", "contents must not be empty")
    counted = _counted(body, model, vertex is not None)
    if isinstance(counted, str):
        return error_response(400, "INVALID_ARGUMENT", counted)
    failure = fake.failure(model)
    if failure is not None:
        return failure
    answer = {"totalTokens": count_tokens(counted), "promptTokensDetails": []}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")
