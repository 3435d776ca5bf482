"""POST /v1/embeddings (OpenAI's API) for every provider kind that has embeddings.

This package is the API's spec: request.py validates, plan.py picks the targets that can serve,
response.py encodes the answer as the client asked, and endpoint.py is what embeddings bring to
the one request pipeline (core.pipeline). Translation is the providers': one pure translator per
provider family beside its chat adapter (core/providers/adapters/embeddings.py is their
contract), sent through the provider's transport (core/providers/embeddings_sender.py).
"""

from core.api.embeddings.endpoint import EmbeddingsApi

__all__ = ["EmbeddingsApi"]
