"""``pbftd verify-proof PROOF.json --genesis GENESIS.json``: offline, no node contacted.

Exit 0 when every hash and signature holds (and prints what is proven), 2 with
one line ``proof invalid: <reason>`` on stderr when anything does not, 1 with
one line when a file cannot be read or the genesis is not a valid genesis.
A proof file that is not JSON at all counts as an invalid proof (2): a
tampered byte must read as "invalid", whatever byte it was.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, TextIO

from rpc.verify import ProofError, VerifiedAttestation, trust_from_genesis, verify_proof_bytes

__all__ = ["format_attestation", "format_time", "run_verify_proof"]

EXIT_OK, EXIT_UNREADABLE, EXIT_INVALID = 0, 1, 2


def _shanghai() -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Asia/Shanghai")
    except Exception:  # no tz database: China has kept UTC+8 without DST since 1991
        return timezone(timedelta(hours=8), "CST")


def format_time(time_ms: int) -> str:
    """``2024-05-01 10:00:00.123 Asia/Shanghai (2024-05-01 02:00:00.123 UTC)``."""
    utc = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    local = utc.astimezone(_shanghai())
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    return f"{local.strftime(fmt)[:-3]} Asia/Shanghai ({utc.strftime(fmt)[:-3]} UTC)"


def format_attestation(result: VerifiedAttestation, genesis: Any = None) -> list[str]:
    court = result.court
    if genesis is not None and genesis.has_court(court):
        court = f"{genesis.court(court).name} ({court})"
    lines = [
        f"court        {court}",
        f"case number  {result.case_no}",
        f"kind         {result.kind}",
    ]
    if result.title:
        lines.append(f"title        {result.title}")
    lines += [
        f"sha256       {result.sha256}",
        f"chain        {result.chain_id}  height {result.height}  block {result.block_hash}",
        f"time         {format_time(result.time_ms)}",
    ]
    if result.block_time_ms != result.time_ms:
        lines.append(f"block time   {format_time(result.block_time_ms)}")
    lines += [
        f"tx           {result.tx_id} (client {result.client})",
        f"signed by    {', '.join(result.signers)}",
    ]
    return lines


def run_verify_proof(proof_path: str, genesis_path: str, out: TextIO = sys.stdout,
                     err: TextIO = sys.stderr) -> int:
    from config import ConfigError, load_genesis

    try:
        genesis = load_genesis(genesis_path)
    except ConfigError as exc:
        print(f"pbftd verify-proof: {exc}", file=err)
        return EXIT_UNREADABLE
    try:
        data = Path(proof_path).read_bytes()
    except OSError as exc:
        print(f"pbftd verify-proof: cannot read {proof_path}: {exc.strerror}", file=err)
        return EXIT_UNREADABLE
    try:
        result = verify_proof_bytes(data, trust_from_genesis(genesis))
    except ProofError as exc:
        print(f"proof invalid: {exc}", file=err)
        return EXIT_INVALID
    print(f"proof valid: attested on chain {result.chain_id}, checked offline against "
          f"{genesis_path}", file=out)
    for line in format_attestation(result, genesis):
        print(f"  {line}", file=out)
    return EXIT_OK
