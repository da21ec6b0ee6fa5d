"""rpc.schema's compiled validators against the keyword interpreter they
replaced (kept below as the reference: it reads like the JSON Schema text).

For random schemas over every supported keyword, the published method
schemas and random JSON values, both must agree: the same values pass, and
a failing value fails with the same member path and the same reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbftd import evidence_batch
from rpc import schema as compiled
from rpc.schema import SchemaViolation, check_schema, json_type
from tests.rpc.fakes import chain_dispatcher

SETTINGS = settings(max_examples=400, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- the reference: the interpreter rpc.schema used before it compiled schemas


def reference(instance: Any, schema: Mapping[str, Any], path: str = "") -> None:
    _check_type(instance, schema, path)
    if "enum" in schema and not any(_same(instance, e) for e in schema["enum"]):
        raise SchemaViolation(path, f"must be one of {list(schema['enum'])}")
    if "const" in schema and not _same(instance, schema["const"]):
        raise SchemaViolation(path, f"must be {schema['const']!r}")
    kind = json_type(instance)
    if kind in ("integer", "number"):
        if "minimum" in schema and instance < schema["minimum"]:
            raise SchemaViolation(path, f"must be >= {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            raise SchemaViolation(path, f"must be <= {schema['maximum']}")
    elif kind == "string":
        if "minLength" in schema and len(instance) < schema["minLength"]:
            raise SchemaViolation(path, f"must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            raise SchemaViolation(path, f"must be at most {schema['maxLength']} characters")
        if "pattern" in schema and compiled._compile(schema["pattern"]).search(instance) is None:
            raise SchemaViolation(path, f"must match {schema['pattern']}")
    elif kind == "array":
        if "minItems" in schema and len(instance) < schema["minItems"]:
            raise SchemaViolation(path, f"must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            raise SchemaViolation(path, f"must have at most {schema['maxItems']} items")
        if isinstance(schema.get("items"), Mapping):
            for index, item in enumerate(instance):
                reference(item, schema["items"], _join(path, str(index)))
    elif kind == "object":
        _reference_object(instance, schema, path)


def _reference_object(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> None:
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
            reference(member, properties[name], _join(path, name))
        elif extra is False:
            raise SchemaViolation(_join(path, name), "is not a known member")
        elif isinstance(extra, Mapping):
            reference(member, extra, _join(path, name))


def _check_type(instance: Any, schema: Mapping[str, Any], path: str) -> None:
    if "type" not in schema:
        return
    names = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
    actual = json_type(instance)
    if not any(actual == n or (n == "number" and actual == "integer") for n in names):
        raise SchemaViolation(path, f"must be {' or '.join(names)}, not {actual}")


def _same(a: Any, b: Any) -> bool:
    return json_type(a) == json_type(b) and a == b


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


# -- strategies


NAMES = st.sampled_from(["a", "b", "kind", "items", "0", "é"])
SCALARS = (st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False)
           | st.sampled_from(["", "a", "ab", "abc", "0f", "x\n"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(NAMES, inner, max_size=3), max_leaves=10)
TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])
PATTERNS = st.sampled_from(["^a", "b$", "^[0-9a-f]+$", "\\$$", "a|b"])


@st.composite
def schemas(draw: Any, depth: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    if draw(st.booleans()):
        schema["type"] = draw(TYPES | st.lists(TYPES, min_size=1, max_size=3))
    for key, values in (("enum", st.lists(SCALARS, min_size=1, max_size=3)), ("const", SCALARS),
                        ("minimum", st.integers(-3, 3)), ("maximum", st.integers(-3, 3)),
                        ("minLength", st.integers(0, 3)), ("maxLength", st.integers(0, 3)),
                        ("pattern", PATTERNS), ("minItems", st.integers(0, 2)),
                        ("maxItems", st.integers(0, 3)), ("minProperties", st.integers(0, 2)),
                        ("maxProperties", st.integers(0, 3))):
        if draw(st.integers(0, 5)) == 0:
            schema[key] = draw(values)
    if depth < 3:
        if draw(st.booleans()):
            schema["properties"] = draw(st.dictionaries(NAMES, schemas(depth + 1), max_size=3))
        if draw(st.integers(0, 2)) == 0:
            schema["required"] = draw(st.lists(NAMES, max_size=2, unique=True))
        extra = draw(st.integers(0, 3))
        if extra < 2:
            schema["additionalProperties"] = [False, True][extra]
        elif extra == 2:
            schema["additionalProperties"] = draw(schemas(depth + 1))
        if draw(st.booleans()):
            schema["items"] = draw(schemas(depth + 1))
    if schema.get("additionalProperties") is False:
        schema["required"] = [n for n in schema.get("required", [])
                              if n in schema.get("properties", {})]
    return schema


def _outcome(check: Any, value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    try:
        check(value, schema, path)
    except SchemaViolation as violation:
        return f"{violation.path!r}: {violation.reason}"
    return None


def _agree(value: Any, schema: Mapping[str, Any], path: str = "") -> str | None:
    want = _outcome(reference, value, schema, path)
    assert _outcome(compiled.validate, value, schema, path) == want
    return want


# -- tests


@SETTINGS
@given(schemas(), VALUES, st.sampled_from(["", "params"]))
def test_compiled_validators_agree_with_the_interpreter(schema, value, path):
    check_schema(schema)
    _agree(value, schema, path)


def _published_schemas() -> list[Mapping[str, Any]]:
    methods = chain_dispatcher().methods()
    return ([m.params_schema for m in methods] + [m.result_schema for m in methods]
            + [evidence_batch.PARAMS, evidence_batch.RESULT])


@SETTINGS
@given(st.data())
def test_published_method_schemas_agree_with_the_interpreter(data):
    schema = data.draw(st.sampled_from(_published_schemas()))
    value = data.draw(VALUES | _near(schema))
    _agree(value, schema)


def _near(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Objects with the schema's members, some of them wrong: values that get
    past the first keyword, where the paths are."""
    names = list(schema.get("properties", {})) or ["x"]
    return st.dictionaries(st.sampled_from([*names, "unknown"]), VALUES | st.lists(
        st.dictionaries(st.sampled_from(["sha256", "kind", "case_no", "title"]),
                        st.sampled_from(["0" * 64, "judgment", "x", ""]), max_size=4),
        max_size=3), max_size=len(names) + 1)


def test_a_batch_item_breaking_its_schema_is_named_by_its_path():
    items = [{"sha256": "0" * 64, "kind": "judgment", "case_no": "1"} for _ in range(3)]
    items[2]["kind"] = "memo"
    with pytest.raises(SchemaViolation) as info:
        compiled.validate({"items": items}, evidence_batch.PARAMS)
    assert info.value.path == "items/2/kind"
    assert re.match(r"must be one of \['judgment'", info.value.reason)


def test_a_schema_is_compiled_once_and_a_new_schema_object_gets_its_own():
    schema = {"type": "string", "maxLength": 1}
    compiled.validate("a", schema)
    first = compiled._validator(schema)
    assert compiled._validator(schema) is first
    other = {"type": "string", "maxLength": 2}
    compiled.validate("ab", other)
    with pytest.raises(SchemaViolation):
        compiled.validate("ab", schema)
