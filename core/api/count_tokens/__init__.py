"""Token counts as pipeline APIs (core.pipeline): POST /v1/messages/count_tokens (Anthropic's
API) and POST /v1/responses/input_tokens (OpenAI's Responses API)."""

from core.api.count_tokens.handler import MessagesCountApi
from core.api.count_tokens.responses import ResponsesCountApi

__all__ = ["MessagesCountApi", "ResponsesCountApi"]
