"""A fake Azure OpenAI resource speaking Azure's wire format, scripted by deployment name.

It serves both URL styles: /openai/deployments/{deployment}/chat/completions?api-version=...
(checked against a list of versions; unknown ones are a 404 as on Azure) and the v1 path
/openai/v1/chat/completions with the deployment in the body. It checks the `api-key` header
(or `Authorization: Bearer <token>`), and dated versions before 2024-09-01 reject
stream_options as Azure does. Streams start with the prompt-filter chunk (empty choices, empty
id) and carry content_filter_results per choice, shaped like recorded Azure streams.

Deployments:
  any name          -> a normal answer
  filtered-prompt   -> 400 content_filter with innererror ResponsibleAIPolicyViolation
  filtered-output   -> the answer stops with finish_reason content_filter
  async-filter      -> stream with asynchronous-filter annotations (no delta, empty id), the
                       last one ending the stream with finish_reason content_filter
  throttled         -> 429 with retry-after and retry-after-ms
  out-of-quota      -> 403 "Out of call volume quota"
  no-such-deploy    -> 404 DeploymentNotFound
  tool-calls        -> two parallel tool calls (TOOL_CALLS; streamed interleaved by index)
                       until the last message is a tool result, then "Tool results: <the tool
                       messages' contents joined by ' | '>"
  json              -> JSON_ANSWER as the content when response_format is json_schema
  cache             -> usage with 1200 prompt tokens, 1024 of them cached
  error-after-200   -> stream: the prompt-filter chunk and three words, then an error object
  cut-stream        -> stream: the prompt-filter chunk and three words, then the connection drops
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from tests.support.fake_openai_responses import ResponsesEndpoint
from tests.support.fake_server import FakeServer, Received

TEXT = "The capital of France is Paris."
JSON_ANSWER = {"answer": "forty-two", "confidence": 0.9}
CACHED_PROMPT, CACHED = 1200, 1024
TOOL_CALLS = [
    {
        "id": "call_azure_weather",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    },
    {
        "id": "call_azure_stock",
        "type": "function",
        "function": {"name": "get_stock_price", "arguments": '{"ticker": "ACME"}'},
    },
]
WORDS = ("The", " capital", " of", " France", " is", " Paris", ".")
API_VERSIONS = frozenset({"2024-06-01", "2024-10-21", "2025-04-01-preview", "preview"})

_SAFE = {"filtered": False, "severity": "safe"}
_FILTER_RESULTS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            **_FILTER_RESULTS,
            "jailbreak": {"filtered": False, "detected": False},
        },
    }
]


def _error(
    http_status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.Response(
        status=http_status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def _usage(deployment: str = "") -> dict[str, Any]:
    prompt, cached = (CACHED_PROMPT, CACHED) if deployment == "cache" else (14, 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": 7,
        "total_tokens": prompt + 7,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _tool_results(body: Any) -> list[str]:
    """The contents of the trailing tool messages, in order."""
    results: list[str] = []
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "tool":
            break
        results.insert(0, str(message.get("content")))
    return results


def _script(deployment: str, body: Any) -> tuple[bool, str]:
    """(answer with TOOL_CALLS?, the text otherwise) for a deployment."""
    if deployment == "tool-calls":
        results = _tool_results(body)
        if not results:
            return True, ""
        return False, "Tool results: " + " | ".join(results)
    format_type = (body.get("response_format") or {}).get("type")
    if deployment == "json" and format_type == "json_schema":
        return False, orjson.dumps(JSON_ANSWER).decode()
    return False, TEXT


def _words(text: str) -> tuple[str, ...]:
    return tuple(w if i == 0 else " " + w for i, w in enumerate(text.split(" ")))


def _tool_call_chunks(choice: Any) -> list[dict[str, Any]]:
    """TOOL_CALLS as stream deltas: id and name first, then argument halves interleaved."""
    chunks = [
        choice(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        for index, call in enumerate(TOOL_CALLS)
    ]
    for part in (0, 1):
        for index, call in enumerate(TOOL_CALLS):
            arguments = call["function"]["arguments"]
            half = arguments[:6] if part == 0 else arguments[6:]
            chunks.append(
                choice({"tool_calls": [{"index": index, "function": {"arguments": half}}]})
            )
    return chunks


class FakeAzure(FakeServer):
    def __init__(self, api_key: str = "azure-key", token: str = "entra-token") -> None:
        self.api_key = api_key
        self.token = token
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.deployments)
        app.router.add_post("/openai/v1/chat/completions", self.v1)
        app.router.add_post(
            "/openai/v1/responses", ResponsesEndpoint(self, TEXT, self._auth_error).handle
        )
        super().__init__(app)

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = orjson.loads(raw)
        self.received.append(
            Received(request.method, request.path_qs, dict(request.headers), raw, body)
        )
        return body

    def _auth_error(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("api-key")
        bearer = request.headers.get("Authorization", "")
        if key == self.api_key or bearer == f"Bearer {self.token}":
            return None
        return _error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. "
            f"Key received: {key or bearer}.",
        )

    async def deployments(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        version = request.query.get("api-version")
        if version not in API_VERSIONS:
            return _error(404, "404", "Resource not found")
        return await self._serve(request, request.match_info["deployment"], body, version)

    async def v1(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        version = request.query.get("api-version")
        if version not in (None, "preview"):
            return _error(400, "BadRequest", f"API version not supported: {version}")
        if not isinstance(body.get("model"), str):
            return _error(400, "BadRequest", "model is required")
        return await self._serve(request, body["model"], body, version or "v1")

    async def _serve(
        self, request: web.Request, deployment: str, body: Any, version: str
    ) -> web.StreamResponse:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        self.calls[deployment] += 1
        if "stream_options" in body and version[:4].isdigit() and version < "2024-09-01":
            return _error(
                400, "BadRequest", "Unrecognized request argument supplied: stream_options"
            )
        if deployment == "filtered-prompt":
            return _error(
                400,
                "content_filter",
                "The response was filtered due to the prompt triggering Azure OpenAI's "
                "content management policy. Please modify your prompt and retry.",
                type=None,
                param="prompt",
                status=400,
                innererror={
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {
                        **_FILTER_RESULTS,
                        "violence": {"filtered": True, "severity": "medium"},
                    },
                },
            )
        if deployment == "throttled":
            return _error(
                429,
                "429",
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                "version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 "
                "pricing tier. Please retry after 2 seconds. Please go here: "
                "https://aka.ms/oai/quotaincrease if you would like to further increase the "
                "default rate limit.",
                headers={"retry-after": "2", "retry-after-ms": "1500"},
            )
        if deployment == "out-of-quota":
            return _error(
                403,
                "403",
                "Out of call volume quota for OpenAI API. Quota will be replenished in 2.12:34:56.",
            )
        if deployment == "no-such-deploy":
            return _error(
                404,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
            )
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, deployment, include_usage, body)
        filtered = deployment == "filtered-output"
        tools, text = _script(deployment, body)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if filtered or tools else text,
            "refusal": None,
        }
        if tools:
            message["tool_calls"] = TOOL_CALLS
        finish = "content_filter" if filtered else "tool_calls" if tools else "stop"
        completion = {
            "id": "chatcmpl-azure1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "gpt-4o-2024-11-20",
            "system_fingerprint": "fp_azure",
            "prompt_filter_results": PROMPT_FILTER,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "logprobs": None,
                    "message": message,
                    "content_filter_results": _FILTER_RESULTS,
                }
            ],
            "usage": _usage(deployment),
        }
        return web.Response(body=orjson.dumps(completion), content_type="application/json")

    async def _stream(
        self, request: web.Request, deployment: str, include_usage: bool, body: Any = None
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "apim-request-id": "x"}
        )
        await response.prepare(request)
        base = {
            "id": "chatcmpl-azure1",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "gpt-4o-2024-11-20",
            "system_fingerprint": "fp_azure",
        }

        def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [
                    {
                        "content_filter_results": _FILTER_RESULTS if delta else {},
                        "delta": delta,
                        "finish_reason": finish,
                        "index": 0,
                        "logprobs": None,
                    }
                ],
            }

        def annotation(finish: str | None, filtered: bool) -> dict[str, Any]:
            results = (
                {"protected_material_text": {"detected": True, "filtered": True}}
                if filtered
                else _FILTER_RESULTS
            )
            return {
                "id": "",
                "object": "",
                "created": 0,
                "model": "",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "content_filter_results": results,
                        "content_filter_offsets": {
                            "check_offset": 10,
                            "start_offset": 10,
                            "end_offset": 40,
                        },
                    }
                ],
                "usage": None,
            }

        events: list[dict[str, Any]] = [
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": PROMPT_FILTER,
            },
            choice({"content": "", "refusal": None, "role": "assistant"}),
        ]
        tools, text = _script(deployment, body or {})
        words = _words(text) if text != TEXT else WORDS
        failing = deployment in ("error-after-200", "cut-stream")
        if deployment in ("filtered-output", "async-filter") or failing:
            words = WORDS[:3]
        if tools:
            events.extend(_tool_call_chunks(choice))
        for i, word in enumerate(() if tools else words):
            events.append(choice({"content": word}))
            if deployment == "async-filter" and i == 1:
                events.append(annotation(None, False))
        if deployment == "async-filter":
            events.append(annotation("content_filter", True))
        elif not failing:
            finish = "content_filter" if deployment == "filtered-output" else "stop"
            events.append(choice({}, "tool_calls" if tools else finish))
        if include_usage and not failing:
            events.append({**base, "choices": [], "usage": _usage(deployment)})
        for event in events:
            data = b"data: " + orjson.dumps(event) + b"\n\n"
            cut = len(data) // 2
            await response.write(data[:cut])  # writes split mid-event, as real hosts do
            await response.write(data[cut:])
        if deployment == "cut-stream":
            assert request.transport is not None
            request.transport.close()
            return response
        if deployment == "error-after-200":
            error = {"error": {"code": "server_error", "message": "The server had an error."}}
            await response.write(b"data: " + orjson.dumps(error) + b"\n\n")
            await response.write_eof()
            return response
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
