"""What an API supplies to the pipeline: `ApiSpec`, and the validated request it produces.

An API (chat, messages, embeddings, and any added later) differs from the others only in these
places; everything else (route resolution, ordering, admission, failover, headers, accounting)
is the pipeline's (core.pipeline.stages) and written once:

- `api`: the error envelope its clients read ("openai" or "anthropic");
- `validate`: its parser and validator, turning the decoded body into its request;
- `plan`: its planner variant (core.routing.planning.plan_chat,
core.api.messages.plan.plan_messages, core.api.embeddings.plan.plan_embeddings), run on the route
once ordered by its strategy;
- `estimate`: the tokens its request may use, reserved at admission;
- `call`: its dispatch mode, the call the Dispatcher makes per attempt (complete or stream;
  Anthropic passthrough steps for messages);
- `encode`: its answer, complete (and the usage to account) or as a stream whose end accounts;
- `relayed`: an upstream error answered as the API's own response, when it has such errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from starlette.responses import Response

from core.providers.adapters.base import ProviderError, Target
from core.resilience.dispatch import Routable
from core.routing.registry import Route
from shared.errors import Api

if TYPE_CHECKING:
    from core.pipeline.exchange import Exchange


class ApiRequest(Protocol):
    """A validated request: what the pipeline itself reads of it."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...


Q = TypeVar("Q", bound=ApiRequest)
S = TypeVar("S", bound=Routable)
R = TypeVar("R")

# One try of one planned step on the target holding the leased key (core.resilience.dispatch).
Call = Callable[[S, Target], Awaitable[R]]


class ApiSpec(Protocol[Q, S, R]):
    """One API's specifics. Q: its validated request; S: its planned step; R: what one
    successful call returns. Built once at start-up; the methods run per request."""

    @property
    def api(self) -> Api: ...

    @property
    def operation(self) -> str:
        """The GenAI operation name (OpenTelemetry semantic conventions): chat, embeddings."""
        ...

    def validate(self, x: Exchange[Q, S, R]) -> Q:
        """The API's request from `x.payload` (and `x.http`); a 400 naming the field if not."""
        ...

    def plan(self, route: Route, request: Q) -> list[S]:
        """The steps that can serve the request, in the (already ordered) route's order."""
        ...

    def prompt(self, request: Q) -> int:
        """Input tokens, estimated (the messages and system prompt; an embedding's input).
        Read once per request through `Exchange.prompt_tokens`."""
        ...

    def estimate(self, request: Q, prompt: int) -> int:
        """Tokens the request may use (its `prompt` estimate plus the output it allows): what
        admission and key pools reserve."""
        ...

    def call(self, x: Exchange[Q, S, R]) -> Call[S, R]:
        """The Dispatcher's call for this request's mode (complete or stream)."""
        ...

    def encode(self, x: Exchange[Q, S, R]) -> Response:
        """The client's answer from `x.result` served by `x.outcome`; a complete answer sets
        `x.usage`, a stream hands `x.finish` its usage when it ends."""
        ...

    def relayed(self, x: Exchange[Q, S, R], error: ProviderError) -> Response | None:
        """The response for an upstream error the API relays as its own, else None (the
        error leaves in the API's envelope)."""
        ...
