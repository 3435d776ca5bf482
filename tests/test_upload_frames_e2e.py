# ruff: noqa: F811
"""The hop's streamed mode at the core, probed as a forger would: framed upload bodies sent
to the core directly (signed with the stack's hop secret, as tests/support/hop_client.py does
for JSON). A body altered, truncated, reordered, missing a frame or with bytes after its
close is a 401 and no provider is called; an intact one is taken once (its credential again is
a replay); and neither body mode is accepted on the other's routes."""

from __future__ import annotations

import http.client
import os
import time
from typing import Any

import orjson
import pytest

from shared import hop
from shared.hop_stream import Framer
from tests.support.fake_media import TEXT, FakeOpenAIMedia, make_wav
from tests.support.stack import Stack
from tests.support.uploads import PATH, multipart_parts

# The upload stack and its fakes: test_upload_e2e.py's fixtures (parameters here).
from tests.test_upload_e2e import media, spool_dir, stack  # noqa: F401


def _framed(stack: Stack, data: bytes, tamper: Any = None) -> tuple[dict[str, str], list[bytes]]:
    key = hop.HopKey(stack.env["INTERLOCK_HOP_SECRET"].encode())
    request_id = "req_" + os.urandom(12).hex()
    identity = hop.HopIdentity("acme", "default", "*", int(time.time() + 600))
    credential, seed = hop.sign_streamed(key, identity, "POST", PATH, request_id)
    framer = Framer(seed)
    frames = [b"".join(framer.frames(data[at : at + 4096])) for at in range(0, len(data), 4096)]
    frames.append(framer.close())
    if tamper is not None:
        frames = tamper(frames)
    headers = {
        hop.HOP_HEADER: credential,
        hop.REQUEST_ID_HEADER: request_id,
        "content-type": "multipart/form-data; boundary=Bnd",
    }
    return headers, frames


def _post_core(stack: Stack, headers: dict[str, str], frames: list[bytes]) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.core_port, timeout=30)
    try:
        connection.request("POST", PATH, iter(frames), headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def _flip(frames: list[bytes]) -> list[bytes]:
    middle = bytearray(frames[1])
    middle[-1] ^= 1
    return [frames[0], bytes(middle), *frames[2:]]


@pytest.mark.parametrize(
    "tamper",
    [
        _flip,  # one data byte changed
        lambda frames: frames[:-1],  # truncated: no closing frame
        lambda frames: [frames[1], frames[0], *frames[2:]],  # reordered
        lambda frames: [frames[0], *frames[2:]],  # a frame dropped
        lambda frames: [*frames, frames[0]],  # bytes after the close
    ],
    ids=["altered", "truncated", "reordered", "dropped", "trailing"],
)
def test_a_tampered_framed_body_is_refused_by_the_core(
    stack: Stack, media: FakeOpenAIMedia, tamper: Any
) -> None:
    data = b"".join(multipart_parts(64 * 1024))
    media.reset()
    headers, frames = _framed(stack, data, tamper)
    status, body = _post_core(stack, headers, frames)
    assert status == 401, body
    assert body["error"]["code"] == "invalid_hop_credential"
    assert media.received == []


def test_an_intact_framed_body_is_taken_once(stack: Stack, media: FakeOpenAIMedia) -> None:
    """The control for the refusals above; and the same credential again is a replay."""
    parts = list(multipart_parts(0))
    data = parts[0] + make_wav(1.0) + parts[-1]
    media.reset()
    headers, frames = _framed(stack, data)
    status, body = _post_core(stack, headers, frames)
    assert (status, body["text"]) == (200, TEXT)
    status, body = _post_core(stack, headers, frames)
    assert (status, body["error"]["code"]) == (401, "invalid_hop_credential")
    assert len(media.received) == 1


def test_a_whole_body_credential_cannot_carry_an_upload(stack: Stack) -> None:
    data = b"".join(multipart_parts(1024))
    key = hop.HopKey(stack.env["INTERLOCK_HOP_SECRET"].encode())
    identity = hop.HopIdentity("acme", "default", "*", int(time.time() + 600))
    headers = {
        hop.HOP_HEADER: hop.sign(key, identity, "POST", PATH, "req_whole", data),
        hop.REQUEST_ID_HEADER: "req_whole",
        "content-type": "multipart/form-data; boundary=Bnd",
    }
    status, _ = _post_core(stack, headers, [data])
    assert status == 401
    # Nor can a streamed credential carry a JSON request.
    streamed, _seed = hop.sign_streamed(key, identity, "POST", "/v1/chat/completions", "req_s")
    chat = {hop.HOP_HEADER: streamed, hop.REQUEST_ID_HEADER: "req_s"}
    connection = http.client.HTTPConnection("127.0.0.1", stack.core_port, timeout=30)
    try:
        body = b'{"model": "whisper", "messages": [{"role": "user", "content": "hi"}]}'
        connection.request(
            "POST", "/v1/chat/completions", body, {**chat, "content-type": "application/json"}
        )
        assert connection.getresponse().status == 401
    finally:
        connection.close()
