"""Who is calling: the tenant identity the edge vouched for with its hop credential."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from shared import hop
from shared.errors import GatewayError
from shared.http import header_map
from shared.patterns import compile_patterns
from shared.traceparent import child_of


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    tier: str
    request_id: str
    traceparent: str
    allows: Callable[[str], bool]


def _unauthorized() -> GatewayError:
    return GatewayError(
        401,
        "missing or invalid hop credential: call the gateway through its edge",
        code="invalid_hop_credential",
    )


def _deny_all(name: str) -> bool:
    return False


class HopVerifier:
    def __init__(self, secret: bytes, max_skew_s: int) -> None:
        self._secret = secret
        self._max_skew_s = max_skew_s
        self._matchers: dict[str, Callable[[str], bool]] = {}

    def caller(self, request: Request) -> Caller:
        headers = header_map(request)
        credential = headers.get(hop.HOP_HEADER)
        tenant = headers.get(hop.TENANT_HEADER)
        request_id = headers.get(hop.REQUEST_ID_HEADER)
        if not credential or not tenant or not request_id:
            raise _unauthorized()
        identity = hop.HopIdentity(
            tenant=tenant,
            tier=headers.get(hop.TIER_HEADER, ""),
            models=headers.get(hop.MODELS_HEADER, ""),
            request_id=request_id,
        )
        if not hop.verify(
            self._secret,
            credential,
            identity,
            request.method,
            request.scope["path"],
            self._max_skew_s,
        ):
            raise _unauthorized()
        return Caller(
            tenant=tenant,
            tier=identity.tier,
            request_id=request_id,
            traceparent=child_of(headers.get(hop.TRACEPARENT_HEADER)),
            allows=self._matcher(identity.models),
        )

    def _matcher(self, models: str) -> Callable[[str], bool]:
        matcher = self._matchers.get(models)
        if matcher is None:
            # The edge always sends the token's list ("*" when unrestricted); empty means none.
            matcher = compile_patterns(models.split(",")) if models else _deny_all
            if len(self._matchers) >= 4096:
                self._matchers.clear()
            self._matchers[models] = matcher
        return matcher
