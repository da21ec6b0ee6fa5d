"""A small synchronous JSON-RPC 2.0 client for pbftd nodes.

For court systems, agencies' developers, the CLI and the tests.  HTTP is
done by the standard library (urllib), never by hand; errors come back as
``RpcCallError`` with the JSON-RPC code, message and data.
"""

from __future__ import annotations

import http.client
import itertools
import json
import time
import urllib.error
import urllib.request
from typing import Any

from .errors import RATE_LIMITED

__all__ = ["RpcCallError", "RpcClient", "RpcTransportError", "verify_attestation"]


class RpcCallError(Exception):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})" + (f": {data}" if data else ""))
        self.code, self.message, self.data = code, message, data


class RpcTransportError(Exception):
    """The node could not be reached or did not speak JSON-RPC."""


class RpcClient:
    """``rate_limit_wait_s``: how long in all a call may wait out the node's
    "come back later" (-32005 with ``retry_after_ms``: a rate limit or a
    connection cap) before retrying; 0 raises at once. A caller whose calls
    cost more than its bucket holds (several proofs in a row,
    docs/OPERATIONS.md section 9) then slows down instead of failing."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0,
                 rate_limit_wait_s: float = 0.0) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self.timeout_s = timeout_s
        self.rate_limit_wait_s = rate_limit_wait_s
        self._ids = itertools.count(1)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        waited = 0.0
        while True:
            try:
                return self._call_once(method, params)
            except RpcCallError as exc:
                delay = _retry_after_s(exc)
                if delay is None or waited + delay > self.rate_limit_wait_s:
                    raise
            time.sleep(delay)
            waited += delay

    def _call_once(self, method: str, params: dict[str, Any] | None) -> Any:
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        reply = self._post(request)
        if not isinstance(reply, dict):
            raise RpcTransportError(f"unexpected reply from {self.url}")
        if "error" in reply:
            err = reply["error"]
            raise RpcCallError(err.get("code", 0), err.get("message", ""), err.get("data"))
        return reply.get("result")

    def get_proof(self, tx_id: str) -> dict[str, Any]:
        """evidence.getProof: the self-contained proof of one transaction (unverified)."""
        return self.call("evidence.getProof", {"tx_id": tx_id})

    def _post(self, body: Any) -> Any:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if not raw:
                raise RpcTransportError(f"HTTP {exc.code} from {self.url}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RpcTransportError(f"cannot reach {self.url}: {exc}") from None
        except http.client.HTTPException as exc:  # e.g. the node died mid-reply
            raise RpcTransportError(f"broken reply from {self.url}: {exc!r}") from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise RpcTransportError(f"{self.url} did not answer with JSON") from None


def _retry_after_s(error: RpcCallError) -> float | None:
    """The wait a rate-limit refusal asks for, or None for any other error."""
    data = error.data if isinstance(error.data, dict) else {}
    wait_ms = data.get("retry_after_ms")
    if error.code != RATE_LIMITED or type(wait_ms) is not int or wait_ms <= 0:
        return None
    return wait_ms / 1000


def verify_attestation(client: RpcClient, sha256_hex: str, genesis: Any) -> list[Any]:
    """Every attestation of a document hash, each proven locally.

    Asks the node for ``evidence.verify`` and then ``evidence.getProof`` for
    each record, and verifies every proof here against ``genesis`` (a
    config.Genesis, or an rpc.verify.Trust): the node is not trusted.  Returns
    rpc.verify.VerifiedAttestation objects (empty: not attested); raises
    rpc.verify.ProofError if a proof fails or proves something other than
    the record it was fetched for (another document, another transaction).
    """
    from .verify import ProofError, Trust, trust_from_genesis, verify_proof

    trust = genesis if isinstance(genesis, Trust) else trust_from_genesis(genesis)
    wanted = sha256_hex.lower()
    answer = client.call("evidence.verify", {"sha256": wanted})
    proven = []
    for record in answer.get("records", []):
        tx_id = record["tx_id"]
        result = verify_proof(client.get_proof(tx_id), trust.validators, trust.chain_id,
                              genesis_hash=trust.genesis_hash)
        if result.tx_id != tx_id or result.sha256 != wanted:
            raise ProofError("proof_mismatch", f"the proof served for tx {tx_id} proves "
                                               f"tx {result.tx_id} of sha256 {result.sha256}")
        proven.append(result)
    return proven
