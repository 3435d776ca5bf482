"""Tool-call ids that carry Gemini's thought signature through an OpenAI client and back.

Gemini 3 rejects a conversation whose earlier functionCall parts lack the `thoughtSignature`
it returned. OpenAI clients keep exactly one thing about a tool call verbatim, its `id` (the
tool result must quote it), so the signature rides inside the id. Base64url keeps the id within
`[A-Za-z0-9_-]`, which every provider accepts should the conversation fail over elsewhere.
Ids are derived from the response id, so a replayed response keeps its ids.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

# The digit after "ts" is the number of "=" padding characters, so the round trip is exact.
_SIGNED = re.compile(r"^call_[0-9a-f]{16}_ts([0-2])_([A-Za-z0-9_-]+)$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def tool_call_id(seed: str, candidate: int, ordinal: int, signature: Any) -> str:
    digest = hashlib.blake2b(f"{seed}:{candidate}:{ordinal}".encode(), digest_size=8)
    call_id = f"call_{digest.hexdigest()}"
    if isinstance(signature, str) and _BASE64.match(signature):
        encoded = signature.replace("+", "-").replace("/", "_").rstrip("=")
        call_id += f"_ts{len(signature) - len(encoded)}_{encoded}"
    return call_id


def signature_of(tool_call: dict[str, Any]) -> str | None:
    """The signature in our id, else one a client kept the way Google's own OpenAI layer does."""
    call_id = tool_call.get("id")
    if isinstance(call_id, str):
        match = _SIGNED.match(call_id)
        if match:
            encoded = match.group(2).replace("-", "+").replace("_", "/")
            return encoded + "=" * int(match.group(1))
    extra = tool_call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None
