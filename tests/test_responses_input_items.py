"""GET /v1/responses/{id}/input_items through a real edge and core (stored responses in the
test session's Redis), with the official openai SDK's `responses.input_items.list`:

the items a response was made from (earlier turns through `previous_response_id`, then its own
input), each with an id that stays the same across pages and turns; `order`, `limit` and
auto-pagination over `after`; the caller's tenant only (another tenant's id is the same 404 as
an unknown one); every bad parameter a 400 naming it; passthrough targets never get the ids
the gateway gave input items.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import openai
import pytest

from tests.support import raw
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, fake: FakeOpenAI
) -> Iterator[Stack]:
    compat = {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-up"}
    overrides = {
        "providers": {
            "fake": {**compat, "allow_any_model": True},
            "native": {**compat, "options": {"preset": "openai"}, "allow_any_model": True},
        },
        "models": {
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
            "gpt-native": {"provider": "native", "model": "gpt-5"},
        },
        "state": {"redis_url": redis_url},
    }
    running = Stack(tmp_path_factory.mktemp("input-items"), overrides).start()
    yield running
    running.stop()


def client(stack: Stack, tenant: str = "acme") -> openai.OpenAI:
    token = stack.token(tenant=tenant)
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)


def get(stack: Stack, path: str, tenant: str = "acme") -> raw.RawResponse:
    headers = {"authorization": f"Bearer {stack.token(tenant=tenant)}"}
    return raw.request("GET", f"{stack.edge_url}{path}", None, headers)


def text_of(item: Any) -> str:
    if item.type == "message":
        return "".join(getattr(part, "text", "") for part in item.content)
    if item.type == "function_call_output":
        return str(item.output)
    return str(getattr(item, "arguments", ""))


def conversation(sdk: openai.OpenAI) -> tuple[Any, list[str]]:
    """Three turns; the third's input items, oldest first, as texts."""
    first = sdk.responses.create(model="gpt-fake", input="one", instructions="Terse.")
    second = sdk.responses.create(
        model="gpt-fake",
        input=[
            {"role": "user", "content": "two"},
            {"role": "user", "content": [{"type": "input_text", "text": "three"}]},
        ],
        previous_response_id=first.id,
    )
    third = sdk.responses.create(model="gpt-fake", input="four", previous_response_id=second.id)
    return third, ["one", TEXT, "two", "three", TEXT, "four"]


def test_lists_the_conversation_newest_first_with_stable_ids(stack: Stack) -> None:
    sdk = client(stack)
    third, texts = conversation(sdk)
    page = sdk.responses.input_items.list(third.id)
    assert [text_of(item) for item in page.data] == texts[::-1]  # desc by default
    assert all(item.id for item in page.data) and len({i.id for i in page.data}) == len(texts)
    assert page.data[0].role == "user" and page.data[1].role == "assistant"
    assert page.has_more is False
    body = get(stack, f"/v1/responses/{third.id}/input_items").json()
    assert body["object"] == "list" and body["first_id"] == page.data[0].id
    assert body["last_id"] == page.data[-1].id
    asc = sdk.responses.input_items.list(third.id, order="asc")
    assert [item.id for item in asc.data] == [item.id for item in page.data][::-1]
    assert sdk.responses.input_items.list(third.id).data == page.data  # ids are kept
    # The output is not an input; the instructions are not items (as on OpenAI).
    assert third.output[0].id not in {item.id for item in page.data}


def test_auto_pagination_walks_every_item_once(stack: Stack) -> None:
    sdk = client(stack)
    third, texts = conversation(sdk)
    first_page = sdk.responses.input_items.list(third.id, limit=2, order="asc")
    assert len(first_page.data) == 2 and first_page.has_more is True
    walked = list(sdk.responses.input_items.list(third.id, limit=2, order="asc"))
    assert [text_of(item) for item in walked] == texts
    assert len({item.id for item in walked}) == len(texts)
    after = sdk.responses.input_items.list(third.id, limit=3, after=walked[2].id, order="asc")
    assert [item.id for item in after.data] == [item.id for item in walked[3:]]
    assert after.has_more is False
    before = get(stack, f"/v1/responses/{third.id}/input_items?order=asc&before={walked[4].id}")
    assert [item["id"] for item in before.json()["data"]] == [i.id for i in walked[:4]]
    # The earlier turn lists the same items with the same ids.
    second = sdk.responses.retrieve(third.id).previous_response_id
    assert second is not None
    earlier = list(sdk.responses.input_items.list(second, order="asc"))
    assert [item.id for item in earlier] == [item.id for item in walked[:4]]


