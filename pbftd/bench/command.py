"""The ``pbftd bench`` command line: arguments, and running from them.

pbftd/cli.py only adds the subparser and calls ``add_arguments`` and
``run_command``; OptionError becomes its one-line usage error.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import BenchError, BenchOptions, OptionError, run_bench, write_json
from .options import DEFAULT_CLIENTS, MODES, REPEAT_MAX
from .series import run_series

__all__ = ["BenchError", "OptionError", "add_arguments", "options_from_args", "run_command"]

DESCRIPTION = (
    "Start a local cluster (or target running nodes with --rpc/--token), drive attestations "
    "through JSON-RPC, and report committed attestations/s, commit latency p50/p95/p99/max, "
    "errors, view changes, and CPU seconds and peak RSS per node. Modes: attest (single "
    "evidence.attest calls, closed loop), batch (evidence.attestBatch, closed loop), open "
    "(open loop at --rate; latency from the scheduled send time), mixed (attest plus "
    "evidence.verify reads), catchup (load --count attestations, wipe one validator, time "
    "until it has caught up). A progress line goes to stderr; --json writes the report.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default="batch", choices=MODES,
                   help="workload (default batch)")
    p.add_argument("--validators", type=int, default=4,
                   help="validators of the local cluster: 4, 7 or 10 (default 4)")
    p.add_argument("--observers", type=int, default=0,
                   help="observer courts of the local cluster (default 0)")
    p.add_argument("--rpc", action="append", default=[], metavar="URL",
                   help="target a running node instead of a local cluster (repeatable)")
    p.add_argument("--token", action="append", default=[], metavar="TOKEN",
                   help="bearer token with evidence:write for --rpc (once, or once per --rpc)")
    p.add_argument("--clients", type=int,
                   help="concurrent keep-alive connections (default: " + ", ".join(
                       f"{m} {n}" for m, n in DEFAULT_CLIENTS.items()) + ")")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="items per evidence.attestBatch call (default 1000)")
    p.add_argument("--rate", type=float, help="open loop: attestations per second")
    p.add_argument("--read-ratio", type=float, default=0.5,
                   help="mixed: share of calls that are evidence.verify (default 0.5)")
    p.add_argument("--duration", type=float, default=30.0, metavar="S",
                   help="measured seconds (default 30)")
    p.add_argument("--warmup", type=float, default=5.0, metavar="S",
                   help="seconds of load before measuring (default 5)")
    p.add_argument("--title-chars", type=int, default=0,
                   help="add a title of this many characters to each attestation (default 0)")
    p.add_argument("--call-timeout", type=float, default=60.0, metavar="S",
                   help="client-side limit on one call (default 60)")
    p.add_argument("--keep-dir", metavar="DIR",
                   help="local cluster: create it in DIR (must be empty) and keep it")
    p.add_argument("--set", action="append", default=[], metavar="[SECTION.]KEY=VALUE",
                   dest="settings",
                   help="local cluster: a node setting for every node, as in config.toml "
                        "(a TOML value, checked before the cluster starts), e.g. "
                        "consensus.pipeline_depth_max=4 or log_level='\"debug\"' (repeatable)")
    p.add_argument("--count", type=int, default=100_000,
                   help="catchup: attestations to load before wiping one validator "
                        "(default 100000)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run N times, each on a fresh local cluster, and report the median "
                        f"of each figure with the runs' values (1-{REPEAT_MAX}, default 1; "
                        "figures are worth quoting as medians of 3 or more)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        mode=args.mode, validators=args.validators, observers=args.observers,
        rpc=list(args.rpc), tokens=list(args.token), clients=args.clients,
        batch_size=args.batch_size, rate=args.rate, read_ratio=args.read_ratio,
        duration_s=args.duration, warmup_s=args.warmup, title_chars=args.title_chars,
        call_timeout_s=args.call_timeout, keep_dir=args.keep_dir,
        settings=list(args.settings), count=args.count, repeat=args.repeat).check()


def run_command(args: argparse.Namespace) -> int:
    """Exit 0 when the run completed, 1 when it could not run. Raises OptionError."""
    opts = options_from_args(args)
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or \
                os.path.isdir(args.json):
            raise OptionError(f"cannot write --json {args.json}")
    try:
        report = run_bench(opts) if opts.repeat == 1 else run_series(opts, opts.repeat,
                                                                      run_bench)
    except (BenchError, FileExistsError) as exc:
        print(f"pbftd bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        write_json(report, args.json)
    return 0
