"""Fakes and the gateway's own output validated against the official openai SDK's types.

The SDK parses responses leniently (no validation), so an end-to-end test passing through it
could hide a malformed field; these check raw bytes with `model_validate` (strict parsing).
"""

from __future__ import annotations

from collections.abc import Iterator

import openai.types.chat as chat_types
import orjson
import pytest
from openai.types import CreateEmbeddingResponse

from tests.support import raw
from tests.support.fake_azure import FakeAzure
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]


def sse_payloads(body: bytes) -> list[dict[str, object]]:
    out = []
    for event in body.decode().replace("\r\n", "\n").split("\n\n"):
        for line in event.split("\n"):
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                out.append(orjson.loads(line[5:].strip()))
    return out


@pytest.mark.parametrize("model", ["gpt-fake", "tool-calls"])
def test_fake_openai_speaks_valid_openai(fake_openai: FakeOpenAI, model: str) -> None:
    url = f"{fake_openai.base_url}/chat/completions"
    whole = raw.post(url, {"model": model, "messages": MESSAGES})
    chat_types.ChatCompletion.model_validate(whole.json())
    streamed = raw.post(
        url,
        {
            "model": model,
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    chunks = sse_payloads(streamed.body)
    assert chunks
    for chunk in chunks:
        chat_types.ChatCompletionChunk.model_validate(chunk)


@pytest.mark.parametrize("deployment", ["gpt-4o", "filtered-output"])
def test_fake_azure_chunks_are_valid_openai_chunks(azure: FakeAzure, deployment: str) -> None:
    path = f"/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21"
    body = {"messages": MESSAGES, "stream": True}
    response = raw.post(f"{azure.url}{path}", body, headers={"api-key": azure.api_key})
    first, *rest = sse_payloads(response.body)
    # Azure's prompt-filter chunk is not a valid OpenAI chunk (empty id, model and object, as
    # recorded from Azure): the azure adapter drops it; everything after it must validate.
    assert first["choices"] == [] and first["object"] == "" and "prompt_filter_results" in first
    assert rest
    for chunk in rest:
        chat_types.ChatCompletionChunk.model_validate(chunk)


@pytest.fixture(scope="module")
def azure_stack(tmp_path_factory: pytest.TempPathFactory, azure: FakeAzure) -> Iterator[Stack]:
    provider = {
        "kind": "azure",
        "base_url": azure.url,
        "api_key": azure.api_key,
        "options": {"api_version": "2024-10-21"},
        "allow_any_model": True,
    }
    stack = Stack(tmp_path_factory.mktemp("wire-azure"), {"providers": {"az": provider}}).start()
    yield stack
    stack.stop()


@pytest.mark.parametrize("deployment", ["gpt-4o", "filtered-output", "async-filter"])
def test_gateway_normalises_azure_streams_to_valid_openai(
    azure_stack: Stack, deployment: str
) -> None:
    """Trap 2: Azure's filter chunks and annotations never reach clients as invalid chunks."""
    body = {
        "model": f"az/{deployment}",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = raw.post(f"{azure_stack.edge_url}/v1/chat/completions", body, azure_stack.token())
    chunks = sse_payloads(response.body)
    assert response.status == 200 and chunks
    for chunk in chunks:
        chat_types.ChatCompletionChunk.model_validate(chunk)


@pytest.mark.parametrize("model", ["gpt-fake", "mock-1", "fake/tool-calls"])
def test_gateway_output_is_valid_openai(stack: Stack, model: str) -> None:
    url = f"{stack.edge_url}/v1/chat/completions"
    whole = raw.post(url, {"model": model, "messages": MESSAGES}, stack.token())
    chat_types.ChatCompletion.model_validate(whole.json())
    for include_usage in (False, True):
        body = {"model": model, "messages": MESSAGES, "stream": True}
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        chunks = sse_payloads(raw.post(url, body, stack.token()).body)
        for chunk in chunks:
            chat_types.ChatCompletionChunk.model_validate(chunk)
        assert sum(1 for c in chunks if c.get("usage")) == int(include_usage)


def test_gateway_embeddings_are_valid_openai(stack: Stack) -> None:
    response = raw.post(
        f"{stack.edge_url}/v1/embeddings",
        {"model": "mock/embed", "input": ["a", "b"], "encoding_format": "float"},
        stack.token(),
    )
    parsed = CreateEmbeddingResponse.model_validate(response.json())
    assert [d.index for d in parsed.data] == [0, 1]
