"""Listings a page at a time: case.list, enforcement.expiring, enforcement.trail
and agency.orders.

Each page returns at most ``limit`` items and reads at most
``SCAN_PER_ITEM * limit`` index entries, so no call walks a whole index
however narrow its filter; following ``next`` until it is null still lists
every item exactly once, in index order.
"""

from __future__ import annotations

import hashlib

import pytest

from pbftd.workflow_methods import orders_query
from pbftd.workflows import MemoryState, WorkflowError, reads
from pbftd.workflows import keys as K
from pbftd.workflows.reads import SCAN_PER_ITEM

from .harness import GENESIS, Chain, TxMaker, at, ref
from .test_rules import BANK, CN, COURT, ECN, OTHER_BANK, _ok, _record, filed

ORDERS = 23


def _walk(listing, limit: int, **kw):
    """Every page of a listing: (items, next) each."""
    pages, after = [], None
    while True:
        page = listing(limit=limit, after=after, **kw)
        items = page.get("orders", page.get("cases"))
        pages.append((items, page["next"]))
        after = page["next"]
        if after is None:
            return pages
        assert len(pages) < 1000, "the listing does not end"


@pytest.fixture(scope="module")
def chain() -> tuple[Chain, list[str], list[str]]:
    """One enforcement case with ORDERS freeze orders to BANK (every sixth
    answered done) and one to OTHER_BANK, terms a day apart."""
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    out = chain.block(at(2020, 10, 12), [
        _record(mk, "freeze", agency=BANK, asset_class="bank_deposit",
                term_end=f"2021-09-{1 + i:02d}", debtor_ref=ref("d" + CN)) for i in range(ORDERS)
    ] + [_record(mk, "freeze", agency=OTHER_BANK, asset_class="bank_deposit",
                 term_end="2021-09-30", debtor_ref=ref("d" + CN))])
    ids = [_ok(out, i)["order_id"] for i in range(ORDERS)]
    done = ids[::6]
    chain.block(at(2020, 10, 13), [
        mk.op("cc-nanguan", "agency.report", {"order_id": oid, "agency": BANK, "result": "done"},
              client="agency:icbc-jl") for oid in done])
    return chain, ids, done


