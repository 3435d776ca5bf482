"""Presets for OpenAI-compatible hosts: what each host accepts, under which names, and how.

Kind "openai" serves every host below through one adapter; a preset only changes data: the
default base URL, the top-level params the host honours (the core rejects or drops the rest),
param renames, how streamed usage is obtained, message fields the host refuses, and auth.
A provider picks one with `options.preset`; without it the preset is inferred from the base
URL's host, and an unknown host gets `GENERIC` (send everything, as the adapter always did).

Where the facts come from (checked by hand; facts we could not confirm are left out of a
host's param set, so a client gets a clear 400 naming the param rather than a silent no-op):
- groq: console.groq.com/docs/openai: logprobs, logit_bias, top_logprobs and messages[].name
  are a 400; `n` must be 1. The LangChain Groq client sends stream_options.include_usage.
- mistral: the official mistralai SDK request models (client-python) and public 422 reports:
  the API forbids unknown fields ("extra_forbidden"), including stream_options,
  max_completion_tokens, user.name and assistant.reasoning_content. Seed is `random_seed`;
  streamed usage arrives on the final chunk unasked. `n` is accepted; its limit is not
  documented, so it is not capped here.
- deepseek: api-docs.deepseek.com request fields (as mirrored by the ds-api crate): no n,
  seed, user, logit_bias or max_completion_tokens; json_object but no json_schema; no model
  takes images. Assistant `reasoning_content` is passed through untouched: newer DeepSeek
  models want it back inside tool-call loops, older docs rejected it (the host decides).
- ollama: docs/api/openai-compatibility.mdx in ollama/ollama: no tool_choice, logit_bias,
  user, n or logprobs; images only as base64 data URLs (so image_urls=False: the core inlines).
- openrouter: normalises params per upstream model itself (params=None); its stream_options
  is documented as deprecated and without effect because usage is always sent. Attribution
  headers (HTTP-Referer, X-Title) go in the provider's `headers`.
- fireworks: newer models only stream usage when asked (LangChain fireworks PR #36977).
- together, xai, vllm: OpenAI-compatible per their docs; together's usage in streams is taken
  from the final chunk (we could not confirm stream_options there, so it is not sent).
Every preset authenticates with `Authorization: Bearer <key>`; ollama and vllm run locally
and need no key (none is sent when none is configured).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from core.providers.adapters.base import Capabilities
from core.wire.prompt_cache import IMPLICIT, IMPLICIT_WITH_KEY

# The sampling/tooling surface most compatible hosts share, in OpenAI's names.
_COMMON = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "temperature",
        "top_p",
        "seed",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "logprobs",
        "top_logprobs",
        "logit_bias",
    }
)


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    base_url: str | None
    hosts: tuple[str, ...] = ()
    # Top-level params honoured, in the client's (OpenAI) names plus host-only extras.
    params: frozenset[str] | None = None
    # OpenAI name -> the host's name, applied to the outgoing body.
    renames: tuple[tuple[str, str], ...] = ()
    # "ask": send stream_options.include_usage; "always": the host sends usage unasked and
    # stream_options is withheld (some hosts reject it).
    stream_usage: Literal["ask", "always"] = "ask"
    key_required: bool = True
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "
    max_n: int | None = None
    # Keys removed from every non-tool message (the host answers 4xx when it sees them).
    drop_message_keys: frozenset[str] = frozenset()
    vision: bool = True
    image_urls: bool = True
    json_schema: bool = True
    # The host takes OpenAI's `prompt_cache_key` (a routing hint for its prefix cache).
    prompt_cache_key: bool = False

    def capabilities(self) -> Capabilities:
        return _capabilities(self)


@lru_cache(maxsize=64)
def _capabilities(preset: Preset) -> Capabilities:
    return Capabilities(
        vision=preset.vision,
        image_urls=preset.image_urls,
        json_schema=preset.json_schema,
        params=preset.params,
        max_n=preset.max_n,
        # Marks are removed: these hosts cache prefixes by themselves.
        prompt_cache=IMPLICIT_WITH_KEY if preset.prompt_cache_key else IMPLICIT,
    )


GENERIC = Preset(name="openai-compatible", base_url=None, key_required=False)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="openai",
            base_url="https://api.openai.com/v1",
            hosts=("api.openai.com",),
            prompt_cache_key=True,
        ),
        Preset(
            name="deepseek",
            base_url="https://api.deepseek.com",
            hosts=("api.deepseek.com",),
            params=(_COMMON - {"n", "seed", "user", "parallel_tool_calls", "logit_bias"})
            | {"thinking"},
            renames=(("max_completion_tokens", "max_tokens"),),
            vision=False,
            json_schema=False,
        ),
        Preset(
            name="mistral",
            base_url="https://api.mistral.ai/v1",
            hosts=("api.mistral.ai",),
            params=(_COMMON - {"user", "logprobs", "top_logprobs", "logit_bias"})
            | {"random_seed", "prediction", "safe_prompt", "prompt_mode"},
            renames=(("max_completion_tokens", "max_tokens"), ("seed", "random_seed")),
            stream_usage="always",
            drop_message_keys=frozenset(
                {"name", "reasoning_content", "refusal", "annotations", "audio"}
            ),
        ),
        Preset(
            name="groq",
            base_url="https://api.groq.com/openai/v1",
            hosts=("api.groq.com",),
            params=(_COMMON - {"logprobs", "top_logprobs", "logit_bias"})
            | {"reasoning_format", "reasoning_effort", "include_reasoning", "service_tier"},
            max_n=1,
            drop_message_keys=frozenset({"name"}),
        ),
        Preset(
            name="together",
            base_url="https://api.together.xyz/v1",
            hosts=("api.together.xyz", "api.together.ai"),
            # logprobs is an integer count there, not OpenAI's boolean: not mapped.
            params=(_COMMON - {"logprobs", "top_logprobs", "user", "parallel_tool_calls"})
            | {"top_k", "min_p", "repetition_penalty", "safety_model", "reasoning_effort"},
            renames=(("max_completion_tokens", "max_tokens"),),
            stream_usage="always",
        ),
        Preset(
            name="openrouter",
            base_url="https://openrouter.ai/api/v1",
            hosts=("openrouter.ai",),
            stream_usage="always",
        ),
        Preset(
            name="xai",
            base_url="https://api.x.ai/v1",
            hosts=("api.x.ai",),
            params=(_COMMON - {"logit_bias"})
            | {"reasoning_effort", "search_parameters", "web_search_options"},
        ),
        Preset(
            name="fireworks",
            base_url="https://api.fireworks.ai/inference/v1",
            hosts=("api.fireworks.ai",),
            params=(_COMMON - {"logit_bias", "seed", "parallel_tool_calls"})
            | {"top_k", "min_p", "typical_p", "repetition_penalty", "reasoning_effort"},
            renames=(("max_completion_tokens", "max_tokens"),),
        ),
        Preset(
            name="ollama",
            base_url="http://localhost:11434/v1",
            params=frozenset(
                {
                    "frequency_penalty",
                    "presence_penalty",
                    "max_tokens",
                    "max_completion_tokens",
                    "stop",
                    "temperature",
                    "top_p",
                    "seed",
                    "tools",
                    "response_format",
                    "reasoning_effort",
                    "reasoning",
                }
            ),
            renames=(("max_completion_tokens", "max_tokens"),),
            key_required=False,
            image_urls=False,
        ),
        Preset(name="vllm", base_url="http://localhost:8000/v1", key_required=False),
    )
}

_BY_HOST = {host: preset for preset in PRESETS.values() for host in preset.hosts}


def known_presets() -> str:
    return ", ".join(sorted(PRESETS))


@lru_cache(maxsize=256)
def resolve(name: str | None, base_url: str | None) -> Preset | None:
    """The preset for a provider: named, else inferred from the host; None if the name is
    unknown. Cached: called per request with the provider's two config strings."""
    if name is not None:
        return PRESETS.get(name)
    if base_url is None:
        return PRESETS["openai"]
    host = (urlsplit(base_url).hostname or "").lower()
    return _BY_HOST.get(host, GENERIC)
