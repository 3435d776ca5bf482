"""POST /v1/audio/speech and /v1/audio/transcriptions (OpenAI's APIs) for OpenAI, Azure,
Groq and other OpenAI-compatible hosts.

speech.py streams audio bytes back as they arrive; transcriptions.py takes a multipart
upload (read in place by shared/multipart.py, never through a temporary file) and relays it
with the target's model; request.py validates both; duration.py estimates a recording's
length when the host's answer does not say (README: Images and audio).
"""

from core.api.audio.speech import SpeechApi
from core.api.audio.transcriptions import MultipartRead, TranscriptionsApi
from shared.multipart import MAX_UPLOAD_BYTES, name_file

__all__ = ["MAX_UPLOAD_BYTES", "MultipartRead", "SpeechApi", "TranscriptionsApi", "name_file"]
