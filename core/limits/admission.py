"""Admission before any provider is called: the tenant's rate limits, from a token estimate."""

from __future__ import annotations

from typing import Any

from core.api.identity import Caller
from core.limits.tenant import DEFAULT_OUTPUT_ESTIMATE, UNLIMITED, Admission, TenantLimiter
from core.wire.tokens import (
    MAX_CHOICES,
    MAX_OUTPUT_TOKENS,
    MAX_RESERVATION_TOKENS,
    estimate_messages,
    estimate_text,
)
from shared.errors import GatewayError


def prompt_estimate(payload: dict[str, Any]) -> int:
    """Input tokens, estimated (OpenAI or Anthropic shape)."""
    prompt = estimate_messages(payload.get("messages") or [])
    system = payload.get("system")  # Anthropic keeps it outside messages
    if isinstance(system, str):
        prompt += estimate_text(system)
    elif isinstance(system, list):
        prompt += sum(
            estimate_text(b["text"])
            for b in system
            if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return prompt


def _bounded(value: Any, default: int, highest: int) -> int:
    """A client count as an int in 1..highest; validation refuses worse, this never trusts it."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return default
    return min(value, highest)


def estimate_tokens(payload: dict[str, Any], prompt: int | None = None) -> int:
    """Prompt estimate (`prompt`, if the caller has it already) plus the output the request
    allows: what a reservation must cover, never more than MAX_RESERVATION_TOKENS (an estimate
    of 8.5e37 once starved a shared key)."""
    if prompt is None:
        prompt = prompt_estimate(payload)
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    output = _bounded(limit, DEFAULT_OUTPUT_ESTIMATE, MAX_OUTPUT_TOKENS)
    choices = _bounded(payload.get("n"), 1, MAX_CHOICES)
    return clamp_reservation(prompt + output * choices)


def clamp_reservation(tokens: int) -> int:
    """Every reservation, whatever estimated it, within 0..MAX_RESERVATION_TOKENS."""
    return max(0, min(tokens, MAX_RESERVATION_TOKENS))


async def admit(
    limiter: TenantLimiter | None,
    caller: Caller,
    payload: dict[str, Any],
    tokens: int | None = None,
) -> Admission:
    if limiter is None or not limiter.enabled:
        return UNLIMITED
    estimate = estimate_tokens(payload) if tokens is None else clamp_reservation(tokens)
    return await limiter.admit(caller.tenant, caller.tier, estimate)


async def admit_claimed(
    limiter: TenantLimiter | None, caller: Caller, payload: dict[str, Any], tokens: int
) -> Admission:
    """`admit`, then the caller's hop nonce settled (its claim left when the request was
    authenticated: core.api.nonce_claim): a replayed credential gets its 401 and takes
    nothing from the tenant's limits (its request and its tokens are given back)."""
    admission = await admit(limiter, caller, payload, tokens)
    try:
        await caller.settled()
    except GatewayError:
        admission.settle(0)
        if limiter is not None and admission is not UNLIMITED:
            await limiter.refund_request(caller.tenant, caller.tier)
        raise
    return admission