def test_function_call_items_are_listed_with_ids(stack: Stack) -> None:
    sdk = client(stack)
    made = sdk.responses.create(
        model="gpt-fake",
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
    )
    items = sdk.responses.input_items.list(made.id, order="asc").data
    assert [item.type for item in items] == ["message", "function_call", "function_call_output"]
    assert items[1].call_id == "call_1" and items[2].output == "sunny"
    assert all(item.id and item.status == "completed" for item in items)


def test_another_tenants_response_is_not_found(stack: Stack) -> None:
    created = client(stack).responses.create(model="gpt-fake", input="mine")
    with pytest.raises(openai.NotFoundError):
        client(stack, "globex").responses.input_items.list(created.id)
    theirs = get(stack, f"/v1/responses/{created.id}/input_items", "globex")
    missing = get(stack, "/v1/responses/resp_never/input_items", "globex")
    assert theirs.status == missing.status == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert theirs.json()["error"]["type"] == "invalid_request_error"
    assert created.id in theirs.json()["error"]["message"]
    unstored = client(stack).responses.create(model="gpt-fake", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client(stack).responses.input_items.list(unstored.id)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("include[]=bogus.field", "include"),
        ("after=msg_nope", "after"),
        ("before=msg_nope", "before"),
        ("limit=1&limit=2", "limit"),
        ("limit=%C2%B2", "limit"),  # a digit to str.isdigit, not to int()
        ("limit=" + "9" * 3000, "limit"),
        ("limit=", "limit"),
        ("limit=-1", "limit"),
        ("order=", "order"),
        ("after=a&before=b", "before"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(stack: Stack, query: str, param: str) -> None:
    created = client(stack).responses.create(model="gpt-fake", input="params")
    answer = get(stack, f"/v1/responses/{created.id}/input_items?{query}")
    assert answer.status == 400, answer.body
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "x-request-id" in answer.headers


def test_include_is_accepted(stack: Stack) -> None:
    sdk = client(stack)
    created = sdk.responses.create(model="gpt-fake", input="with include")
    page = sdk.responses.input_items.list(created.id, include=["message.input_image.image_url"])
    assert [text_of(item) for item in page.data] == ["with include"]


def test_passthrough_gets_the_history_without_the_input_ids(stack: Stack, fake: FakeOpenAI) -> None:
    sdk = client(stack)
    first = sdk.responses.create(model="gpt-fake", input="hello there")
    sdk.responses.create(model="gpt-native", input="again", previous_response_id=first.id)
    sent = fake.received[-1]
    assert sent.path == "/v1/responses"
    user = [item for item in sent.json["input"] if item.get("role") == "user"]
    assert user and all("id" not in item for item in user)
    assistant = [item for item in sent.json["input"] if item.get("role") == "assistant"]
    assert assistant and assistant[0]["id"] == first.output[0].id


def test_odd_queries_are_never_a_5xx(stack: Stack) -> None:
    created = client(stack).responses.create(model="gpt-fake", input="odd")
    rng = random.Random(16)
    alphabet = "abc019_-%&=;[]\u00e9\u0661\u00b2 "
    for _ in range(60):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        answer = get(stack, f"/v1/responses/{created.id}/input_items?{quote(query, safe='&=%')}")
        assert answer.status in (200, 400), (query, answer.status, answer.body)
        assert "error" in answer.json() or answer.json()["object"] == "list"


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Stack]:
    """Stored responses kept one second, in the core's memory (no Redis)."""
    compat = {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-up"}
    overrides = {
        "providers": {"fake": {**compat, "allow_any_model": True}},
        "models": {"gpt-fake": {"provider": "fake", "model": "gpt-fake"}},
        "core": {"responses_ttl": "1s"},
    }
    running = Stack(tmp_path_factory.mktemp("input-items-ttl"), overrides).start()
    yield running
    running.stop()


def test_an_expired_response_is_not_found(short_lived: Stack) -> None:
    sdk = client(short_lived)
    created = sdk.responses.create(model="gpt-fake", input="soon gone")
    assert [item.type for item in sdk.responses.input_items.list(created.id).data] == ["message"]
    time.sleep(1.3)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.input_items.list(created.id)
    assert caught.value.body["code"] == "not_found"  # type: ignore[index]
