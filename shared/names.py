"""The one rule for a model name a client may send, shared by the edge and the core.

Why a rule at all: a tenant-chosen name becomes a dictionary key (breakers, latency), a metrics
label, a usage-log field, the `x-interlock-model` response header and part of an upstream URL
path (Gemini, Bedrock, Azure). Unbounded names grew core memory and the `/metrics` page, and an
8 KB name passed the core but broke the edge's response-header limit (a 502 after billing).

The rule fits every real model id we know of: `gpt-4o-2024-08-06`,
`ft:gpt-4o-mini:org:custom:id`, `anthropic.claude-3-5-sonnet-20240620-v1:0`,
`models/gemini-1.5-pro`, `accounts/fireworks/models/llama-v3p1-8b-instruct`,
`meta-llama/Llama-3.1-8B-Instruct`, `@cf/meta/llama-3-8b-instruct`, `llama3.2:latest`,
`openai/gpt-4o:free`, Bedrock ARNs, `hf.co/org/repo-GGUF:Q4_K_M`:
- at most MAX_MODEL_NAME_LENGTH characters (the longest real ids, Bedrock inference-profile
  ARNs, are about 110);
- only ASCII letters, digits and `. _ - : / @ +` (no spaces, controls, quotes, `%`, `?`, `#`,
  which would change the meaning of an upstream URL or a log line);
- no `.` or `..` path segment, so a name can never walk an upstream URL path.
"""

from __future__ import annotations

import re
from typing import Any

from shared.errors import GatewayError

MAX_MODEL_NAME_LENGTH = 256
_ALLOWED = re.compile(r"[A-Za-z0-9._:/@+\-]+")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")


def model_name_problem(model: str) -> str | None:
    """Why `model` is not an acceptable name, or None. Pure; used by both tiers."""
    if len(model) > MAX_MODEL_NAME_LENGTH:
        return f"model must be at most {MAX_MODEL_NAME_LENGTH} characters"
    if not _ALLOWED.fullmatch(model):
        return (
            "model may contain only ASCII letters, digits and the characters . _ - : / @ +"
            if model
            else "model must be a non-empty string"
        )
    if _DOT_SEGMENT.search(model):
        return "model must not contain '.' or '..' path segments"
    return None


def check_model_name(payload: dict[str, Any]) -> str:
    """The request's `model`, or a 400 naming `model` (missing, wrong type, or off the rule)."""
    model = payload.get("model")
    if model is None:
        raise GatewayError(
            400,
            "you must provide a model parameter",
            param="model",
            code="missing_required_parameter",
        )
    if not isinstance(model, str) or not model:
        raise GatewayError(
            400, "model must be a non-empty string", param="model", code="invalid_type"
        )
    problem = model_name_problem(model)
    if problem is not None:
        raise GatewayError(400, problem, param="model", code="invalid_model")
    return model
