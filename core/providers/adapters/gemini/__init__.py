"""Google Gemini, through AI Studio (generativelanguage) or Vertex AI (kind `gemini`).

Both speak the same GenerateContent JSON; they differ in URL and auth (see settings.py).
The module layout follows the adapter contract: request.py builds, response.py and stream.py
parse, errors.py maps failures, schema.py narrows JSON Schema, calls.py carries thought
signatures through tool-call ids.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from core.providers.adapters.base import (
    JSON,
    Capabilities,
    ProviderError,
    Target,
    UpstreamRequest,
    as_settings,
    settings_of,
)
from core.providers.adapters.gemini.caching import (
    CachePlan,
    Uncached,
    cache_locations,
    cache_resource,
    cached_request,
    plan_cache,
)
from core.providers.adapters.gemini.errors import parse_error
from core.providers.adapters.gemini.request import PARAMS, build_body, invalid
from core.providers.adapters.gemini.response import parse_response
from core.providers.adapters.gemini.settings import Settings, parse_settings
from core.providers.adapters.gemini.stream import GeminiStreamParser
from core.providers.adapters.gemini.token_file import TokenFileSigner
from core.wire.prompt_cache import CacheSupport
from core.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder
from shared.config import ProviderConfig

if TYPE_CHECKING:
    from core.providers.provider import Provider

# Model ids become part of the URL path, and tenants can name any model of a provider that
# allows it: anything but a plain id (or models/..., tunedModels/...) is refused.
_MODEL_ID = re.compile(r"^(?:models/|tunedModels/)?[A-Za-z0-9][A-Za-z0-9._@-]*$")

# Prompt-cache marks become a cachedContents resource at send time (core/providers/
# gemini_cache.py), which reports what it could not honour.
_CAPABILITIES = Capabilities(image_urls=False, params=PARAMS, prompt_cache=CacheSupport("context"))


class GeminiAdapter:
    kind = "gemini"

    def settings(self, provider: Provider) -> Settings:
        """Parsed once at start-up (core/providers/provider.py) and kept on the provider."""
        return settings_of(provider, Settings)

    def check_provider(self, provider: ProviderConfig) -> object:
        return parse_settings(provider)

    def capabilities(self, target: Target) -> Capabilities:
        return _CAPABILITIES

    def decoder(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> SSEDecoder:
        return SSEDecoder(max_event_bytes)

    def make_signer(self, settings: object) -> TokenFileSigner | None:
        token_file = as_settings(settings, Settings).token_file
        return TokenFileSigner(token_file) if token_file else None

    def url(self, target: Target, settings: Settings, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return self.method_url(target, settings, method)

    def method_url(self, target: Target, settings: Settings, method: str) -> str:
        """`{model}:{method}` under the provider's models URL, the model id checked first
        (generateContent, countTokens: gemini/counting.py)."""
        model = target.model
        if not _MODEL_ID.match(model) or (settings.vertex and "/" in model):
            raise invalid(f"{model!r} is not a valid Gemini model id", "model")
        if model.startswith("tunedModels/"):
            prefix = settings.models_url.removesuffix("models/")
        else:
            prefix, model = settings.models_url, model.removeprefix("models/")
        return f"{prefix}{model}:{method}"

    def build_request(self, canonical: JSON, target: Target) -> UpstreamRequest:
        settings = self.settings(target.provider)
        body = build_body(canonical, target.model, settings)
        return self._request(target, settings, bool(canonical.get("stream")), body)

    def plan_cache(self, canonical: JSON, target: Target) -> CachePlan | Uncached | None:
        """The explicit context cache the request's markers ask for (caching.py)."""
        return plan_cache(canonical, target.model, self.settings(target.provider))

    def build_cached_request(
        self, canonical: JSON, target: Target, plan: CachePlan, name: str
    ) -> UpstreamRequest:
        """generateContent naming the cache `name`, without the parts it holds."""
        settings = self.settings(target.provider)
        body = cached_request(plan, name)
        return self._request(target, settings, bool(canonical.get("stream")), body)

    def build_cache_create(self, plan: CachePlan, target: Target) -> UpstreamRequest:
        """`POST .../cachedContents` for the plan's prefix (AI Studio or Vertex AI)."""
        settings = self.settings(target.provider)
        self.url(target, settings, False)  # the same model id checks as generateContent
        collection, model_name = cache_locations(settings.models_url, target.model)
        body = cache_resource(plan, model_name, f"interlock-{plan.digest[:16]}")
        return self.request_to(target, settings, collection, body)

    def _request(
        self, target: Target, settings: Settings, stream: bool, body: JSON
    ) -> UpstreamRequest:
        request = self.request_to(target, settings, self.url(target, settings, stream), body)
        request.headers["accept"] = "text/event-stream" if stream else "application/json"
        return request

    def request_to(
        self, target: Target, settings: Settings, url: str, body: JSON
    ) -> UpstreamRequest:
        headers = dict(settings.headers)
        if target.api_key:
            if settings.vertex:
                headers["authorization"] = f"Bearer {target.api_key.reveal()}"
            else:
                headers["x-goog-api-key"] = target.api_key.reveal()
        headers["accept"] = "application/json"
        return UpstreamRequest("POST", url, headers, orjson.dumps(body))

    def parse_response(self, body: bytes, target: Target) -> JSON:
        return parse_response(body, target.model)

    def stream_parser(self, canonical: JSON, target: Target) -> GeminiStreamParser:
        return GeminiStreamParser(target.model)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_error(status, headers, body)


ADAPTER = GeminiAdapter()

__all__ = ["ADAPTER", "GeminiAdapter"]
