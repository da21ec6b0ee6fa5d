"""evidence.attestBatch splits its valid items into submissions, and every
submission must fit a batch: the replica refuses a SUBMIT larger than
[consensus] batch_bytes_max (Replica._fits_a_batch), and the runtime then
answers every item in it -32010 "not accepted", although nothing was wrong
with any of them.

Sizes are bytes, not characters: a request_id of 128 Chinese characters
(the schema's maxLength, and what a court system may well send, e.g. its
own case reference) is 384 bytes on the wire.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbftd import evidence
from pbftd.core.crypto import Signer
from pbftd.core.messages import Request, Submit
from pbftd.evidence_batch import _chunks

SIGNER = Signer.from_seed(bytes(range(32)))
# [consensus] batch limits of a node (fixed here, not read from config).
REQUESTS_MAX = 2000
BYTES_MAX = 2_097_152


def _submit_bytes(chunk: list[tuple[int, Request]]) -> int:
    """The signed size of the SUBMIT this chunk becomes (what the replica checks)."""
    return Submit.create(SIGNER, "court-chain", "jl-cc-nanguan-basic", 1,
                         tuple(req for _, req in chunk)).size_bytes


def test_full_size_chinese_items_are_split_into_submissions_that_fit_a_batch() -> None:
    case_no = ("（二〇二六）吉零一零二民初字第一千二百三十四号" + "案" * 64)[:64]
    title = "民事判决书" * 40
    assert len(case_no) <= evidence.CASE_NO_CHARS_MAX and len(title) == evidence.TITLE_CHARS_MAX
    items = []
    for i in range(REQUESTS_MAX):
        payload = evidence.attest_payload(f"{i:064x}", "judgment", case_no, title)
        rid = f"{i:08d}" + "吉" * 120           # 128 characters, 368 bytes
        items.append((i, Request("court-system", rid, payload)))
    chunks = _chunks(items, REQUESTS_MAX, BYTES_MAX)
    assert [i for chunk in chunks for i, _ in chunk] == list(range(REQUESTS_MAX))
    sizes = [_submit_bytes(chunk) for chunk in chunks]
    assert max(sizes) <= BYTES_MAX, sizes


# Any text, and long runs of characters of 3 and 4 UTF-8 bytes (CJK, emoji).
_rids = st.text(min_size=1, max_size=128) | st.builds(
    lambda char, n: char * n,
    st.characters(min_codepoint=0x800, blacklist_categories=("Cs",)), st.integers(96, 128))
_payloads = st.integers(1, 600).map(lambda n: b"\xa5" * n)   # only their size matters


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.data_too_large])
@given(st.lists(st.tuples(_rids, _payloads), min_size=60, max_size=150),
       st.text(min_size=1, max_size=32), st.integers(16 * 1024, 32 * 1024))
def test_every_chunk_fits_whatever_the_text(rids_payloads: list[tuple[str, bytes]], client: str,
                                            bytes_max: int) -> None:
    items = [(i, Request(client, rid, payload)) for i, (rid, payload) in enumerate(rids_payloads)]
    chunks = _chunks(items, REQUESTS_MAX, bytes_max)
    assert [i for chunk in chunks for i, _ in chunk] == list(range(len(items)))
    for chunk in chunks:
        assert _submit_bytes(chunk) <= bytes_max


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.data_too_large])
@given(st.lists(st.tuples(st.text(min_size=1, max_size=128), _rids, _payloads),
                min_size=1, max_size=40))
def test_request_size_bytes_bounds_what_each_request_adds_to_a_submit(
        items: list[tuple[str, str, bytes]]) -> None:
    """The estimate both splitters use (attestBatch's _chunks, the runtime
    merging submissions) may only err high, or a SUBMIT they judged to fit
    would be refused.  The runtime keeps 512 bytes for the envelope."""
    requests = tuple(Request(client, rid, payload) for client, rid, payload in items)
    signed = Submit.create(SIGNER, "court-chain", "jl-cc-nanguan-basic", 1, requests).size_bytes
    assert signed <= 512 + sum(r.size_bytes() for r in requests)
