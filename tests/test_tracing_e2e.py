"""Traces through the real edge and core (issue 14): the span tree, names and attributes of a
streamed chat request with one failover and of /v1/messages, the trace continued from the
client's traceparent to the fake provider, no prompt text in any span by default (and the
opt-in content when the operator turns it on), Server-Timing, and the trace id in the core's
log lines and the ledger.

The core runs with an in-memory exporter (tests/support/traced_core.py) and the official SDKs
are the clients."""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack
from tests.support.traced_core import SPANS_PATH, TRACED_CORE

TIMING = re.compile(r"^edge;dur=([\d.]+), core;dur=([\d.]+)(?:, upstream;dur=([\d.]+))?$")


def _overrides(fake: FakeOpenAI, claude: FakeAnthropic) -> dict[str, Any]:
    return {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "fake": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_key": "sk-test",
                "allow_any_model": True,
            },
            "claude": {"kind": "anthropic", "base_url": claude.url, "api_key": "sk-ant-test"},
            # Takes images only as bytes: the core fetches remote ones (an image_fetch span).
            "local": {
                "kind": "openai",
                "base_url": fake.base_url,
                "options": {"preset": "ollama"},
            },
        },
        "core": {"image_allow_private_networks": True},  # the image is on the loopback fake
        "models": {
            "failover": {
                "targets": [
                    {"provider": "fake", "model": "fail-500"},
                    {"provider": "fake", "model": "gpt-fake"},
                ]
            },
            "claude-fake": {"provider": "claude", "model": "claude-test"},
            "cached": {"provider": "mock", "model": "mock-1"},
            "local-fake": {"provider": "local", "model": "gpt-fake"},
        },
        "cache": {"models": {"cached": {"enabled": True}}},
    }


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, claude: FakeAnthropic
) -> Iterator[Stack]:
    running = Stack(Path(tmp_path_factory.mktemp("tracing")), _overrides(fake, claude))
    running.start(core_app=TRACED_CORE)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def capturing(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, claude: FakeAnthropic
) -> Iterator[Stack]:
    """The same gateway with tracing.capture_content on."""
    overrides = {**_overrides(fake, claude), "tracing": {"capture_content": True}}
    running = Stack(Path(tmp_path_factory.mktemp("tracing-content")), overrides)
    running.start(core_app=TRACED_CORE)
    yield running
    running.stop()


def _traceparent() -> tuple[str, str]:
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"


def _spans(stack: Stack, trace_id: str, server_spans: int = 1) -> list[dict[str, Any]]:
    """The trace's finished spans, once its server span(s) ended (a stream's ends after the
    client has read the last byte, so poll)."""
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(stack.core_admin_url + SPANS_PATH) as response:
            spans = orjson.loads(response.read())
        mine = [s for s in spans if s["trace_id"] == trace_id]
        if sum(s["kind"] == "SERVER" for s in mine) >= server_spans:
            return mine
        if time.monotonic() > deadline:
            raise AssertionError(f"no server span for {trace_id}: {mine}")
        time.sleep(0.05)


