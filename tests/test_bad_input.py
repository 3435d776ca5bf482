"""Bad input gets a clear 4xx OpenAI error naming the problem; the core trusts only the edge."""

from __future__ import annotations

import orjson

from tests.support import hop_client, raw
from tests.support.stack import Stack

GOOD = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}


def chat(stack: Stack, body: bytes | dict[str, object]) -> raw.RawResponse:
    return raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token())


def error_of(response: raw.RawResponse) -> dict[str, object]:
    error = response.json()["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
    return error


def test_non_json_body(stack: Stack) -> None:
    response = chat(stack, b"{not json")
    assert response.status == 400
    assert "not valid JSON" in str(error_of(response)["message"])


def test_json_that_is_not_an_object(stack: Stack) -> None:
    response = chat(stack, b"[1, 2]")
    assert response.status == 400 and "JSON object" in str(error_of(response)["message"])


def test_body_over_the_size_cap(stack: Stack) -> None:
    huge = orjson.dumps(
        {**GOOD, "messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}]}
    )
    response = chat(stack, huge)
    assert response.status == 413
    assert error_of(response)["code"] == "request_too_large"


def test_missing_model(stack: Stack) -> None:
    response = chat(stack, {"messages": GOOD["messages"]})
    assert response.status == 400 and error_of(response)["param"] == "model"


def test_missing_messages(stack: Stack) -> None:
    response = chat(stack, {"model": "mock-1"})
    assert response.status == 400 and error_of(response)["param"] == "messages"


def test_empty_messages(stack: Stack) -> None:
    response = chat(stack, {"model": "mock-1", "messages": []})
    assert response.status == 400 and error_of(response)["param"] == "messages"


def test_bad_message_role_names_the_field(stack: Stack) -> None:
    response = chat(
        stack,
        {"model": "mock-1", "messages": [{"role": "user", "content": "a"}, {"role": "robot"}]},
    )
    assert response.status == 400 and error_of(response)["param"] == "messages[1].role"


def test_bad_stream_flag(stack: Stack) -> None:
    response = chat(stack, {**GOOD, "stream": "yes"})
    assert response.status == 400 and error_of(response)["param"] == "stream"


def test_unknown_model(stack: Stack) -> None:
    response = chat(stack, {**GOOD, "model": "no-such-model"})
    assert response.status == 404
    error = error_of(response)
    assert error["code"] == "model_not_found" and error["param"] == "model"


def test_unknown_endpoint_is_a_json_404(stack: Stack) -> None:
    response = raw.request("GET", f"{stack.edge_url}/v1/nothing-here")
    assert response.status == 404 and error_of(response)["code"] == "not_found"


def test_core_rejects_calls_without_hop_credential(stack: Stack) -> None:
    response = raw.post(f"{stack.core_url}/v1/chat/completions", GOOD, stack.token())
    assert response.status == 401
    assert error_of(response)["code"] == "invalid_hop_credential"


def test_core_rejects_spoofed_identity_headers(stack: Stack) -> None:
    forged, body = hop_client.signed(
        "a-guessed-secret-that-is-long-enough!!", GOOD, tenant="victim", tier="enterprise"
    )
    response = raw.post(f"{stack.core_url}/v1/chat/completions", body, headers=forged)
    assert response.status == 401


def test_client_identity_headers_do_not_cross_the_edge(stack: Stack) -> None:
    token = stack.token(tenant="tenant-a", models=["mock-*"])
    spoof = {"x-interlock-tenant": "victim", "x-interlock-models": "*"}
    listed = raw.request(
        "GET", f"{stack.edge_url}/v1/models", headers={"authorization": f"Bearer {token}", **spoof}
    )
    assert listed.status == 200
    assert {m["id"] for m in listed.json()["data"]} == {"mock-1"}


def test_errors_carry_request_id_when_known(stack: Stack) -> None:
    response = chat(stack, {**GOOD, "model": "no-such-model"})
    assert response.headers["x-request-id"].startswith("req_")


def test_edge_errors_carry_a_request_id(stack: Stack) -> None:
    for response in (
        raw.post(f"{stack.edge_url}/v1/chat/completions", GOOD),  # no token
        chat(stack, b"{not json"),
        raw.post(f"{stack.edge_url}/v1/chat/completions", GOOD, stack.token(models=["other"])),
    ):
        assert response.status in (400, 401, 403)
        assert response.headers["x-request-id"].startswith("req_")
