"""Gemini's own count: `models/{model}:countTokens`, with the request translated exactly as
for `generateContent` (core.providers.adapters.gemini.request), so the system instruction,
the tools and the tool config are counted as they would be sent.

AI Studio takes them wrapped in `generateContentRequest` (with the model's resource name; a
bare `contents` would leave the system instruction and tools out of the count); Vertex AI's
CountTokensRequest takes `contents`, `systemInstruction` and `tools` at the top level. Both
answer `{"totalTokens": N, ...}`. Sampling and safety settings are left out: they do not
change what the input costs.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.counting import Counted, CountInput, reply_count
from core.providers.adapters.gemini import ADAPTER
from core.providers.adapters.gemini.errors import parse_error
from core.providers.adapters.gemini.request import build_body

# The generateContent fields that make up the input a count is about.
COUNTED = ("contents", "systemInstruction", "tools", "toolConfig")
_VERTEX_COUNTED = ("contents", "systemInstruction", "tools")  # Vertex's CountTokensRequest


class GeminiCounter:
    __slots__ = ()

    def problem(self, target: Target) -> str | None:
        return None  # every Gemini model counts

    def build(self, request: CountInput, target: Target) -> UpstreamRequest:
        if request.canonical is None:
            raise ValueError("a Gemini count needs the canonical translation")  # a wiring bug
        settings = ADAPTER.settings(target.provider)
        body = build_body(request.canonical, target.model, settings)
        url = ADAPTER.url(target, settings, False).removesuffix(":generateContent")
        if settings.vertex:
            payload = {key: body[key] for key in _VERTEX_COUNTED if key in body}
        else:
            name = target.model if "/" in target.model else f"models/{target.model}"
            counted = {key: body[key] for key in COUNTED if key in body}
            payload = {"generateContentRequest": {"model": name, **counted}}
        return ADAPTER.request_to(target, settings, f"{url}:countTokens", payload)

    def parse(self, body: bytes, target: Target) -> Counted:
        return Counted(reply_count(body, "totalTokens"))

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_error(status, headers, body)


GEMINI_COUNTER = GeminiCounter()
