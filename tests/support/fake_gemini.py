"""A fake Gemini upstream speaking the real wire format, for AI Studio and Vertex AI paths.

Like the real API it rejects what Gemini rejects: unknown fields, empty or non-alternating
turns, unsupported schema keywords, a key in the wrong place, and (as Gemini 3 does) a
functionCall sent back without the thoughtSignature it was issued with. Streams are
`data: <GenerateContentResponse>` events framed with CRLF, each split across two writes.

Scripted by the model id in the URL:
  any name           -> "Hello from Gemini." (n candidates when candidateCount is set);
                        after a functionResponse: "Tool result received."
  function-call      -> get_weather(city=Paris) with a thoughtSignature; in a stream the STOP
                        comes in a separate event (as real Gemini 3 streams do)
  parallel-calls     -> two calls in one turn, only the first signed
  thinking           -> a thought part, then text; usage with thoughts and cached tokens
  json               -> JSON_ANSWER as JSON text when generationConfig asks for
                        application/json with a responseSchema, else the normal answer
  cache              -> the normal answer with 1200 prompt tokens, 1024 of them cached
  safety             -> a candidate with empty content and finishReason SAFETY
  prompt-blocked     -> promptFeedback.blockReason and no candidates
  max-tokens         -> text, then finishReason MAX_TOKENS
  malformed-call     -> finishReason MALFORMED_FUNCTION_CALL
  fail-429           -> RESOURCE_EXHAUSTED with RetryInfo (1 s), always
  fail-429-then-ok   -> the same on the first call, then normal
  quota-day          -> RESOURCE_EXHAUSTED for a per-day quota
  fail-500 / fail-503 / fail-504 -> INTERNAL / UNAVAILABLE / DEADLINE_EXCEEDED
  context            -> 400 input token count exceeds the maximum
  error-after-200    -> stream: two events, then an error object, then the end
  cut-stream         -> stream: two events, then the connection drops
  slow-first-byte    -> waits 0.3 s before answering; very-slow waits 5 s

Explicit context caches (`cachedContents` create/get/delete, `cachedContent` in a request) are
served by `caches` (tests/support/fake_gemini_cache.py); requests naming a cache report the
cached tokens in their usage, whatever the model's script.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.support.fake_gemini_cache import CacheError, FakeCaches, count_tokens
from tests.support.fake_gemini_count import count_answer
from tests.support.fake_server import FakeServer, Received

TEXT = "Hello from Gemini."
JSON_ANSWER = {"answer": "forty-two", "confidence": 0.9}
CACHED_PROMPT, CACHED = 1200, 1024
TOOL_TEXT = "Tool result received."
SIGNATURE = "CpwBAXLI2nxlU6gsWZaZ+RYkX1orzuM8vSUF/waAt1JRxEC2hJzPAcAu3PWaKz7X+PIyTTqF+ZIQPF=="
SIGNATURE_2 = "EpwICpkIAXLI2nx/second+signature/Qrem/xwR4S46oFxYiOF7EVa6pCBb9iu2uvCKrv5b7e=="
LEAKY_KEY_FRAGMENT = "AIzaSyLEAK"

_STUDIO = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent)$")
_VERTEX = re.compile(
    r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+)"
    r":(generateContent|streamGenerateContent)$"
)
_STUDIO_CACHE = re.compile(r"^/(v1beta|v1)/cachedContents(?:/([^/]+))?$")
_VERTEX_CACHE = re.compile(
    r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/cachedContents(?:/([^/]+))?$"
)
_TOP = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
}
_GENERATION = {
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseMimeType",
    "responseSchema",
    "thinkingConfig",
}
_PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
_PART = _PART_DATA | {"thought", "thoughtSignature"}
_SCHEMA = {
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "anyOf",
}
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"}


class Reject(Exception):
    """A request the real API would answer with 400 INVALID_ARGUMENT."""


@dataclass
class GeminiReceived(Received):
    model: str = ""
    vertex: bool = False


def error_response(
    status: int, grpc: str, message: str, details: list[Any] | None = None
) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": grpc}}
    if details:
        body["error"]["details"] = details
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _usage(prompt: int = 11, completion: int | None = 5, **extra: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"promptTokenCount": prompt}
    if completion is not None:
        meta["candidatesTokenCount"] = completion
    meta.update(extra)
    meta["totalTokenCount"] = prompt + (completion or 0) + extra.get("thoughtsTokenCount", 0)
    meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return meta


THOUGHTFUL = _usage(29, 10, thoughtsTokenCount=202)


class FakeGemini(FakeServer):
    def __init__(
        self,
        api_key: str = "AIza-fake-studio-key",
        token: str = "ya29.fake-vertex-token",
        project: str = "proj-1",
        location: str = "us-central1",
    ) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self.handle)
        app.router.add_get("/{tail:.*}", self.handle_cache)
        app.router.add_delete("/{tail:.*}", self.handle_cache)
        super().__init__(app)
        self.api_key = api_key
        self.token = token
        self.project = project
        self.location = location
        self.issued = {SIGNATURE, SIGNATURE_2}
        self.caches = FakeCaches()  # cachedContents (tests.support.fake_gemini_cache)

    def for_model(self, model: str) -> list[Received]:
        return [r for r in self.received if isinstance(r, GeminiReceived) and r.model == model]

    def reset(self) -> None:
        super().reset()
        self.caches = FakeCaches()

    async def handle_cache(self, request: web.Request) -> web.StreamResponse:
        """cachedContents: create (POST on the collection), get and delete (on a name)."""
        raw = await request.read()
        studio, vertex = _STUDIO_CACHE.match(request.path), _VERTEX_CACHE.match(request.path)
        match = studio or vertex
        if match is None:
            return error_response(404, "NOT_FOUND", "Requested entity was not found.")
        self.received.append(
            GeminiReceived(request.method, request.path_qs, dict(request.headers), raw, None)
        )
        self.calls["cachedContents"] += 1
        denied = self._auth(request, vertex)
        if denied is not None:
            return denied
        scope = f"projects/{vertex.group(2)}/locations/{vertex.group(3)}/" if vertex else None
        resource_id = match.group(4) if vertex else match.group(2)
        try:
            if request.method == "POST" and resource_id is None:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    body = None
                self.received[-1].json = body
                await asyncio.sleep(self.caches.create_delay_s)
                answer = self.caches.create(body, scope, self._check_cached)
            elif resource_id is None:
                return error_response(400, "INVALID_ARGUMENT", "this fake does not list caches")
            elif request.method == "GET":
                answer = self.caches.describe(f"{scope or ''}cachedContents/{resource_id}")
            elif request.method == "DELETE":
                self.caches.delete(f"{scope or ''}cachedContents/{resource_id}")
                answer = {}
            else:
                return error_response(400, "INVALID_ARGUMENT", "unsupported method")
        except CacheError as exc:
            return error_response(exc.status, exc.grpc, exc.message)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def _check_cached(self, probe: dict[str, Any]) -> None:
        try:
            check_request(probe, self.issued)
        except Reject as exc:
            raise CacheError(400, "INVALID_ARGUMENT", str(exc)) from None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/cachedContents"):
            return await self.handle_cache(request)
        if request.path.endswith(":countTokens"):
            return await count_answer(self, request)
        raw = await request.read()
        studio, vertex = _STUDIO.match(request.path), _VERTEX.match(request.path)
        if studio is None and vertex is None:
            return error_response(
                404, "NOT_FOUND", f"Requested entity was not found: {request.path}"
            )
        model = studio.group(2) if studio else vertex.group(4)  # type: ignore[union-attr]
        method = studio.group(3) if studio else vertex.group(5)  # type: ignore[union-attr]
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        denied = self.admit(request, raw, body, model, vertex)
        if denied is not None:
            return denied
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            return error_response(400, "INVALID_ARGUMENT", "this fake only streams with alt=sse")
        try:
            if not isinstance(body, dict):
                raise Reject("Invalid JSON payload received.")
            check_request(body, self.issued)
        except Reject as exc:
            return error_response(400, "INVALID_ARGUMENT", str(exc))
        cached_tokens = 0
        if "cachedContent" in body:
            try:
                cached_tokens = self.caches.use(body, model)
            except CacheError as exc:
                return error_response(exc.status, exc.grpc, exc.message)
        failure = self.failure(model)
        if failure is not None:
            return failure
        if model == "slow-first-byte":
            await asyncio.sleep(0.3)
        elif model == "very-slow":
            await asyncio.sleep(5)
        events = script(model, body)
        if cached_tokens:
            _count_cached(events, cached_tokens, count_tokens(body["contents"]))
        if not stream:
            return web.Response(body=orjson.dumps(merge(events)), content_type="application/json")
        return await self._stream(request, model, events)

    def admit(
        self, request: web.Request, raw: bytes, body: Any, model: str, vertex: Any
    ) -> web.Response | None:
        """Record the call, count it per model, check its credentials (None: let it in)."""
        self.received.append(
            GeminiReceived(
                request.method,
                request.path_qs,
                dict(request.headers),
                raw,
                body,
                model=model,
                vertex=vertex is not None,
            )
        )
        self.calls[model] += 1
        return self._auth(request, vertex)

    def _auth(self, request: web.Request, vertex: re.Match[str] | None) -> web.Response | None:
        if vertex is None:
            if "key" in request.query:
                return error_response(400, "INVALID_ARGUMENT", "the key must not be in the URL")
            if request.headers.get("x-goog-api-key") != self.api_key:
                info = {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
                message = (
                    f"API key not valid ({LEAKY_KEY_FRAGMENT}...). Please pass a valid API key."
                )
                return error_response(400, "INVALID_ARGUMENT", message, [info])
            return None
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return error_response(
                401,
                "UNAUTHENTICATED",
                f"Request had invalid authentication credentials ({LEAKY_KEY_FRAGMENT}).",
            )
        if (vertex.group(2), vertex.group(3)) != (self.project, self.location):
            return error_response(403, "PERMISSION_DENIED", "Permission denied on resource.")
        return None

    def failure(self, model: str) -> web.Response | None:
        if model == "fail-429" or (model == "fail-429-then-ok" and self.calls[model] == 1):
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
            return error_response(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                [retry],
            )
        if model == "quota-day":
            quota = {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
            }
            return error_response(
                429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", [quota]
            )
        statuses = {
            "fail-500": (500, "INTERNAL", "An internal error has occurred."),
            "fail-503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
            "fail-504": (
                504,
                "DEADLINE_EXCEEDED",
                "Deadline expired before operation could complete.",
            ),
        }
        if model in statuses:
            return error_response(*statuses[model])
        if model == "context":
            return error_response(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens "
                "allowed (1048576).",
            )
        return None

    async def _stream(
        self, request: web.Request, model: str, events: list[dict[str, Any]]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        cut = model in ("error-after-200", "cut-stream")
        for event in events[:2] if cut else events:
            data = b"data: " + orjson.dumps(event) + b"\r\n\r\n"
            middle = len(data) // 2
            await response.write(data[:middle])  # a write boundary in the middle of an event
            await response.write(data[middle:])
        if model == "error-after-200":
            error = {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded.",
                    "status": "UNAVAILABLE",
                }
            }
            await response.write(b"data: " + orjson.dumps(error) + b"\r\n\r\n")
        elif model == "cut-stream":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response


# ---- scripts -------------------------------------------------------------------------------


def _event(model: str, parts: list[dict[str, Any]] | None, **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0}
    if parts is not None:
        candidate["content"] = {"parts": parts, "role": "model"}
    finish = extra.pop("finish", None)
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": extra.pop("usage", _usage(completion=None)),
        "modelVersion": model,
        "responseId": "fakeResponse42",
        **extra,
    }


def _count_cached(events: list[dict[str, Any]], cached: int, sent: int) -> None:
    """Usage as Gemini reports it for a request naming a cache: the cached tokens are part of
    promptTokenCount and counted again in cachedContentTokenCount."""
    for event in events:
        meta = event.get("usageMetadata")
        if not isinstance(meta, dict):
            continue
        meta["promptTokenCount"] = cached + sent
        meta["cachedContentTokenCount"] = cached
        meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached + sent}]
        output = meta.get("candidatesTokenCount", 0) + meta.get("thoughtsTokenCount", 0)
        meta["totalTokenCount"] = cached + sent + output


def _after_tool_result(body: dict[str, Any]) -> bool:
    last = body["contents"][-1]
    return any("functionResponse" in part for part in last["parts"])


def script(model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream events for a request; a non-streamed answer is their merge."""
    if _after_tool_result(body):
        return [_event(model, [{"text": TOOL_TEXT}], finish="STOP", usage=_usage(20, 4))]
    if model == "function-call":
        call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
        return [
            _event(model, [{**call, "thoughtSignature": SIGNATURE}], usage=THOUGHTFUL),
            _event(model, [{"text": ""}], finish="STOP", usage=THOUGHTFUL),
        ]
    if model == "parallel-calls":
        return [
            _event(
                model,
                [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": SIGNATURE_2,
                    },
                    {"functionCall": {"name": "get_time", "args": {"zone": "CET"}}},
                ],
            ),
            _event(model, [{"text": ""}], finish="STOP", usage=_usage(30, 12)),
        ]
    if model == "thinking":
        usage = _usage(40, 6, thoughtsTokenCount=25, cachedContentTokenCount=32)
        return [
            _event(model, [{"text": "Let me think.", "thought": True}]),
            _event(model, [{"text": TEXT}], finish="STOP", usage=usage),
        ]
    if model == "safety":
        event = _event(model, None, finish="SAFETY", usage=_usage(14, None))
        event["candidates"][0]["content"] = {}
        event["candidates"][0]["safetyRatings"] = [
            {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "LOW", "blocked": True}
        ]
        return [event]
    if model == "prompt-blocked":
        return [
            {
                "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                "usageMetadata": _usage(9, None),
                "modelVersion": model,
                "responseId": "fakeBlocked",
            }
        ]
    if model == "max-tokens":
        return [
            _event(model, [{"text": "Hello"}]),
            _event(model, [{"text": " from"}], finish="MAX_TOKENS", usage=_usage(11, 2)),
        ]
    config = body.get("generationConfig") or {}
    structured = config.get("responseMimeType") == "application/json"
    if model == "json" and structured and "responseSchema" in config:
        answer = orjson.dumps(JSON_ANSWER).decode()
        return [_event(model, [{"text": answer}], finish="STOP", usage=_usage())]
    if model == "cache":
        usage = _usage(CACHED_PROMPT, 5, cachedContentTokenCount=CACHED)
        return [
            _event(model, [{"text": "Hello"}]),
            _event(model, [{"text": " from Gemini."}], finish="STOP", usage=usage),
        ]
    if model == "malformed-call":
        event = _event(model, None, finish="MALFORMED_FUNCTION_CALL", usage=_usage(11, None))
        event["candidates"][0]["finishMessage"] = "Malformed function call: get_weather("
        return [event]
    count = int(body.get("generationConfig", {}).get("candidateCount", 1))
    events = [
        _event(model, [{"text": "Hello"}]),
        _event(model, [{"text": " from"}]),
        _event(model, [{"text": " Gemini."}], finish="STOP", usage=_usage()),
    ]
    for event in events:
        first = event["candidates"][0]
        if count == 1:
            del first["index"]  # single-candidate streams may omit it, as recorded ones do
        else:
            event["candidates"] = [{**first, "index": i} for i in range(count)]
    return events


