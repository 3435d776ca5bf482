"""A validated count_tokens request: the client's Messages-shaped input, its own bytes and
Anthropic headers (sent as they are to Anthropic: no routing rule changes a count's payload),
and its canonical translation, made once when a translated target is planned."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.datastructures import Headers

from core.api.messages.handler import CLIENT_HEADERS
from core.api.messages.request import to_canonical
from core.api.messages.validate import validate_count
from core.providers.adapters.base import JSON
from core.providers.adapters.counting import CountInput

# Translation reads a Message's output cap; a count has none and generates nothing.
_NO_OUTPUT = {"max_tokens": 1}


class MessagesCountRequest:
    __slots__ = ("_input", "model", "payload")

    stream = False  # a count is always answered whole

    def __init__(self, payload: dict[str, Any], raw: bytes, headers: Headers) -> None:
        validate_count(payload)
        self.payload = payload
        self.model: str = payload["model"]
        kept = {name: value for name in CLIENT_HEADERS if (value := headers.get(name))}
        self._input = CountInput(payload, raw, kept, None)

    def translate(self) -> JSON:
        """The canonical (OpenAI chat) form, translated once; a 400 naming the field when no
        OpenAI-shaped target could take the content."""
        canonical = self._input.canonical
        if canonical is None:
            canonical = to_canonical({**self.payload, **_NO_OUTPUT}).canonical
            canonical.pop("max_tokens", None)
            self._input = replace(self._input, canonical=canonical)
        return canonical

    @property
    def counted(self) -> CountInput:
        """What the counters read (with the canonical form once `translate` has run)."""
        return self._input
