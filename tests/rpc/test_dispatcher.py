"""The engine's rules beyond the spec's examples: ids, envelope, params,
access control, internal errors, result checking, registration."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from rpc.errors import RpcError
from rpc.jsonrpc import ANONYMOUS, Dispatcher, RpcContext
from tests.rpc.fakes import ADMIN, CASE_ONLY, READER, call, request

OBJ = {"type": "object"}


def dispatcher() -> Dispatcher:
    d = Dispatcher()

    @d.method("echo", public=True, result_schema=OBJ, summary="params back",
              params_schema={"type": "object", "additionalProperties": False, "properties": {
                  "n": {"type": "integer", "minimum": 0, "maximum": 10},
                  "s": {"type": "string", "minLength": 1, "maxLength": 3, "pattern": "^[a-z]+$"},
                  "e": {"enum": ["x", "y"]},
                  "list": {"type": "array", "items": {"type": "integer"}, "maxItems": 2},
              }})
    def echo(p: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        return p

    @d.method("secret", scope="evidence:read", result_schema={"type": "string"},
              summary="needs a scope")
    def secret(_p: dict[str, Any], _ctx: RpcContext) -> str:
        return "s"

    @d.method("members_only", result_schema={"type": "string"}, summary="any token")
    def members_only(_p: dict[str, Any], _ctx: RpcContext) -> str:
        return "m"

    @d.method("boom", public=True, result_schema=OBJ, summary="our bug")
    def boom(_p: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        raise KeyError("/etc/secret/path leaked?")

    @d.method("bad_result", public=True, result_schema={"type": "integer"}, summary="our bug")
    def bad_result(_p: dict[str, Any], _ctx: RpcContext) -> str:
        return "not an int"

    @d.method("app_error", public=True, result_schema=OBJ, summary="refuses")
    def app_error(_p: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        raise RpcError(-32050, "busy")

    return d


@pytest.mark.parametrize("id_", ["abc", 0, -7, 2**70, 1.5, None, ""])
def test_valid_ids_are_echoed_exactly(id_: Any) -> None:
    got = call(dispatcher(), request("echo", {}, id_))
    assert got == {"jsonrpc": "2.0", "result": {}, "id": id_}
    assert type(got["id"]) is type(id_)


@pytest.mark.parametrize("id_", [True, False, {"a": 1}, [1]])
def test_an_id_of_the_wrong_type_is_invalid_request_with_id_null(id_: Any) -> None:
    got = call(dispatcher(), request("echo", {}, id_))
    assert got["error"]["code"] == -32600 and got["id"] is None


@pytest.mark.parametrize("envelope", [
    {"jsonrpc": "2.0 ", "method": "echo"},
    {"jsonrpc": 2.0, "method": "echo"},
    {"jsonrpc": "1.0", "method": "echo"},
    {"method": "echo"},
    {"jsonrpc": "2.0"},
    {"jsonrpc": "2.0", "method": None},
    {"jsonrpc": "2.0", "method": "echo", "params": 5},
    {"jsonrpc": "2.0", "method": "echo", "params": None},
])
def test_invalid_envelopes_are_answered_even_without_an_id(envelope: dict[str, Any]) -> None:
    assert call(dispatcher(), json.dumps(envelope))["error"]["code"] == -32600
    got = call(dispatcher(), json.dumps({**envelope, "id": 9}))
    assert got["error"]["code"] == -32600 and got["id"] == 9


@pytest.mark.parametrize("body", ["1", '"x"', "null", "true", "{}"])
def test_a_body_that_is_no_request_object_is_invalid_request(body: str) -> None:
    got = call(dispatcher(), body)
    assert got["error"]["code"] == -32600 and got["id"] is None


@pytest.mark.parametrize(("params", "member", "reason"), [
    ({"n": -1}, "n", "must be >= 0"),
    ({"n": 11}, "n", "must be <= 10"),
    ({"n": 1.0}, "n", "must be integer, not number"),
    ({"n": True}, "n", "must be integer, not boolean"),
    ({"s": ""}, "s", "must be at least 1 characters"),
    ({"s": "abcd"}, "s", "must be at most 3 characters"),
    ({"s": "AB"}, "s", "must match ^[a-z]+$"),
    ({"s": "ab\n"}, "s", "must match ^[a-z]+$"),  # "$" is end of string, as in ECMA-262
    ({"e": "z"}, "e", "must be one of ['x', 'y']"),
    ({"list": [1, "2"]}, "list/1", "must be integer, not string"),
    ({"list": [1, 2, 3]}, "list", "must have at most 2 items"),
    ({"other": 1}, "other", "is not a known member"),
])
def test_invalid_params_name_the_member_and_the_problem(
        params: dict[str, Any], member: str, reason: str) -> None:
    got = call(dispatcher(), request("echo", params, "q"))
    assert got["error"] == {"code": -32602, "message": "Invalid params",
                            "data": {"member": member, "reason": reason}}
    assert got["id"] == "q"


def test_missing_required_member_and_omitted_params() -> None:
    d = Dispatcher()

    @d.method("need", public=True, result_schema={"type": "integer"}, summary="needs x",
              params_schema={"type": "object", "required": ["x"],
                             "properties": {"x": {"type": "integer"}}})
    def need(p: dict[str, Any], _ctx: RpcContext) -> int:
        return p["x"]

    got = call(d, '{"jsonrpc":"2.0","method":"need","id":1}')
    assert got["error"]["data"] == {"member": "x", "reason": "is required"}
    assert call(d, request("need", {"x": 3}))["result"] == 3
    # a method without required members may omit params or send an empty array
    assert call(dispatcher(), '{"jsonrpc":"2.0","method":"echo","id":1}')["result"] == {}
    assert call(dispatcher(), request("echo", []))["result"] == {}


def test_a_notification_with_bad_params_or_unknown_method_stays_silent() -> None:
    assert call(dispatcher(), '{"jsonrpc":"2.0","method":"echo","params":{"n":-1}}') is None
    assert call(dispatcher(), '{"jsonrpc":"2.0","method":"nope"}') is None
    assert call(dispatcher(), '{"jsonrpc":"2.0","method":"boom"}') is None


def test_reserved_rpc_names_other_than_discover_are_not_found() -> None:
    assert call(dispatcher(), request("rpc.other"))["error"]["code"] == -32601
    assert call(dispatcher(), request("rpc.discover"))["result"]["openrpc"] == "1.2.6"
    with pytest.raises(ValueError, match="reserved"):
        dispatcher().method("rpc.mine", result_schema=OBJ, summary="x")


def test_scoped_method_refuses_anonymous_and_wrong_scope_and_admits_scope_or_admin() -> None:
    anonymous = call(dispatcher(), request("secret"))
    assert anonymous["error"] == {"code": -32001, "message": "unauthorized", "data": {
        "method": "secret", "required_scope": "evidence:read"}}
    wrong = call(dispatcher(), request("secret"), CASE_ONLY)
    assert wrong["error"]["message"] == "forbidden"
    assert wrong["error"]["data"]["required_scope"] == "evidence:read"
    assert call(dispatcher(), request("secret"), READER)["result"] == "s"
    assert call(dispatcher(), request("secret"), ADMIN)["result"] == "s"


def test_access_is_checked_before_params_so_anonymous_callers_cannot_probe_schemas() -> None:
    got = call(dispatcher(), request("secret", {"anything": 1}))
    assert got["error"]["code"] == -32001


def test_non_public_method_without_scope_needs_any_authenticated_caller() -> None:
    assert call(dispatcher(), request("members_only"))["error"]["code"] == -32001
    assert call(dispatcher(), request("members_only"), CASE_ONLY)["result"] == "m"


def test_a_handler_bug_is_internal_error_with_only_an_incident_id() -> None:
    with capture_logs() as logs:
        got = call(dispatcher(), request("boom", id_=5))
    error = got["error"]
    assert error["code"] == -32603 and error["message"] == "Internal error"
    assert set(error["data"]) == {"incident"}
    text = json.dumps(got)
    assert "KeyError" not in text and "secret" not in text and "Traceback" not in text
    logged = [e for e in logs if e["event"] == "rpc.internal_error"]
    assert logged and logged[0]["incident"] == error["data"]["incident"]
    assert logged[0]["exc_info"] is True


def test_a_result_that_breaks_its_schema_is_our_bug_not_the_callers_answer() -> None:
    with capture_logs():
        got = call(dispatcher(), request("bad_result"))
    assert got["error"]["code"] == -32603


def test_application_errors_always_carry_a_data_object() -> None:
    got = call(dispatcher(), request("app_error"))
    assert got["error"] == {"code": -32050, "message": "busy", "data": {}}


def test_batch_longer_than_the_cap_is_one_invalid_request() -> None:
    d = Dispatcher(batch_len_max=3)
    d.method("x", public=True, result_schema=OBJ, summary="x")(lambda p, c: {})
    one = json.loads(request("x"))
    assert len(call(d, json.dumps([one] * 3))) == 3
    got = call(d, json.dumps([one] * 4))
    assert got["error"]["code"] == -32600 and got["error"]["data"]["batch_len_max"] == 3


def test_registration_refuses_duplicates_unsupported_keywords_and_missing_summary() -> None:
    d = dispatcher()
    with pytest.raises(ValueError, match="already registered"):
        d.method("echo", result_schema=OBJ, summary="again")(lambda p, c: {})
    with pytest.raises(ValueError, match="unsupported schema keywords"):
        d.method("m1", result_schema={"type": "object", "oneOf": []}, summary="x")(
            lambda p, c: {})
    with pytest.raises(ValueError, match="summary"):
        d.method("m2", result_schema=OBJ, summary="")(lambda p, c: {})
    with pytest.raises(ValueError, match="by-name"):
        d.method("m3", result_schema=OBJ, summary="x", params_schema={"type": "array"})(
            lambda p, c: {})


def test_observers_see_every_call_with_its_outcome() -> None:
    d = dispatcher()
    seen: list[tuple[Any, Any]] = []
    d.add_observer(lambda method, code, seconds: seen.append((method, code)))
    call(d, "[" + ",".join([request("echo"), request("nope"), request("secret"), "1"]) + "]")
    call(d, "{")
    assert seen == [("echo", None), (None, -32601), ("secret", -32001), (None, -32600),
                    (None, -32700)]


def test_context_defaults_to_anonymous() -> None:
    assert ANONYMOUS.scopes == frozenset() and not ANONYMOUS.authenticated
    assert RpcContext(frozenset({"admin"}), True).has_scope("anything:at-all")
