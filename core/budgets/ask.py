"""What budgets need to know of a request, read once before dispatch: who asks (tenant,
billing tags), for which model, and how much it may use (the estimate a reservation prices)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.ledger.record import Tags
from core.spend.usage import UsageSplit
from core.wire.tokens import MAX_CHOICES, MAX_OUTPUT_TOKENS


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
    # The media units the request asks for (images), priced into the reservation with the
    # tokens: a dall-e-3 request reserves its images, not $0.
    units: UsageSplit | None = None


def budget_ask(
    tenant: str,
    request_id: str,
    model: str,
    payload: dict[str, Any],
    tokens: int,
    tags: Tags,
    prompt: int,
) -> BudgetAsk:
    """`tokens`: the API's token estimate (admission's); embeddings have no output. `prompt`:
    the request's input estimate (Exchange.prompt_tokens). `tags`: the caller's billing tags
    (core/api/tags.py, validated and bounded: the ledger's too)."""
    has_messages = "messages" in payload
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    choices = payload.get("n")
    output = _count(limit, MAX_OUTPUT_TOKENS) if has_messages else 0
    if output is not None:
        output *= _count(choices, MAX_CHOICES) or 1
    return BudgetAsk(tenant, tags, model, prompt, output, tokens, request_id)


def _count(value: object, highest: int) -> int | None:
    if type(value) is not int or value < 1:
        return None
    return min(value, highest)
