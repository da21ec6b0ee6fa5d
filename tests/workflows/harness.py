"""A tiny chain for workflow tests: blocks of real ``Tx`` values executed by
an :class:`Engine` on a :class:`MemoryState`, with an attestation index fed
by ``evidence`` payloads (as the daemon's indexer would)."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

from config.genesis import Court, Genesis
from pbftd.core.chain import Tx
from pbftd.evidence import attest_payload, parse_payload
from pbftd.workflows import BlockContext, Config, Engine, MemoryState, encode_op
from pbftd.workflows.engine import BlockOutcome
from pbftd.workflows.validate import date_start_ms

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def ref(name: str) -> str:
    """A party ref as the court system would compute it (a keyed hash)."""
    return hashlib.sha256(b"court-system-key|" + name.encode()).hexdigest()


def doc(name: str) -> str:
    return hashlib.sha256(b"document|" + name.encode()).hexdigest()


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0, s: int = 0, ms: int = 0) -> int:
    """Asia/Shanghai wall time as Unix ms."""
    return date_start_ms(date(y, m, d)) + ((h * 60 + mi) * 60 + s) * 1000 + ms


def _court(cid: str, tier: str, parent: str | None, n: int) -> Court:
    return Court(cid, cid, tier, parent, "validator" if n < 4 else "observer",
                 f"{n:064x}", f"10.0.0.{n}:7000", f"10.0.0.{n}:8000")


GENESIS = Genesis("courts-test", 0, (
    _court("spc", "supreme", None, 0),
    _court("jl-high", "high", "spc", 1),
    _court("cc-mid", "intermediate", "jl-high", 2),
    _court("cc-nanguan", "basic", "cc-mid", 3),
    _court("cc-kuancheng", "basic", "cc-mid", 4),
    _court("sc-high", "high", "spc", 5),
    _court("cd-jinjiang", "basic", "sc-high", 6),
))


class Chain:
    """One node's view: engine + state + attestation index."""

    def __init__(self, config: Config | None = None) -> None:
        self.attested: set[tuple[bytes, str]] = set()
        self.engine = Engine(config, lambda d, c: (d, c) in self.attested)
        self.state = MemoryState()
        self.height = 0
        self.time_ms = at(2020, 9, 30)
        self.outcomes: list[BlockOutcome] = []

    def block(self, time_ms: int, txs: list[Tx]) -> BlockOutcome:
        # block time as execute_batch makes it: strictly increasing
        self.time_ms = max(time_ms, self.time_ms + 1)
        self.height += 1
        out = self.engine.execute_block(self.state, BlockContext(self.height, self.time_ms),
                                        txs)
        for key, value in out.ops:
            if value is None:
                self.state.delete(key)
            else:
                self.state.put(key, value)
        for tx in txs:  # the evidence indexer, in the same write batch
            body = parse_payload(tx.payload)
            if body is not None:
                self.attested.add((body["sha256"], tx.origin))
        for a in out.attestations:
            self.attested.add((bytes.fromhex(a["sha256"]), a["court"]))
        self.outcomes.append(out)
        return out

    def events(self, topic: str | None = None) -> list[dict[str, Any]]:
        return [e for o in self.outcomes for e in o.events if topic is None or e["topic"] == topic]


class TxMaker:
    def __init__(self) -> None:
        self.n = 0

    def op(self, court: str, method: str, params: dict[str, Any], client: str = "trial") -> Tx:
        self.n += 1
        return Tx(court, 1, client, f"r{self.n}", encode_op(method, params))

    def attest(self, court: str, sha_hex: str, case_no: str, kind: str = "mediation_agreement"
               ) -> Tx:
        self.n += 1
        return Tx(court, 1, "trial", f"r{self.n}", attest_payload(sha_hex, kind, case_no, None))


def register_params(case_no: str, deadline: str, *, kind: str = "mediation",
                    creditor: str = "c", debtor: str = "d", amount: int = 1_000_000,
                    effective: str = "2020-09-20") -> dict[str, Any]:
    return {"case_no": case_no, "kind": kind, "document_sha256": doc(case_no),
            "effective_date": effective, "performance_deadline": deadline,
            "obligations": [{"debtor_ref": ref(debtor + case_no),
                             "creditor_ref": ref(creditor + case_no), "amount_fen": amount,
                             "description": "支付货款"}],
            "parties": [{"party_ref": ref(creditor + case_no), "role": "plaintiff"},
                        {"party_ref": ref(debtor + case_no), "role": "defendant"}]}
