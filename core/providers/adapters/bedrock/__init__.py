"""Amazon Bedrock (Converse API): request/response/stream translation, errors and SigV4."""

from core.providers.adapters.bedrock.adapter import ADAPTER, BedrockAdapter

__all__ = ["ADAPTER", "BedrockAdapter"]
