"""JSON-RPC error codes and the one exception type that carries them.

Errors are sorted by whose fault they are. A caller's malformed input or a
refused call is an `RpcError`: it is caught at one boundary (the dispatcher)
and turned into an error response. Anything else a handler raises is our own
bug: the dispatcher logs it under an opaque incident id and answers -32603
without any exception text, so internals never leak to callers.

SPEC fixes the standard codes and the application range -32000..-32099, where
every error carries a `data` object so clients can branch on members rather
than parse messages.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APP_CODE_MAX",
    "APP_CODE_MIN",
    "FORBIDDEN",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "PARSE_ERROR",
    "RATE_LIMITED",
    "STANDARD_MESSAGES",
    "TIMEOUT",
    "UNAUTHORIZED",
    "RpcError",
    "error_object",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

APP_CODE_MIN = -32099
APP_CODE_MAX = -32000

# Application codes used by this package. -32001 covers both "who are you?"
# (no or bad token) and "you may not" (token lacks the scope); the message
# tells them apart, the code stays one so clients need one branch.
UNAUTHORIZED = -32001
FORBIDDEN = -32001
TIMEOUT = -32003
NOT_FOUND = -32004
# Come back later: a rate limit or a connection cap; data.retry_after_ms says when.
RATE_LIMITED = -32005

STANDARD_MESSAGES: dict[int, str] = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}


class RpcError(Exception):
    """An error response the caller is meant to see.

    Handlers raise it with an application code (-32000..-32099) or with
    -32602 for a semantic params problem the schema cannot express. The
    constructor asserts the code is one of those we may send, because sending
    an arbitrary code would be our bug, not the caller's.
    """

    def __init__(self, code: int, message: str | None = None,
                 data: dict[str, Any] | None = None) -> None:
        is_app = APP_CODE_MIN <= code <= APP_CODE_MAX
        assert is_app or code in STANDARD_MESSAGES, f"code {code} outside JSON-RPC/SPEC ranges"
        if message is None:
            assert code in STANDARD_MESSAGES, "application errors need a message"
            message = STANDARD_MESSAGES[code]
        if is_app and data is None:
            data = {}
        assert data is None or isinstance(data, dict), "data is always a JSON object"
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        return error_object(self.code, self.message, self.data)


def error_object(code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `error` member of a response; `data` only when there is some."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return error
