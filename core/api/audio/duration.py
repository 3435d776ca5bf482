"""How long an uploaded recording is, when the provider's answer does not say.

OpenAI's transcription answers carry their billed usage (`usage.type: "duration"` with
seconds for whisper-1, `"tokens"` for gpt-4o-*-transcribe), and verbose_json a `duration`;
text, srt and vtt answers carry neither. Then the gateway estimates, flagged `estimated`:
a WAV file's length is exact from its header (data bytes / byte rate); any other format is
taken at 128 kbit/s (16,000 bytes a second), a typical speech MP3/M4A bitrate, so a 1 MB
upload counts about 66 seconds.
"""

from __future__ import annotations

import struct

ASSUMED_BYTES_PER_SECOND = 16_000
_HEADER_SCAN = 4096  # a WAV's fmt and data chunks start within its first bytes


def wav_seconds(head: bytes, size: int) -> float | None:
    """Seconds of a RIFF/WAVE file from its first bytes; None if it is not one."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at, byte_rate = 12, 0
    while at + 8 <= len(head):
        chunk = head[at : at + 4]
        length: int = struct.unpack_from("<I", head, at + 4)[0]
        if chunk == b"fmt " and at + 20 <= len(head):
            byte_rate = int(struct.unpack_from("<I", head, at + 16)[0])
        elif chunk == b"data":
            if byte_rate <= 0:
                return None
            return min(length, size - at - 8) / byte_rate  # a streamed WAV says 0xFFFFFFFF
        at += 8 + length + (length & 1)
    return None


def estimate_seconds(head: bytes, size: int) -> float:
    """A recording of `size` bytes starting with `head`: exact for WAV, else by the assumed
    bitrate."""
    exact = wav_seconds(head[:_HEADER_SCAN], size)
    return exact if exact is not None else size / ASSUMED_BYTES_PER_SECOND
