"""Finding 5 and the hop part of finding 3, over real sockets: a hop request captured on the
edge -> core link cannot be replayed (same body, other body, other path or method, after the
token expired, with a skewed clock), and no malformed hop header gets more than a 401."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import hop
from tests.support import hop_client, raw
from tests.support.stack import Stack

CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
# Hop-by-hop headers of the captured request; everything else is replayed verbatim.
_NOT_REPLAYED = frozenset({"host", "content-length", "connection", "transfer-encoding"})


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder:
    """Stands where the core should be and records what the edge sends it (an attacker on
    the edge -> core link sees exactly this)."""

    def __init__(self) -> None:
        self.captured: list[Captured] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 like the core: it answers the edge's `Expect: 100-continue` before the
            # body is sent (an HTTP/1.0 server never does, and the edge would give up on it).
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.captured.append(Captured(self.command, self.path, headers, body))
                payload = b'{"object":"list","data":[]}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Recorder:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Iterator[Stack]:
    """The real core on its port; the edge's pool points at the recorder instead."""
    overrides = {
        "edge": {"pools": {"default": [recorder.url]}},
        "auth": {"issuer": "interlock-test", "audience": "interlock-test", "leeway": "0s"},
    }
    running = Stack(Path(tmp_path_factory.mktemp("hop-replay")), overrides).start()
    yield running
    running.stop()


def capture(
    stack: Stack, recorder: Recorder, token: str | None = None, path: str = "/v1/chat/completions"
) -> Captured:
    before = len(recorder.captured)
    token = token or stack.token()
    if path == "/v1/models":
        response = raw.request(
            "GET", stack.edge_url + path, headers={"authorization": f"Bearer {token}"}
        )
    else:
        response = raw.post(stack.edge_url + path, CHAT, token)
    assert response.status == 200, response.body
    assert len(recorder.captured) == before + 1
    return recorder.captured[-1]


def deliver(
    stack: Stack,
    captured: Captured,
    path: str | None = None,
    method: str | None = None,
    body: bytes | None = None,
) -> raw.RawResponse:
    headers = {k: v for k, v in captured.headers.items() if k not in _NOT_REPLAYED}
    return raw.request(
        method or captured.method,
        stack.core_url + (path or captured.path),
        captured.body if body is None else body,
        headers,
    )


def refused(response: raw.RawResponse) -> bool:
    """The hop 401, in the OpenAI or (for /v1/messages) the Anthropic envelope."""
    error = response.json()["error"]
    kind = error.get("code") or error.get("type")
    return response.status == 401 and kind in ("invalid_hop_credential", "authentication_error")


def test_a_captured_hop_request_is_single_use(stack: Stack, recorder: Recorder) -> None:
    captured = capture(stack, recorder)
    assert set(captured.headers) & {"x-interlock-tenant", "x-interlock-tier"} == set()
    first = deliver(stack, captured)
    assert first.status == 200
    assert first.headers[hop.NONCES_HEADER] == hop.NONCES_LOCAL  # no Redis: claimed in-process
    again = deliver(stack, captured)
    assert refused(again)  # the same bytes again: replay
    assert again.headers[hop.REFUSED_HEADER] == hop.REFUSED_REPLAYED
    stack.wait_for_log("refused a replayed hop credential", captured.headers["x-request-id"])
    models = capture(stack, recorder, path="/v1/models")
    assert deliver(stack, models).status == 200
    assert refused(deliver(stack, models))


def test_a_captured_credential_does_not_carry_another_body(
    stack: Stack, recorder: Recorder
) -> None:
    captured = capture(stack, recorder)
    other = orjson.dumps({**CHAT, "max_tokens": 4000})
    wrong_body = deliver(stack, captured, body=other)
    assert refused(wrong_body)
    assert hop.REFUSED_HEADER not in wrong_body.headers  # only a claimed nonce says "replayed"
    assert refused(deliver(stack, captured, body=captured.body + b" "))
    assert deliver(stack, captured).status == 200  # a refused body did not burn the nonce


def test_a_captured_credential_is_bound_to_path_and_method(
    stack: Stack, recorder: Recorder
) -> None:
    captured = capture(stack, recorder)
    assert refused(deliver(stack, captured, path="/v1/embeddings"))
    assert refused(deliver(stack, captured, path="/v1/messages"))
    models = capture(stack, recorder, path="/v1/models")
    assert refused(deliver(stack, models, path="/v1/chat/completions", method="POST", body=b""))


def test_a_credential_dies_with_its_token(stack: Stack, recorder: Recorder) -> None:
    """The edge leeway is 0 here; the core allows EXPIRY_LEEWAY_S (5 s) past exp, well inside
    the 60 s skew window, so only the token's expiry can refuse it."""
    token = stack.token(ttl=2)
    captured = capture(stack, recorder, token=token)
    exp = int(orjson.loads(_jwt_payload(token))["exp"])
    time.sleep(max(0.0, exp + 5 + 1.2 - time.time()))
    assert refused(deliver(stack, captured))


