"""The routing policy in the pipeline: the request's facts, and the matched rule's action
applied to the exchange, once, at resolve (core.pipeline.stages.Resolve), for every API.

Actions: `refuse` is a 403 `policy_refused` in the caller's API format with the operator's
message; `cap` lowers `max_tokens` (and `max_completion_tokens`) in the payload before
planning, or sets `max_tokens` when the request gave none (chat and messages; embeddings have
nothing to cap), so admission reserves the capped amount; `latency_ceiling_ms` is stored as
`x.latency_ceiling_s` for the route's strategy; `route` takes the named route, `model`
resolves the rewrite for the caller's tier. The token's model allowance is checked on the
model the client asked for; a rewrite is the operator's choice and is not checked again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from core.pipeline.exchange import Exchange
from core.routing.policy.facts import Facts, Setting
from core.routing.policy.rules import Rule
from core.routing.registry import ModelRegistry, Route
from shared.errors import GatewayError

AnyExchange = Exchange[Any, Any, Any]
# The API a request came through, by the path it was sent to (every API's own path).
APIS = {"/v1/chat/completions": "chat", "/v1/messages": "messages", "/v1/embeddings": "embeddings"}
CAPPED = ("max_tokens", "max_completion_tokens")


@runtime_checkable
class Reencoded(Protocol):
    """A request that keeps an encoding of its payload (Messages passthrough sends the
    client's bytes): told when a rule changed the payload."""

    def payload_changed(self) -> None: ...


def api_of(x: AnyExchange) -> str:
    return APIS.get(x.http.scope.get("path", ""), "chat")


def facts_of(x: AnyExchange, setting: Setting) -> Facts:
    """The request's facts; the prompt is estimated only if a rule asks (as admission will)."""
    api = api_of(x)
    request, payload = x.request, x.payload
    prompt: Callable[[], int] = x.prompt_tokens  # estimated once, only if a rule asks
    caller = x.caller
    return Facts(
        setting,
        api,
        request.model,
        payload,
        stream=bool(request.stream),
        tenant=caller.tenant,
        tier=caller.tier,
        tags=caller.tags,
        headers=x.http.headers,
        prompt=prompt,
    )


def apply_rule(rule: Rule, x: AnyExchange, registry: ModelRegistry) -> Route | None:
    """The rule's action on the exchange; the route it chose, or None for the requested
    model's own (a rule that only caps or sets a ceiling)."""
    if rule.refuse is not None:
        param = rule.param
        if param == "messages" and api_of(x) == "embeddings":
            param = "input"
        raise GatewayError(403, rule.refuse, param=param, code="policy_refused")
    if rule.max_tokens is not None and api_of(x) != "embeddings":
        cap_max_tokens(x, rule.max_tokens)
    if rule.latency_ceiling_s is not None:
        x.latency_ceiling_s = rule.latency_ceiling_s
    if rule.route is not None:
        return rule.route
    if rule.model is not None:
        route = registry.resolve(rule.model, x.caller.tier)
        if route is None:  # checked at start-up (build_policy); the operator's, not the client's
            raise GatewayError(
                503, f"the routing rule '{rule.id}' names an unavailable model", code="policy_route"
            )
        return route
    return None


def cap_max_tokens(x: AnyExchange, limit: int) -> None:
    """At most `limit` output tokens: lowered where given, set where not (a token count
    generates nothing: it is left as it is)."""
    if getattr(x.spec, "free", False):
        return
    payload = x.payload
    changed = False
    given = False
    for key in CAPPED:
        value = payload.get(key)
        if value is None:
            continue
        given = True
        if isinstance(value, int) and value > limit:
            payload[key] = limit
            changed = True
    if not given:
        payload["max_tokens"] = limit
        changed = True
    if changed and isinstance(x.request, Reencoded):
        x.request.payload_changed()
