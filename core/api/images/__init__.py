"""POST /v1/images/generations (OpenAI's API) for OpenAI and Azure image models, Gemini's
Imagen and Bedrock's Titan Image / Nova Canvas.

request.py validates, plan.py picks the targets that make images (shared with the audio
APIs), endpoint.py is what images bring to the one request pipeline (core.pipeline). The
translators live beside each provider's chat adapter (openai_media.py, gemini/images.py,
bedrock/images.py; their contract: core/providers/adapters/media.py).
"""

from core.api.images.endpoint import ImagesApi

__all__ = ["ImagesApi"]
