"""Validation of `tools`, `tool_choice` and `response_format`, including their JSON schemas.

Adapters translate schemas (Gemini rewrites them, Anthropic and Bedrock wrap them, the mock
generates values from them) and read `properties` as an object and `required` as strings. A
schema is checked for the structural keywords they read, to a bounded depth; everything else
in it (formats, patterns, vendor keywords) is the provider's to judge.
"""

from __future__ import annotations

from typing import Any

from core.wire.prompt_cache import MARK, check_mark
from shared.errors import GatewayError, bad_request

# OpenAI's own limit on tools per request; more is a payload no provider accepts.
MAX_TOOLS = 128
_TOOL_CHOICES = frozenset({"none", "auto", "required"})
_RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
# Keyword -> what its value must be: "schema", "schemas" (array of), "schema_map", "strings",
# "count" (non-negative integer), "types" (a type name or an array of them).
_SCHEMA_KEYWORDS = {
    "properties": "schema_map",
    "patternProperties": "schema_map",
    "$defs": "schema_map",
    "definitions": "schema_map",
    "required": "strings",
    "items": "schema_or_schemas",
    "prefixItems": "schemas",
    "anyOf": "schemas",
    "oneOf": "schemas",
    "allOf": "schemas",
    "not": "schema",
    "additionalProperties": "schema",
    "minItems": "count",
    "maxItems": "count",
    "minLength": "count",
    "maxLength": "count",
    "minProperties": "count",
    "maxProperties": "count",
    "type": "types",
    "enum": "array",
    "$ref": "string",
}


def _invalid(param: str, message: str, code: str = "invalid_type") -> GatewayError:
    return bad_request(f"{param} {message}", param=param, code=code)


def check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _invalid("tools", "must be an array")
    if len(tools) > MAX_TOOLS:
        raise _invalid("tools", f"must have at most {MAX_TOOLS} items", "invalid_value")
    for k, tool in enumerate(tools):
        where = f"tools[{k}]"
        if not isinstance(tool, dict):
            raise _invalid(where, "must be an object")
        kind = tool.get("type", "function")
        if not isinstance(kind, str):
            raise _invalid(f"{where}.type", "must be a string")
        if kind == "function":
            _check_tool_function(tool.get("function"), f"{where}.function")
        if MARK in tool:  # a prompt-cache breakpoint after this tool (core.wire.prompt_cache)
            check_mark(tool[MARK], where)


def _check_tool_function(function: Any, where: str) -> None:
    if not isinstance(function, dict):
        raise _invalid(where, "must be an object")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid(f"{where}.name", "must be a non-empty string")
    if function.get("description") is not None and not isinstance(function["description"], str):
        raise _invalid(f"{where}.description", "must be a string")
    if function.get("strict") is not None and not isinstance(function["strict"], bool):
        raise _invalid(f"{where}.strict", "must be a boolean")
    parameters = function.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise _invalid(f"{where}.parameters", "must be a JSON schema object")
        check_schema(parameters, f"{where}.parameters")


def check_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _invalid(
                "tool_choice", "must be none, auto, required or an object", "invalid_value"
            )
        return
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise _invalid("tool_choice", "must be a string or an object with a type")
    if choice["type"] == "function":
        function = choice.get("function")
        if not isinstance(function, dict):
            raise _invalid("tool_choice.function", "must be an object")
        if not isinstance(function.get("name"), str):
            raise _invalid("tool_choice.function.name", "must be a string")


def check_response_format(response_format: Any) -> None:
    if response_format is None:
        return
    if not isinstance(response_format, dict):
        raise _invalid("response_format", "must be an object")
    kind = response_format.get("type")
    if not isinstance(kind, str) or kind not in _RESPONSE_FORMATS:
        raise _invalid(
            "response_format.type", "must be text, json_object or json_schema", "invalid_value"
        )
    if kind != "json_schema":
        return
    spec = response_format.get("json_schema")
    where = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise _invalid(where, "must be an object")
    for key in ("name", "description"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise _invalid(f"{where}.{key}", "must be a string")
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        raise _invalid(f"{where}.strict", "must be a boolean")
    schema = spec.get("schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise _invalid(f"{where}.schema", "must be a JSON schema object")
        check_schema(schema, f"{where}.schema")


def check_schema(schema: Any, where: str) -> None:
    """A schema node: an object (or true/false); the structural keywords have their types.
    Depth is bounded by the request's JSON depth cap (core.api.validate.MAX_JSON_DEPTH)."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise _invalid(where, "must be a JSON schema object")
    for key, value in schema.items():
        rule = _SCHEMA_KEYWORDS.get(key)
        if rule is not None and value is not None:
            _check_keyword(rule, value, f"{where}.{key}")


def _check_keyword(rule: str, value: Any, where: str) -> None:
    if rule == "schema_or_schemas":  # `items`: one schema, or the old tuple form
        rule = "schemas" if isinstance(value, list) else "schema"
    if rule == "schema":
        check_schema(value, where)
    elif rule == "schemas":
        if not isinstance(value, list):
            raise _invalid(where, "must be an array of schemas")
        for i, item in enumerate(value):
            check_schema(item, f"{where}[{i}]")
    elif rule == "schema_map":
        if not isinstance(value, dict):
            raise _invalid(where, "must be an object of schemas")
        for name, item in value.items():
            check_schema(item, f"{where}.{name[:64]}")  # a path, not an echo of any size
    elif rule == "strings":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _invalid(where, "must be an array of strings")
    elif rule == "count":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _invalid(where, "must be a non-negative integer")
    elif rule == "types":
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(v, str) for v in names):
            raise _invalid(where, "must be a type name or an array of type names")
    elif rule == "array" and not isinstance(value, list):
        raise _invalid(where, "must be an array")
    elif rule == "string" and not isinstance(value, str):
        raise _invalid(where, "must be a string")
