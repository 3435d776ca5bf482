"""POST /v1/embeddings (OpenAI's API) for every provider kind that has embeddings.

request.py validates, plan.py picks the targets that can serve, one pure translator per
provider family builds and parses (openai.py, gemini.py, bedrock.py, mock.py), sender.py does
the I/O and endpoint.py is what embeddings bring to the one request pipeline (core.pipeline).
"""

from core.api.embeddings.endpoint import EmbeddingsApi

__all__ = ["EmbeddingsApi"]