def _one(spans: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [s for s in spans if all(s[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, spans)
    return found[0]


def _openai(stack: Stack, traceparent: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1",
        api_key=stack.token(),
        max_retries=0,
        default_headers={"traceparent": traceparent},
    )


def _anthropic(stack: Stack, traceparent: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.edge_url,
        api_key=stack.token(),
        max_retries=0,
        default_headers={"traceparent": traceparent},
    )


def _traceparent_of(headers: dict[str, str]) -> str:
    return next((v for k, v in headers.items() if k.lower() == "traceparent"), "")


def _timing(header: str) -> tuple[float, float, float | None]:
    match = TIMING.match(header)
    assert match is not None, header
    upstream = match.group(3)
    return float(match.group(1)), float(match.group(2)), float(upstream) if upstream else None


def test_streamed_chat_with_one_failover(stack: Stack, fake: FakeOpenAI) -> None:
    trace_id, traceparent = _traceparent()
    raw = _openai(stack, traceparent).chat.completions.with_raw_response.create(
        model="failover",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    assert chunks and chunks[-1].usage is not None
    edge, core, upstream = _timing(raw.headers["server-timing"])
    assert upstream is not None and edge >= core >= upstream > 0

    spans = _spans(stack, trace_id)
    server = _one(spans, kind="SERVER")
    assert server["name"] == "POST /v1/chat/completions"
    assert server["parent_id"] == traceparent.split("-")[2]  # the client's span: the edge
    # records none, so it forwards the client's context as it came
    attributes = server["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "failover"
    assert attributes["http.response.status_code"] == 200
    assert attributes["interlock.attempts"] == 2
    assert attributes["interlock.failovers"] == 1
    assert attributes["interlock.outcome"] == "ok"
    assert attributes["interlock.route"] == "default"
    assert attributes["interlock.provider"] == "fake"
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert server["service"] == "interlock-core"
    assert server["schema_url"] == "https://opentelemetry.io/schemas/1.41.0"

    dispatch = _one(spans, name="interlock.dispatch")
    admit = _one(spans, name="interlock.admit")
    assert dispatch["parent_id"] == admit["parent_id"] == server["span_id"]
    assert dispatch["kind"] == admit["kind"] == "INTERNAL"
    failed = _one(spans, name="chat fail-500")
    served = _one(spans, name="chat gpt-fake")
    for attempt in (failed, served):
        assert attempt["kind"] == "CLIENT"
        assert attempt["parent_id"] == dispatch["span_id"]
        assert attempt["attributes"]["gen_ai.provider.name"] == "openai"
        assert attempt["attributes"]["server.address"] == "127.0.0.1"
        assert attempt["attributes"]["server.port"] == fake.port
        assert attempt["attributes"]["interlock.stream"] is True
    assert failed["attributes"]["interlock.attempt.reason"] == "first"
    assert failed["attributes"]["error.type"] == "transient"
    assert failed["attributes"]["http.response.status_code"] == 500
    assert failed["status"] == "ERROR"
    assert served["attributes"]["interlock.attempt.reason"] == "failover"
    assert served["attributes"]["gen_ai.request.model"] == "gpt-fake"
    assert served["attributes"]["gen_ai.response.model"] == "gpt-fake"
    assert served["attributes"]["gen_ai.usage.input_tokens"] > 0
    assert served["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert served["status"] == "UNSET"

    _check_provider_traceparents(fake, trace_id, failed, served)


def _check_provider_traceparents(
    fake: FakeOpenAI, trace_id: str, failed: dict[str, Any], served: dict[str, Any]
) -> None:
    """The trace reaches the provider: each attempt's own span is the upstream's parent."""
    sent = {
        r.json["model"]: _traceparent_of(r.headers)
        for r in fake.received
        if trace_id in _traceparent_of(r.headers)
    }
    assert sent == {
        "fail-500": f"00-{trace_id}-{failed['span_id']}-01",
        "gpt-fake": f"00-{trace_id}-{served['span_id']}-01",
    }


def test_trace_id_in_log_lines_and_ledger(stack: Stack) -> None:
    trace_id, traceparent = _traceparent()
    raw = _openai(stack, traceparent).chat.completions.with_raw_response.create(
        model="failover", messages=[{"role": "user", "content": "hi"}]
    )
    request_id = raw.headers["x-request-id"]
    # The failover warning and the usage line both say which request and which trace.
    ids = (f'"request_id":"{request_id}"', f'"trace_id":"{trace_id}"')
    stack.wait_for_log("failover from", *ids)
    stack.wait_for_log('"logger":"interlock.usage"', *ids)
    assert _ledger_trace_id(stack, request_id) == trace_id


def _ledger_trace_id(stack: Stack, request_id: str) -> str | None:
    """The request's ledger row's trace_id, once the writer has written it (read-only: the
    file is the core's to create)."""
    ledger = f"file:{stack.workdir / 'state' / 'ledger.sqlite3'}?mode=ro"
    query = "SELECT trace_id FROM ledger_records WHERE request_id = ?"
    deadline = time.monotonic() + 15
    while True:
        try:
            with sqlite3.connect(ledger, uri=True) as db:
                row = db.execute(query, (request_id,)).fetchone()
        except sqlite3.OperationalError:  # not created yet
            row = None
        if row is not None:
            return str(row[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"no ledger record for {request_id}")
        time.sleep(0.05)


def test_image_fetch_span(stack: Stack, fake: FakeOpenAI) -> None:
    trace_id, traceparent = _traceparent()
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"{fake.url}/img.png"}},
    ]
    _openai(stack, traceparent).chat.completions.create(
        model="local-fake", messages=[{"role": "user", "content": content}]
    )
    spans = _spans(stack, trace_id)
    fetch = _one(spans, name="interlock.image_fetch")
    attempt = _one(spans, kind="CLIENT")
    assert fetch["kind"] == "INTERNAL"
    assert fetch["parent_id"] == attempt["span_id"]  # fetched for the attempt that needs bytes
    assert attempt["attributes"]["gen_ai.request.model"] == "gpt-fake"


def test_a_failed_image_fetch_names_no_url(stack: Stack, fake: FakeOpenAI) -> None:
    trace_id, traceparent = _traceparent()
    marker = f"private-{uuid.uuid4().hex}"
    content = [{"type": "image_url", "image_url": {"url": f"{fake.url}/{marker}.png"}}]
    with pytest.raises(openai.BadRequestError):
        _openai(stack, traceparent).chat.completions.create(
            model="local-fake", messages=[{"role": "user", "content": content}]
        )
    spans = _spans(stack, trace_id)
    fetch = _one(spans, name="interlock.image_fetch")
    assert fetch["status"] == "ERROR"
    assert _one(spans, kind="SERVER")["attributes"]["http.response.status_code"] == 400
    assert marker not in orjson.dumps(spans).decode()


def test_a_request_without_trace_context_is_a_root(stack: Stack, fake: FakeOpenAI) -> None:
    """The core starts the trace, under the id its log lines, ledger record and provider
    request already carry."""
    raw = openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0
    ).chat.completions.with_raw_response.create(
        model="failover", messages=[{"role": "user", "content": "hi"}]
    )
    request_id = raw.headers["x-request-id"]
    mine = ('"logger":"interlock.usage"', f'"request_id":"{request_id}"')
    logs = stack.wait_for_log(*mine)
    line = next(x for x in logs.splitlines() if all(n in x for n in mine))
    trace_id = orjson.loads(line)["trace_id"]
    server = _one(_spans(stack, trace_id), kind="SERVER")
    assert server["parent_id"] is None
    served = _one(_spans(stack, trace_id), name="chat gpt-fake")
    assert f"00-{trace_id}-{served['span_id']}-01" in [
        _traceparent_of(r.headers) for r in fake.for_model("gpt-fake")
    ]


def test_messages(stack: Stack, claude: FakeAnthropic) -> None:
    trace_id, traceparent = _traceparent()
    client = _anthropic(stack, traceparent)
    raw = client.messages.with_raw_response.create(
        model="claude-fake", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
    )
    message = raw.parse()
    _, _, upstream = _timing(raw.headers["server-timing"])
    assert upstream is not None

    spans = _spans(stack, trace_id)
    server = _one(spans, kind="SERVER")
    assert server["name"] == "POST /v1/messages"
    assert server["attributes"]["gen_ai.operation.name"] == "chat"
    attempt = _one(spans, kind="CLIENT")
    assert attempt["name"] == "chat claude-test"
    assert attempt["parent_id"] == _one(spans, name="interlock.dispatch")["span_id"]
    attributes = attempt["attributes"]
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.request.model"] == "claude-test"
    assert attributes["gen_ai.usage.input_tokens"] == message.usage.input_tokens
    assert attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert attributes["interlock.attempt.reason"] == "first"
    sent = [_traceparent_of(r.headers) for r in claude.received]
    assert f"00-{trace_id}-{attempt['span_id']}-01" in sent


def test_cache_lookup_and_hit(stack: Stack) -> None:
    body = {"model": "cached", "messages": [{"role": "user", "content": str(uuid.uuid4())}]}
    traces = []
    for _ in range(2):
        trace_id, traceparent = _traceparent()
        _openai(stack, traceparent).chat.completions.create(**body)  # type: ignore[call-overload]
        traces.append(_spans(stack, trace_id))
    miss, hit = traces
    for spans in traces:
        server = _one(spans, kind="SERVER")
        assert _one(spans, name="interlock.cache")["parent_id"] == server["span_id"]
    assert _one(miss, kind="SERVER")["attributes"]["interlock.cache"] == "miss"
    assert _one(hit, kind="SERVER")["attributes"]["interlock.cache"] == "hit"
    assert not [s for s in hit if s["kind"] == "CLIENT"]  # answered without an upstream


def _prompted(stack: Stack, marker: str) -> list[str]:
    """A streamed and a complete chat, and a message, each with `marker` in its prompt; the
    trace ids."""
    ids = []
    for stream in (True, False):
        trace_id, traceparent = _traceparent()
        content = f"my secret is {marker}"
        _openai(stack, traceparent).chat.completions.create(
            model="failover", messages=[{"role": "user", "content": content}], stream=stream
        )
        ids.append(trace_id)
    trace_id, traceparent = _traceparent()
    _anthropic(stack, traceparent).messages.create(
        model="claude-fake", max_tokens=64, messages=[{"role": "user", "content": marker}]
    )
    ids.append(trace_id)
    return ids


def test_no_prompt_text_in_any_span_by_default(stack: Stack) -> None:
    marker = f"PROMPT-{uuid.uuid4().hex}"
    ids = _prompted(stack, marker)
    spans = [span for trace_id in ids for span in _spans(stack, trace_id)]
    assert len(spans) >= 3 * 4
    assert marker not in orjson.dumps(spans).decode()


def test_content_only_when_the_operator_turns_it_on(capturing: Stack) -> None:
    marker = f"PROMPT-{uuid.uuid4().hex}"
    ids = _prompted(capturing, marker)
    for trace_id in ids:
        spans = _spans(capturing, trace_id)
        inference = [s for s in spans if "gen_ai.input.messages" in s["attributes"]]
        assert len(inference) == 1, spans
        assert inference[0]["kind"] == "CLIENT"
        messages = orjson.loads(inference[0]["attributes"]["gen_ai.input.messages"])
        assert messages[0]["role"] == "user"
        assert marker in messages[0]["parts"][0]["content"]


def test_streamed_messages_end_with_the_stream(stack: Stack) -> None:
    trace_id, traceparent = _traceparent()
    client = _anthropic(stack, traceparent)
    with client.messages.stream(
        model="claude-fake", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
    ) as stream:
        final = stream.get_final_message()
    spans = _spans(stack, trace_id)
    server = _one(spans, kind="SERVER")
    assert server["attributes"]["interlock.outcome"] == "ok"
    attempt = _one(spans, kind="CLIENT")
    assert attempt["attributes"]["interlock.stream"] is True
    assert attempt["attributes"]["gen_ai.usage.output_tokens"] == final.usage.output_tokens