def _jwt_payload(token: str) -> bytes:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_a_skewed_signing_time_is_refused(stack: Stack) -> None:
    secret = stack.env["INTERLOCK_HOP_SECRET"]
    url = f"{stack.core_url}/v1/chat/completions"
    for now in (time.time() - 61 - 2, time.time() + 61 + 2):
        headers, body = hop_client.signed(secret, CHAT, now=now)
        assert refused(raw.post(url, body, headers=headers))
    headers, body = hop_client.signed(secret, CHAT)  # the same signer, on time: accepted
    assert raw.post(url, body, headers=headers).status == 200


def _send_raw(port: int, header_lines: list[bytes], body: bytes) -> tuple[int, bytes]:
    """Header bytes exactly as given (http.client would refuse or re-encode some)."""
    head = [b"POST /v1/chat/completions HTTP/1.1", b"host: 127.0.0.1", b"connection: close"]
    head += [b"content-type: application/json", b"content-length: %d" % len(body)]
    request = b"\r\n".join(head + header_lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


GARBAGE_HOP = [
    "v1:²:" + "a" * 64,  # passes str.isdigit(), then int() raised: a 500 before
    "v1:" + "9" * 5000 + ":" + "a" * 64,  # over Python's int conversion limit
    "v1:-1:" + "a" * 64,
    "",
    "v1",
    "v1::",
    "v1:1:2:3:4",
    "v2...",
    "v2.e30.e30.e30",
    "v2.²." + "A" * 43,
    "v2." + "9" * 5000 + "." + "A" * 43,
    "v2.e30." + "A" * 43,
]


@pytest.mark.parametrize("credential", GARBAGE_HOP)
def test_garbage_hop_headers_get_a_401_never_a_5xx(stack: Stack, credential: str) -> None:
    headers = {
        "x-interlock-hop": credential,
        "x-interlock-tenant": "victim",
        "x-interlock-tier": "free",
        "x-interlock-models": "*",
        "x-request-id": "req_x",
    }
    url = f"{stack.core_url}/v1/chat/completions"
    assert refused(raw.post(url, CHAT, headers=headers))
    assert refused(raw.request("GET", f"{stack.core_url}/v1/models", headers=headers))


@pytest.mark.parametrize(
    "lines",
    [
        [b"x-interlock-hop: v1:\xb2:abc", b"x-interlock-tenant: v", b"x-request-id: r"],
        [b"x-interlock-hop: v1:\xc2\xb2:abc", b"x-interlock-tenant: v", b"x-request-id: r"],
        ["x-interlock-hop: v1:١٢٣:abc".encode(), b"x-interlock-tenant: v", b"x-request-id: r"],
        [b"x-interlock-hop: v2.\xe2\x91\xa0.abc", b"x-request-id: req_x"],
        [b"x-interlock-hop: v2.e30." + b"\xff" * 43, b"x-request-id: req_x"],
        [b"x-interlock-hop: v2.e30." + b"A" * 43, b"x-request-id: r\xc3\xa9q"],
        [b"x-interlock-hop: v2.e30." + b"A" * 43, b"x-request-id: " + b"r" * 5000],
        [b"x-interlock-hop: v2.e30." + b"A" * 43],
        [b"x-interlock-hop: v1:1:a", b"x-interlock-tenant: caf\xc3\xa9", b"x-request-id: r"],
    ],
)
def test_non_ascii_hop_headers_get_a_401(stack: Stack, lines: list[bytes]) -> None:
    status, body = _send_raw(stack.core_port, lines, orjson.dumps(CHAT))
    assert status == 401, body
    assert orjson.loads(body)["error"]["code"] == "invalid_hop_credential"


def test_an_unsigned_request_never_makes_the_core_read_its_body(stack: Stack) -> None:
    """A forged credential is refused before the body is read: the core answers a request
    that announces 1 GB and sends none of it."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.core_port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("x-interlock-hop", "v2.e30." + "A" * 43)
        connection.putheader("x-request-id", "req_x")
        connection.putheader("content-length", str(10**9))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 401
    finally:
        connection.close()


_HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=120,
)

# Everything str.isdigit() accepts in the range a header can carry, up to well past the
# int() conversion limit: the old timestamp parser's two 500s.
_DIGITS = st.text(alphabet="0123456789²³¹", min_size=1, max_size=5000)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        _HEADER_TEXT,
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", _HEADER_TEXT, _HEADER_TEXT, _HEADER_TEXT),
        st.builds(lambda a, b: f"v1:{a}:{b}", _HEADER_TEXT, _HEADER_TEXT),
        st.builds(lambda a, b: f"v1:{a}:{b}", _DIGITS, _HEADER_TEXT),
        st.builds(lambda a, b: f"v2.{a}.{b}", _HEADER_TEXT, _HEADER_TEXT),
    ),
    _HEADER_TEXT,
)
def test_fuzzed_hop_headers_are_always_a_401(
    stack: Stack, credential: str, request_id: str
) -> None:
    headers = {"x-interlock-hop": credential, "x-request-id": request_id or "r"}
    headers.update({"x-interlock-tenant": "victim", "x-interlock-models": "*"})
    response = raw.post(f"{stack.core_url}/v1/chat/completions", CHAT, headers=headers)
    assert refused(response), (credential, request_id, response.status)
