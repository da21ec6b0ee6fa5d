"""Kill -9 while writing: every acknowledged block is on disk after reopen.

The child writes batches of blocks and reports "acked <height>" on a pipe only
after the batch's ``with`` returned, exactly as the daemon acknowledges. The
test kills it with SIGKILL mid-stream, three rounds in a row on one directory,
then checks every acknowledged block byte for byte, and that no batch was
half-applied. (Kill -9 keeps the page cache; the synced WAL is what makes this
also hold for power loss, which this test cannot simulate.)
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.storage.blocks import block_bytes, block_hash, cert_bytes, tx_list
from tests.storage.children import LineReader, spawn
from tests.storage.conftest import reopen

BLOCKS_PER_BATCH = 3
TXS_PER_BLOCK = 4
ROUNDS = 3
DEADLINE_S = 20

_WRITER = """
from pathlib import Path
from storage import NodeStore
from tests.storage.blocks import block_bytes, block_hash, cert_bytes, tx_list

per_batch, txs_per_block = int(sys.argv[2]), int(sys.argv[3])
store = NodeStore.open(Path(sys.argv[1]), write_buffer_bytes=1 << 20, ballast_bytes=0)
last = store.last_height()
height = 0 if last is None else last + 1
print("start", height, flush=True)
while True:
    with store.batch() as b:
        for h in range(height, height + per_batch):
            b.put_block(h, block_hash(h), block_bytes(h, 2048 + h % 1024), cert_bytes(h),
                        tx_ids=tx_list(h, txs_per_block))
            b.put_state(b"height", b"%d" % h)
    height += per_batch
    print("acked", height - 1, flush=True)
"""


def _run_round(data_dir: Path, acks_min: int) -> tuple[int, list[int]]:
    """Start a writer, SIGKILL it after `acks_min` acks; return (start height, acked heights)."""
    child = spawn(_WRITER, [str(data_dir), str(BLOCKS_PER_BATCH), str(TXS_PER_BLOCK)])
    reader = LineReader(child)
    acked: list[int] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        first = reader.readline(deadline)
        assert first is not None and first.startswith("start "), reader.stderr_tail()
        start = int(first.split()[1])
        while len(acked) < acks_min:
            line = reader.readline(deadline)
            assert line is not None, f"writer exited early: {reader.stderr_tail()}"
            acked.append(int(line.removeprefix("acked ")))
        child.send_signal(signal.SIGKILL)
        # Lines already in the pipe were written before the kill: they count too.
        acked.extend(int(line.removeprefix("acked ")) for line in reader.rest(deadline))
        assert child.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=DEADLINE_S)
        reader.close()
    return start, acked


def test_acknowledged_blocks_survive_sigkill(data_dir: Path) -> None:
    all_acked: list[int] = []
    for round_index in range(ROUNDS):
        start, acked = _run_round(data_dir, acks_min=150 + 61 * round_index)
        expected_start = all_acked[-1] + 1 if all_acked else 0
        # The next writer starts at or after everything acked before (an unacked
        # batch that reached the WAL before the kill may also be there).
        assert start >= expected_start
        assert start % BLOCKS_PER_BATCH == 0, "a batch was half-applied"
        all_acked.extend(acked)

    with reopen(data_dir) as store:
        last = store.last_height()
        assert last is not None and last >= all_acked[-1]
        assert (last + 1) % BLOCKS_PER_BATCH == 0, "a batch was half-applied"
        acked_heights = [h - k for h in all_acked for k in range(BLOCKS_PER_BATCH)]
        for height in acked_heights:
            assert store.get_block(height) == block_bytes(height, 2048 + height % 1024)
            assert store.get_cert(height) == cert_bytes(height)
            assert store.get_block_height_by_hash(block_hash(height)) == height
            for index, tx_id in enumerate(tx_list(height, TXS_PER_BLOCK)):
                assert store.get_tx(tx_id) == (height, index)
        # No holes: heights 0..last are all present, and the state matches the last block.
        assert [h for h, _ in store.iter_blocks(0, last)] == list(range(last + 1))
        assert store.get_state(b"height") == b"%d" % last
