"""The Jilin synthetic month (issue 5): Jilin's figures to 2020-10-30, replayed
through two independent engine instances fed the same blocks.

October 2020, one block an hour (with a deterministic jitter of up to 15
minutes), 744 blocks.  1,474 mediation cases are registered on 1-2 October
at two basic courts, each right after (or in the same block as) the
attestation of its agreement.  Their performance deadlines are chosen so:

    P   9   deadlines 3-10 Oct, creditor confirms "performed" a day after due
    N1  88  deadlines 3-20 Oct, "not performed" a day after due; of these 30
            sign and are filed (enforcement.file), 8 use the one-key transfer,
            10 sign but are not filed this month
    N2  20  deadlines 3-15 Oct, no answer for 3 days (reminder sent), then
            "not performed" 4 days after due
    R   33  deadlines 3-24 Oct, never answer: reminder sent in the month
    U   816 deadlines 28-30 Oct, never answer: due 29-31 Oct, their reminder
            would be due 1-3 Nov, after the month
    L   508 deadlines 31 Oct (100, due exactly at the month's end, 1 Nov 00:00)
            and November-December: not due in the month

So 966 reach their deadline (P+N1+N2+R+U), notices = 966 first notices
(case.due) + 53 reminders (N2+R, the rule: a second notice 3 days after the
first when the creditor has not answered) = 1,019, 9 performed, 108 not
performed (N1+N2), 38 filed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from datetime import date, timedelta

from pbftd.core.chain import Tx
from pbftd.workflows import reads
from pbftd.workflows.validate import date_start_ms

from .harness import DAY_MS, HOUR_MS, Chain, TxMaker, at, doc, ref
from .storechain import store_chains

MONTH_START = at(2020, 10, 1)
MONTH_END = at(2020, 11, 1)
COURTS = (("cc-nanguan", "0102"), ("cc-kuancheng", "0103"))


def _block_times() -> list[int]:
    return [MONTH_START + k * HOUR_MS + (k * 7919) % 900_000 for k in range(744)]


def _groups() -> list[tuple[str, int]]:
    sizes = (("P", 9), ("N1", 88), ("N2", 20), ("R", 33), ("U", 816), ("L", 508))
    out = []
    for name, n in sizes:
        out += [(name, j) for j in range(n)]
    assert len(out) == 1474
    return out


def _deadline(group: str, j: int) -> date:
    oct_ = date(2020, 10, 1)
    day = {"P": 3 + j % 8, "N1": 3 + j % 18, "N2": 3 + j % 13, "R": 3 + j % 22,
           "U": 28 + j % 3}.get(group)
    if day is not None:
        return oct_.replace(day=day)
    return date(2020, 10, 31) if j < 100 else date(2020, 11, 1) + timedelta(days=j % 60)


def build_month() -> list[tuple[int, list[Tx]]]:
    times = _block_times()
    blocks: list[list[Tx]] = [[] for _ in times]
    mk = TxMaker()

    def put(t: int, tx: Tx) -> None:
        slot = bisect_left(times, t)
        assert slot < len(times), "action after the month"
        blocks[slot].append(tx)

    for i, (group, j) in enumerate(_groups()):
        court, code = COURTS[i % 2]
        cn = f"(2020)吉{code}民初{i + 1}号"
        creditor, debtor = ref(f"creditor-{i}"), ref(f"debtor-{i}")
        deadline = _deadline(group, j)
        reg_t = MONTH_START + HOUR_MS // 2 + (i % 40) * HOUR_MS
        # even cases attested an hour before, odd ones in the registering block
        put(reg_t - (HOUR_MS if i % 2 == 0 and i % 40 else 0),
            mk.attest(court, doc(cn), cn))
        put(reg_t, mk.op(court, "case.register", {
            "case_no": cn, "kind": "mediation", "document_sha256": doc(cn),
            "effective_date": "2020-09-25", "performance_deadline": deadline.isoformat(),
            "obligations": [{"debtor_ref": debtor, "creditor_ref": creditor,
                             "amount_fen": 100_000 + 37 * i, "description": "给付欠款"}],
            "parties": [{"party_ref": creditor, "role": "plaintiff"},
                        {"party_ref": debtor, "role": "defendant"}]}))
        due = date_start_ms(deadline) + DAY_MS

        def confirm(t: int, performed: bool, cn: str = cn, court: str = court,
                    creditor: str = creditor) -> None:
            put(t, mk.op(court, "case.confirmPerformance",
                         {"case_no": cn, "creditor_ref": creditor, "performed": performed},
                         client="sms-12368"))

        if group == "P":
            confirm(due + DAY_MS + 10 * HOUR_MS, True)
        elif group == "N2":
            confirm(due + 4 * DAY_MS + 11 * HOUR_MS, False)
        elif group == "N1":
            answered = due + DAY_MS + 9 * HOUR_MS
            confirm(answered, False)
            sig = doc(f"signature-{cn}")
            ecn = f"(2020)吉{code}执{i + 1}号"
            if j < 30 or 38 <= j < 48:
                put(answered + DAY_MS, mk.op(court, "case.signApplication", {
                    "case_no": cn, "creditor_ref": creditor, "signature_sha256": sig},
                    client="e-litigation"))
            if j < 30:
                put(answered + 3 * DAY_MS, mk.op(court, "enforcement.file", {
                    "case_no": cn, "enforcement_case_no": ecn}, client="enforcement"))
            elif j < 38:
                put(answered + DAY_MS, mk.op(court, "case.transferToEnforcement", {
                    "case_no": cn, "enforcement_case_no": ecn, "creditor_ref": creditor,
                    "signature_sha256": sig}, client="e-litigation"))
    return list(zip(times, blocks, strict=True))


def _count(state, **filters) -> int:
    n, after = 0, None
    while True:
        page = reads.case_list(state, limit=500, after=after, **filters)
        n += len(page["cases"])
        after = page["next"]
        if after is None:
            return n


def test_jilin_month_two_instances() -> None:
    month = build_month()
    a, b = Chain(), Chain()
    for t, txs in month:
        out_a = a.block(t, txs)
        out_b = b.block(t, txs)
        assert out_a.digest == out_b.digest, f"digests differ at height {a.height}"
        refused = [r for _tx, r in out_a.results if not r["ok"]]
        assert not refused, refused
    assert a.state.items() == b.state.items()
    assert a.height == 744 and a.time_ms < MONTH_END

    topics = Counter(e["topic"] for e in a.events())
    assert topics["case.registered"] == 1474
    assert topics["case.due"] == 966
    assert topics["case.reminder"] == 53
    notices = sum(len(e["notify"]) for e in a.events()
                  if e["topic"] in ("case.due", "case.reminder"))
    assert notices == 1019
    assert topics["case.closed"] == 9
    assert topics["case.awaitingSignature"] == 108
    assert topics["case.enforcementFiled"] == 38
    assert sum(1 for o in a.outcomes for _t, r in o.results if r["ok"]) == \
        1474 + 9 + 108 + 40 + 30 + 8

    # the same figures from the state, through the read API
    s = a.state
    assert _count(s) == 1474
    assert _count(s, due_from="2020-10-01", due_to="2020-10-31") == 966
    assert _count(s, state_is="closed") == 9
    assert _count(s, state_is="enforcement_filed") == 38
    assert _count(s, state_is="signed") == 10
    assert _count(s, state_is="awaiting_signature") == 108 - 38 - 10
    assert _count(s, state_is="due") == 966 - 9 - 108
    assert _count(s, state_is="pending") == 508
    assert _count(s, court="cc-nanguan") == 737
    assert _count(s, court="cc-kuancheng", state_is="closed") == 4

    # links both ways
    filed = reads.case_list(s, state_is="enforcement_filed", limit=1)["cases"][0]
    enf = reads.enforcement_get(s, filed["enforcement_case_no"])
    assert enf["origin_case_no"] == filed["case_no"]
    assert enf["application_sha256"] == filed["application"]["sha256"]

    # the month's last instant passes and the 100 cases with a 31 Oct deadline
    # fall due in the first block of November, on both instances
    nov_a = a.block(MONTH_END, [])
    nov_b = b.block(MONTH_END, [])
    assert nov_a.digest == nov_b.digest
    assert [e["topic"] for e in nov_a.events].count("case.due") == 100
    assert all(e["performance_deadline"] == "2020-10-31" for e in nov_a.events
               if e["topic"] == "case.due")


def test_jilin_month_on_node_stores_every_node_equal_state_roots(tmp_path) -> None:
    """The month through the daemon's execution path (ChainStore.append with
    the WorkflowApp on RocksDB), on four nodes: equal state roots at every
    height, and the same counts from the events stored with the blocks."""
    month = build_month()
    with store_chains(tmp_path, 4, at(2020, 9, 30)) as nodes:
        for t, txs in month:
            roots = {node.block(t, txs).header.state_root for node in nodes}
            assert len(roots) == 1, f"state roots differ at height {nodes[0].chain.tip().height}"
        first = nodes[0]
        assert all(node.app_state() == first.app_state() for node in nodes[1:])
        topics = Counter(e["topic"] for h in range(1, 745) for e in first.events(h)["events"])
    assert topics["case.registered"] == 1474
    assert topics["case.due"] == 966
    assert topics["case.reminder"] == 53
    assert topics["case.closed"] == 9
    assert topics["case.awaitingSignature"] == 108
    assert topics["case.enforcementFiled"] == 38
