"""A fake Bedrock runtime speaking the real wire formats: Converse JSON and ConverseStream
binary AWS event-stream frames, behind SigV4 that it verifies like AWS does.

Every request's signature is recomputed with botocore from the known test credentials over the
raw request path and the exact body bytes received; a mismatch is a 403 InvalidSignatureException
(unknown key id: UnrecognizedClientException), so a gateway that signs the wrong bytes or path
cannot pass any test. Stream frames are written so that every write ends mid-frame.

Scripted by the model id: a bare name, or fake.<name>-v1:0 (optionally region-prefixed, or
as the last segment of an inference-profile ARN), like real Bedrock model ids:
  anything else      -> a text answer (TEXT), usage 25 in / 7 out
  tools              -> a text block, then two toolUse blocks (get_weather, get_time);
                        once the last turn carries toolResults -> text quoting their contents
  reasoning          -> a reasoningContent block, then text
  cache              -> text, usage with cache reads and writes
  guardrail          -> stopReason guardrail_intervened
  throttle           -> 429 ThrottlingException
  quota              -> 400 ServiceQuotaExceededException
  context            -> 400 ValidationException "Input is too long for requested model."
  denied             -> 403 AccessDeniedException (its message names the key id)
  not-ready          -> 429 ModelNotReadyException
  model-timeout      -> 408 ModelTimeoutException
  fail-500, fail-503 -> InternalServerException / ServiceUnavailableException
  throttle-midstream -> stream: some frames, then a throttlingException frame
  stream-error       -> stream: some frames, then a modelStreamErrorException frame
  cut-stream         -> stream: some frames, then half a frame and the connection drops
  slow-first-byte    -> waits 0.3 s before answering
A request whose toolChoice names a tool gets a call to it with input FORCED_INPUT (a model
obeying a forced tool; used for response_format emulation).
Cache points: a `ttl` of "1h" only for the Claude 4.5 models and later (the 1-hour cache
AWS offers for Haiku, Sonnet and Opus 4.5), else a 400 ValidationException; writes are
reported per TTL in usage.cacheDetails (1h before 5m), as TokenUsage documents.
CountTokens: fake_bedrock_count.py.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from tests.support.eventstream_encode import event_frame, exception_frame
from tests.support.fake_bedrock_count import count_answer
from tests.support.fake_prompt_cache import PromptCache, cacheable, converse_blocks
from tests.support.fake_server import FakeServer, Received

TEXT = "Hello from the fake Bedrock."
FORCED_INPUT = {"answer": "forty-two", "confidence": 0.9}
TOOL_USES = [
    {"toolUseId": "tooluse_weather_01", "name": "get_weather", "input": {"city": "Paris"}},
    {"toolUseId": "tooluse_time_02", "name": "get_time", "input": {"timezone": "Europe/Paris"}},
]
REGION = "us-east-1"
ACCESS_KEY = "AKIDFAKEBEDROCK0001"
API_KEY = "bedrock-api-key-fake"  # a Bedrock API key the conftest fixture's fake takes
SECRET_KEY = "fake-secret-key/for+tests0000000000000000"
SESSION_TOKEN = "FwoGZXIvYXdzEFAKEsessiontoken=="
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_ERRORS = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "quota": (
        400,
        "ServiceQuotaExceededException",
        "Your request exceeds the service quota for your account.",
    ),
    "context": (400, "ValidationException", "Input is too long for requested model."),
    "denied": (
        403,
        "AccessDeniedException",
        f"User: arn:aws:iam::123456789012:user/{ACCESS_KEY} is not authorized to perform "
        "bedrock:InvokeModel",
    ),
    "not-ready": (429, "ModelNotReadyException", "Model is not ready to serve requests."),
    "model-timeout": (408, "ModelTimeoutException", "Model invocation timed out."),
    "fail-500": (500, "InternalServerException", "An internal server error occurred."),
    "fail-503": (503, "ServiceUnavailableException", "Service is temporarily unavailable."),
}
_MIDSTREAM = {
    "throttle-midstream": ("throttlingException", "Too many requests, please wait."),
    "stream-error": ("modelStreamErrorException", "The model stream failed."),
}


@dataclass
class BedrockCall:
    model: str
    operation: str
    received: Received


def scenario(model: str) -> str:
    """'throttle', 'fake.throttle-v1:0' and '...:inference-profile/us.fake.throttle-v1:0' alike."""
    name = model.rsplit("/", 1)[-1].split(":", 1)[0]
    return re.sub(r"-v\d+$", "", re.sub(r"^(?:[a-z]{2}\.)?fake\.", "", name))


def aws_error(status: int, error_type: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"message": message}),
        content_type="application/json",
        headers={
            "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": str(uuid.uuid4()),
        },
    )


def verify_sigv4(
    method: str,
    raw_path: str,
    headers: Any,
    body: bytes,
    credentials: Mapping[str, tuple[str, str | None]],
    region: str = REGION,
    now: datetime.datetime | None = None,
) -> tuple[str, str] | None:
    """None if the request is signed as AWS requires, else (error type, message)."""
    match = _AUTH.match(headers.get("Authorization", ""))
    if match is None:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    known = credentials.get(match["key"])
    if known is None:
        return (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    secret, token = known
    if token is not None and headers.get("X-Amz-Security-Token") != token:
        return (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    amz_date = headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return "IncompleteSignatureException", "X-Amz-Date is missing or malformed."
    current = now or datetime.datetime.now(datetime.UTC)
    if abs((current - signed_at).total_seconds()) > 300:
        return "InvalidSignatureException", "Signature expired."
    if match["date"] != amz_date[:8] or match["region"] != region or match["service"] != "bedrock":
        return "InvalidSignatureException", "Credential should be scoped to a valid region/service."
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed or any(h not in headers for h in signed):
        return "IncompleteSignatureException", "Signed headers are missing."
    request = AWSRequest(
        method=method,
        url=f"http://{headers['Host']}{raw_path}",
        headers={name: headers[name] for name in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(ReadOnlyCredentials(match["key"], secret, token), "bedrock", region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return (
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    return None


def _usage(name: str) -> dict[str, Any]:
    if name == "cache":
        return {
            "inputTokens": 13,
            "outputTokens": 5,
            "totalTokens": 1622,
            "cacheReadInputTokens": 1504,
            "cacheWriteInputTokens": 100,
        }
    return {"inputTokens": 25, "outputTokens": 7, "totalTokens": 32}


def _tool_results(body: dict[str, Any]) -> list[str]:
    last = (body.get("messages") or [{}])[-1]
    texts: list[str] = []
    for block in last.get("content") or []:
        result = block.get("toolResult") if isinstance(block, dict) else None
        if result:
            texts.extend(c.get("text", "") for c in result.get("content") or [])
    return texts


def answer(name: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """(Converse content blocks, stopReason) for a scripted model."""
    forced = ((body.get("toolConfig") or {}).get("toolChoice") or {}).get("tool")
    if forced:
        use = {"toolUseId": "tooluse_forced_01", "name": forced["name"], "input": FORCED_INPUT}
        return [{"toolUse": use}], "tool_use"
    if name == "tools":
        results = _tool_results(body)
        if results:
            return [{"text": "Tool results: " + " | ".join(results)}], "end_turn"
        return [{"text": "Let me check."}, *({"toolUse": u} for u in TOOL_USES)], "tool_use"
    if name == "reasoning":
        thought = {"reasoningText": {"text": "The user greets me.", "signature": "sig-abc"}}
        return [{"reasoningContent": thought}, {"text": TEXT}], "end_turn"
    if name == "guardrail":
        return [{"text": "Sorry, I cannot help with that."}], "guardrail_intervened"
    return [{"text": TEXT}], "end_turn"


def _pad(payload: dict[str, Any]) -> dict[str, Any]:
    # Real ConverseStream payloads carry a random-length "p" padding field.
    return {**payload, "p": "abcdefghijklmnopqrstuvwxyz"[: 3 + len(payload) * 5]}


def stream_frames(blocks: list[dict[str, Any]], stop: str, usage: dict[str, Any]) -> list[bytes]:
    frames = [event_frame("messageStart", _pad({"role": "assistant"}))]
    for index, block in enumerate(blocks):
        if "text" in block:
            words = block["text"].split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                delta = {"contentBlockIndex": index, "delta": {"text": piece}}
                frames.append(event_frame("contentBlockDelta", _pad(delta)))
        elif "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {"name": use["name"], "toolUseId": use["toolUseId"]}}
            frames.append(
                event_frame("contentBlockStart", _pad({"contentBlockIndex": index, "start": start}))
            )
            text = orjson.dumps(use["input"]).decode()
            for part in (text[:5], text[5:]):
                delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}}
                frames.append(event_frame("contentBlockDelta", _pad(delta)))
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]["reasoningText"]
            for delta_body in ({"text": reasoning["text"]}, {"signature": reasoning["signature"]}):
                delta = {"contentBlockIndex": index, "delta": {"reasoningContent": delta_body}}
                frames.append(event_frame("contentBlockDelta", _pad(delta)))
        frames.append(event_frame("contentBlockStop", _pad({"contentBlockIndex": index})))
    frames.append(event_frame("messageStop", _pad({"stopReason": stop})))
    metadata = {"usage": usage, "metrics": {"latencyMs": 321}}
    frames.append(event_frame("metadata", _pad(metadata)))
    return frames


_HOUR_MODELS = re.compile(r"claude-(sonnet|opus|haiku)-(4-[5-9]|[5-9])")


def _hour_points(body: dict[str, Any]) -> bool:
    """Whether any cache point of the request asks for an hour."""
    return b'"ttl":"1h"' in orjson.dumps(
        [body.get("system"), body.get("messages"), (body.get("toolConfig") or {}).get("tools")]
    )


class FakeBedrock(FakeServer):
    def __init__(
        self,
        credentials: dict[str, tuple[str, str | None]] | None = None,
        api_keys: tuple[str, ...] = (),
        region: str = REGION,
    ) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/model/{tail:.+}", self.invoke)
        super().__init__(app)
        self.credentials = credentials or {ACCESS_KEY: (SECRET_KEY, SESSION_TOKEN)}
        self.api_keys = api_keys
        self.region = region
        self.log: list[BedrockCall] = []
        self.rejected: list[str] = []
        self.prompt_cache = PromptCache()

    def reset(self) -> None:
        super().reset()
        self.log.clear()
        self.rejected.clear()
        self.prompt_cache.reset()

    def calls_for(self, model: str) -> list[BedrockCall]:
        return [call for call in self.log if call.model == model]

    def _authorize(self, request: web.Request, raw: bytes) -> web.Response | None:
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            if authorization[len("Bearer ") :] in self.api_keys:
                return None
            problem: tuple[str, str] | None = (
                "UnrecognizedClientException",
                "Invalid API Key format.",
            )
        else:
            problem = verify_sigv4(
                request.method,
                request.raw_path,
                request.headers,
                raw,
                self.credentials,
                self.region,
            )
        if problem is None:
            return None
        self.rejected.append(problem[0])
        return aws_error(403, *problem)

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        encoded_model, _, operation = request.raw_path.removeprefix("/model/").rpartition("/")
        model = unquote(encoded_model)
        rejection = self._authorize(request, raw)
        if rejection is not None:
            return rejection
        if operation not in ("converse", "converse-stream", "count-tokens"):
            return aws_error(404, "UnknownOperationException", "Unknown operation")
        body = orjson.loads(raw)
        received = Received(request.method, request.raw_path, dict(request.headers), raw, body)
        self.received.append(received)
        self.log.append(BedrockCall(model, operation, received))
        if operation == "count-tokens":  # tests/support/fake_bedrock_count.py
            return count_answer(model, raw)
        self.calls[model] += 1
        name = scenario(model)
        if name in _ERRORS:
            return aws_error(*_ERRORS[name])
        if _hour_points(body) and not _HOUR_MODELS.search(model):
            message = "The model does not support the provided cache point TTL."
            return aws_error(400, "ValidationException", message)
        if name == "slow-first-byte":
            await asyncio.sleep(0.3)
        blocks, stop = answer(name, body)
        usage = self._usage(name, body)
        if operation == "converse":
            payload = {
                "output": {"message": {"role": "assistant", "content": blocks}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 321},
            }
            return web.Response(body=orjson.dumps(payload), content_type="application/json")
        return await self._stream(request, name, stream_frames(blocks, stop, usage))

    def _usage(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """The scenario's usage; for a request with cache points, what the prompt cache
        read and wrote (with both field spellings the recorded answers carry)."""
        usage = _usage(name)
        blocks = converse_blocks(body)
        if name == "cache" or not cacheable(blocks):
            return usage
        plain, read, write_5m, write_1h = self.prompt_cache.usage(blocks)
        write = write_5m + write_1h
        details = [{"ttl": t, "inputTokens": n} for t, n in (("1h", write_1h), ("5m", write_5m))]
        return {
            **usage,
            "inputTokens": plain,
            "cacheReadInputTokens": read,
            "cacheReadInputTokenCount": read,
            "cacheWriteInputTokens": write,
            "cacheWriteInputTokenCount": write,
            "cacheDetails": [d for d in details if d["inputTokens"]],
            "totalTokens": plain + read + write + usage["outputTokens"],
        }

    async def _stream(
        self, request: web.Request, name: str, frames: list[bytes]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "content-type": "application/vnd.amazon.eventstream",
                "x-amzn-RequestId": str(uuid.uuid4()),
            }
        )
        await response.prepare(request)
        if name in _MIDSTREAM or name == "cut-stream":
            frames = frames[:4]
        carry = b""
        for frame in frames:
            cut = len(frame) // 2
            await response.write(carry + frame[:cut])  # each write ends in the middle of a frame
            carry = frame[cut:]
        if name == "cut-stream":
            assert request.transport is not None
            request.transport.close()
            return response
        if name in _MIDSTREAM:
            carry += exception_frame(*_MIDSTREAM[name])
        await response.write(carry)
        await response.write_eof()
        return response
