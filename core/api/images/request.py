"""Validation of POST /v1/images/generations (OpenAI's API), with 400s naming the field.

Only what the gateway relies on is checked: `model`, `prompt`, `n`, `size`, `quality` and
`response_format` decide which targets can serve and how each provider is asked; other keys
(style, background, output_format, user, ...) pass through to OpenAI-compatible hosts.
`stream` (gpt-image-1's partial images) is refused: the gateway answers images whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from core.api.validate import check_param_names, is_int, require_model
from core.providers.adapters.base import JSON
from shared.errors import bad_request

MAX_PROMPT_CHARS = 32_000  # gpt-image-1's limit, the largest of OpenAI's image models
MAX_IMAGES = 10
QUALITIES = ("auto", "standard", "hd", "low", "medium", "high")
_SIZE = re.compile(r"(\d{2,5})x(\d{2,5})")

ResponseFormat = Literal["url", "b64_json"]


@dataclass(frozen=True, slots=True)
class ImageRequest:
    payload: JSON
    model: str
    prompt: str
    n: int
    size: tuple[int, int] | None  # None: the provider's default ("auto" or not given)
    quality: str | None
    response_format: ResponseFormat | None  # None: the model's default (url for dall-e)

    @property
    def stream(self) -> bool:
        return False


def _size(raw: Any) -> tuple[int, int] | None:
    if raw is None or raw == "auto":
        return None
    match = _SIZE.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        raise bad_request(
            "size must be 'auto' or WIDTHxHEIGHT such as '1024x1024'",
            param="size",
            code="invalid_value",
        )
    return int(match.group(1)), int(match.group(2))


def one_of(payload: JSON, name: str, allowed: tuple[str, ...], default: Any = None) -> Any:
    """The field's value, one of `allowed` (`default` when absent or null); else a 400."""
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise bad_request(
            f"{name} must be one of {', '.join(allowed)}", param=name, code="invalid_value"
        )
    return value


def text_field(payload: JSON, name: str, limit: int) -> str:
    """A required non-blank string of at most `limit` characters (a prompt, speech input)."""
    value = payload.get(name)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{name} must be a non-empty string", param=name, code="invalid_value")
    if len(value) > limit:
        raise bad_request(
            f"{name} must be at most {limit} characters", param=name, code="invalid_value"
        )
    return value


def validate_images(payload: JSON) -> ImageRequest:
    check_param_names(payload)
    model = require_model(payload)
    prompt = text_field(payload, "prompt", MAX_PROMPT_CHARS)
    n = payload.get("n", 1)
    if n is None:
        n = 1
    if not is_int(n) or not 1 <= n <= MAX_IMAGES:
        raise bad_request(
            f"n must be an integer from 1 to {MAX_IMAGES}", param="n", code="invalid_value"
        )
    if payload.get("stream"):
        raise bad_request(
            "streamed image generation is not supported; omit stream",
            param="stream",
            code="unsupported_parameter",
        )
    quality = one_of(payload, "quality", QUALITIES)
    response_format = one_of(payload, "response_format", ("url", "b64_json"))
    return ImageRequest(
        payload, model, prompt, n, _size(payload.get("size")), quality, response_format
    )
