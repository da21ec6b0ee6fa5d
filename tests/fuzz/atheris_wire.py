"""Coverage-guided fuzzing of the peer-message boundary with atheris.

Not collected by pytest and not run by default.  cbor2 6.x is C code that
atheris cannot instrument (../shared/faults/README.md §5), so this fuzzes
*our* Python after the decoder: ``Wire.open`` (codec checks, envelope and
field validation, nested envelopes) and ``Replica.on_message`` on a replica
that holds state, plus the p2p link decoders.  Any exception other than
ProtocolError / PeerProtocolError is a crash; so is a refused frame that
changed the replica (same snapshot as tests/fuzz/test_peer_messages.py).

Run (atheris is not a project dependency; install it beside the venv):

    .venv/bin/python -m pip install --target /tmp/athlib atheris==3.0.0
    mkdir -p /tmp/wire-corpus
    PYTHONPATH=/tmp/athlib:. .venv/bin/python tests/fuzz/atheris_wire.py \\
        /tmp/wire-corpus -max_total_time=60 -max_len=4096

The corpus is seeded with one valid frame of every message type (nested
envelopes included) and their p2p BATCH wrapping.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from p2p import wire as p2p_wire
    from pbftd.core.messages import ProtocolError

from tests.fuzz.test_peer_messages import (
    NOW,
    _busy_replica,
    _clone,
    _templates,
    rejected,
    snapshot,
)

BUSY, _SHELL = _busy_replica()
VIAS = sorted({via for via, _frame in _templates().values()})


def seed(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for kind, (via, frame) in _templates().items():
        prefix = bytes([VIAS.index(via)])  # the first byte picks the link peer
        (corpus / f"seed-{kind}").write_bytes(prefix + frame)
        (corpus / f"seed-batch-{kind}").write_bytes(prefix + p2p_wire.encode_batch([frame]))


def one_input(data: bytes) -> None:
    if not data:
        return
    via = VIAS[data[0] % len(VIAS)]
    frame = data[1:]
    with contextlib.suppress(p2p_wire.PeerProtocolError):
        p2p_wire.decode_message(frame, frame_bytes_max=1 << 22, batch_frames_max=256)
    replica = _clone(BUSY)
    with contextlib.suppress(ProtocolError):
        replica.wire.open_from(via, frame)
    before, count = snapshot(replica), rejected(replica)
    replica.on_message(via, frame, NOW)  # must never raise
    if rejected(replica) == count + 1 and snapshot(replica) != before:
        raise AssertionError("a refused frame changed the replica")


def main() -> None:
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None:
        seed(corpus)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
