"""The rpc.discover document, generated from the method registry.

OpenRPC 1.2.6 describes a service as data. Generating it from the same
registry the dispatcher serves from (and the same schemas it validates with)
means a method cannot be served without being described, or described
without being served. Access rules and what a call spends from the caller's
rate bucket ride along as specification extensions (`x-public`, `x-scope`,
`x-rate-cost`), which OpenRPC allows on method objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jsonrpc import Method

__all__ = ["OPENRPC_VERSION", "openrpc_document"]

OPENRPC_VERSION = "1.2.6"


def openrpc_document(methods: Iterable[Method], *, title: str, version: str) -> dict[str, Any]:
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": [_describe(m) for m in sorted(methods, key=lambda m: m.name)],
    }


def _describe(method: Method) -> dict[str, Any]:
    schema = method.params_schema
    required = set(schema.get("required", ()))
    params = []
    for name, sub in schema.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "required": name in required, "schema": sub}
        if "description" in sub:
            param["description"] = sub["description"]
        params.append(param)
    described: dict[str, Any] = {
        "name": method.name,
        "summary": method.summary,
        "description": method.description,
        "paramStructure": "by-name",
        "params": params,
        "result": {"name": method.result_name, "schema": method.result_schema},
        "errors": [{"code": code, "message": message} for code, message in method.errors],
        "x-public": method.public,
        "x-rate-cost": method.cost.describe(),
    }
    if method.scope is not None:
        described["x-scope"] = method.scope
    return described
