"""Gemini's own count: `models/{model}:countTokens`, with the request translated exactly as
for `generateContent` (core.providers.adapters.gemini.request), so the system instruction,
the tools and a response schema are counted as they would be sent.

AI Studio takes them wrapped in `generateContentRequest` (with the model's resource name; a
bare `contents` would leave the system instruction and tools out of the count); Vertex AI's
CountTokensRequest takes `contents`, `systemInstruction`, `tools` and `generationConfig` at
the top level, and has no `toolConfig`. Both answer `{"totalTokens": N, ...}`.

Of the generation config only the response schema is sent (it becomes part of the prompt the
model reads, so it is billed as input): sampling, output caps and thinking settings do not
change what the input costs, and leaving them out spares the count refusals they could cause.
Safety settings are left out for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from core.providers.adapters.counting import Counted, CountInput, reply_count
from core.providers.adapters.gemini import ADAPTER
from core.providers.adapters.gemini.errors import parse_error
from core.providers.adapters.gemini.request import build_body

# The generateContent fields that make up the input a count is about, per API.
STUDIO_COUNTED = ("contents", "systemInstruction", "tools", "toolConfig")
VERTEX_COUNTED = ("contents", "systemInstruction", "tools")
# The generationConfig fields that are input: the schema the answer must follow (with the
# MIME type a schema requires).
SCHEMA_FIELDS = ("responseMimeType", "responseSchema")


def counted_fields(body: JSON, fields: tuple[str, ...]) -> JSON:
    """The fields of a generateContent body a count sends (`fields`, and the schema part of
    its generation config)."""
    counted = {key: body[key] for key in fields if key in body}
    config = body.get("generationConfig") or {}
    schema = {key: config[key] for key in SCHEMA_FIELDS if key in config}
    if schema:
        counted["generationConfig"] = schema
    return counted


class GeminiCounter:
    __slots__ = ()

    def problem(self, target: Target) -> str | None:
        return None  # every Gemini model counts

    def build(self, request: CountInput, target: Target) -> UpstreamRequest:
        if request.canonical is None:
            raise ValueError("a Gemini count needs the canonical translation")  # a wiring bug
        settings = ADAPTER.settings(target.provider)
        url = ADAPTER.method_url(target, settings, "countTokens")  # the model id checked
        body = build_body(request.canonical, target.model, settings)
        payload: JSON
        if settings.vertex:
            payload = counted_fields(body, VERTEX_COUNTED)
        else:
            name = target.model if "/" in target.model else f"models/{target.model}"
            inner = counted_fields(body, STUDIO_COUNTED)
            payload = {"generateContentRequest": {"model": name, **inner}}
        return ADAPTER.request_to(target, settings, url, payload)

    def parse(self, body: bytes, target: Target) -> Counted:
        return Counted(reply_count(body, "totalTokens"))

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_error(status, headers, body)

    def refused(self, error: ProviderError) -> bool:
        return False  # the provider counts for every model it serves


GEMINI_COUNTER = GeminiCounter()
