"""OpenAI chat-completions wire types: the canonical shape inside interlock.

TypedDicts document the shape for both tiers and for mypy; the hot path uses plain dicts from
orjson and never constructs models per request.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class FunctionCall(TypedDict):
    name: str
    arguments: str  # JSON text, exactly as the model produced it


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ImageURL(TypedDict):
    url: str  # https URL or data: URL
    detail: NotRequired[Literal["auto", "low", "high"]]


class ContentPart(TypedDict, total=False):
    type: Literal["text", "image_url", "input_audio", "file"]
    text: str
    image_url: ImageURL


class ChatMessage(TypedDict, total=False):
    role: Role
    content: str | list[ContentPart] | None
    name: str
    tool_calls: list[ToolCall]
    tool_call_id: str
    reasoning_content: str  # DeepSeek-style reasoning, also used for Anthropic thinking


class StreamOptions(TypedDict, total=False):
    include_usage: bool


class ChatCompletionRequest(TypedDict, total=False):
    model: str
    messages: list[ChatMessage]
    stream: bool
    stream_options: StreamOptions
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    n: int
    stop: str | list[str]
    seed: int
    user: str
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    response_format: dict[str, Any]
    reasoning_effort: str


class PromptTokensDetails(TypedDict, total=False):
    cached_tokens: int
    cache_creation_tokens: int  # interlock extension: Anthropic/Bedrock cache writes
    audio_tokens: int


class CompletionTokensDetails(TypedDict, total=False):
    reasoning_tokens: int
    audio_tokens: int


class Usage(TypedDict):
    prompt_tokens: int  # includes cached tokens, as OpenAI counts them
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: NotRequired[PromptTokensDetails]
    completion_tokens_details: NotRequired[CompletionTokensDetails]


class ResponseMessage(TypedDict, total=False):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None
    tool_calls: list[ToolCall]
    reasoning_content: str


class Choice(TypedDict):
    index: int
    message: ResponseMessage
    finish_reason: FinishReason | None
    logprobs: NotRequired[Any]


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: NotRequired[Usage]
    system_fingerprint: NotRequired[str | None]


class ToolCallDelta(TypedDict, total=False):
    index: int  # routes fragments; id/name only on a call's first fragment
    id: str
    type: Literal["function"]
    function: dict[str, str]


class Delta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCallDelta]
    reasoning_content: str
    refusal: str | None


class ChunkChoice(TypedDict):
    index: int
    delta: Delta
    finish_reason: FinishReason | None
    logprobs: NotRequired[Any]


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]  # empty on the final usage chunk (and Azure filter chunks)
    usage: NotRequired[Usage | None]
