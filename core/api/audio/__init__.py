"""POST /v1/audio/speech and /v1/audio/transcriptions (OpenAI's APIs) for OpenAI, Azure,
Groq and other OpenAI-compatible hosts.

speech.py streams audio bytes back as they arrive; transcriptions.py takes a multipart
upload (upload.py: verified frame by frame as it streams in from the edge and spooled by
spool.py, memory then an unlinked temporary file) and streams it to the host with the
target's model; request.py validates both; duration.py estimates a recording's
length when the host's answer does not say (README: Images and audio).
"""

from core.api.audio.speech import SpeechApi
from core.api.audio.transcriptions import MultipartRead, TranscriptionsApi
from shared.multipart import name_file

__all__ = ["MultipartRead", "SpeechApi", "TranscriptionsApi", "name_file"]
