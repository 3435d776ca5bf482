"""Schema-shaped values for the mock provider, in bounded time and size whatever the schema.

The schema is the client's: a 307-byte request with `minItems: 100000000` once held the event
loop for 4.7 s. Every dimension is capped: nesting depth, items per array, properties per
object, string length, `$ref` hops, the number of values generated and the bytes they take
(names, strings and copied `const`/`enum` values count). Past a cap the value is cut short (an
array shorter than `minItems`, `null` where nothing fits): a mock answer that stops satisfying
a hostile schema is fine, one that never arrives is not.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 8
MAX_ITEMS = 16
MAX_PROPERTIES = 64
MAX_STRING = 256
MAX_NODES = 2_000
MAX_BYTES = 64 * 1024
_DEFAULTS: dict[str, Any] = {"integer": 0, "number": 0, "boolean": False, "null": None}


def schema_instance(schema: Any) -> Any:
    """A small value that satisfies a JSON schema's common constraints (types, required
    properties, enums, local $refs, minItems/minLength up to the caps); deterministic."""
    return _Generator(schema).value(schema, 0)


class _Generator:
    __slots__ = ("_bytes", "_nodes", "_root", "_sizes")

    def __init__(self, root: Any) -> None:
        self._root = root
        self._nodes = 0
        self._bytes = 0
        self._sizes: dict[int, int] = {}

    def _afford(self, cost: int) -> bool:
        """Charge `cost` bytes if they fit in what is left; nothing is charged otherwise."""
        if self._bytes + cost > MAX_BYTES:
            return False
        self._bytes += cost
        return True

    def _copy(self, value: Any) -> Any:
        """A value copied from the schema (const, enum), if its size still fits."""
        size = self._sizes.get(id(value))
        if size is None:
            size = len(orjson.dumps(value))
            self._sizes[id(value)] = size
        return value if self._afford(size) else None

    def _resolve(self, schema: dict[str, Any]) -> Any:
        """A local `$ref` (#/$defs/X, #/definitions/X) followed one hop; loops end at depth."""
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not isinstance(self._root, dict):
            return schema
        section, _, name = ref.removeprefix("#/").partition("/")
        defs = self._root.get(section) if section in ("$defs", "definitions") else None
        return defs.get(name, {}) if isinstance(defs, dict) else {}

    def value(self, schema: Any, depth: int) -> Any:
        self._nodes += 1
        if not isinstance(schema, dict) or depth > MAX_DEPTH or self._nodes > MAX_NODES:
            return {} if self._afford(2) else None
        schema = self._resolve(schema)
        if not isinstance(schema, dict):
            return {}
        if "const" in schema:
            return self._copy(schema["const"])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._copy(schema["enum"][0])
        for key in ("anyOf", "oneOf", "allOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self.value(schema[key][0], depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or (kind is None and "properties" in schema):
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return self._string(schema)
        return _DEFAULTS.get(kind, {}) if isinstance(kind, str) else {}

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else list(properties)
        out: dict[str, Any] = {}
        for name in names[:MAX_PROPERTIES]:
            if not isinstance(name, str) or not self._afford(len(name) + 4):
                continue
            out[name] = self.value(properties.get(name, {}), depth + 1)
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        count = schema.get("minItems", 0)
        count = min(count, MAX_ITEMS) if isinstance(count, int) and count > 0 else 0
        items = schema.get("items", {})
        out = []
        for _ in range(count):
            if self._nodes >= MAX_NODES or not self._afford(1):
                break
            out.append(self.value(items, depth + 1))
        return out

    def _string(self, schema: dict[str, Any]) -> str:
        low = schema.get("minLength")
        length = min(low, MAX_STRING) if isinstance(low, int) and low > 4 else 4
        high = schema.get("maxLength")
        if isinstance(high, int) and 0 <= high < length:
            length = high
        text = ("mock" * (length // 4 + 1))[:length]
        return text if self._afford(length + 2) else ""
