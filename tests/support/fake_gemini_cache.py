"""Gemini's `cachedContents` for FakeGemini, as the real API behaves (ai.google.dev, Context
caching, and the CachedContent REST reference):

- `POST {version}/cachedContents` (AI Studio) or `.../projects/P/locations/L/cachedContents`
  (Vertex AI) with `model` (`models/<id>` or the full publisher model name), optional
  `systemInstruction`, `tools`, `toolConfig`, `contents`, `displayName`, and `ttl` ("300s") or
  `expireTime` (default one hour). Answers the CachedContent with its `name`, `expireTime`
  (RFC 3339 with nanoseconds) and `usageMetadata.totalTokenCount`. A prefix under the model's
  minimum (1,024 tokens for Flash models, 4,096 otherwise) is a 400 "Cached content is too
  small".
- `GET` / `DELETE` on the name; an unknown or expired name is 403 PERMISSION_DENIED
  "CachedContent not found (or permission denied)", as Gemini answers.
- generateContent naming `cachedContent`: the same 403 when it is gone; 400 when the request
  also sets systemInstruction, tools or toolConfig, or names another model; usage counts the
  cached tokens in `promptTokenCount` and again in `cachedContentTokenCount`.

Tokens are counted as text characters / 4, like the gateway's estimate, so tests choose
prefix sizes on either side of a minimum with a margin.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GONE = "CachedContent not found (or permission denied)"
_TTL = re.compile(r"^(\d+)(?:\.\d{1,9})?s$")
_KEYS = {"model", "contents", "systemInstruction", "tools", "toolConfig", "ttl", "expireTime"}
_KEYS |= {"displayName"}
_FORBIDDEN_WITH_CACHE = ("systemInstruction", "tools", "toolConfig")


class CacheError(Exception):
    def __init__(self, status: int, grpc: str, message: str) -> None:
        super().__init__(message)
        self.status, self.grpc, self.message = status, grpc, message


@dataclass
class Resource:
    name: str
    model: str  # the model id alone
    body: dict[str, Any]
    tokens: int
    expires: float  # epoch seconds


def count_tokens(value: Any) -> int:
    chars, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return (chars + 3) // 4


def min_tokens(model: str) -> int:
    return 1024 if "flash" in model else 4096


def rfc3339(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}123Z"


class FakeCaches:
    """The resources of one fake project; `lifetime_s` overrides every TTL asked for."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.created: Counter[str] = Counter()  # creations per model id
        self.lifetime_s: float | None = None
        self.create_delay_s = 0.0  # how long a creation takes (the real one takes a while)

    def create(self, body: Any, scope: str | None, check: Any) -> dict[str, Any]:
        """`scope`: "projects/P/locations/L/" on Vertex, None on AI Studio. `check` validates
        the parts as generateContent would (raises the fake's Reject)."""
        if not isinstance(body, dict):
            raise CacheError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        unknown = set(body) - _KEYS
        if unknown:
            raise CacheError(400, "INVALID_ARGUMENT", f"Unknown name {sorted(unknown)[0]!r}")
        model = self._model(body.get("model"), scope)
        probe = {k: body[k] for k in _FORBIDDEN_WITH_CACHE if k in body}
        probe["contents"] = body.get("contents") or [{"role": "user", "parts": [{"text": "."}]}]
        check(probe)
        tokens = count_tokens(
            {k: body[k] for k in (*_FORBIDDEN_WITH_CACHE, "contents") if k in body}
        )
        if tokens < min_tokens(model):
            raise CacheError(
                400,
                "INVALID_ARGUMENT",
                f"Cached content is too small. total_token_count={tokens}, "
                f"min_total_token_count={min_tokens(model)}",
            )
        expires = time.time() + self._ttl(body)
        name = f"{scope or ''}cachedContents/{secrets.token_hex(8)}"
        self.resources[name] = Resource(name, model, body, tokens, expires)
        self.created[model] += 1
        return self.describe(name)

    def describe(self, name: str) -> dict[str, Any]:
        resource = self.live(name)
        return {
            "name": name,
            "model": resource.body["model"],
            "displayName": resource.body.get("displayName", ""),
            "createTime": rfc3339(time.time()),
            "updateTime": rfc3339(time.time()),
            "expireTime": rfc3339(resource.expires),
            "usageMetadata": {"totalTokenCount": resource.tokens},
        }

    def live(self, name: str) -> Resource:
        resource = self.resources.get(name)
        if resource is None or resource.expires <= time.time():
            self.resources.pop(name, None)
            raise CacheError(403, "PERMISSION_DENIED", GONE)
        return resource

    def delete(self, name: str) -> None:
        self.live(name)
        del self.resources[name]

    def expire(self) -> None:
        """Every resource expires now (as if its TTL had run out)."""
        for resource in self.resources.values():
            resource.expires = 0.0

    def use(self, body: dict[str, Any], model: str) -> int:
        """Check a generateContent body naming a cache; its cached token count."""
        resource = self.live(str(body["cachedContent"]))
        if any(key in body for key in _FORBIDDEN_WITH_CACHE):
            raise CacheError(
                400,
                "INVALID_ARGUMENT",
                "CachedContent can not be used with GenerateContent request setting "
                "system_instruction, tools or tool_config.",
            )
        if resource.model != model:
            raise CacheError(
                400,
                "INVALID_ARGUMENT",
                f"Model used by GenerateContent request (models/{model}) and CachedContent "
                f"(models/{resource.model}) has to be the same.",
            )
        return resource.tokens

    def _model(self, raw: Any, scope: str | None) -> str:
        prefix = f"{scope}publishers/google/models/" if scope else "models/"
        if not isinstance(raw, str) or not raw.startswith(prefix):
            raise CacheError(400, "INVALID_ARGUMENT", f"model must be {prefix}<id>")
        return raw.removeprefix(prefix)

    def _ttl(self, body: dict[str, Any]) -> float:
        if self.lifetime_s is not None:
            return self.lifetime_s
        ttl = body.get("ttl")
        if ttl is None:
            return 3600.0
        match = _TTL.match(ttl) if isinstance(ttl, str) else None
        if match is None:
            raise CacheError(400, "INVALID_ARGUMENT", "Invalid value at 'cached_content.ttl'")
        return float(match.group(1))
