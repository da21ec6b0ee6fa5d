"""A small real chain for the proof tests, built in-process.

Four validator courts with deterministic keys and a genesis naming them; a
ChainStore on a real NodeStore in a temporary directory with the evidence
index; blocks made from Submit messages carrying attestation payloads, each
committed with COMMITs from three validators (quorum of four) exactly as the
replica stores them (``ChainStore.append``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from config import Genesis
from pbftd import evidence
from pbftd.chainstore import ChainStore
from pbftd.core.chain import ChainTip
from pbftd.core.crypto import Signer, sha256
from pbftd.core.messages import Batch, Commit, Request, Submit
from storage import NodeStore

CHAIN_ID = "court-proof-test"
GENESIS_TIME_MS = 1_767_225_600_000          # 2026-01-01 00:00 UTC
COURTS = [
    ("spc", "最高人民法院", "supreme", None),
    ("jl-high", "吉林省高级人民法院", "high", "spc"),
    ("jl-cc-intermediate", "长春市中级人民法院", "intermediate", "jl-high"),
    ("jl-cc-nanguan-basic", "长春市南关区人民法院", "basic", "jl-cc-intermediate"),
]
IDS = [c[0] for c in COURTS]


def signer_for(court_id: str) -> Signer:
    return Signer.from_seed(sha256(f"proof-test/{court_id}".encode()))


def make_genesis(chain_id: str = CHAIN_ID) -> Genesis:
    return Genesis.from_dict({
        "chain_id": chain_id, "genesis_time_ms": GENESIS_TIME_MS,
        "courts": [{"id": cid, "name": name, "tier": tier, "parent": parent,
                    "role": "validator", "public_key": signer_for(cid).public_key.hex(),
                    "p2p_address": f"127.0.0.1:{7100 + i}",
                    "rpc_address": f"127.0.0.1:{8100 + i}"}
                   for i, (cid, name, tier, parent) in enumerate(COURTS)],
    })


def doc_sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


@dataclass
class SampleChain:
    genesis: Genesis
    store: NodeStore
    chain: ChainStore
    signers: dict[str, Signer]
    sids: dict[str, int] = field(default_factory=dict)
    # every attestation written: tx_id hex -> (sha256 hex, kind, case_no, court, height)
    attested: dict[str, tuple[str, str, str, str, int]] = field(default_factory=dict)

    def submit(self, origin: str, items: list[tuple[str, str, str]]) -> Submit:
        """A SUBMIT of attestations (sha256, kind, case_no) from ``origin``."""
        self.sids[origin] = self.sids.get(origin, 0) + 1
        requests = tuple(
            Request(f"clerk-{origin}", f"rid-{origin}-{self.sids[origin]}-{i}",
                    evidence.attest_payload(sha, kind, case_no, None))
            for i, (sha, kind, case_no) in enumerate(items))
        return Submit.create(self.signers[origin], CHAIN_ID, origin, self.sids[origin],
                             requests)

    def commit_block(self, subs: list[Submit], view: int = 0, time_ms: int | None = None,
                     voters: list[str] | None = None) -> int:
        """Order ``subs`` as the next batch, commit it with ``voters``' COMMITs, store it."""
        tip = self.chain.tip()
        seq = tip.height + 1
        proposer = IDS[view % len(IDS)]
        batch = Batch(seq, view, proposer, time_ms or tip.time_ms + 1000, tuple(subs))
        digest = batch.digest(CHAIN_ID)
        commits = tuple(Commit.create(self.signers[v], CHAIN_ID, v, view, seq, digest)
                        for v in (voters or IDS[:3]))
        block = self.chain.append(batch, commits)
        for tx in block.fresh:
            body = evidence.parse_payload(tx.payload)
            assert body is not None
            self.attested[tx.tx_id.hex()] = (body["sha256"].hex(), body["kind"],
                                             body["case_no"], tx.origin, seq)
        return seq


@contextmanager
def open_chain(directory: Path, genesis: Genesis | None = None) -> Iterator[SampleChain]:
    genesis = genesis or make_genesis()
    store = NodeStore.open(directory, write_buffer_bytes=1 << 20, ballast_bytes=0,
                           sync_writes=False)
    try:
        tip = ChainTip.genesis(genesis.genesis_hash(), genesis.genesis_time_ms)
        chain = ChainStore(store, genesis.chain_id, tip, indexers=[evidence.index_block])
        yield SampleChain(genesis, store, chain, {c: signer_for(c) for c in IDS})
    finally:
        store.close()


def build_sample(tc: SampleChain) -> None:
    """Three blocks: 5 txs from one court; 2 courts x 3 txs; 1 tx in view 1."""
    tc.commit_block([tc.submit("spc", [
        (doc_sha(f"judgment-{i}"), "judgment", f"(2026)最高法民终{i}号") for i in range(5)])])
    tc.commit_block([
        tc.submit("jl-high", [(doc_sha(f"ruling-{i}"), "ruling", f"(2026)吉民终{i}号")
                              for i in range(3)]),
        tc.submit("jl-cc-nanguan-basic", [
            (doc_sha(f"mediation-{i}"), "mediation_agreement", f"(2026)吉0102民初{i}号")
            for i in range(3)])])
    tc.commit_block([tc.submit("jl-cc-intermediate", [
        (doc_sha("receipt"), "delivery_receipt", "(2026)吉01执77号")])],
        view=1, voters=["jl-high", "jl-cc-intermediate", "jl-cc-nanguan-basic"])
