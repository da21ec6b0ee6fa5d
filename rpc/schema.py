"""A small JSON Schema subset: the one schema both validates and documents.

Each method's params and result are declared once as JSON Schema; the
dispatcher validates calls against it and rpc.discover publishes it, so the
published contract cannot drift from the enforced one. `jsonschema` is not a
dependency of pbftd, and the methods need little, so this module implements
the keywords below and nothing else. `check_schema` refuses any other keyword
at registration: a constraint we silently ignored would be a documented limit
that is not enforced.

Supported: type (name or list of names), enum, const, properties, required,
additionalProperties (false or a schema), minProperties, maxProperties,
items, minItems, maxItems, minimum, maximum, minLength, maxLength, pattern
(JSON Schema semantics: unanchored search, so anchor patterns yourself; a
trailing `$` means end of string as in ECMA-262, not Python's "or before a
final newline", and `$` is refused anywhere else),
and the annotations title, description, default, examples.

Types follow JSON, not Python: `true` is a boolean and never an integer
(type(x) is int, faults/README.md §7), and 1.0 is a number, not an integer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SchemaViolation", "check_schema", "validate"]

_ANNOTATIONS = frozenset({"title", "description", "default", "examples"})
_KEYWORDS = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties",
    "minProperties", "maxProperties", "items", "minItems", "maxItems",
    "minimum", "maximum", "minLength", "maxLength", "pattern",
}) | _ANNOTATIONS
_TYPES = frozenset({"null", "boolean", "integer", "number", "string", "array", "object"})


class SchemaViolation(ValueError):
    """An instance does not match; `path` names the member, e.g. "items/3/sha256"."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or '(params)'}: {reason}")
        self.path = path
        self.reason = reason


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) is int:
        return "integer"
    if type(value) is float:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    if type(value) is dict:
        return "object"
    return type(value).__name__  # not JSON at all: matches no schema type


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    body, anchored = pattern, False
    if pattern.endswith("$"):
        trailing = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
        if trailing % 2 == 0:  # the "$" is not escaped
            body, anchored = pattern[:-1], True
    if re.search(r"(?<!\\)(?:\\\\)*\$", body):
        raise ValueError(f"pattern {pattern!r}: '$' is only supported at the end")
    return re.compile(body + (r"\Z" if anchored else ""))


def _type_ok(value: Any, expected: str) -> bool:
    actual = json_type(value)
    return actual == expected or (expected == "number" and actual == "integer")


def check_schema(schema: Mapping[str, Any], path: str = "#") -> None:
    """Assert `schema` uses only supported keywords; raise ValueError naming the spot."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"{path}: a schema is an object")
    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise ValueError(f"{path}: unsupported schema keywords {sorted(unknown)}")
    types = schema.get("type", [])
    for name in [types] if isinstance(types, str) else types:
        if name not in _TYPES:
            raise ValueError(f"{path}: unknown type {name!r}")
    if "pattern" in schema:
        _compile(schema["pattern"])
    for name, sub in schema.get("properties", {}).items():
        check_schema(sub, f"{path}/properties/{name}")
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, Mapping):
            check_schema(sub, f"{path}/{key}")
        elif sub not in (None, False, True):
            raise ValueError(f"{path}/{key}: a schema or a boolean")
    missing = set(schema.get("required", ())) - set(schema.get("properties", {}))
    if missing and schema.get("additionalProperties", True) is False:
        raise ValueError(f"{path}: required members never allowed: {sorted(missing)}")


def validate(instance: Any, schema: Mapping[str, Any], path: str = "") -> None:
    """Raise SchemaViolation at the first mismatch (depth first, in schema order)."""
    _check_type(instance, schema, path)
    if "enum" in schema and not any(_same(instance, e) for e in schema["enum"]):
        raise SchemaViolation(path, f"must be one of {list(schema['enum'])}")
    if "const" in schema and not _same(instance, schema["const"]):
        raise SchemaViolation(path, f"must be {schema['const']!r}")
    kind = json_type(instance)
    if kind in ("integer", "number"):
        _check_number(instance, schema, path)
    elif kind == "string":
        _check_string(instance, schema, path)
    elif kind == "array":
        _check_array(instance, schema, path)
    elif kind == "object":
        _check_object(instance, schema, path)


def _same(a: Any, b: Any) -> bool:
    # JSON equality: `true` is not 1.
    return json_type(a) == json_type(b) and a == b


def _check_type(instance: Any, schema: Mapping[str, Any], path: str) -> None:
    if "type" not in schema:
        return
    expected = schema["type"]
    names = [expected] if isinstance(expected, str) else list(expected)
    if not any(_type_ok(instance, name) for name in names):
        wanted = " or ".join(names)
        raise SchemaViolation(path, f"must be {wanted}, not {json_type(instance)}")


def _check_number(value: float, schema: Mapping[str, Any], path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaViolation(path, f"must be >= {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaViolation(path, f"must be <= {schema['maximum']}")


def _check_string(value: str, schema: Mapping[str, Any], path: str) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise SchemaViolation(path, f"must be at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise SchemaViolation(path, f"must be at most {schema['maxLength']} characters")
    if "pattern" in schema and _compile(schema["pattern"]).search(value) is None:
        raise SchemaViolation(path, f"must match {schema['pattern']}")


def _check_array(value: list[Any], schema: Mapping[str, Any], path: str) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        raise SchemaViolation(path, f"must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise SchemaViolation(path, f"must have at most {schema['maxItems']} items")
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            validate(item, items, _join(path, str(index)))


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> None:
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        raise SchemaViolation(path, f"must have at least {schema['minProperties']} members")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise SchemaViolation(path, f"must have at most {schema['maxProperties']} members")
    for name in schema.get("required", ()):
        if name not in value:
            raise SchemaViolation(_join(path, name), "is required")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, member in value.items():
        if name in properties:
            validate(member, properties[name], _join(path, name))
        elif extra is False:
            raise SchemaViolation(_join(path, name), "is not a known member")
        elif isinstance(extra, Mapping):
            validate(member, extra, _join(path, name))


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name
