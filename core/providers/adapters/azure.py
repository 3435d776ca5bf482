"""Azure OpenAI: the OpenAI wire format behind Azure's URLs, auth and content filters.

URL, chosen by `options.api_version`:
- absent or "v1": the v1 GA API, `{base_url}/openai/v1/chat/completions`, deployment name in
  the body's `model` (no api-version: v1 is the default because it needs no monthly bumps);
  "preview" is the same path with `?api-version=preview`.
- a dated version ("2024-10-21", "2025-04-01-preview"): the deployments API,
  `{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`.
The target's model is the deployment name in both cases. `base_url` is the resource endpoint
(https://NAME.openai.azure.com), without /openai.

Auth: the key goes in `api-key`; with `options.auth: bearer` it is sent as
`Authorization: Bearer` instead, for Entra ID tokens supplied through api_key / ${ENV}.

Streams: the first chunk carries only `prompt_filter_results` (empty choices, empty id). It is
not forwarded (see openai_compat: OpenAI clients expect empty choices only on the usage chunk);
its `prompt_filter_results` ride on the first chunk that is forwarded, which keeps the
information where Azure's non-streamed responses put it, next to `choices`. Asynchronous-filter
annotations (choices without delta) are dropped; a `content_filter` finish passes through.
stream_options exists from api-version 2024-09-01-preview on; older dated versions reject it,
so it is withheld there (and streamed usage is then unavailable).

Errors: a prompt blocked by the filter (400, code content_filter / ResponsibleAIPolicyViolation)
is CONTENT_FILTER: the client's 400, never retried or failed over. 429 carries retry-after-ms
(preferred) and retry-after; Azure's 429 text names the operator's tier and quota page, so the
tenant gets a neutral message. "Out of call volume quota" (403) is quota exhaustion, not auth;
a missing deployment is the operator's misconfiguration (502, may fail over).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from core.providers.adapters.base import (
    JSON,
    Capabilities,
    ProviderError,
    Target,
    retry_after_seconds,
    settings_of,
)
from core.providers.adapters.openai_compat import (
    OpenAICompatAdapter,
    OpenAIStreamParser,
    error_from_payload,
)
from core.providers.adapters.options import check_keys
from core.providers.adapters.presets import GENERIC, Preset
from core.wire.prompt_cache import IMPLICIT, IMPLICIT_WITH_KEY
from shared.config import ProviderConfig
from shared.configparse import ConfigError, keys_of
from shared.errors import FailureClass, error_payload

if TYPE_CHECKING:
    from core.providers.provider import Provider

_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# The first api-version that accepts stream_options (dated versions sort as strings).
_STREAM_OPTIONS_SINCE = "2024-09-01"
_CAPABILITIES = Capabilities(prompt_cache=IMPLICIT)
_CAPABILITIES_WITH_KEY = Capabilities(prompt_cache=IMPLICIT_WITH_KEY)


class AzureStreamParser(OpenAIStreamParser):
    __slots__ = ("_prompt_filter",)

    def __init__(self) -> None:
        super().__init__()
        self._prompt_filter: Any = None

    def normalize(self, chunk: JSON, choices: Any) -> list[JSON]:
        if not choices and chunk.get("usage") is None:
            results = chunk.get("prompt_filter_results") or chunk.get("prompt_annotations")
            if results is not None:
                self._prompt_filter = results
        chunks = super().normalize(chunk, choices)
        if self._prompt_filter is not None and chunks and chunks[0].get("choices"):
            chunks[0] = {**chunks[0], "prompt_filter_results": self._prompt_filter}
            self._prompt_filter = None
        return chunks


@dataclass(frozen=True, slots=True)
class AzureOptions:
    """`providers.<name>.options` for kind azure, parsed once at start-up."""

    api_version: str = "v1"  # v1, preview, or a dated version (the deployments API)
    auth: str = "api-key"  # or bearer: the key is an Entra ID token
    # The v1 API takes prompt_cache_key for OpenAI models; deployments of other models on
    # Foundry (DeepSeek, Kimi...) refuse it as an unknown argument: false withholds it.
    prompt_cache_key: bool = True

    @property
    def dated(self) -> bool:
        return _DATED.match(self.api_version) is not None


_OPTIONS = keys_of(AzureOptions)


def parse_options(provider: ProviderConfig) -> AzureOptions:
    """The options and the provider settings Azure needs; ConfigError names the bad key."""
    path = f"providers.{provider.name}"
    check_keys(provider.options, _OPTIONS, f"{path}.options")
    base = provider.base_url
    if base is None:
        raise ConfigError(f"{path}.base_url: required (https://NAME.openai.azure.com)")
    if urlsplit(base).path.startswith("/openai"):
        raise ConfigError(f"{path}.base_url: give the resource endpoint only, without /openai/...")
    options = AzureOptions(**provider.options)
    version = options.api_version
    if not isinstance(version, str) or not (version in ("v1", "preview") or _DATED.match(version)):
        raise ConfigError(
            f"{path}.options.api_version: expected v1, preview or a dated version "
            "such as 2024-10-21"
        )
    if options.auth not in ("api-key", "bearer"):
        raise ConfigError(f"{path}.options.auth: expected api-key or bearer")
    if not isinstance(options.prompt_cache_key, bool):
        raise ConfigError(f"{path}.options.prompt_cache_key: expected true or false")
    if not provider.api_keys:
        raise ConfigError(f"{path}.api_key: required (an API key or an Entra ID token)")
    return options


class AzureAdapter(OpenAICompatAdapter):
    kind = "azure"

    def options(self, provider: Provider) -> AzureOptions:
        return settings_of(provider, AzureOptions)

    def check_provider(self, provider: ProviderConfig) -> object:
        return parse_options(provider)

    def preset(self, provider: Provider) -> Preset:
        return GENERIC  # Azure serves OpenAI's API itself: no host preset applies

    def capabilities(self, target: Target) -> Capabilities:
        # The v1 API (and its preview) mirrors OpenAI's and takes prompt_cache_key; the dated
        # versions are not documented to, and refuse arguments they do not know.
        options = self.options(target.provider)
        if options.api_version in ("v1", "preview") and options.prompt_cache_key:
            return _CAPABILITIES_WITH_KEY
        return _CAPABILITIES

    def url(self, target: Target) -> str:
        provider = target.provider
        version = self.options(provider).api_version
        if version == "v1":
            return f"{provider.base_url}/openai/v1/chat/completions"
        if version == "preview":
            return f"{provider.base_url}/openai/v1/chat/completions?api-version=preview"
        # The deployment comes from config or, with allow_any_model, from the tenant: quote it.
        deployment = quote(target.model, safe="")
        return (
            f"{provider.base_url}/openai/deployments/{deployment}/chat/completions"
            f"?api-version={version}"
        )

    def auth_headers(self, target: Target) -> dict[str, str]:
        if not target.api_key:
            return {}
        if self.options(target.provider).auth == "bearer":
            return {"authorization": f"Bearer {target.api_key.reveal()}"}
        return {"api-key": target.api_key.reveal()}

    def ask_stream_usage(self, target: Target) -> bool:
        options = self.options(target.provider)
        return not options.dated or options.api_version >= _STREAM_OPTIONS_SINCE

    def adapt_body(self, body: JSON, target: Target) -> None:
        return None

    def stream_parser(self, canonical: JSON, target: Target) -> AzureStreamParser:
        return AzureStreamParser()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        payload = error_payload(body)
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return error_from_payload(status, headers, payload)
        code = str(error.get("code") or "")
        inner = error.get("innererror")
        inner_code = inner.get("code") if isinstance(inner, dict) else None
        raw_message = error.get("message")
        message = raw_message if isinstance(raw_message, str) else ""
        if inner_code == "ResponsibleAIPolicyViolation" and code != "content_filter":
            error = {**error, "code": "content_filter"}
        elif code.isdigit():
            # Azure puts the HTTP status in `code`; it tells a client nothing more.
            error = {**error, "code": "rate_limit_exceeded" if status == 429 else None}
        if status == 429 and error.get("code") not in ("insufficient_quota",):
            retry = retry_after_seconds(headers)
            when = f"; retry after {retry:g} s" if retry is not None else ""
            return ProviderError(
                429,
                f"the upstream provider is rate limiting requests{when}",
                FailureClass.RATE_LIMIT,
                code="rate_limit_exceeded",
                retry_after_s=retry,
                upstream_status=status,
            )
        if status == 403 and "quota" in message.lower():
            return ProviderError(
                429,
                "the upstream provider's quota is exhausted",
                FailureClass.QUOTA_EXHAUSTED,
                code="insufficient_quota",
                retry_after_s=retry_after_seconds(headers),
                upstream_status=status,
            )
        if status == 404 and code == "DeploymentNotFound":
            return ProviderError(
                502,
                "the upstream deployment for this model does not exist",
                FailureClass.TRANSIENT,
                code="upstream_deployment_not_found",
                upstream_status=status,
            )
        return error_from_payload(status, headers, {"error": error})


ADAPTER = AzureAdapter()
