"""POST /v1/messages/count_tokens (Anthropic's API) as a pipeline API (core.pipeline)."""

from core.api.count_tokens.handler import CountTokensApi

__all__ = ["CountTokensApi"]