@pytest.mark.parametrize("limit", [1, 2, 5, ORDERS, 500])
def test_agency_orders_pages_list_every_order_once(chain, limit) -> None:
    c, ids, _done = chain
    pages = _walk(lambda **kw: reads.agency_orders(c.state, BANK, **kw), limit)
    listed = [o["order_id"] for items, _ in pages for o in items]
    assert sorted(listed) == sorted(ids) and len(listed) == len(set(listed))
    assert all(len(items) <= limit for items, _ in pages)
    assert len(pages) == -(-ORDERS // limit)


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_narrow_filter_gives_short_pages_not_a_long_scan(chain, limit) -> None:
    """Only every sixth order is done: each page reads at most SCAN_PER_ITEM
    * limit index entries (and the one after), and together they list them all."""
    c, _ids, done = chain
    state, per_page = _Counting(c.state), []

    def page(**kw):
        state.reads = 0
        answer = reads.agency_orders(state, BANK, **kw)
        per_page.append(state.reads)
        return answer

    pages = _walk(page, limit, status="done")
    listed = [o["order_id"] for items, _ in pages for o in items]
    assert sorted(listed) == sorted(done)
    assert max(per_page) <= SCAN_PER_ITEM * limit + 1


def test_expiring_pages_soonest_first_and_the_court_filter_is_bounded_too(chain) -> None:
    c, _ids, _done = chain
    now = at(2021, 1, 1)
    whole = reads.enforcement_expiring(c.state, now, 365, limit=500)
    assert whole["next"] is None
    terms = [o["term_end"] for o in whole["orders"]]
    assert terms == sorted(terms) and len(terms) == ORDERS + 1
    paged = [o for items, _ in _walk(lambda **kw: reads.enforcement_expiring(
        c.state, now, 365, **kw), 4) for o in items]
    assert paged == whole["orders"]
    # within 250 days of 1 Jan: the first few terms only; the range ends the listing
    soon = reads.enforcement_expiring(c.state, now, 250, limit=2)
    first = [o for items, _ in _walk(lambda **kw: reads.enforcement_expiring(
        c.state, now, 250, **kw), 2) for o in items]
    assert 0 < len(first) < ORDERS and first == whole["orders"][:len(first)]
    assert soon["orders"] == first[:2]
    # a reader who supervises none of them: empty pages, each reading a bounded stretch
    pages = _walk(lambda **kw: reads.enforcement_expiring(
        c.state, now, 365, reader_court="x", is_supervisor=lambda _r, _c: False, **kw), 2)
    assert all(items == [] for items, _ in pages)
    assert len(pages) == -(-(ORDERS + 1) // (SCAN_PER_ITEM * 2))


def test_the_trail_pages_with_the_orders_of_each_pages_entries(chain) -> None:
    c, _ids, _done = chain
    whole = reads.enforcement_trail(c.state, COURT, ECN, GENESIS.is_supervisor, limit=500)
    assert whole["next"] is None and len(whole["trail"]) > ORDERS
    pages, after = [], None
    while True:
        page = reads.enforcement_trail(c.state, COURT, ECN, GENESIS.is_supervisor, limit=5,
                                       after=after)
        assert len(page["trail"]) <= 5 and page["enforcement"] == whole["enforcement"]
        made = [e["details"]["order_id"] for e in page["trail"] if e["type"] == "freeze"]
        assert [o["order_id"] for o in page["orders"]] == made
        pages.append(page)
        after = page["next"]
        if after is None:
            break
    assert [e for p in pages for e in p["trail"]] == whole["trail"]
    assert [o for p in pages for o in p["orders"]] == whole["orders"]
    assert len(pages) == -(-len(whole["trail"]) // 5)


def test_a_page_never_reads_more_than_its_bound() -> None:
    """Counted at the state: whatever the filter, one call reads at most
    SCAN_PER_ITEM * limit entries, plus the one that tells it there is more."""
    memory = MemoryState()
    for i in range(500):
        memory.put(b"wf/case/" + f"c{i:03d}".encode(), b"x")
    state = _Counting(memory)
    for limit in (1, 7, 50):
        state.reads = 0
        pick = lambda _k, _raw: None  # noqa: E731  (matches nothing)
        items, nxt = reads._page(state.iter_prefix(b"wf/case/"), pick, limit)
        assert items == [] and nxt is not None
        assert state.reads <= SCAN_PER_ITEM * limit + 1


def test_cursors_of_another_listing_or_not_hex_are_refused(chain) -> None:
    c, _ids, _done = chain
    foreign = (b"wf/case/" + CN.encode()).hex()
    for listing in (lambda a: reads.agency_orders(c.state, BANK, after=a),
                    lambda a: reads.enforcement_expiring(c.state, at(2021, 1, 1), 365, after=a)):
        for bad in (foreign, "zz", "0"):
            with pytest.raises(WorkflowError) as exc:
                listing(bad)
            assert exc.value.field == "after" and exc.value.code == "invalid_params"
    for bad_limit in (0, 501, "5", True):
        with pytest.raises(WorkflowError) as exc:
            reads.agency_orders(c.state, BANK, limit=bad_limit)
        assert exc.value.field == "limit"


class _Counting:
    """A state that counts the index entries its iterators hand out."""

    def __init__(self, base: MemoryState) -> None:
        self.base, self.reads = base, 0

    def get(self, key: bytes) -> bytes | None:
        return self.base.get(key)

    def iter_prefix(self, prefix, start=None):
        for item in self.base.iter_prefix(prefix, start):
            self.reads += 1
            yield item


def test_an_agency_orders_page_with_a_cursor_can_be_recorded_on_chain(chain) -> None:
    """The audit.read of a later page must pass the chain's own checks. The
    raw cursor need not: it is the hex of a key, over the chain's 200
    characters for a long agency id and case number."""
    c, _ids, _done = chain
    first = reads.agency_orders(c.state, BANK, limit=2)
    params = {"limit": 2, "after": first["next"]}
    second = {"agency": BANK, **reads.agency_orders(c.state, BANK, **params), "as_of_height": 3}
    query = orders_query(params)
    assert query == {"limit": 2, "after_sha256": hashlib.sha256(
        first["next"].encode()).hexdigest()}
    assert reads.audit_read_payload(f"agency:{BANK}", "agency.orders", query, second, 3)
    long_cursor = K.order_by_agency("a" * 64, "(2020)" + "吉" * 40 + "执1号#1").hex()
    long = {"status": "open", "after": long_cursor}
    with pytest.raises(WorkflowError):   # what recording the cursor itself would do
        reads.audit_read_payload(f"agency:{BANK}", "agency.orders", long, second, 3)
    assert reads.audit_read_payload(f"agency:{BANK}", "agency.orders", orders_query(long),
                                    second, 3)
