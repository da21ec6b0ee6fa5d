"""JSON-RPC 2.0 specification, section 7 "Examples", one test per example.

The spec's positional-params examples are adapted to named members, because
SPEC makes every pbftd method take an object: subtract(minuend, subtrahend),
update(values), sum(values), notify_hello(value). `foobar` and `notify_sum`
stay unregistered, as in the spec, where they are the missing methods.
Expected responses are the spec's text; our errors may carry an extra `data`
member, which `without_data` drops before comparing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rpc.jsonrpc import Dispatcher, RpcContext
from tests.rpc.fakes import call, without_data

NUMBER = {"type": "number"}
NUMBERS = {"type": "array", "items": NUMBER, "maxItems": 1000}


def spec_dispatcher() -> tuple[Dispatcher, list[Any]]:
    d = Dispatcher()
    seen: list[Any] = []

    def named(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
        return {"type": "object", "properties": props, "required": required,
                "additionalProperties": False}

    @d.method("subtract", public=True, result_schema=NUMBER, summary="minuend - subtrahend",
              params_schema=named({"minuend": NUMBER, "subtrahend": NUMBER},
                                  ["minuend", "subtrahend"]))
    def subtract(p: dict[str, Any], _ctx: RpcContext) -> float:
        return p["minuend"] - p["subtrahend"]

    @d.method("update", public=True, result_schema={"type": "null"}, summary="records values",
              params_schema=named({"values": NUMBERS}, ["values"]))
    def update(p: dict[str, Any], _ctx: RpcContext) -> None:
        seen.append(("update", p["values"]))

    @d.method("notify_hello", public=True, result_schema={"type": "null"}, summary="hello",
              params_schema=named({"value": NUMBER}, ["value"]))
    def notify_hello(p: dict[str, Any], _ctx: RpcContext) -> None:
        seen.append(("notify_hello", p["value"]))

    @d.method("sum", public=True, result_schema=NUMBER, summary="sum of values",
              params_schema=named({"values": NUMBERS}, ["values"]))
    async def sum_(p: dict[str, Any], _ctx: RpcContext) -> float:  # async handlers work too
        return sum(p["values"])

    @d.method("get_data", public=True, summary="fixed data",
              result_schema={"type": "array", "maxItems": 2})
    def get_data(_p: dict[str, Any], _ctx: RpcContext) -> list[Any]:
        return ["hello", 5]

    return d, seen


def check(body: str, expected: str | None) -> list[Any]:
    d, seen = spec_dispatcher()
    got = call(d, body)
    if expected is None:
        assert got is None
    else:
        assert without_data(got) == json.loads(expected)
    return seen


@pytest.mark.parametrize(("body", "expected"), [
    ('{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, '
     '"id": 1}', '{"jsonrpc": "2.0", "result": 19, "id": 1}'),
    ('{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 23, "subtrahend": 42}, '
     '"id": 2}', '{"jsonrpc": "2.0", "result": -19, "id": 2}'),
])
def test_rpc_call_adapted_from_positional_parameters(body: str, expected: str) -> None:
    check(body, expected)


@pytest.mark.parametrize(("body", "expected"), [
    ('{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, '
     '"id": 3}', '{"jsonrpc": "2.0", "result": 19, "id": 3}'),
    ('{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, '
     '"id": 4}', '{"jsonrpc": "2.0", "result": 19, "id": 4}'),
])
def test_rpc_call_with_named_parameters(body: str, expected: str) -> None:
    check(body, expected)


def test_a_notification_runs_and_gets_no_response() -> None:
    seen = check('{"jsonrpc": "2.0", "method": "update", "params": {"values": [1,2,3,4,5]}}',
                 None)
    assert seen == [("update", [1, 2, 3, 4, 5])]
    check('{"jsonrpc": "2.0", "method": "foobar"}', None)


def test_rpc_call_of_non_existent_method() -> None:
    check('{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
          '{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, '
          '"id": "1"}')


def test_rpc_call_with_invalid_json() -> None:
    check('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
          '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}')


def test_rpc_call_with_invalid_request_object() -> None:
    check('{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
          '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, '
          '"id": null}')


def test_rpc_call_batch_invalid_json() -> None:
    check('[\n  {"jsonrpc": "2.0", "method": "sum", "params": {"values": [1,2,4]}, "id": "1"},'
          '\n  {"jsonrpc": "2.0", "method"\n]',
          '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}')


def test_rpc_call_with_an_empty_array() -> None:
    check("[]", '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, '
                '"id": null}')


def test_rpc_call_with_an_invalid_batch_but_not_empty() -> None:
    check("[1]", '[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, '
                 '"id": null}]')


def test_rpc_call_with_invalid_batch() -> None:
    one = '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}'
    check("[1,2,3]", f"[{one}, {one}, {one}]")


def test_rpc_call_batch() -> None:
    seen = check(
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": {"values": [1,2,4]}, "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": {"value": 7}},
        {"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23},
         "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
        ]""",
        """[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
        ]""")
    assert seen == [("notify_hello", 7)]


def test_rpc_call_batch_all_notifications() -> None:
    seen = check("""[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": {"values": [1,2,4]}},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": {"value": 7}}
        ]""", None)
    assert seen == [("notify_hello", 7)]


def test_positional_params_as_the_spec_sends_them_are_invalid_params_here() -> None:
    d, _ = spec_dispatcher()
    got = call(d, '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}')
    assert got["error"]["code"] == -32602
    assert got["error"]["data"]["reason"] == "params are by-name: send an object"
    assert got["id"] == 1