def merge(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The generateContent answer: the stream's parts joined per candidate."""
    merged: dict[str, Any] = {k: v for k, v in events[-1].items() if k != "candidates"}
    candidates: dict[int, dict[str, Any]] = {}
    for event in events:
        for candidate in event.get("candidates", []):
            index = candidate.get("index", 0)
            target = candidates.setdefault(index, {"index": index})
            parts = candidate.get("content", {}).get("parts")
            if parts is not None:
                content = target.setdefault("content", {"parts": [], "role": "model"})
                for part in parts:
                    previous = content["parts"][-1] if content["parts"] else None
                    if (
                        previous is not None
                        and "text" in part
                        and "text" in previous
                        and previous.get("thought") == part.get("thought")
                    ):
                        previous["text"] += part["text"]
                    elif part != {"text": ""}:
                        content["parts"].append(dict(part))
            elif "content" in candidate:
                target["content"] = candidate["content"]
            for key in ("finishReason", "finishMessage", "safetyRatings"):
                if key in candidate:
                    target[key] = candidate[key]
    if candidates:
        merged["candidates"] = [candidates[i] for i in sorted(candidates)]
    return merged


# ---- request validation (what the real API rejects) -----------------------------------------


def check_request(body: dict[str, Any], issued: set[str]) -> None:
    _known(body, _TOP, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Reject("* GenerateContentRequest.contents: contents is not specified")
    previous = None
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        _known(content, {"role", "parts"}, where)
        if content.get("role") not in ("user", "model"):
            raise Reject(f"{where}.role: Please use a valid role: user, model.")
        if content["role"] == previous:
            raise Reject(f"{where}: consecutive turns with the same role")
        previous = content["role"]
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise Reject(f"{where}.parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            _check_part(part, f"{where}.parts[{j}]", content["role"], issued)
        calls = [p for p in parts if "functionCall" in p]
        if calls and "thoughtSignature" not in calls[0]:
            raise Reject(
                f"Function call is missing a thought_signature in functionCall parts. Position {i}."
            )
    system = body.get("systemInstruction")
    if system is not None:
        _known(system, {"parts", "role"}, "systemInstruction")
        for j, part in enumerate(system["parts"]):
            _known(part, {"text"}, f"systemInstruction.parts[{j}]")
    for tool in body.get("tools", []):
        _known(tool, {"functionDeclarations"}, "tools")
        for declaration in tool["functionDeclarations"]:
            _known(declaration, {"name", "description", "parameters"}, "functionDeclarations")
            if "parameters" in declaration:
                _check_schema(declaration["parameters"], declaration["name"])
                if not declaration["parameters"].get("properties"):
                    raise Reject("parameters.properties: should be non-empty for OBJECT type")
    config = body.get("generationConfig", {})
    _known(config, _GENERATION, "generationConfig")
    if "responseSchema" in config:
        _check_schema(config["responseSchema"], "responseSchema")
    thinking = config.get("thinkingConfig", {})
    _known(thinking, {"thinkingBudget", "thinkingLevel", "includeThoughts"}, "thinkingConfig")
    if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        raise Reject("thinking_budget and thinking_level are not supported together.")
    tool_config = body.get("toolConfig")
    if tool_config is not None:
        calling = tool_config["functionCallingConfig"]
        _known(calling, {"mode", "allowedFunctionNames"}, "functionCallingConfig")
        if calling["mode"] not in ("AUTO", "ANY", "NONE"):
            raise Reject("functionCallingConfig.mode: invalid value")


def _known(value: Any, allowed: set[str], where: str) -> None:
    if not isinstance(value, dict):
        raise Reject(f"Invalid value at '{where}': expected an object")
    for key in value:
        if key not in allowed:
            raise Reject(f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}'")


def _check_part(part: Any, where: str, role: str, issued: set[str]) -> None:
    _known(part, _PART, where)
    data = [k for k in part if k in _PART_DATA]
    if len(data) != 1:
        raise Reject(f"{where}: a part must hold exactly one kind of data")
    if "inlineData" in part:
        _known(part["inlineData"], {"mimeType", "data"}, f"{where}.inlineData")
    if "functionCall" in part and (
        role != "model" or not isinstance(part["functionCall"].get("args", {}), dict)
    ):
        raise Reject(f"{where}.functionCall: invalid function call")
    if "functionResponse" in part:
        response = part["functionResponse"]
        _known(response, {"name", "response"}, f"{where}.functionResponse")
        if role != "user" or not isinstance(response.get("response"), dict):
            raise Reject(f"{where}.functionResponse.response: expected a Struct")
    signature = part.get("thoughtSignature")
    if signature is not None and signature not in issued:
        raise Reject("Corrupted thought signature.")


def _check_schema(schema: Any, where: str) -> None:
    _known(schema, _SCHEMA, where)
    if "type" in schema and schema["type"] not in _TYPES:
        raise Reject(f"{where}.type: invalid value {schema['type']!r}")
    for name, value in schema.get("properties", {}).items():
        _check_schema(value, f"{where}.{name}")
    for value in schema.get("anyOf", []):
        _check_schema(value, where)
    if "items" in schema:
        _check_schema(schema["items"], f"{where}[]")
    for name in schema.get("required", []):
        if name not in schema.get("properties", {}):
            raise Reject(f"{where}.required: property {name} is not defined")
