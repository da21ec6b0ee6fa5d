"""JSON-RPC 2.0 engine: request objects in, response objects out, no I/O.

Like h11, this layer never touches a socket: the HTTP shell (server.py) and
later the WebSocket shell hand it parsed JSON values and a caller context and
send back whatever it returns. That keeps the protocol rules testable without
a network and identical over every transport.

Rules it keeps (JSON-RPC 2.0 §§4-6, SPEC "JSON-RPC"):

- A Request is an object with "jsonrpc" exactly "2.0", a string "method",
  optional structured "params", optional "id" (string, number or null). A
  valid Request without "id" is a notification: it runs, and it never gets a
  response, not even an error. An invalid Request always gets an error,
  carrying its id if that id was itself valid, else null.
- A batch is a non-empty array; its responses come back in an array without
  the notifications' entries, or no body at all if nothing is left. An empty
  array is one -32600 error, not an array.
- Params are by-name (objects); an empty array is accepted as "no params",
  any other array is -32602. Params are validated against the method's JSON
  Schema before the handler runs, and -32602 names the offending member.
- Names beginning "rpc." are reserved; only rpc.discover is served.
- Access: a public method serves anyone. Otherwise the caller must be
  authenticated and hold the method's scope; the "admin" scope implies every
  scope. Refusals are -32001 with data {method, required_scope}. The check
  comes before params validation, so anonymous callers cannot probe schemas.
- A handler raising RpcError sends that error. Any other exception is our
  bug: logged with its traceback under an opaque incident id, answered with
  -32603 whose data holds only that id.
- Results are validated against the declared result schema and checked to be
  encodable JSON; a mismatch is our bug and handled like an exception.
- Rate cost: each method declares what one call spends from its caller's rate
  bucket (`RateCost`), so a call that reads a thousand headers cannot pass
  for one that reads a status; `Dispatcher.cost` prices a parsed body before
  it runs. A call the caller may not make, or of an unknown method, costs 1:
  its refusal is cheap and must not be hidden behind a 429.
"""

from __future__ import annotations

import inspect
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    UNAUTHORIZED,
    RpcError,
)
from .openrpc import openrpc_document
from .schema import SchemaViolation, check_schema, validate
from .strict_json import BATCH_LEN_MAX, DEPTH_MAX, STRING_CHARS_MAX, parse_request_body

__all__ = [
    "ADMIN_SCOPE",
    "ANONYMOUS",
    "ONE_TOKEN",
    "Dispatcher",
    "Method",
    "RateCost",
    "RpcContext",
    "RpcError",
    "encode_response",
    "error_response",
    "parse_request_body",
]

log = structlog.get_logger("pbftd.rpc")

ADMIN_SCOPE = "admin"
_NO_PARAMS: Mapping[str, Any] = {"type": "object", "properties": {},
                                 "additionalProperties": False}
_ECHO_CHARS_MAX = 100  # caller-supplied names echoed in error data are cut to this


@dataclass(frozen=True, slots=True)
class RpcContext:
    """Who is calling. The transport builds it; handlers may read it."""

    scopes: frozenset[str] = frozenset()
    authenticated: bool = False
    peer: str | None = None
    # The transport's per-connection object for methods that push to the
    # caller (events.subscribe): a WebSocket session, None over HTTP.
    session: Any = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN_SCOPE in self.scopes


ANONYMOUS = RpcContext()


@dataclass(frozen=True, slots=True)
class RateCost:
    """What one call spends from its caller's rate bucket (rpc/ratelimit.py).

    `base` tokens, plus one more for every `per` elements that `measure`
    counts in the call's params (items of a batch, headers of a range). A
    token is about the node's work for one simple call (node.status,
    evidence.verify: about 0.5 ms of CPU on the development machine);
    docs/OPERATIONS.md gives the measured cost of each priced method.
    `measure` sees params before they are validated, so it must return a
    count for any JSON value and never raise.
    """

    base: int = 1
    per: int = 1
    unit: str = ""
    measure: Callable[[dict[str, Any]], int] | None = None

    def __post_init__(self) -> None:
        if self.base < 1 or self.per < 1:
            raise ValueError("a rate cost is at least 1 token, per at least 1")
        if (self.measure is None) != (not self.unit):
            raise ValueError("a measured rate cost names its unit, and only then")

    def of(self, params: Any) -> int:
        if self.measure is None or not isinstance(params, dict):
            return self.base
        return self.base + max(0, self.measure(params)) // self.per

    def describe(self) -> dict[str, Any]:
        """The rpc.discover form (`x-rate-cost`)."""
        if self.measure is None:
            return {"tokens": self.base}
        return {"tokens": self.base, "plus_one_per": self.per, "of": self.unit}


ONE_TOKEN = RateCost()
# rpc.discover builds, checks and encodes the whole document (about 54 KB
# for the daemon's registry): about 1.5 ms on the development machine.
DISCOVER_COST = RateCost(base=3)

