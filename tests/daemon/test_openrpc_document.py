"""rpc.discover on a real node validates against the official OpenRPC
meta-schema, and describes exactly the methods the node serves."""

import json
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from .harness import Cluster

DATA = Path(__file__).parents[1] / "rpc" / "data"
META_SCHEMA = DATA / "openrpc-meta-schema-1.14.9.json"
JSON_SCHEMA_TOOLS = DATA / "json-schema-tools-meta-schema-1.8.0.json"


def _validator() -> jsonschema.Draft7Validator:
    """The official OpenRPC meta-schema, its one external reference served
    from the vendored copy (no network)."""
    tools = Resource.from_contents(json.loads(JSON_SCHEMA_TOOLS.read_text()),
                                   default_specification=DRAFT7)
    registry = Registry().with_resources([("https://meta.json-schema.tools", tools),
                                          ("https://meta.json-schema.tools/", tools)])
    return jsonschema.Draft7Validator(json.loads(META_SCHEMA.read_text()), registry=registry)


@pytest.fixture
def node(tmp_path: Path):
    with Cluster.running(tmp_path / "testnet", nodes=1) as c:
        yield c


def test_rpc_discover_is_a_valid_openrpc_document(node) -> None:
    doc = node.client(node.ids[0]).call("rpc.discover")
    errors = sorted(_validator().iter_errors(doc), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    names = {m["name"] for m in doc["methods"]}
    for method in ("node.status", "chain.getBlock", "chain.getTx", "chain.getHeaders",
                   "evidence.attest", "evidence.attestBatch", "evidence.verify",
                   "evidence.getProof", "events.subscribe", "events.unsubscribe"):
        assert method in names, method
    unknown = node.client(node.ids[0])
    for name in sorted(names):
        try:
            unknown.call(name, {"__probe__": 1})
        except Exception as exc:  # every described method exists: never "method not found"
            assert getattr(exc, "code", None) != -32601, name


def test_the_meta_schema_rejects_a_broken_document() -> None:
    broken = {"openrpc": "1.2.6", "info": {"title": "x"}, "methods": [{"name": 5}]}
    assert list(_validator().iter_errors(broken))
