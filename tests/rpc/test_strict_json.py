"""Bad bodies are -32700 Parse error: never a 500, a crash, or a traceback
(faults/README.md §7 lists how Python's json module treats each of these)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpc.errors import RpcError
from rpc.jsonrpc import Dispatcher
from rpc.strict_json import _STRING_OR_BRACKET, _nesting_depth, parse_request_body
from tests.rpc.fakes import call, request

GOOD = request("rpc.discover").encode()

BAD_BODIES = {
    "NaN": b'{"jsonrpc":"2.0","method":"rpc.discover","id":NaN}',
    "Infinity": b'{"jsonrpc":"2.0","method":"rpc.discover","id":Infinity}',
    "-Infinity": b'{"jsonrpc":"2.0","method":"rpc.discover","id":-Infinity}',
    "NaN in params": b'{"jsonrpc":"2.0","method":"rpc.discover","params":{"x":[NaN]},"id":1}',
    "duplicate id": b'{"jsonrpc":"2.0","method":"rpc.discover","id":1,"id":2}',
    "duplicate nested": b'{"jsonrpc":"2.0","method":"m","params":{"a":1,"a":1},"id":1}',
    "100,000 nested [": b"[" * 100_000,
    "100,000 nested [ closed": b"[" * 100_000 + b"]" * 100_000,
    "100,000 nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "1e999999": b'{"jsonrpc":"2.0","method":"rpc.discover","id":1e999999}',
    "-1e999999": b'{"jsonrpc":"2.0","method":"rpc.discover","id":-1e999999}',
    "lone high surrogate": b'{"jsonrpc":"2.0","method":"rpc.discover","id":"\\ud800"}',
    "lone low surrogate in key": b'{"jsonrpc":"2.0","method":"m","params":{"\\udc00":1},"id":1}',
    "BOM": b"\xef\xbb\xbf" + GOOD,
    "invalid UTF-8": b'{"jsonrpc":"2.0","method":"\xff\xfe","id":1}',
    "overlong UTF-8": b'{"jsonrpc":"2.0","method":"\xc0\xaf","id":1}',
    "encoded surrogate": b'{"jsonrpc":"2.0","method":"\xed\xa0\x80","id":1}',
    "UTF-16": GOOD.decode().encode("utf-16"),
    "5000-digit integer": b'{"jsonrpc":"2.0","method":"rpc.discover","id":' + b"9" * 5000 + b"}",
    "empty": b"",
    "whitespace": b" \n\t",
    "trailing garbage": GOOD + b" x",
    "two documents": GOOD + GOOD,
    "single quotes": b"{'jsonrpc':'2.0'}",
    "unterminated string": b'{"jsonrpc":"2.0","method":"rpc.discover',
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_is_parse_error_with_id_null(name: str) -> None:
    got = call(Dispatcher(), BAD_BODIES[name])
    assert got["jsonrpc"] == "2.0" and got["id"] is None
    assert got["error"]["code"] == -32700 and got["error"]["message"] == "Parse error"
    assert set(got["error"]["data"]) == {"reason"}
    assert "Traceback" not in json.dumps(got) and "Error" not in got["error"]["data"]["reason"]


def test_pairs_of_surrogates_and_real_unicode_are_fine() -> None:
    body = request("rpc.discover", id_="\\ud83d\\ude00 最高人民法院").replace("\\\\", "\\")
    assert call(Dispatcher(), body.encode())["id"] == "😀 最高人民法院"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = request("rpc.discover", id_='[{[{"\\' * 200)
    assert "result" in call(Dispatcher(), body)


def test_nesting_up_to_depth_max_parses_and_one_more_does_not() -> None:
    assert parse_request_body(b"[" * 64 + b"]" * 64, depth_max=64) is not None
    with pytest.raises(RpcError) as caught:
        parse_request_body(b"[" * 65 + b"]" * 65, depth_max=64)
    assert caught.value.code == -32700


def test_integer_digits_and_string_length_have_caps() -> None:
    assert parse_request_body(b"9" * 4300) == int("9" * 4300)
    with pytest.raises(RpcError):
        parse_request_body(b"9" * 4301)
    assert parse_request_body(b'"' + b"x" * 10 + b'"', string_chars_max=10) == "x" * 10
    for body in (b'"' + b"x" * 11 + b'"', b'{"' + b"k" * 11 + b'":1}'):
        with pytest.raises(RpcError) as caught:
            parse_request_body(body, string_chars_max=10)
        assert caught.value.code == -32700


def test_a_batch_over_the_cap_is_invalid_request_not_parse_error() -> None:
    with pytest.raises(RpcError) as caught:
        parse_request_body(b"[" + b"1," * 10 + b"1]", batch_len_max=10)
    assert caught.value.code == -32600


def test_finite_floats_and_negative_zero_are_kept() -> None:
    assert parse_request_body(b"[1.5e308, -0.0, 1e-400]") == [1.5e308, -0.0, 0.0]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_always_get_a_well_formed_answer(body: bytes) -> None:
    got = call(Dispatcher(), body)
    assert got is None or isinstance(got, dict | list)


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                                      allow_infinity=False)
_json_values = st.recursive(
    _json_scalars | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["jsonrpc", "method", "params", "id", "x"]),
                       _json_values | st.sampled_from(["2.0", "rpc.discover", "nope"])))
def test_near_valid_requests_get_exactly_the_response_the_rules_say(message: dict) -> None:
    text = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")
    got = call(Dispatcher(), text)
    if got is None:  # only a valid notification may go unanswered
        assert message.get("jsonrpc") == "2.0" and "id" not in message
        return
    assert got["jsonrpc"] == "2.0"
    assert ("result" in got) != ("error" in got)
    if "result" in got:
        assert message["method"] == "rpc.discover" and got["id"] == message["id"]
    else:
        assert got["error"]["code"] in (-32700, -32600, -32601, -32602)


# The nesting pre-scan runs on the trio thread that also runs consensus, on
# bodies from anonymous callers, before json.loads: it must stay linear.
# A string the scanner could not close (a body of escaped quotes) used to make
# it restart at every later quote and scan to the end each time.
QUADRATIC_BODIES = {
    "escaped quotes": b'\\"' * 20_000,
    "escaped quotes in a batch": b'[{"a":' + b'\\"' * 20_000,
    "escaped quotes, trailing backslash": b'"' + b'\\"' * 20_000 + b"\\",
    "backslashes and quotes": b'"\\' * 20_000,
}


@pytest.mark.parametrize("name", list(QUADRATIC_BODIES))
def test_an_unclosed_string_is_scanned_once_to_the_end(name: str) -> None:
    """One match takes the unclosed string to the end of the body, so no
    quote inside it starts another scan: linear.  (Measured, not asserted:
    40 KB of escaped quotes took 6-11 s before, about 1 ms after.)"""
    body = QUADRATIC_BODIES[name]
    matches = list(_STRING_OR_BRACKET.finditer(body.decode()))
    assert len(matches) <= 4 and matches[-1].end() == len(body)
    with pytest.raises(RpcError) as caught:
        parse_request_body(body)
    assert caught.value.code == -32700


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_the_nesting_scan_measures_valid_json_exactly(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0
    text = json.dumps(value, ensure_ascii=False)
    assert _nesting_depth(text, 1000) == depth(value)
