"""Request mutation for the gateway fuzzer: strategies, a keep-alive client, envelope checks.

A case is a valid seed request with one to four mutations: a value anywhere in the tree
replaced by one of the wrong type (null, bools, huge and negative ints, floats, NaN-ish and
control-character strings, long strings, lists, objects, nested garbage), a key deleted, or an
extra key added; or, now and then, random JSON as the whole body. What the gateway must do with
any of them: answer below 500, with its API's JSON error envelope when it refuses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import urllib3
from hypothesis import strategies as st

Path = tuple[str | int, ...]
Api = Literal["openai", "anthropic"]

# Words the gateway branches on (types, roles, choices): replacing a value with one of these
# reaches code paths that random text never would.
WORDS = (
    "system",
    "developer",
    "tool",
    "image",
    "document",
    "file",
    "input_audio",
    "refusal",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "custom",
    "function",
    "required",
    "any",
    "none",
    "tool",
    "enabled",
    "adaptive",
    "disabled",
    "base64",
    "url",
    "json_object",
    "float",
    "low",
    "high",
    "xhigh",
    "minimal",
    "object",
    "array",
    "string",
    "integer",
)
# Keys the gateway reads: added where they are not expected, they meet other code paths.
KEYS = (
    "extra",
    "type",
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "image_url",
    "source",
    "input",
    "function",
    "tools",
    "tool_choice",
    "response_format",
    "stream",
    "stream_options",
    "thinking",
    "cache_control",
    "system",
    "n",
    "max_tokens",
    "text",
    "reasoning_effort",
    "dimensions",
    "encoding_format",
    "thinking_blocks",
    "arguments",
    "parameters",
    "properties",
    "items",
    "$ref",
    "json_schema",
    "schema",
    "file",
    "url",
)
_SCALARS = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1,
        2**31,
        2**53 + 1,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        0.5,
        -0.0,
        1e308,
        -1e308,
        1e-300,
        "",
        " ",
        "NaN",
        "Infinity",
        "-Infinity",
        "null",
        "true",
        "0",
        "1e999",
        "\x00",
        "\r\n",
        "\x7f",
        "\u2028",
        "\ud7ff\ue000",
        "①②⑦",
        "😀" * 3,
        "a" * 10_000,
        "user",
        "assistant",
        "function",
        "json_schema",
        "text",
        "image_url",
        "tool_use",
        "auto",
        "data:image/png;base64,AAAA",
        "data:",
        "%00",
        "../../etc",
        *WORDS,
    ]
)
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_JSON: st.SearchStrategy[Any] = st.recursive(
    _SCALARS
    | _TEXT
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "text", "name", "role", "x", ""]) | _TEXT, children, max_size=4
        )
    ),
    max_leaves=12,
)
WEIRD = _SCALARS | _JSON


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every node under the root, parents before children."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from paths(child, (*prefix, index))


def _parent(tree: Any, path: Path) -> Any:
    for step in path[:-1]:
        tree = tree[step]
    return tree


@st.composite
def mutated(draw: st.DrawFn, seeds: list[dict[str, Any]]) -> dict[str, Any] | Any:
    """A seed with 1-3 mutations, or (1 in 20) random JSON as the whole body."""
    if draw(st.integers(0, 19)) == 0:
        return draw(_JSON)
    body = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        nodes = list(paths(body))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if not nodes:
            action = "add"
        if action == "add":
            containers = [p for p in nodes if isinstance(_get(body, p), dict)]
            where = draw(st.sampled_from([(), *containers]))
            target = _get(body, where)
            target[draw(st.sampled_from(KEYS) | _TEXT)] = draw(WEIRD)
            continue
        path = draw(st.sampled_from(nodes))
        parent = _parent(body, path)
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(WEIRD)
    return body


def _get(tree: Any, path: Path) -> Any:
    for step in path:
        tree = tree[step]
    return tree


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


class Client:
    """One keep-alive connection to the edge, as a tenant's SDK would hold."""

    def __init__(self, base_url: str, token: str) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self._pool = urllib3.HTTPConnectionPool(
            host, int(port), maxsize=1, retries=False, timeout=urllib3.Timeout(30)
        )
        self._headers = {
            "content-type": "application/json",
            "authorization": f"Bearer {token}",
            "anthropic-version": "2023-06-01",
        }

    def post(self, path: str, body: bytes) -> Answer:
        response = self._pool.request("POST", path, body=body, headers=self._headers)
        return Answer(response.status, response.headers.get("content-type", ""), response.data)

    def close(self) -> None:
        self._pool.close()


def envelope_problem(answer: Answer, api: Api) -> str | None:
    """Why this answer is not acceptable for any input, or None."""
    if answer.status >= 500:
        return f"server error {answer.status}"
    if answer.content_type.startswith("text/event-stream"):
        return _stream_problem(answer.body, api) if answer.status == 200 else "SSE error status"
    try:
        payload = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return "a body that is not JSON"
    if answer.status < 400:
        return None if isinstance(payload, dict) else "a success body that is not an object"
    return _error_problem(payload, api)


def _error_problem(payload: Any, api: Api) -> str | None:
    if api == "anthropic":
        error = payload.get("error") if isinstance(payload, dict) else None
        ok = (
            payload.get("type") == "error"
            and isinstance(error, dict)
            and isinstance(error.get("type"), str)
            and isinstance(error.get("message"), str)
        )
        return None if ok else "not the Anthropic error envelope"
    error = payload.get("error") if isinstance(payload, dict) else None
    ok = (
        isinstance(error, dict)
        and {"message", "type", "param", "code"} <= set(error)
        and isinstance(error["message"], str)
    )
    return None if ok else "not the OpenAI error envelope"


def _stream_problem(body: bytes, api: Api) -> str | None:
    """Every event's data is JSON ([DONE] for OpenAI); an error event must be an envelope."""
    for event in body.split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            try:
                data = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                return "a stream event whose data is not JSON"
            is_error = isinstance(data, dict) and (
                "error" in data and (api == "openai" or data.get("type") == "error")
            )
            if is_error and _error_problem(data, api) is not None:
                return "a stream error event that is not the API's envelope"
    return None
