"""Golden tests: JSON Schema -> the Schema subset Gemini accepts."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from core.providers.adapters.gemini.schema import to_gemini_schema
from tests.support.fake_gemini import Reject, _check_schema


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "format": "email"}, {"type": "STRING"}),
        ({"type": "string", "format": "date-time"}, {"type": "STRING", "format": "date-time"}),
        ({"type": "integer", "format": "int64"}, {"type": "INTEGER", "format": "int64"}),
        ({"type": "number", "format": "decimal"}, {"type": "NUMBER"}),
        ({"type": ["integer", "null"]}, {"type": "INTEGER", "nullable": True}),
        (
            {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "d"},
            {"type": "STRING", "description": "d", "nullable": True},
        ),
        (
            {"type": ["string", "integer"]},
            {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
        ),
        (
            {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]},
            {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}], "nullable": True},
        ),
        ({"const": "fixed"}, {"type": "STRING", "enum": ["fixed"]}),
        ({"type": "integer", "enum": [1, 2]}, {"type": "INTEGER"}),
        (
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "title": "T",
                "properties": {"a": {"type": "string", "default": "x", "examples": ["y"]}},
                "required": ["a", "ghost"],
                "additionalProperties": False,
                "patternProperties": {"^x": {"type": "string"}},
            },
            {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["a"]},
        ),
        (
            {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3},
            {"type": "ARRAY", "items": {"type": "NUMBER"}, "minItems": 1, "maxItems": 3},
        ),
        ({"type": "object", "additionalProperties": {"type": "string"}}, {"type": "OBJECT"}),
        (
            {
                "allOf": [
                    {"properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "integer"}}},
                ],
                "type": "object",
            },
            {
                "type": "OBJECT",
                "properties": {"a": {"type": "STRING"}, "b": {"type": "INTEGER"}},
                "required": ["a"],
            },
        ),
    ],
)
def test_conversions(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_gemini_schema(schema) == expected


def test_refs_are_inlined_and_recursion_is_cut() -> None:
    schema = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "Where they live"},
            "tree": {"$ref": "#/definitions/Node"},
        },
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
        },
        "definitions": {
            "Node": {
                "type": "object",
                "properties": {"child": {"$ref": "#/definitions/Node"}, "v": {"type": "integer"}},
            }
        },
    }
    out = to_gemini_schema(schema)
    assert out["properties"]["home"] == {
        "type": "OBJECT",
        "description": "Where they live",
        "properties": {"city": {"type": "STRING"}},
        "required": ["city"],
    }
    depth, node = 0, out["properties"]["tree"]
    while "properties" in node:
        node, depth = node["properties"]["child"], depth + 1
    assert node == {"type": "OBJECT"}  # the recursion ends in an open object
    assert 5 < depth < 40
    assert to_gemini_schema({"$ref": "#/$defs/Missing"}) == {"type": "OBJECT"}


class Pet(BaseModel):
    kind: Literal["cat", "dog"]
    name: str = Field(description="Pet name")
    age: int | None = None


class Owner(BaseModel):
    pets: list[Pet]
    best: Pet | None = None
    tags: dict[str, str] = {}


def test_pydantic_schemas_become_something_the_fake_gemini_accepts() -> None:
    out = to_gemini_schema(Owner.model_json_schema())
    _check_schema(out, "Owner")  # raises Reject for what real Gemini rejects
    pet = out["properties"]["pets"]["items"]
    assert pet["properties"]["kind"] == {"type": "STRING", "enum": ["cat", "dog"]}
    assert pet["properties"]["age"] == {"type": "INTEGER", "nullable": True}
    assert out["properties"]["best"]["nullable"] is True
    assert out["required"] == ["pets"]


def test_the_fake_rejects_raw_json_schema() -> None:
    with pytest.raises(Reject):
        _check_schema(Owner.model_json_schema(), "Owner")
