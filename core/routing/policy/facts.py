"""What the rules may know of a request before anyone is called: one `Facts` per request.

Cheap facts (model, api, tenant, tier, stream, max_tokens, tools) are read straight from the
validated request; the rest are computed on first use and kept, so a policy that never asks
about prompt tokens, images, time or content never pays for them:

- `prompt_tokens`: the API's own estimate (chat and messages: the prompt; embeddings: the
  input), the same the admission step reserves;
- `images`: an image part in any message (OpenAI `image_url`, Anthropic `image`);
- `content`: the last user message's text, cut at `content_max_chars` (and lower-cased, for
  keywords);
- `hour`, `weekday`, `time`: the clock, in the policy's time zone, read once;
- `budget`: the share of a budget used, from the `BudgetGauge` (None: unknown, never matches).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any, Protocol

from shared.config_conditions import WEEKDAYS

Tags = tuple[tuple[str, str], ...]


class BudgetGauge(Protocol):
    """How full a budget is, from what the budgets already know (no store call per request):
    the share of its limit used in the current period, 0.0 to 1.0 and beyond, or None when
    it is not known (yet)."""

    def used_share(self, name: str) -> float | None: ...


class Setting:
    """What every request's facts share: built once with the policy."""

    __slots__ = ("clock", "content_chars", "gauge", "zone")

    def __init__(
        self,
        zone: tzinfo,
        content_chars: int = 0,
        gauge: BudgetGauge | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.zone = zone
        self.content_chars = content_chars
        self.gauge = gauge
        self.clock = clock


class Facts:
    """One request's facts; the lazy ones are computed at most once."""

    __slots__ = (
        "_clock",
        "_content",
        "_images",
        "_lowered",
        "_prompt",
        "_prompt_tokens",
        "_tags",
        "api",
        "headers",
        "model",
        "payload",
        "raw_tags",
        "setting",
        "stream",
        "tenant",
        "tier",
    )

    def __init__(
        self,
        setting: Setting,
        api: str,
        model: str,
        payload: Mapping[str, Any],
        *,
        stream: bool = False,
        tenant: str = "",
        tier: str = "default",
        tags: Tags = (),
        headers: Mapping[str, str] | None = None,
        prompt: Callable[[], int] | None = None,
    ) -> None:
        self.setting = setting
        self.api = api
        self.model = model
        self.payload = payload
        self.stream = stream
        self.tenant = tenant
        self.tier = tier
        self.raw_tags = tags
        self.headers: Mapping[str, str] = headers or {}
        self._prompt = prompt
        self._prompt_tokens: int | None = None
        self._tags: dict[str, str] | None = None
        self._images: bool | None = None
        self._content: str | None = None
        self._lowered: str | None = None
        self._clock: datetime | None = None

    @property
    def prompt_tokens(self) -> int:
        if self._prompt_tokens is None:
            self._prompt_tokens = self._prompt() if self._prompt is not None else 0
        return self._prompt_tokens

    @property
    def max_tokens(self) -> int | None:
        payload = self.payload
        value = payload.get("max_completion_tokens") or payload.get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def tools(self) -> bool:
        return bool(self.payload.get("tools"))

    @property
    def structured_output(self) -> bool:
        """OpenAI's response_format (json_schema, json_object); Anthropic's
        output_config.format (or the beta's output_format)."""
        payload = self.payload
        fmt = payload.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
            return True
        config = payload.get("output_config")
        return bool(payload.get("output_format")) or (
            isinstance(config, dict) and bool(config.get("format"))
        )

    @property
    def images(self) -> bool:
        if self._images is None:
            self._images = _has_images(self.payload.get("messages"))
        return self._images

    def tag(self, key: str) -> str | None:
        if self._tags is None:
            self._tags = dict(self.raw_tags)
        return self._tags.get(key)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def now(self) -> datetime:
        if self._clock is None:
            self._clock = datetime.fromtimestamp(self.setting.clock(), self.setting.zone)
        return self._clock

    @property
    def hour(self) -> int:
        return self.now.hour

    @property
    def weekday(self) -> str:
        return WEEKDAYS[self.now.weekday()]

    @property
    def minutes(self) -> int:
        now = self.now
        return now.hour * 60 + now.minute

    def budget_percent(self, name: str) -> float | None:
        gauge = self.setting.gauge
        share = gauge.used_share(name) if gauge is not None else None
        return None if share is None else share * 100.0

    @property
    def content(self) -> str:
        if self._content is None:
            text = _last_user_text(self.payload, self.setting.content_chars)
            self._content = text[: self.setting.content_chars]
        return self._content

    @property
    def content_lower(self) -> str:
        """`content` lower-cased, once: keywords are plain substring tests on it (a
        case-insensitive regex alternation is ten times slower on 2,000 characters)."""
        if self._lowered is None:
            self._lowered = self.content.lower()
        return self._lowered


def _has_images(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "image"):
                    return True
    return False


def _last_user_text(payload: Mapping[str, Any], limit: int) -> str:
    """The last user message's text (its text parts joined), or the last embeddings input;
    at most `limit` characters are joined, whatever the message holds."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"), limit)
        return ""
    inputs = payload.get("input")
    if isinstance(inputs, str):
        return inputs[:limit]
    if isinstance(inputs, list) and inputs and isinstance(inputs[-1], str):
        return inputs[-1][:limit]
    return ""


def _text_of(content: Any, limit: int) -> str:
    if isinstance(content, str):
        return content[:limit]
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    size = 0
    for part in content:
        text = part.get("text") if isinstance(part, dict) else None
        if isinstance(text, str):
            parts.append(text[: limit - size])
            size += len(parts[-1])
            if size >= limit:
                break
    return "\n".join(parts)
