"""rpc.discover: an OpenRPC 1.2.6 document that matches the live registry.

The document is checked against the OpenRPC 1.x meta-schema's shape, written
down here in the JSON Schema subset rpc.schema implements (patternProperties
is outside that subset, so "x-" extensions are checked by hand)."""

from __future__ import annotations

import re
from typing import Any

from rpc.errors import NOT_FOUND
from rpc.schema import check_schema, validate
from tests.rpc.fakes import ADMIN, call, chain_dispatcher, request

_STRING = {"type": "string"}
CONTENT_DESCRIPTOR = {
    "type": "object", "required": ["name", "schema"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "minLength": 1}, "summary": _STRING,
                   "description": _STRING, "required": {"type": "boolean"},
                   "schema": {"type": "object"}, "deprecated": {"type": "boolean"}},
}
ERROR_OBJECT = {
    "type": "object", "required": ["code", "message"], "additionalProperties": False,
    "properties": {"code": {"type": "integer"}, "message": _STRING, "data": {}},
}
METHOD_KEYS = {"name", "tags", "summary", "description", "externalDocs", "params", "result",
               "deprecated", "servers", "errors", "links", "paramStructure", "examples"}
METHOD_OBJECT = {
    "type": "object", "required": ["name", "params", "result"],
    "properties": {
        "name": {"type": "string", "minLength": 1}, "summary": _STRING, "description": _STRING,
        "paramStructure": {"enum": ["by-name", "by-position", "either"]},
        "params": {"type": "array", "items": CONTENT_DESCRIPTOR},
        "result": CONTENT_DESCRIPTOR,
        "errors": {"type": "array", "items": ERROR_OBJECT},
        "deprecated": {"type": "boolean"},
    },
}
OPENRPC_DOCUMENT = {
    "type": "object", "required": ["openrpc", "info", "methods"],
    "properties": {
        "openrpc": {"type": "string", "pattern": r"^1\.[0-9]+\.[0-9]+$"},
        "info": {"type": "object", "required": ["title", "version"],
                 "properties": {"title": _STRING, "version": _STRING,
                                "description": _STRING}},
        "methods": {"type": "array", "items": METHOD_OBJECT},
    },
}


def discover(ctx: Any = None) -> dict[str, Any]:
    dispatcher = chain_dispatcher()
    got = call(dispatcher, request("rpc.discover"), *(c for c in [ctx] if c))
    return got["result"]


def test_document_has_the_openrpc_1x_shape() -> None:
    document = discover()
    validate(document, OPENRPC_DOCUMENT)
    assert document["openrpc"] == "1.2.6"
    for method in document["methods"]:
        unknown = set(method) - METHOD_KEYS
        assert all(re.fullmatch(r"x-.+", key) for key in unknown), unknown
        assert method["summary"] and method["description"]
        assert method["paramStructure"] == "by-name"


def test_every_schema_in_the_document_is_a_schema_we_enforce() -> None:
    for method in discover()["methods"]:
        check_schema(method["result"]["schema"])
        for param in method["params"]:
            check_schema(param["schema"])


def test_described_methods_are_exactly_the_registered_ones() -> None:
    dispatcher = chain_dispatcher()
    described = {m["name"] for m in call(dispatcher, request("rpc.discover"))["result"]["methods"]}
    registered = {m.name for m in dispatcher.methods()}
    assert described == registered == {"rpc.discover", "node.status", "chain.getBlock",
                                       "chain.getTx"}
    for name in described:  # and each is served: no -32601 for anything described
        got = call(dispatcher, request(name, {}), ADMIN)
        assert got.get("error", {}).get("code") != -32601


def test_params_required_flags_and_access_rules_are_published() -> None:
    methods = {m["name"]: m for m in discover()["methods"]}
    get_block = methods["chain.getBlock"]
    assert get_block["params"] == [{"name": "height", "required": True, "schema": {
        "type": "integer", "minimum": 0, "maximum": 2**63 - 1}}]
    assert get_block["x-public"] is False and get_block["x-scope"] == "evidence:read"
    assert {"code": NOT_FOUND, "message": "not found"} in get_block["errors"]
    assert {"code": -32001, "message": "unauthorized"} in get_block["errors"]
    assert methods["node.status"]["x-public"] is True and "x-scope" not in methods["node.status"]
    assert methods["node.status"]["params"] == []
    assert methods["chain.getTx"]["params"][0]["name"] == "tx_id"
    assert methods["node.status"]["result"]["schema"]["properties"]["last_block_hash"][
        "pattern"] == "^[0-9a-f]{64}$"


def test_rpc_discover_is_public() -> None:
    assert discover()["info"]["title"]
