"""Every API as a pipeline over the same stages (core.pipeline), built once at start-up: one
spec per API, the standard stages, and the account stage they share. Only what an API
genuinely adds is its own: /v1/responses reads its conversation's history right after read,
a transcription's multipart upload is read by its own first stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.api.audio import MultipartRead, SpeechApi, TranscriptionsApi
from core.api.chat import ChatApi
from core.api.count_tokens import MessagesCountApi, ResponsesCountApi
from core.api.embeddings import EmbeddingsApi
from core.api.images import ImagesApi
from core.api.messages.handler import MessagesApi
from core.api.messages.passthrough import Passthrough
from core.api.responses.handler import ResponsesApi, stored_endpoints
from core.api.responses.items import input_items_endpoint
from core.api.responses.passthrough import ResponsesPassthrough
from core.api.responses.store import MEMORY_MAX_BYTES, ResponseStore
from core.cache.backend import MemoryBackend, StoreBackend
from core.pipeline import Account, Pipeline, standard_stages
from core.pipeline.explain import AnySpec
from core.state.resilient import ResilientStore

if TYPE_CHECKING:
    from core.app import CoreState, Handler
    from core.observe.tracing import Tracer
    from core.pipeline.stages import Stage


AnyPipeline = Pipeline[Any, Any, Any]


@dataclass(frozen=True)
class Apis:
    specs: dict[str, AnySpec]  # what /admin/route/explain can explain
    chat: AnyPipeline
    embeddings: AnyPipeline
    messages: AnyPipeline
    count_tokens: AnyPipeline
    input_tokens: AnyPipeline
    responses: AnyPipeline
    images: AnyPipeline
    speech: AnyPipeline
    transcribe: AnyPipeline
    get_response: Handler
    delete_response: Handler
    input_items: Handler


def _counts(
    stages: tuple[Stage, ...], account: Account, tracer: Tracer, responses: ResponseStore
) -> tuple[AnyPipeline, AnyPipeline]:
    """The two token counts' pipelines (Messages', Responses'). A count is free and reads or
    writes no cache: no response cache, no prompt-cache marks."""
    counting = tuple(stage for stage in stages if stage.name not in ("cache", "prompt_cache"))
    messages = Pipeline(MessagesCountApi(), counting, account, tracer)
    counter = ResponsesCountApi(responses)  # with the previous_response_id lookup, as responses
    stages_of = (counting[0], *counter.before_validate, *counting[1:])
    return messages, Pipeline(counter, stages_of, account, tracer)


def build_apis(state: CoreState) -> Apis:
    config = state.config
    # One pipeline (core.pipeline): every API runs the same stages with its own spec.
    stages = standard_stages(
        state.registry,
        state.dispatcher,
        state.limiter,
        state.pricing,
        state.policy,
        state.cache,
        state.affinity,
    )
    account = Account(state.records, state.pricing, state.affinity)
    passthrough = Passthrough(config.core.resilience.max_event_bytes)
    tracer = state.tracer
    inline = tracer.wrap("image_fetch", state.images.inline)  # itself when tracing is off
    specs: dict[str, AnySpec] = {
        "chat": ChatApi(inline),
        "embeddings": EmbeddingsApi(),
        "messages": MessagesApi(passthrough, inline),
        "images": ImagesApi(),
        "speech": SpeechApi(),
        "transcriptions": TranscriptionsApi(),
    }
    # Stored responses, per tenant (core.api.responses.store): Redis itself, else memory.
    redis = state.store.primary if isinstance(state.store, ResilientStore) else None
    kept = StoreBackend(redis) if redis else MemoryBackend(MEMORY_MAX_BYTES)
    responses = ResponseStore(kept, config.core.responses_ttl_s, config.core.responses_max_bytes)
    max_event = config.core.resilience.max_event_bytes
    responses_api = ResponsesApi(ResponsesPassthrough(max_event), responses, inline)
    # /v1/responses: the previous_response_id lookup joins right after read.
    responses_stages = (stages[0], *responses_api.before_validate, *stages[1:])
    specs["responses"] = responses_api  # explained like the others
    responses_pipeline = Pipeline(responses_api, responses_stages, account, tracer)
    get_response, delete_response = stored_endpoints(responses)
    chat = Pipeline(specs["chat"], stages, account, tracer)
    embeddings = Pipeline(specs["embeddings"], stages, account, tracer)
    messages = Pipeline(specs["messages"], stages, account, tracer)
    # Images and audio (README: Images and audio); a multipart upload is read by its own stage.
    images = Pipeline(specs["images"], stages, account, tracer)
    speech = Pipeline(specs["speech"], stages, account, tracer)
    transcribe = Pipeline(specs["transcriptions"], (MultipartRead(), *stages[1:]), account, tracer)
    count_tokens, input_tokens = _counts(stages, account, tracer, responses)

    return Apis(
        specs,
        chat,
        embeddings,
        messages,
        count_tokens,
        input_tokens,
        responses_pipeline,
        images,
        speech,
        transcribe,
        get_response,
        delete_response,
        input_items_endpoint(responses),
    )
