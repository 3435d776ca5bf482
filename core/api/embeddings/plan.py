"""Which of a route's targets can serve an embeddings request, in route order (the Dispatcher
orders the route by its strategy first).

Mirrors chat planning (core.routing.planning.plan_chat): a target is skipped when its provider kind
has no embeddings API (anthropic), its model is not an embedding model, or it cannot take this input
(token ids) or these dimensions. Params a target does not honour are a 400 naming the param in
strict mode, or dropped and reported in lenient mode. When no target is left, the client gets
a 400 naming the field of the first problem found, `model` when no target can embed at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.api.embeddings.request import EmbeddingRequest
from core.providers.adapters.base import Target
from core.providers.adapters.bedrock.embeddings import BedrockEmbeddings
from core.providers.adapters.embeddings import Problem, Translator
from core.providers.adapters.gemini.embeddings import GEMINI
from core.providers.adapters.openai_embeddings import AZURE, OPENAI
from core.providers.mock_embeddings import MOCK, MockEmbeddings
from core.routing.registry import Route
from shared.errors import GatewayError

BEDROCK = BedrockEmbeddings()
TRANSLATORS: dict[str, Translator] = {
    "openai": OPENAI,
    "azure": AZURE,
    "gemini": GEMINI,
    "bedrock": BEDROCK,
}


@dataclass(frozen=True, slots=True)
class Attempt:
    target: Target
    translator: Translator | MockEmbeddings
    request: EmbeddingRequest  # with params the target cannot honour dropped (lenient)
    dropped: tuple[str, ...]


def translator_for(kind: str) -> Translator | MockEmbeddings | None:
    return MOCK if kind == "mock" else TRANSLATORS.get(kind)


def _check(
    target: Target, request: EmbeddingRequest, strict: bool, extra: list[str]
) -> Attempt | Problem:
    translator = translator_for(target.provider.kind)
    if translator is None:
        return "model", f"{target.label} has no embeddings API"
    problem = translator.problem(request, target)
    if problem is not None:
        return problem
    honoured = translator.params(target)
    unsupported = [] if honoured is None else [k for k in extra if k not in honoured]
    if not unsupported:
        return Attempt(target, translator, request, ())
    if strict:
        return unsupported[0], f"{target.label} does not support the parameter '{unsupported[0]}'"
    payload = {k: v for k, v in request.payload.items() if k not in unsupported}
    return Attempt(target, translator, replace(request, payload=payload), tuple(unsupported))


def plan_embeddings(route: Route, request: EmbeddingRequest) -> list[Attempt]:
    extra = request.extra_params()
    attempts: list[Attempt] = []
    problems: list[Problem] = []
    for candidate in route.candidates:
        checked = _check(candidate.target, request, route.strict_params, extra)
        if isinstance(checked, Attempt):
            attempts.append(checked)
        else:
            problems.append(checked)
    if attempts:
        return attempts
    # "model" only when nothing on the route can embed; otherwise the more precise field.
    param, message = next((p for p in problems if p[0] != "model"), problems[0])
    code = "model_not_supported" if param == "model" else "unsupported_parameter"
    raise GatewayError(400, message, param=param, code=code)