# handler(params, ctx) -> result, or an awaitable of the result.
Handler = Callable[[dict[str, Any], RpcContext], Any]
# observer(method name or None if unknown/invalid, error code or None, seconds)
Observer = Callable[[str | None, int | None, float], None]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: Handler
    params_schema: Mapping[str, Any]
    result_schema: Mapping[str, Any]
    public: bool
    scope: str | None
    summary: str
    description: str
    result_name: str
    errors: tuple[tuple[int, str], ...]
    cost: RateCost = ONE_TOKEN


class Dispatcher:
    """A registry of methods and the JSON-RPC rules for calling them."""

    def __init__(self, *, title: str = "pbftd JSON-RPC", version: str = "0.1.0",
                 batch_len_max: int = BATCH_LEN_MAX, validate_results: bool = True) -> None:
        self.title = title
        self.version = version
        self.batch_len_max = batch_len_max
        self.validate_results = validate_results
        self._methods: dict[str, Method] = {}
        self._observers: list[Observer] = []
        self._register(
            "rpc.discover", lambda _params, _ctx: self.discover(), public=True,
            result_schema={"type": "object", "required": ["openrpc", "info", "methods"]},
            summary="This service's OpenRPC document.",
            description="Every method this node serves, with JSON Schema for params and "
                        "results, generated from the live registry.",
            result_name="OpenRPC document", errors=(), cost=DISCOVER_COST)

    # -- registry ---------------------------------------------------------

    def method(self, name: str, *, result_schema: Mapping[str, Any],
               params_schema: Mapping[str, Any] | None = None, public: bool = False,
               scope: str | None = None, summary: str, description: str = "",
               result_name: str = "result", errors: Iterable[tuple[int, str]] = (),
               cost: RateCost = ONE_TOKEN) -> Callable[[Handler], Handler]:
        """Decorator registering `handler(params, ctx)` under `name`."""
        if name.startswith("rpc."):
            raise ValueError(f"{name}: names beginning 'rpc.' are reserved")

        def register(handler: Handler) -> Handler:
            self._register(name, handler, params_schema=params_schema,
                           result_schema=result_schema, public=public, scope=scope,
                           summary=summary, description=description,
                           result_name=result_name, errors=errors, cost=cost)
            return handler
        return register

    def _register(self, name: str, handler: Handler, *, result_schema: Mapping[str, Any],
                  params_schema: Mapping[str, Any] | None = None, public: bool,
                  scope: str | None = None, summary: str, description: str = "",
                  result_name: str = "result", errors: Iterable[tuple[int, str]],
                  cost: RateCost = ONE_TOKEN) -> None:
        params_schema = _NO_PARAMS if params_schema is None else params_schema
        if name in self._methods:
            raise ValueError(f"{name}: already registered")
        if params_schema.get("type") != "object":
            raise ValueError(f"{name}: params are by-name, so params_schema must be an object")
        if not summary:
            raise ValueError(f"{name}: a summary is required; rpc.discover publishes it")
        check_schema(params_schema)
        check_schema(result_schema)
        declared = list(errors)
        if not public:
            declared.append((UNAUTHORIZED, "unauthorized"))
        self._methods[name] = Method(
            name=name, handler=handler, params_schema=params_schema,
            result_schema=result_schema, public=public, scope=scope, summary=summary,
            description=description or summary, result_name=result_name,
            errors=tuple(dict.fromkeys(declared)), cost=cost)

    def methods(self) -> list[Method]:
        return list(self._methods.values())

    def add_observer(self, observer: Observer) -> None:
        """Tell `observer` about every call's outcome (the server uses it for metrics)."""
        self._observers.append(observer)

    def discover(self) -> dict[str, Any]:
        return openrpc_document(self._methods.values(), title=self.title, version=self.version)

    def cost(self, request: Any, ctx: RpcContext) -> int:
        """Rate tokens a parsed body spends: the sum of its calls' costs."""
        if isinstance(request, list) and request:
            return sum(self._call_cost(item, ctx) for item in request)
        return self._call_cost(request, ctx)

    def _call_cost(self, request: Any, ctx: RpcContext) -> int:
        name = request.get("method") if isinstance(request, dict) else None
        method = self._methods.get(name) if type(name) is str else None
        if method is None or not _allowed(method, ctx):
            return 1
        return method.cost.of(request.get("params"))

    # -- calls --------------------------------------------------------------

    async def handle_body(self, body: bytes, ctx: RpcContext, *, depth_max: int = DEPTH_MAX,
                          string_chars_max: int = STRING_CHARS_MAX) -> bytes | None:
        """Bytes in, bytes out (None: send no body); what every transport shell calls."""
        try:
            request = self.parse_body(body, depth_max=depth_max,
                                      string_chars_max=string_chars_max)
        except RpcError as error:
            return self.refuse_body(error)
        return await self.handle_parsed(request, ctx)

    def parse_body(self, body: bytes, *, depth_max: int = DEPTH_MAX,
                   string_chars_max: int = STRING_CHARS_MAX) -> Any:
        """The request a body holds; raises RpcError (answer it with ``refuse_body``).
        For a shell that must look at the request first (the rate limiter counts
        its calls) and then hands it to ``handle_parsed``: parsed once, not twice."""
        return parse_request_body(body, depth_max=depth_max, string_chars_max=string_chars_max,
                                  batch_len_max=self.batch_len_max)

    def refuse_body(self, error: RpcError) -> bytes:
        """The answer to a body that does not parse."""
        self._observe(None, error.code, time.monotonic())
        return encode_response(error_response(None, error))

    async def handle_parsed(self, request: Any, ctx: RpcContext) -> bytes | None:
        """A parsed body in, bytes out (None: send no body)."""
        response = await self.handle(request, ctx)
        return None if response is None else encode_response(response)

    async def handle(self, request: Any, ctx: RpcContext) -> list[Any] | dict[str, Any] | None:
        """One parsed body in; the response value out, or None for "send no body"."""
        if not isinstance(request, list):
            return await self._handle_one(request, ctx)
        if not request:
            return error_response(None, RpcError(INVALID_REQUEST, data={"reason": "empty batch"}))
        if len(request) > self.batch_len_max:
            return error_response(None, RpcError(INVALID_REQUEST, data={
                "reason": f"batch longer than {self.batch_len_max}",
                "batch_len_max": self.batch_len_max}))
        responses = []
        for item in request:  # in order: deterministic, and no task per item
            response = await self._handle_one(item, ctx)
            if response is not None:
                responses.append(response)
        return responses or None

    async def _handle_one(self, request: Any, ctx: RpcContext) -> dict[str, Any] | None:
        started = time.monotonic()
        method: Method | None = None
        try:
            request_id, name, params = _check_request(request)
            method = self._lookup(name)
            _check_access(method, ctx)
            result = await self._call(method, _named_params(method, params), ctx)
        except RpcError as error:
            self._observe(method, error.code, started)
            return None if _is_notification(request) else error_response(
                _echo_id(request), error)
        self._observe(method, None, started)
        return None if "id" not in request else {"jsonrpc": "2.0", "result": result,
                                                 "id": request_id}

    def _lookup(self, name: str) -> Method:
        method = self._methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, data={"method": name[:_ECHO_CHARS_MAX]})
        return method

    async def _call(self, method: Method, params: dict[str, Any], ctx: RpcContext) -> Any:
        try:
            result = method.handler(params, ctx)
            if inspect.isawaitable(result):
                result = await result
            if self.validate_results:
                validate(result, method.result_schema)
            encode_response(result)
        except RpcError:
            raise
        except Exception:
            incident = secrets.token_hex(8)
            log.exception("rpc.internal_error", incident=incident, method=method.name)
            raise RpcError(INTERNAL_ERROR, data={"incident": incident}) from None
        return result

    def _observe(self, method: Method | None, code: int | None, started: float) -> None:
        elapsed = time.monotonic() - started
        for observer in self._observers:
            observer(method.name if method else None, code, elapsed)


