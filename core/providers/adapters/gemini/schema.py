"""JSON Schema (as OpenAI tools and response_format carry it) -> Gemini's Schema subset.

Gemini rejects unknown schema keywords with a 400 instead of ignoring them, so we keep an
allow-list rather than a deny-list. `$ref`s are inlined because the `parameters` Schema has no
references; pydantic-generated schemas (the OpenAI SDK's helpers) are full of them.
"""

from __future__ import annotations

from typing import Any

JSONSchema = dict[str, Any]

# Beyond this depth a (recursive) $ref is cut to an open object instead of being inlined.
_MAX_DEPTH = 24

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
# Gemini rejects any other `format` for these types.
_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}
_COPIED = (
    "description",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
)


def to_gemini_schema(schema: Any) -> JSONSchema:
    """The Gemini equivalent of a JSON Schema; unknown or unsupported keywords are dropped."""
    if not isinstance(schema, dict):
        return {}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, dict):
            defs.update({f"#/{key}/{name}": value for name, value in found.items()})
    return _convert(schema, defs, 0)


def _resolve(schema: JSONSchema, defs: dict[str, Any], depth: int) -> JSONSchema | None:
    """Follow $ref (and single-member allOf wrappers); None when the ref cannot be inlined."""
    while True:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = defs.get(ref)
            if not isinstance(target, dict) or depth >= _MAX_DEPTH:
                return None
            # Sibling keywords (a description next to the $ref) win over the target's.
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra}
            depth += 1
            continue
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged: JSONSchema = {k: v for k, v in schema.items() if k != "allOf"}
            for member in all_of:
                if isinstance(member, dict):
                    merged = _merge(merged, member)
            schema = merged
            continue
        return schema


def _merge(base: JSONSchema, extra: JSONSchema) -> JSONSchema:
    out = {**extra, **base}
    props = {**(extra.get("properties") or {}), **(base.get("properties") or {})}
    if props:
        out["properties"] = props
    required = [*(extra.get("required") or []), *(base.get("required") or [])]
    if required:
        out["required"] = list(dict.fromkeys(required))
    return out


def _convert(raw: JSONSchema, defs: dict[str, Any], depth: int) -> JSONSchema:
    schema = _resolve(raw, defs, depth)
    if schema is None:
        out: JSONSchema = {"type": "OBJECT"}
        if isinstance(raw.get("description"), str):
            out["description"] = raw["description"]
        return out
    nullable = False
    variants = schema.get("anyOf") or schema.get("oneOf")
    raw_type = schema.get("type")
    if isinstance(raw_type, list):
        kinds = [t for t in raw_type if t != "null"]
        nullable = len(kinds) < len(raw_type)
        if len(kinds) > 1 and not variants:
            variants = [{**schema, "type": t} for t in kinds]
            raw_type = None
        else:
            raw_type = kinds[0] if kinds else None
    if isinstance(variants, list) and variants:
        out = _convert_variants(schema, variants, defs, depth)
        nullable = nullable or bool(out.pop("nullable", False))
    else:
        out = _convert_typed(schema, raw_type, defs, depth)
    if nullable:
        out["nullable"] = True
    return out


def _convert_variants(
    schema: JSONSchema, variants: list[Any], defs: dict[str, Any], depth: int
) -> JSONSchema:
    """anyOf/oneOf (or a list of types): one non-null member is merged into the schema, several
    stay anyOf; a null member makes the result nullable."""
    members = [v for v in variants if isinstance(v, dict)]
    non_null = [v for v in members if v.get("type") != "null"]
    out: JSONSchema = {}
    if len(non_null) == 1:
        single = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        out = _convert(_merge(single, non_null[0]), defs, depth + 1)
    elif non_null:
        out["anyOf"] = [_convert(v, defs, depth + 1) for v in non_null]
        if isinstance(schema.get("description"), str):
            out["description"] = schema["description"]
    if len(non_null) < len(members):
        out["nullable"] = True
    return out


def _convert_typed(
    schema: JSONSchema, raw_type: Any, defs: dict[str, Any], depth: int
) -> JSONSchema:
    """One JSON Schema type (given or inferred) in Gemini's subset."""
    out: JSONSchema = {}
    gemini_type = _TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if gemini_type is None:
        gemini_type = _infer_type(schema)
    if gemini_type is not None:
        out["type"] = gemini_type
    fmt = schema.get("format")
    if gemini_type in _FORMATS and fmt in _FORMATS[gemini_type]:
        out["format"] = fmt
    for key in _COPIED:
        if key in schema:
            out[key] = schema[key]
    enum = schema.get("enum")
    if "const" in schema:
        enum = [schema["const"]]
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        out["enum"] = list(enum)
        out["type"] = "STRING"
    if gemini_type == "ARRAY" and isinstance(schema.get("items"), dict):
        out["items"] = _convert(schema["items"], defs, depth + 1)
    if gemini_type == "OBJECT":
        props = schema.get("properties")
        if isinstance(props, dict) and props:
            out["properties"] = {
                str(name): _convert(value, defs, depth + 1) if isinstance(value, dict) else {}
                for name, value in props.items()
            }
            required = [r for r in schema.get("required") or () if r in props]
            if required:
                out["required"] = required
    return out


def _infer_type(schema: JSONSchema) -> str | None:
    if "properties" in schema:
        return "OBJECT"
    if "items" in schema:
        return "ARRAY"
    if isinstance(schema.get("enum"), list) or isinstance(schema.get("const"), str):
        return "STRING"
    return None
