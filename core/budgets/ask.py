"""What budgets need to know of a request, read once before dispatch: who asks (tenant,
tags), for which model, and how much it may use (the estimate a reservation prices)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.limits.admission import prompt_estimate
from core.wire.tokens import MAX_CHOICES, MAX_OUTPUT_TOKENS

Tags = tuple[tuple[str, str], ...]
MAX_TAGS = 16
MAX_TAG_CHARS = 64
TAGS_HEADER = "x-interlock-tags"


@dataclass(frozen=True, slots=True)
class BudgetAsk:
    tenant: str
    tags: Tags  # sorted, bounded
    model: str  # as the client asked for it
    input_tokens: int  # estimated
    max_output_tokens: int | None  # the request's cap times its choices; None: uncapped
    tokens: int  # the whole token estimate (prompt + output allowance): token caps reserve it
    request_id: str
    downgraded_from: str | None = None  # set when a downgrade budget re-routed the request


def budget_ask(
    tenant: str,
    request_id: str,
    model: str,
    payload: dict[str, Any],
    tokens: int,
    tags_header: str | None,
) -> BudgetAsk:
    """`tokens`: the API's token estimate (admission's); embeddings have no output."""
    has_messages = "messages" in payload
    prompt = prompt_estimate(payload) if has_messages else tokens
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    choices = payload.get("n")
    output = _count(limit, MAX_OUTPUT_TOKENS) if has_messages else 0
    if output is not None:
        output *= _count(choices, MAX_CHOICES) or 1
    return BudgetAsk(
        tenant, request_tags(payload, tags_header), model, prompt, output, tokens, request_id
    )


def request_tags(payload: dict[str, Any], header: str | None) -> Tags:
    """Tags from the `x-interlock-tags` header (`k=v,k=v`) and OpenAI's `metadata` object;
    malformed or oversized entries are skipped, at most MAX_TAGS kept."""
    found: dict[str, str] = {}
    for part in (header or "").split(",")[: MAX_TAGS * 2]:
        key, sep, value = part.partition("=")
        _keep(found, key.strip(), value.strip(), bool(sep))
    metadata = payload.get("metadata")
    if isinstance(metadata, dict):
        for key, value in list(metadata.items())[: MAX_TAGS * 2]:
            _keep(found, key, value, isinstance(value, str))
    return tuple(sorted(found.items())[:MAX_TAGS])


def _keep(found: dict[str, str], key: object, value: object, ok: bool) -> None:
    if not (ok and isinstance(key, str) and isinstance(value, str)):
        return
    if 0 < len(key) <= MAX_TAG_CHARS and len(value) <= MAX_TAG_CHARS and len(found) < MAX_TAGS:
        found.setdefault(key, value)


def _count(value: object, highest: int) -> int | None:
    if type(value) is not int or value < 1:
        return None
    return min(value, highest)
