"""Admission before any provider is called: the tenant's rate limits, from a token estimate."""

from __future__ import annotations

from typing import Any

from core.identity import Caller
from core.limits import DEFAULT_OUTPUT_ESTIMATE, UNLIMITED, Admission, TenantLimiter
from core.tokens import estimate_messages, estimate_text


def prompt_estimate(payload: dict[str, Any]) -> int:
    """Input tokens, estimated (OpenAI or Anthropic shape)."""
    prompt = estimate_messages(payload.get("messages") or [])
    system = payload.get("system")  # Anthropic keeps it outside messages
    if isinstance(system, str):
        prompt += estimate_text(system)
    elif isinstance(system, list):
        prompt += sum(estimate_text(b.get("text", "")) for b in system if isinstance(b, dict))
    return prompt


def estimate_tokens(payload: dict[str, Any]) -> int:
    """Prompt estimate plus the output the request allows: what a reservation must cover."""
    prompt = prompt_estimate(payload)
    output = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if not isinstance(output, int) or output <= 0:
        output = DEFAULT_OUTPUT_ESTIMATE
    choices = payload.get("n")
    return prompt + output * (choices if isinstance(choices, int) and choices > 1 else 1)


async def admit(
    limiter: TenantLimiter | None,
    caller: Caller,
    payload: dict[str, Any],
    tokens: int | None = None,
) -> Admission:
    if limiter is None or not limiter.enabled:
        return UNLIMITED
    estimate = estimate_tokens(payload) if tokens is None else tokens
    return await limiter.admit(caller.tenant, caller.tier, estimate)
