"""GET /v1/models in the format of the SDK that asks: OpenAI's list, or Anthropic's paged one
for a client sending `anthropic-version` (the Anthropic SDK, Claude Code's model picker).

The paging rules are checked on `anthropic_page` itself; the rest through the official SDKs ->
edge -> core over loopback sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from core.api.models import anthropic_page
from shared.errors import GatewayError
from tests.support import raw
from tests.support.stack import Stack

NAMES = [f"m{i}" for i in range(7)]
WHEN = "2023-11-14T22:13:20Z"


def ids(page: dict[str, Any]) -> list[str]:
    return [model["id"] for model in page["data"]]


def test_a_page_is_limit_models_in_listing_order() -> None:
    page = anthropic_page(NAMES, {"limit": "3"}, WHEN)
    assert ids(page) == ["m0", "m1", "m2"]
    assert (page["has_more"], page["first_id"], page["last_id"]) == (True, "m0", "m2")
    assert page["data"][0] == {
        "type": "model",
        "id": "m0",
        "display_name": "m0",
        "created_at": WHEN,
    }


def test_after_id_and_before_id_page_forward_and_back() -> None:
    second = anthropic_page(NAMES, {"limit": "3", "after_id": "m2"}, WHEN)
    assert ids(second) == ["m3", "m4", "m5"] and second["has_more"]
    last = anthropic_page(NAMES, {"limit": "3", "after_id": "m5"}, WHEN)
    assert ids(last) == ["m6"] and not last["has_more"]
    back = anthropic_page(NAMES, {"limit": "2", "before_id": "m3"}, WHEN)
    assert ids(back) == ["m1", "m2"] and back["has_more"]
    first = anthropic_page(NAMES, {"limit": "5", "before_id": "m2"}, WHEN)
    assert ids(first) == ["m0", "m1"] and not first["has_more"]


def test_the_default_page_and_an_empty_list() -> None:
    many = [f"m{i}" for i in range(25)]
    assert len(anthropic_page(many, {}, WHEN)["data"]) == 20
    empty = anthropic_page([], {}, WHEN)
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after_id": "nope"}, "after_id"),
        ({"before_id": "nope"}, "before_id"),
        ({"after_id": "m1", "before_id": "m3"}, "after_id"),
    ],
)
def test_bad_paging_is_a_400_naming_the_parameter(query: dict[str, str], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        anthropic_page(NAMES, query, WHEN)
    assert info.value.status == 400 and info.value.param == param


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    overrides: dict[str, Any] = {
        "providers": {"mock": {"kind": "mock"}},
        "models": {
            "claude-sonnet": {"provider": "mock", "model": "mock-1"},
            "claude-haiku": {"provider": "mock", "model": "mock-2"},
            "gpt-mini": {"provider": "mock", "model": "mock-3"},
        },
        "aliases": {"claude-fast": "claude-haiku"},
    }
    running = Stack(tmp_path_factory.mktemp("models-listing"), overrides).start()
    yield running
    running.stop()


def test_the_anthropic_sdk_lists_the_tokens_models_with_its_x_api_key(stack: Stack) -> None:
    sdk = anthropic.Anthropic(
        base_url=stack.edge_url, api_key=stack.token(models=["claude-*"]), max_retries=0
    )
    listed = list(sdk.models.list(limit=2))  # the SDK follows the pages
    names = [m.id for m in listed]  # two pages of at most two, none repeated
    assert sorted(names) == ["claude-fast", "claude-haiku", "claude-sonnet"]
    assert all(m.type == "model" and m.display_name == m.id for m in listed)


def test_the_openai_sdk_still_gets_openais_list(stack: Stack) -> None:
    sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)
    listed = sdk.models.list()
    names = {m.id for m in listed}  # the base config's mock-1 too
    assert names == {"mock-1", "claude-sonnet", "claude-haiku", "gpt-mini", "claude-fast"}
    assert all(m.object == "model" and m.owned_by == "mock" for m in listed)


def test_anthropic_errors_are_in_anthropics_envelope(stack: Stack) -> None:
    headers = {"x-api-key": stack.token(), "anthropic-version": "2023-06-01"}
    bad = raw.request("GET", f"{stack.edge_url}/v1/models?limit=0", headers=headers)
    assert bad.status == 400
    assert bad.json()["type"] == "error" and bad.json()["error"]["type"] == "invalid_request_error"
    unsigned = raw.request(
        "GET",
        f"{stack.edge_url}/v1/models",
        headers={"x-api-key": "nope", "anthropic-version": "1"},
    )
    assert unsigned.status == 401 and unsigned.json()["error"]["type"] == "authentication_error"


def test_without_anthropic_version_x_api_key_is_not_a_credential(stack: Stack) -> None:
    response = raw.request(
        "GET", f"{stack.edge_url}/v1/models", headers={"x-api-key": stack.token()}
    )
    assert response.status == 401 and "error" in response.json()
    assert response.json()["error"]["code"] == "missing_api_key"
