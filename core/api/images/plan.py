"""Which of a route's targets can serve a media request (images, speech, transcriptions), in
route order, and the one call that serves it through the target's own transport.

Like embeddings planning (core.api.embeddings.plan): a target is skipped when its provider has
no such API or its model does not make images or audio (each translator's `problem`: the
capability is declared per provider kind, preset and model family, see the translators). When
no target is left, the client gets a 400 naming the field of the first problem found, `model`
when no target serves the API at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.responses import Response

from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.media import MediaTranslator, Problem
from core.routing.registry import Route
from shared.errors import Api, GatewayError

Q = TypeVar("Q")
T = TypeVar("T", bound=MediaTranslator[Any])


@dataclass(frozen=True, slots=True)
class MediaAttempt(Generic[Q, T]):
    target: Target
    translator: T
    request: Q
    dropped: tuple[str, ...] = ()


def plan_media(
    route: Route, request: Q, translator_for: Callable[[str], T | None], api: str
) -> list[MediaAttempt[Q, T]]:
    """The route's targets that can serve `request`, in order; a 400 when none can."""
    attempts: list[MediaAttempt[Q, T]] = []
    problems: list[Problem] = []
    for candidate in route.candidates:
        target = candidate.target
        translator = translator_for(target.provider.kind)
        if translator is None:
            problems.append(("model", f"{target.label} has no {api} API"))
            continue
        problem = translator.problem(request, target)
        if problem is None:
            attempts.append(MediaAttempt(target, translator, request))
        else:
            problems.append(problem)
    if attempts:
        return attempts
    if not problems:
        problems.append(("model", f"no target of the model '{route.name}' serves {api}"))
    param, message = next((p for p in problems if p[0] != "model"), problems[0])
    code = "model_not_supported" if param == "model" else "unsupported_parameter"
    raise GatewayError(400, message, param=param, code=code)


class MediaApi:
    """What the media specs share: OpenAI's envelope, no upstream error relayed as the API's
    own answer, and the GenAI operation name. Semantic conventions v1.41.0 list chat,
    create_agent, embeddings, execute_tool, generate_content, invoke_agent and
    text_completion, and say a listed value that applies must be used: images and audio are
    "generate_content" (multimodal content generation), so dashboards tell them apart by
    model and by the gateway's own route, not by a custom operation name."""

    __slots__ = ()

    operation = "generate_content"  # the GenAI operation name (metrics, traces)
    api: Api = "openai"  # the error envelope's format

    def relayed(self, x: Any, error: ProviderError) -> Response | None:
        return None