def _check_request(request: Any) -> tuple[Any, str, Any]:
    """Validate the Request object's envelope; return (id, method, params)."""
    if not isinstance(request, dict):
        raise RpcError(INVALID_REQUEST, data={"reason": "a request is an object"})
    if "id" in request and not _valid_id(request["id"]):
        raise RpcError(INVALID_REQUEST, data={"reason": "id must be a string, number or null"})
    if request.get("jsonrpc") != "2.0" or type(request.get("jsonrpc")) is not str:
        raise RpcError(INVALID_REQUEST, data={"reason": 'jsonrpc must be exactly "2.0"'})
    if type(request.get("method")) is not str:
        raise RpcError(INVALID_REQUEST, data={"reason": "method must be a string"})
    params = request.get("params")
    if "params" in request and type(params) not in (dict, list):
        raise RpcError(INVALID_REQUEST, data={"reason": "params must be an object or array"})
    return request.get("id"), request["method"], params


def _valid_id(value: Any) -> bool:
    return value is None or type(value) in (str, int, float)


def _is_notification(request: Any) -> bool:
    """Only a *valid* Request without id is a notification; bad ones get answers."""
    try:
        _check_request(request)
    except RpcError:
        return False
    return "id" not in request


def _echo_id(request: Any) -> Any:
    if isinstance(request, dict) and _valid_id(request.get("id")):
        return request.get("id")
    return None


def _allowed(method: Method, ctx: RpcContext) -> bool:
    return method.public or (ctx.authenticated
                             and (method.scope is None or ctx.has_scope(method.scope)))


def _check_access(method: Method, ctx: RpcContext) -> None:
    if _allowed(method, ctx):
        return
    message = "forbidden" if ctx.authenticated else "unauthorized"
    raise RpcError(UNAUTHORIZED, message, {"method": method.name,
                                           "required_scope": method.scope})


def _named_params(method: Method, params: Any) -> dict[str, Any]:
    if params is None or params == []:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, data={
            "member": None, "reason": "params are by-name: send an object"})
    try:
        validate(params, method.params_schema)
    except SchemaViolation as violation:
        raise RpcError(INVALID_PARAMS, data={
            "member": violation.path[:_ECHO_CHARS_MAX] or None,
            "reason": violation.reason}) from None
    return params


def error_response(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_error(), "id": request_id}


def encode_response(value: Any) -> bytes:
    """Compact UTF-8 JSON; callers get Chinese court names as text, not escapes."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")
