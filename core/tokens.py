"""Cheap token estimates for the mock provider and pre-call reservations.

Not a tokenizer: about four characters a token for English text, which is what the
reservation step needs (it settles from the provider's real usage afterwards).
"""

from __future__ import annotations

from typing import Any

PER_MESSAGE_OVERHEAD = 4


def estimate_text(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def estimate_messages(messages: list[Any]) -> int:
    total = 3
    for message in messages:
        total += PER_MESSAGE_OVERHEAD
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_text(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    if isinstance(part.get("text"), str):
                        total += estimate_text(part["text"])
                    elif part.get("type") == "image_url":
                        total += 85
    return total
