"""The workflow engine: trial-to-enforcement linkage, enforcement audit, term
warnings and agency orders as a deterministic state machine (issue 5).

Pure: no I/O, clock, randomness or event loop.  Time is the block time
(``BlockHeader.time_ms``, agreed by consensus); dates are Asia/Shanghai.

Per block the daemon calls :meth:`Engine.execute_block` (or, piecewise,
:meth:`Engine.on_block` once and then :meth:`Engine.apply_tx` per fresh
transaction).  **Time-based transitions run BEFORE the block's
transactions**: a block at time T first applies everything due at or before
T, then its transactions see that state.  So a performance confirmation in
the block that makes a case due finds it ``due``, and a settlement report
carried by the block in which the settlement deadline passed is too late
(enforcement has already resumed), which is what "the deadline passes
without a performance report" means when all of a block's transactions
share its time.

Deadlines live in a time-ordered index (``wf/dl/<at_ms:8>...``); each block
reads it from the start and stops at the first entry later than its time, so
it only touches what is due.  At most ``Config.deadlines_per_block`` entries
are processed per block; the rest stay in the index and are processed, in
the same order, by the following blocks (identically on every node).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .. import evidence
from ..core import codec
from . import keys as K
from .documents import application_document, certificate_document, sha256_hex
from .ops import ASSET_TERM_YEARS, ORDER_TYPES, parse_payload, validate_op
from .state import Overlay, State, get_obj, put_obj
from .validate import (
    DAY_MS,
    WorkflowError,
    add_years,
    day_after_start_ms,
    shanghai_date,
)

__all__ = ["EVENT_TOPICS", "BlockContext", "BlockOutcome", "Config", "Engine", "TxContext",
           "TxResult"]

SYSTEM_CLIENT = "pbftd/workflows"
# Every topic the engine emits: events.subscribe offers exactly these.
EVENT_TOPICS = (
    "case.registered", "case.due", "case.reminder", "case.closed", "case.certificateIssued",
    "case.awaitingSignature", "case.signed", "case.enforcementFiled",
    "enforcement.recorded", "enforcement.termExpiring", "enforcement.termExpired",
    "enforcement.settlementPerformed", "enforcement.resumed", "agency.reported",
)
IsAttestedBy = Callable[[bytes, str], bool]


@dataclass(frozen=True, slots=True)
class Config:
    """Engine parameters.  Every node must use the same values (they belong
    in genesis, like the consensus parameters)."""

    warn_lead_days: tuple[int, ...] = (30, 7)
    reminder_days: int = 3          # second notice if no answer; 0 disables
    deadlines_per_block: int = 1000

    def __post_init__(self) -> None:
        if any(type(d) is not int or d <= 0 for d in self.warn_lead_days):
            raise ValueError("warn_lead_days are positive integers")
        if self.deadlines_per_block < 1 or self.reminder_days < 0:
            raise ValueError("deadlines_per_block >= 1, reminder_days >= 0")


@dataclass(frozen=True, slots=True)
class BlockContext:
    height: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class TxContext:
    """Who and when: the transaction's origin court (the node that accepted
    it), its client (the bearer token's name), and its block."""

    court: str
    client: str
    height: int
    time_ms: int
    tx_id: bytes

    @property
    def block(self) -> BlockContext:
        return BlockContext(self.height, self.time_ms)

    def stamp(self) -> dict[str, Any]:
        return {"court": self.court, "client": self.client, "height": self.height,
                "time_ms": self.time_ms, "tx_id": self.tx_id.hex()}


@dataclass(slots=True)
class TxResult:
    value: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    # documents the engine generated and that the attestation index should
    # record as attested by the transaction's origin court
    attestations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class BlockOutcome:
    events: list[dict[str, Any]]
    # per workflow transaction, in block order: (tx id, result or error)
    results: list[tuple[bytes, dict[str, Any]]]
    attestations: list[dict[str, Any]]
    ops: list[tuple[bytes, bytes | None]]       # the write set, sorted; None = delete
    digest: bytes                               # fold into the block's state root


def _err(code: str, message: str, field_name: str | None = None) -> WorkflowError:
    return WorkflowError(code, message, field_name)


def _q(text: str) -> str:
    """A text quoted in a refusal's message, verbatim.  Not repr(): it
    escapes what the Python build's Unicode tables call unprintable, and the
    message is stored with the result on every node (validated texts hold
    no control characters, so there is nothing to escape)."""
    return f"'{text}'"


class Engine:
    def __init__(self, config: Config | None = None,
                 is_attested_by: IsAttestedBy | None = None) -> None:
        """``is_attested_by(sha256, court)`` answers from the attestation
        index whether ``court`` attested the document; it must read the same
        committed state on every node (never a node-local cache)."""
        self.config = config or Config()
        self.is_attested_by: IsAttestedBy = is_attested_by or (lambda _d, _c: False)
        self._handlers: dict[str, Callable[[State, TxContext, dict[str, Any]], TxResult]] = {
            "case.register": self._register,
            "case.issueEffectivenessCertificate": self._certificate,
            "case.confirmPerformance": self._confirm,
            "case.signApplication": self._sign,
            "enforcement.file": self._file,
            "case.transferToEnforcement": self._transfer,
            "enforcement.record": self._record,
            "agency.report": self._agency_report,
            "audit.read": self._audit_read,
        }

    # ============================================================ block seam

    def execute_block(self, state: State, block: BlockContext,
                      txs: Iterable[Any]) -> BlockOutcome:
        """Run one block on an overlay above ``state`` (which is not written).

        ``txs`` are the block's fresh transactions (``pbftd.core.chain.Tx``:
        origin, client, payload, tx_id) in block order.  Attestations
        (``evidence`` payloads) earlier in the same block count as attested.
        The caller writes ``ops`` into the block's write batch and folds
        ``digest`` into the state root.
        """
        overlay = Overlay(state)
        events = self.on_block(overlay, block)
        results: list[tuple[bytes, dict[str, Any]]] = []
        attestations: list[dict[str, Any]] = []
        in_block: set[tuple[bytes, str]] = set()
        outer = self.is_attested_by
        try:
            self.is_attested_by = lambda d, c: (d, c) in in_block or outer(d, c)
            for tx in txs:
                ev = evidence.parse_payload(tx.payload)
                if ev is not None:
                    in_block.add((ev["sha256"], tx.origin))
                    continue
                parsed = parse_payload(tx.payload)
                if parsed is None:
                    continue
                ctx = TxContext(tx.origin, tx.client, block.height, block.time_ms, tx.tx_id)
                child = Overlay(overlay)
                try:
                    res = self.apply_tx(child, ctx, {"method": parsed[0], "params": parsed[1]})
                except WorkflowError as exc:
                    results.append((tx.tx_id, {"ok": False, "error": exc.to_dict()}))
                    continue
                except codec.DecodeError:
                    raise  # our own stored state does not decode: this node's, stop
                except _INPUT_BUGS as exc:
                    # A bug in an operation's checks or handler that a payload reached:
                    # raised alike on every node, so refusing the transaction
                    # keeps them agreeing, where raising would stop the chain
                    # at this block on all of them.  The message names only the
                    # exception's type, which every node has the same; the
                    # daemon logs it (WorkflowApp).
                    results.append((tx.tx_id, {"ok": False, "error": {
                        "code": "internal_error", "field": None,
                        "message": f"the operation failed inside pbftd "
                                   f"({type(exc).__name__}); this is a pbftd bug"}}))
                    continue
                child.commit_into(overlay)
                events += res.events
                for att in res.attestations:
                    in_block.add((bytes.fromhex(att["sha256"]), tx.origin))
                    attestations.append({**att, "tx_id": tx.tx_id.hex(), "court": tx.origin})
                results.append((tx.tx_id, {"ok": True, "result": res.value}))
        finally:
            self.is_attested_by = outer
        outcomes = [[tx_id, r["ok"], None if r["ok"] else r["error"]["code"]]
                    for tx_id, r in results]
        digest = overlay.digest(["block", block.height, block.time_ms], events, outcomes,
                                attestations)
        return BlockOutcome(events, results, attestations, overlay.ops(), digest)

    def apply_tx(self, state: State, ctx: TxContext, op: dict[str, Any]) -> TxResult:
        """Apply one operation ``{"method", "params"}``.  Raises WorkflowError
        on refusal, possibly after partial writes: run it on a throwaway
        :class:`Overlay` (as execute_block does) and merge only on success."""
        params = validate_op(op.get("method"), op.get("params"))
        return self._handlers[op["method"]](state, ctx, params)

    def on_block(self, state: State, block: BlockContext) -> list[dict[str, Any]]:
        """Fire every deadline at or before the block time (bounded, in time
        order); call once per block before its transactions."""
        due: list[tuple[bytes, dict[str, Any]]] = []
        for key, raw in state.iter_prefix(K.DEADLINE):
            if K.from_be8(key[len(K.DEADLINE):]) > block.time_ms:
                break
            due.append((key, _decode(raw)))
            if len(due) >= self.config.deadlines_per_block:
                break
        events: list[dict[str, Any]] = []
        for key, entry in due:
            state.delete(key)
            fire = getattr(self, "_fire_" + entry["kind"])
            events += fire(state, block, entry)
        return events

    # ============================================================ helpers

    def _event(self, topic: str, block: BlockContext, court: str,
               **body: Any) -> dict[str, Any]:
        assert topic in EVENT_TOPICS, topic
        return {"topic": topic, "height": block.height, "time_ms": block.time_ms,
                "court": court, **body}

    def _schedule(self, state: State, at_ms: int, kind: str, ref: str,
                  **extra: Any) -> bytes:
        key = K.deadline(at_ms, kind, ref)
        put_obj(state, key, {"kind": kind, "ref": ref, "at_ms": at_ms, **extra})
        return key

    @staticmethod
    def _get_case(state: State, case_no: str) -> dict[str, Any]:
        case = get_obj(state, K.case(case_no))
        if case is None:
            raise _err("not_found", f"no case {_q(case_no)}", "case_no")
        return case

    @staticmethod
    def _get_enf(state: State, case_no: str) -> dict[str, Any]:
        enf = get_obj(state, K.enf(case_no))
        if enf is None:
            raise _err("not_found", f"no enforcement case {_q(case_no)}", "enforcement_case_no")
        return enf

    @staticmethod
    def _own(ctx: TxContext, court: str, what: str) -> None:
        if ctx.court != court:
            raise _err("forbidden", f"{what} belongs to court {_q(court)}, not {_q(ctx.court)}")

    def _set_case_state(self, state: State, case: dict[str, Any], new: str,
                        block: BlockContext) -> None:
        state.delete(K.ix_state(case["state"], case["case_no"]))
        case["state"] = new
        case["history"].append([new, block.height, block.time_ms])
        state.put(K.ix_state(new, case["case_no"]), _NONE)

    def _save_case(self, state: State, case: dict[str, Any]) -> None:
        put_obj(state, K.case(case["case_no"]), case)

    def _trail(self, state: State, enf: dict[str, Any], entry_type: str,
               details: dict[str, Any], stamp: dict[str, Any]) -> int:
        enf["seq"] += 1
        seq = enf["seq"]
        put_obj(state, K.trail(enf["case_no"], seq),
                {"seq": seq, "type": entry_type, "details": details, **stamp})
        return seq

    @staticmethod
    def _system_stamp(court: str, block: BlockContext) -> dict[str, Any]:
        return {"court": court, "client": SYSTEM_CLIENT, "height": block.height,
                "time_ms": block.time_ms, "tx_id": None}

    # ============================================================ trial side

    def _register(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        cn = p["case_no"]
        if state.get(K.case(cn)) is not None or state.get(K.enf(cn)) is not None:
            raise _err("conflict", f"case {_q(cn)} is already on chain", "case_no")
        if not self.is_attested_by(bytes.fromhex(p["document_sha256"]), ctx.court):
            raise _err("not_attested", f"document {p['document_sha256']} is not attested by "
                       f"court {_q(ctx.court)}; attest it (evidence.attest) first",
                       "document_sha256")
        due_ms = day_after_start_ms(date.fromisoformat(p["performance_deadline"]))
        creditors = sorted({o["creditor_ref"] for o in p["obligations"]})
        case = {**p, "court": ctx.court, "registered": ctx.stamp(), "state": "pending",
                "history": [["pending", ctx.height, ctx.time_ms]], "due_ms": due_ms,
                "creditors": creditors, "confirmations": {}, "certificate": None,
                "application": None, "signature": None, "enforcement_case_no": None,
                "notices": 0, "_dl": None}
        # due at once if registered late: fires in the next block (time-based
        # transitions run before transactions)
        case["_dl"] = self._schedule(state, due_ms, "due", cn)
        state.put(K.ix_court(ctx.court, cn), _NONE)
        state.put(K.ix_state("pending", cn), _NONE)
        state.put(K.ix_due(due_ms, cn), _NONE)
        self._save_case(state, case)
        ev = self._event("case.registered", ctx.block, ctx.court, case_no=cn, kind=p["kind"],
                         due_ms=due_ms)
        return TxResult({"case_no": cn, "state": "pending", "due_ms": due_ms}, [ev])

    def _certificate(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        case = self._get_case(state, p["case_no"])
        self._own(ctx, case["court"], "the case")
        if case["kind"] != "judgment":
            raise _err("bad_state", "only a judgment gets an effectiveness certificate "
                       "(a mediation agreement is effective on service)", "case_no")
        if case["certificate"] is not None:
            raise _err("conflict", "the effectiveness certificate was already issued",
                       "case_no")
        made = {"height": ctx.height, "tx_id": ctx.tx_id.hex(),
                "date": shanghai_date(ctx.time_ms).isoformat()}
        digest = sha256_hex(certificate_document(case, made))
        case["certificate"] = {"sha256": digest, **made}
        self._save_case(state, case)
        att = {"sha256": digest, "kind": "effectiveness_certificate",
               "case_no": case["case_no"], "title": "生效证明"}
        ev = self._event("case.certificateIssued", ctx.block, case["court"],
                         case_no=case["case_no"], sha256=digest)
        return TxResult({"case_no": case["case_no"], "certificate_sha256": digest}, [ev], [att])

    def _confirm(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        case = self._get_case(state, p["case_no"])
        self._own(ctx, case["court"], "the case")
        cref = p["creditor_ref"]
        if cref not in case["creditors"]:
            raise _err("forbidden", "creditor_ref is not a creditor of this case",
                       "creditor_ref")
        if cref in case["confirmations"]:
            raise _err("conflict", "this creditor has already answered", "creditor_ref")
        allowed = ("pending", "due") if p["performed"] else ("due",)
        if case["state"] not in allowed:
            raise _err("bad_state", f"case is {case['state']}; "
                       f"{'performed' if p['performed'] else 'not performed'} can be "
                       f"confirmed only when {' or '.join(allowed)}", "case_no")
        case["confirmations"][cref] = {"performed": p["performed"], **ctx.stamp()}
        events: list[dict[str, Any]] = []
        attestations: list[dict[str, Any]] = []
        value: dict[str, Any] = {"case_no": case["case_no"]}
        if p["performed"]:
            if all(case["confirmations"].get(c, {}).get("performed") for c in
                   case["creditors"]):
                self._cancel_case_deadline(state, case)
                self._set_case_state(state, case, "closed", ctx.block)
                events.append(self._event("case.closed", ctx.block, case["court"],
                                          case_no=case["case_no"], reason="performed"))
        elif case["application"] is None:
            made = {"height": ctx.height, "tx_id": ctx.tx_id.hex(),
                    "date": shanghai_date(ctx.time_ms).isoformat()}
            doc = application_document(case, cref, made)
            digest = sha256_hex(doc)
            case["application"] = {"sha256": digest, "creditor_ref": cref, **made}
            self._set_case_state(state, case, "awaiting_signature", ctx.block)
            attestations.append({"sha256": digest, "kind": "enforcement_application",
                                 "case_no": case["case_no"], "title": "申请执行书"})
            events.append(self._event("case.awaitingSignature", ctx.block, case["court"],
                                      case_no=case["case_no"], creditor_ref=cref,
                                      application_sha256=digest))
            value["application_sha256"] = digest
        value["state"] = case["state"]
        self._save_case(state, case)
        return TxResult(value, events, attestations)

    def _cancel_case_deadline(self, state: State, case: dict[str, Any]) -> None:
        if case["_dl"] is not None:
            state.delete(case["_dl"])
            case["_dl"] = None

    def _sign(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        case = self._get_case(state, p["case_no"])
        self._own(ctx, case["court"], "the case")
        self._do_sign(state, ctx, case, p["creditor_ref"], p["signature_sha256"])
        self._save_case(state, case)
        ev = self._event("case.signed", ctx.block, case["court"], case_no=case["case_no"])
        att = {"sha256": p["signature_sha256"], "kind": "enforcement_application",
               "case_no": case["case_no"], "title": "申请执行书(已签名)"}
        return TxResult({"case_no": case["case_no"], "state": case["state"]}, [ev], [att])

    def _do_sign(self, state: State, ctx: TxContext, case: dict[str, Any], cref: str,
                 signature: str) -> None:
        if case["state"] != "awaiting_signature":
            raise _err("bad_state", f"case is {case['state']}, not awaiting_signature",
                       "case_no")
        if cref != case["application"]["creditor_ref"]:
            raise _err("forbidden", "only the applying creditor signs the application",
                       "creditor_ref")
        case["signature"] = {"sha256": signature, "creditor_ref": cref, **ctx.stamp()}
        self._set_case_state(state, case, "signed", ctx.block)

    def _file(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        case = self._get_case(state, p["case_no"])
        if case["state"] != "signed":
            raise _err("bad_state", f"case is {case['state']}; enforcement is filed on a "
                       "signed application", "case_no")
        if "application_sha256" in p and p["application_sha256"] != \
                case["application"]["sha256"]:
            raise _err("conflict", "application_sha256 is not this case's application",
                       "application_sha256")
        return self._do_file(state, ctx, case, p["enforcement_case_no"])

    def _do_file(self, state: State, ctx: TxContext, case: dict[str, Any],
                 ecn: str) -> TxResult:
        if not self.is_attested_by(bytes.fromhex(case["document_sha256"]), case["court"]):
            raise _err("not_attested", "the original document is not attested on chain by "
                       f"court {_q(case['court'])}", "case_no")
        if case["kind"] == "judgment" and case["certificate"] is None:
            raise _err("bad_state", "a judgment needs its effectiveness certificate "
                       "(case.issueEffectivenessCertificate) before enforcement", "case_no")
        if state.get(K.enf(ecn)) is not None or state.get(K.case(ecn)) is not None:
            raise _err("conflict", f"case number {_q(ecn)} is already on chain",
                       "enforcement_case_no")
        app = case["application"]
        owed = [o for o in case["obligations"] if o["creditor_ref"] == app["creditor_ref"]]
        enf = {"case_no": ecn, "court": ctx.court, "origin_case_no": case["case_no"],
               "origin_court": case["court"], "filed": ctx.stamp(), "state": "active",
               "creditors": [app["creditor_ref"]],
               "debtors": sorted({o["debtor_ref"] for o in owed}),
               "amount_fen": sum(o["amount_fen"] for o in owed),
               "application_sha256": app["sha256"], "seq": 0, "settlement": None}
        self._trail(state, enf, "filing", {"origin_case_no": case["case_no"],
                                           "application_sha256": app["sha256"],
                                           "amount_fen": enf["amount_fen"]}, ctx.stamp())
        put_obj(state, K.enf(ecn), enf)
        case["enforcement_case_no"] = ecn
        self._set_case_state(state, case, "enforcement_filed", ctx.block)
        self._save_case(state, case)
        ev = self._event("case.enforcementFiled", ctx.block, ctx.court,
                         case_no=case["case_no"], enforcement_case_no=ecn,
                         origin_court=case["court"])
        return TxResult({"case_no": case["case_no"], "enforcement_case_no": ecn,
                         "state": case["state"]}, [ev])

    def _transfer(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        case = self._get_case(state, p["case_no"])
        self._own(ctx, case["court"], "the case")
        events: list[dict[str, Any]] = []
        attestations: list[dict[str, Any]] = []
        if case["state"] == "awaiting_signature":
            if "signature_sha256" not in p:
                raise _err("invalid_params", "the application is not signed yet: give "
                           "creditor_ref and signature_sha256", "signature_sha256")
            self._do_sign(state, ctx, case, p["creditor_ref"], p["signature_sha256"])
            attestations.append({"sha256": p["signature_sha256"], "kind": "enforcement_application",
                                 "case_no": case["case_no"], "title": "申请执行书(已签名)"})
            events.append(self._event("case.signed", ctx.block, case["court"],
                                      case_no=case["case_no"]))
        elif case["state"] != "signed":
            raise _err("bad_state", f"case is {case['state']}; one-key transfer needs the "
                       "creditor's confirmation of non-performance first", "case_no")
        res = self._do_file(state, ctx, case, p["enforcement_case_no"])
        res.events[:0] = events
        res.attestations[:0] = attestations
        return res

    def _fire_due(self, state: State, block: BlockContext,
                  entry: dict[str, Any]) -> list[dict[str, Any]]:
        case = get_obj(state, K.case(entry["ref"]))
        if case is None or case["state"] != "pending":
            return []
        case["_dl"] = None
        self._set_case_state(state, case, "due", block)
        case["notices"] += 1
        if self.config.reminder_days:
            case["_dl"] = self._schedule(state, block.time_ms + self.config.reminder_days
                                         * DAY_MS, "remind", case["case_no"])
        self._save_case(state, case)
        return [self._due_event("case.due", block, case, 1)]

    def _fire_remind(self, state: State, block: BlockContext,
                     entry: dict[str, Any]) -> list[dict[str, Any]]:
        case = get_obj(state, K.case(entry["ref"]))
        if case is None or case["state"] != "due":
            return []
        case["_dl"] = None
        case["notices"] += 1
        self._save_case(state, case)
        return [self._due_event("case.reminder", block, case, 2)]

    def _due_event(self, topic: str, block: BlockContext, case: dict[str, Any],
                   notice: int) -> dict[str, Any]:
        waiting = [c for c in case["creditors"] if c not in case["confirmations"]]
        return self._event(topic, block, case["court"], case_no=case["case_no"], notice=notice,
                           notify=waiting,
                           debtor_refs=sorted({o["debtor_ref"] for o in case["obligations"]}),
                           performance_deadline=case["performance_deadline"])

    # ============================================================ enforcement

    def _record(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        enf = self._get_enf(state, p["enforcement_case_no"])
        self._own(ctx, enf["court"], "the enforcement case")
        kind = p["type"]
        st = enf["state"]
        if st == "archived":
            raise _err("bad_state", "the enforcement case is archived", "enforcement_case_no")
        if kind == "archive" and st != "closed":
            raise _err("bad_state", "only a closed case is archived", "type")
        if kind in ("closure", "settlement") and st == "closed" and "report" not in p:
            raise _err("bad_state", "the enforcement case is closed", "type")
        if kind in ("deduction", "auction") and st == "settled":
            raise _err("bad_state", f"no {kind} while a settlement (执行和解) is open", "type")
        for name in ("debtor_ref",):
            if name in p and p[name] not in enf["debtors"]:
                raise _err("invalid_params", "is not a debtor of this enforcement case", name)
        if "creditor_ref" in p and p["creditor_ref"] not in enf["creditors"]:
            raise _err("invalid_params", "is not a creditor of this enforcement case",
                       "creditor_ref")
        details = {k: v for k, v in p.items() if k not in ("enforcement_case_no", "type")}
        events: list[dict[str, Any]] = []
        value: dict[str, Any] = {"enforcement_case_no": enf["case_no"], "type": kind}
        seq = enf["seq"] + 1
        if kind in ORDER_TYPES:
            value["order_id"] = self._new_order(state, ctx, enf, seq, p, details)
        elif kind == "credit_punishment":
            self._credit(state, ctx, enf, p)
        elif kind == "settlement":
            events += self._settlement(state, ctx, enf, p, seq)
        elif kind == "resume":
            if st != "settled":
                raise _err("bad_state", "resume applies to a case suspended by settlement",
                           "type")
            enf["settlement"]["status"] = "resumed_manually"
            self._cancel_settlement_deadline(state, enf)
            enf["state"] = "active"
            events.append(self._event("enforcement.resumed", ctx.block, enf["court"],
                                      enforcement_case_no=enf["case_no"], reason="manual"))
        elif kind == "closure":
            if st == "settled" and enf["settlement"]["status"] == "open":
                # Closed while its settlement runs: the settlement ends with
                # the case, and its deadline may not resume a closed case.
                self._cancel_settlement_deadline(state, enf)
                enf["settlement"]["status"] = "closed"
            enf["state"] = "closed"
            enf["closure"] = {"mode": p["mode"], **ctx.stamp()}
        elif kind == "archive":
            enf["state"] = "archived"
        got = self._trail(state, enf, kind, details, ctx.stamp())
        assert got == seq
        put_obj(state, K.enf(enf["case_no"]), enf)
        events.append(self._event("enforcement.recorded", ctx.block, enf["court"],
                                  enforcement_case_no=enf["case_no"], type=kind, seq=seq,
                                  **({"order_id": value["order_id"]} if "order_id" in value
                                     else {}),
                                  **({"agency": p["agency"]} if kind in ORDER_TYPES else {})))
        value["seq"] = seq
        value["state"] = enf["state"]
        return TxResult(value, events)

    def _new_order(self, state: State, ctx: TxContext, enf: dict[str, Any], seq: int,
                   p: dict[str, Any], details: dict[str, Any]) -> str:
        oid = f"{enf['case_no']}#{seq}"
        order: dict[str, Any] = {
            "order_id": oid, "enforcement_case_no": enf["case_no"], "court": enf["court"],
            "type": p["type"], "agency": p["agency"], "debtor_ref": p["debtor_ref"],
            "amount_fen": p.get("amount_fen"), "asset_class": p.get("asset_class"),
            "status": "open", "reports": [], "issued": ctx.stamp(), "_dl": []}
        if p["type"] in ("freeze", "seizure"):
            start = shanghai_date(ctx.time_ms)
            end = date.fromisoformat(p["term_end"])
            years = ASSET_TERM_YEARS[p["asset_class"]]
            limit = add_years(start, years)
            if end < start:
                raise _err("invalid_params", "term_end is before the order's date "
                           f"{start.isoformat()}", "term_end")
            if end > limit:
                raise _err("invalid_params", f"a {p['type']} of {p['asset_class']} lasts at "
                           f"most {years} year(s): term_end must be on or before "
                           f"{limit.isoformat()}", "term_end")
            expires = day_after_start_ms(end)
            order.update(term_start=start.isoformat(), term_end=end.isoformat(),
                         expires_ms=expires)
            if "renews" in p:
                self._renew(state, order, p["renews"])
            passed = [lead for lead in self.config.warn_lead_days
                      if expires - lead * DAY_MS <= ctx.time_ms]
            if passed and expires > ctx.time_ms + 1:
                # recorded with less than a lead time left: warn in the next
                # block, once, with the shortest lead already passed
                order["_dl"].append(self._schedule(state, ctx.time_ms + 1, "warn", oid,
                                                   lead_days=min(passed)))
            for lead in sorted(self.config.warn_lead_days, reverse=True):
                at = expires - lead * DAY_MS
                if at > ctx.time_ms:
                    order["_dl"].append(self._schedule(state, at, "warn", oid,
                                                       lead_days=lead))
            order["_dl"].append(self._schedule(state, expires, "expire", oid))
            state.put(K.term(expires, oid), _NONE)
        elif "freeze_order" in p:
            frozen = get_obj(state, K.order(p["freeze_order"]))
            if frozen is None or frozen["enforcement_case_no"] != enf["case_no"] or \
                    frozen["type"] != "freeze" or frozen["agency"] != p["agency"]:
                raise _err("invalid_params", "is not a freeze order of this case at this "
                           "agency", "freeze_order")
        put_obj(state, K.order(oid), order)
        state.put(K.order_by_agency(p["agency"], oid), _NONE)
        details["order_id"] = oid
        return oid

    def _renew(self, state: State, order: dict[str, Any], old_id: str) -> None:
        old = get_obj(state, K.order(old_id))
        same = ("enforcement_case_no", "type", "agency", "asset_class", "debtor_ref")
        if old is None or any(old[k] != order[k] for k in same):
            raise _err("invalid_params", "renews must name an order of the same case, type, "
                       "agency, asset class and debtor", "renews")
        if old["status"] not in ("open", "done", "partial"):
            raise _err("bad_state", f"order {_q(old_id)} is {old['status']}; renewal must be "
                       "filed before the term expires", "renews")
        self._end_term(state, old, "renewed")
        old["renewed_by"] = order["order_id"]
        put_obj(state, K.order(old_id), old)
        order["renews"] = old_id

    @staticmethod
    def _end_term(state: State, order: dict[str, Any], status: str) -> None:
        for key in order["_dl"]:
            state.delete(key)
        order["_dl"] = []
        if "expires_ms" in order:
            state.delete(K.term(order["expires_ms"], order["order_id"]))
        order["status"] = status

    def _credit(self, state: State, ctx: TxContext, enf: dict[str, Any],
                p: dict[str, Any]) -> None:
        ref = p["party_ref"]
        if ref not in enf["debtors"]:
            raise _err("invalid_params", "credit punishment applies to a debtor of this case",
                       "party_ref")
        key = K.dishonest(ref, enf["case_no"])
        if p["measure"] != "dishonest_list":
            return   # consumption restriction: recorded in the trail only
        if p["action"] == "add":
            if get_obj(state, key) is not None:
                raise _err("conflict", "the party is already listed for this case",
                           "party_ref")
            until = p.get("until")
            put_obj(state, key, {
                "party_ref": ref, "enforcement_case_no": enf["case_no"], "court": enf["court"],
                "listed_date": shanghai_date(ctx.time_ms).isoformat(),
                "listed_ms": ctx.time_ms, "until": until,
                "until_ms": None if until is None else day_after_start_ms(
                    date.fromisoformat(until))})
        else:
            if get_obj(state, key) is None:
                raise _err("not_found", "the party is not listed for this case", "party_ref")
            state.delete(key)

    def _settlement(self, state: State, ctx: TxContext, enf: dict[str, Any],
                    p: dict[str, Any], seq: int) -> list[dict[str, Any]]:
        if "deadline" in p:
            if enf["state"] != "active":
                raise _err("bad_state", f"enforcement is {enf['state']}; a settlement is "
                           "reached in active enforcement", "type")
            at = day_after_start_ms(date.fromisoformat(p["deadline"]))
            if at <= ctx.time_ms:
                raise _err("invalid_params", "the settlement deadline has already passed",
                           "deadline")
            enf["settlement"] = {"seq": seq, "deadline": p["deadline"], "due_ms": at,
                                 "amount_fen": p.get("amount_fen"), "status": "open",
                                 "_dl": self._schedule(state, at, "settle", enf["case_no"],
                                                       seq=seq)}
            enf["state"] = "settled"
            return []
        sett = enf["settlement"]
        if enf["state"] != "settled" or sett is None or sett["status"] != "open":
            raise _err("bad_state", "there is no open settlement to report on", "report")
        self._cancel_settlement_deadline(state, enf)
        if p["report"] == "performed":
            sett["status"] = "performed"
            return [self._event("enforcement.settlementPerformed", ctx.block, enf["court"],
                                enforcement_case_no=enf["case_no"])]
        sett["status"] = "breached"
        enf["state"] = "active"
        return [self._event("enforcement.resumed", ctx.block, enf["court"],
                            enforcement_case_no=enf["case_no"], reason="creditor_report",
                            settlement_seq=sett["seq"])]

    @staticmethod
    def _cancel_settlement_deadline(state: State, enf: dict[str, Any]) -> None:
        sett = enf["settlement"]
        if sett and sett.get("_dl") is not None:
            state.delete(sett["_dl"])
            sett["_dl"] = None

    def _fire_settle(self, state: State, block: BlockContext,
                     entry: dict[str, Any]) -> list[dict[str, Any]]:
        enf = get_obj(state, K.enf(entry["ref"]))
        sett = enf and enf["settlement"]
        if not sett or sett["seq"] != entry["seq"] or sett["status"] != "open":
            return []
        sett["_dl"] = None
        sett["status"] = "lapsed"
        enf["state"] = "active"
        seq = self._trail(state, enf, "resume",
                          {"automatic": True, "reason": "settlement_deadline_passed",
                           "settlement_seq": sett["seq"]},
                          self._system_stamp(enf["court"], block))
        put_obj(state, K.enf(enf["case_no"]), enf)
        return [self._event("enforcement.resumed", block, enf["court"],
                            enforcement_case_no=enf["case_no"],
                            reason="settlement_deadline_passed", settlement_seq=sett["seq"],
                            seq=seq)]

    def _fire_warn(self, state: State, block: BlockContext,
                   entry: dict[str, Any]) -> list[dict[str, Any]]:
        order = get_obj(state, K.order(entry["ref"]))
        if order is None or order["status"] not in ("open", "done", "partial"):
            return []
        key = K.deadline(entry["at_ms"], "warn", entry["ref"])
        order["_dl"] = [k for k in order["_dl"] if k != key]
        put_obj(state, K.order(order["order_id"]), order)
        if order["expires_ms"] <= block.time_ms:
            return []   # the block also passes the expiry: only termExpired is sent
        return [self._event("enforcement.termExpiring", block, order["court"],
                            enforcement_case_no=order["enforcement_case_no"],
                            order_id=order["order_id"], type=order["type"],
                            agency=order["agency"], asset_class=order["asset_class"],
                            term_end=order["term_end"], lead_days=entry["lead_days"],
                            expires_ms=order["expires_ms"])]

    def _fire_expire(self, state: State, block: BlockContext,
                     entry: dict[str, Any]) -> list[dict[str, Any]]:
        order = get_obj(state, K.order(entry["ref"]))
        if order is None or order["status"] not in ("open", "done", "partial"):
            return []
        self._end_term(state, order, "expired")
        put_obj(state, K.order(order["order_id"]), order)
        enf = get_obj(state, K.enf(order["enforcement_case_no"]))
        seq = self._trail(state, enf, "term_expired", {"order_id": order["order_id"]},
                          self._system_stamp(enf["court"], block))
        put_obj(state, K.enf(enf["case_no"]), enf)
        return [self._event("enforcement.termExpired", block, order["court"],
                            enforcement_case_no=order["enforcement_case_no"],
                            order_id=order["order_id"], type=order["type"],
                            agency=order["agency"], term_end=order["term_end"], seq=seq)]

    # ============================================================ agencies

    def _agency_report(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        order = get_obj(state, K.order(p["order_id"]))
        if order is None or order["agency"] != p["agency"]:
            # the same answer whether the order is absent or someone else's
            raise _err("not_found", f"agency {_q(p['agency'])} has no order {_q(p['order_id'])}",
                       "order_id")
        if order["status"] not in ("open", "partial"):
            raise _err("bad_state", f"order is {order['status']}", "order_id")
        if order["type"] == "deduction" and p["result"] != "refused" and "amount_fen" not in p:
            raise _err("invalid_params", "a deduction report gives the amount deducted",
                       "amount_fen")
        report = {k: v for k, v in p.items() if k not in ("order_id",)}
        order["reports"].append({**report, **ctx.stamp()})
        if p["result"] == "refused":
            self._end_term(state, order, "refused")
        else:
            order["status"] = p["result"]
        put_obj(state, K.order(order["order_id"]), order)
        enf = get_obj(state, K.enf(order["enforcement_case_no"]))
        seq = self._trail(state, enf, "agency_report", {"order_id": order["order_id"],
                                                        **report}, ctx.stamp())
        put_obj(state, K.enf(enf["case_no"]), enf)
        ev = self._event("agency.reported", ctx.block, enf["court"],
                         enforcement_case_no=enf["case_no"], order_id=order["order_id"],
                         agency=p["agency"], result=p["result"], seq=seq)
        return TxResult({"order_id": order["order_id"], "status": order["status"],
                         "seq": seq}, [ev])

    def _audit_read(self, state: State, ctx: TxContext, p: dict[str, Any]) -> TxResult:
        entry = {**p, **ctx.stamp()}
        put_obj(state, K.audit(ctx.height, ctx.tx_id), entry)
        state.put(K.audit_by(p["reader"], ctx.height, ctx.tx_id), _NONE)
        return TxResult({"recorded": True, "height": ctx.height})


_NONE = codec.encode(None)  # the value of pure index keys

# What a payload can provoke in an operation's own checks and handlers:
# deterministic, so refused alike everywhere (see execute_block).  Storage
# failures (storage.StoreError), stored records that do not decode
# (codec.DecodeError) and MemoryError are local to a node and still stop it.
_INPUT_BUGS = (TypeError, KeyError, AttributeError, IndexError, ValueError, ArithmeticError,
               RecursionError)


def _decode(raw: bytes) -> Any:
    return codec.decode(raw, size_max=1 << 20)


def run_blocks(engine: Engine, state: State,
               blocks: Sequence[tuple[BlockContext, Sequence[Any]]]) -> list[BlockOutcome]:
    """Execute blocks in order, committing each into ``state`` (tests, tools)."""
    out = []
    for block, txs in blocks:
        outcome = engine.execute_block(state, block, txs)
        for key, value in outcome.ops:
            if value is None:
                state.delete(key)
            else:
                state.put(key, value)
        out.append(outcome)
    return out

