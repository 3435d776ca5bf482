"""Validation of inbound /v1/embeddings requests, with 400s naming the offending field.

Only what the gateway relies on is checked: `model`, the shape of `input` (it decides which
targets can serve the request and how much to reserve), `encoding_format`, `dimensions` and
`user`. Limits follow OpenAI's API: no empty strings, at most 2048 inputs per request.
Other top-level keys are kept for OpenAI-compatible hosts (see plan.py for who may take them).
"""

from __future__ import annotations

from typing import Any

from core.api.validate import check_param_names, require_model
from core.providers.adapters.base import JSON
from core.providers.adapters.embeddings import (
    EmbeddingRequest,
    EncodingFormat,
    estimate_input_tokens,
)
from shared.errors import GatewayError, bad_request

__all__ = ["EmbeddingRequest", "estimate_input_tokens", "validate_embeddings"]

MAX_INPUTS = 2048


def _invalid_input(message: str, code: str = "invalid_type") -> GatewayError:
    return bad_request(message, param="input", code=code)


def _token_list(value: list[Any], where: str) -> list[int]:
    if not value:
        raise _invalid_input(f"{where} must not be an empty array of token ids", "invalid_value")
    for token in value:
        if type(token) is not int or token < 0:
            raise _invalid_input(f"{where} must contain only non-negative integer token ids")
    return value


def parse_input(raw: Any) -> tuple[tuple[str, ...], tuple[list[int], ...]]:
    """(texts, token lists) from a string, strings, token ids or lists of token ids."""
    if raw is None:
        raise bad_request(
            "you must provide an input parameter", param="input", code="missing_required_parameter"
        )
    if isinstance(raw, str):
        if not raw:
            raise _invalid_input("input must not be an empty string", "invalid_value")
        return (raw,), ()
    if not isinstance(raw, list):
        raise _invalid_input(
            "input must be a string, an array of strings, or an array of token ids"
        )
    if not raw:
        raise _invalid_input("input must not be an empty array", "invalid_value")
    first = raw[0]
    if isinstance(first, str):
        if len(raw) > MAX_INPUTS:
            raise _invalid_input(f"input must have at most {MAX_INPUTS} items", "invalid_value")
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                raise _invalid_input(f"input[{i}] must be a string like the other items")
            if not item:
                raise _invalid_input(f"input[{i}] must not be an empty string", "invalid_value")
        return tuple(raw), ()
    if type(first) is int:
        return (), (_token_list(raw, "input"),)
    if isinstance(first, list):
        if len(raw) > MAX_INPUTS:
            raise _invalid_input(f"input must have at most {MAX_INPUTS} items", "invalid_value")
        lists = []
        for i, item in enumerate(raw):
            if not isinstance(item, list):
                raise _invalid_input(f"input[{i}] must be an array of token ids")
            lists.append(_token_list(item, f"input[{i}]"))
        return (), tuple(lists)
    raise _invalid_input("input must be a string, an array of strings, or an array of token ids")


def validate_embeddings(payload: JSON) -> EmbeddingRequest:
    check_param_names(payload)
    model = require_model(payload)
    texts, token_lists = parse_input(payload.get("input"))
    raw_encoding = payload.get("encoding_format")
    encoding: EncodingFormat = "base64" if raw_encoding == "base64" else "float"
    if raw_encoding not in (None, "float", "base64"):
        raise bad_request(
            "encoding_format must be 'float' or 'base64'",
            param="encoding_format",
            code="invalid_value",
        )
    dimensions = payload.get("dimensions")
    if dimensions is not None and (
        type(dimensions) is not int or dimensions < 1 or dimensions > 65536
    ):
        raise bad_request(
            "dimensions must be a positive integer", param="dimensions", code="invalid_value"
        )
    user = payload.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request("user must be a string", param="user", code="invalid_type")
    return EmbeddingRequest(payload, model, texts, token_lists, encoding, dimensions)
