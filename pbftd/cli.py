"""The ``pbftd`` command line.

User mistakes print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


class UsageError(Exception):
    """A mistake by the person at the keyboard: one line, exit 2."""


def _cmd_sim(args: argparse.Namespace) -> int:
    from .sim import parse_faults, run_seeds
    from .sim.planted import PLANTED
    from .sim.runner import replay_command

    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.plant and args.plant not in PLANTED:
        raise UsageError(f"unknown planted bug {args.plant!r}; choose from {', '.join(PLANTED)}")
    if not 1 <= args.nodes <= 64:
        raise UsageError("--nodes must be between 1 and 64")
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    first = args.seed if args.seed is not None else 1
    started = time.monotonic()
    violations = 0
    failing: list[int] = []

    def report(result: object) -> None:
        nonlocal violations
        seed, found = result.seed, result.violations  # type: ignore[attr-defined]
        if found:
            violations += len(found)
            failing.append(seed)
            for v in found:
                print(f"seed {seed}: VIOLATION {v}")
            print(f"  replay: {replay_command(args.nodes, seed, args.faults, args.plant)}")
        elif args.verbose:
            stats = result.stats  # type: ignore[attr-defined]
            print(f"seed {seed}: ok ({stats.get('blocks_executed', 0)} blocks executed, "
                  f"{stats.get('note_new_view_installed', 0)} new views, "
                  f"liveness after {stats.get('liveness_done_ms', '?')} ms)")
        sys.stdout.flush()

    run_seeds(args.nodes, range(first, first + args.seeds), faults, plant=args.plant,
              jobs=args.jobs, safety_ms=args.safety_ms, on_result=report)
    elapsed = time.monotonic() - started
    print(f"# n={args.nodes} faults={args.faults} seeds {first}..{first + args.seeds - 1} "
          f"in {elapsed:.1f}s" + (f"; failing seeds: {failing[:20]}" if failing else ""))
    print(f"{args.seeds} seeds, {violations} violations")
    return 1 if violations else 0


def _cmd_testnet_init(args: argparse.Namespace) -> int:
    from .testnet import init_testnet

    try:
        files = init_testnet(Path(args.dir), args.nodes, args.base_port,
                             observers=args.observers)
    except (FileExistsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    for court in files:
        print(f"{court.court_id:<24} {court.config}  rpc {court.rpc_url}")
    return 0


def _cmd_testnet_up(args: argparse.Namespace) -> int:
    from .testnet import up_testnet

    if args.nodes < 1 or args.observers < 0:
        raise UsageError("--nodes must be at least 1 and --observers not negative")
    return up_testnet(Path(args.dir), args.nodes, args.base_port, observers=args.observers)


def _cmd_run(args: argparse.Namespace) -> int:
    from config import ConfigError, load_settings

    from .daemon import DaemonError, StorageStopped, run_daemon
    from .logs import configure_logging
    from .rpcservice import start_rpc

    try:
        settings = load_settings(args.config)
        configure_logging(settings.log_format, settings.log_level)
        run_daemon(settings, extra_services=start_rpc)
    except (ConfigError, DaemonError) as exc:
        raise UsageError(str(exc)) from None
    except StorageStopped as exc:
        print(f"pbftd run: {exc}", file=sys.stderr)
        return StorageStopped.EXIT_STATUS
    return 0


def _default_rpc() -> tuple[str, str | None]:
    """The first court of ./testnet, and its admin token, for --rpc defaults."""
    from .testnet import testnet_courts

    try:
        first = testnet_courts(Path("testnet"))[0]
    except (FileNotFoundError, IndexError, KeyError, ValueError):
        raise UsageError("no --rpc given and no ./testnet to default to") from None
    token_file = first.folder / "admin.token"
    return first.rpc_url, token_file.read_text().strip() if token_file.exists() else None


def _cmd_status(args: argparse.Namespace) -> int:
    from rpc.client import RpcCallError, RpcClient, RpcTransportError

    url, token = (args.rpc, args.token) if args.rpc else _default_rpc()
    try:
        st = RpcClient(url, args.token or token, timeout_s=10).call("node.status")
    except (RpcCallError, RpcTransportError) as exc:
        raise UsageError(str(exc)) from None
    mode = "" if st.get("view_active", True) else " (view change in progress)"
    print(f"court      {st['court']} ({st['node_id']}, {st['tier']}, {st['role']})")
    print(f"chain      {st.get('chain_id', '?')}  height {st['height']}  "
          f"last block {st['last_block_hash'][:16]}...")
    print(f"consensus  view {st['view']}{mode}, primary {st['primary']}, "
          f"stable checkpoint {st['stable_checkpoint']}")
    print(f"peers      {len(st['peers'])} connected: {', '.join(st['peers']) or '-'}")
    return 0


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file read in fixed chunks: a 4 GB video takes constant memory."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _cmd_attest(args: argparse.Namespace) -> int:
    from rpc.client import RpcCallError, RpcClient, RpcTransportError

    url, token = (args.rpc, args.token) if args.rpc else _default_rpc()
    try:
        digest = sha256_file(Path(args.file))
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    params = {"sha256": digest, "kind": args.kind, "case_no": args.case, "wait": True}
    if args.title:
        params["title"] = args.title
    if args.request_id:
        params["request_id"] = args.request_id
    try:
        result = RpcClient(url, args.token or token, timeout_s=60).call("evidence.attest", params)
    except (RpcCallError, RpcTransportError) as exc:
        raise UsageError(str(exc)) from None
    print(f"sha256  {digest}")
    print(f"tx id   {result['tx_id']}")
    print(f"height  {result.get('height', '-')} ({result['status']})")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from .courtinit import init_court

    try:
        for line in init_court(args.court_id, args.name, args.tier, args.parent, Path(args.dir),
                               args.p2p_address, args.rpc_address, args.role):
            print(line)
    except (FileExistsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return 0


def _cmd_genesis(args: argparse.Namespace) -> int:
    from config import ConfigError

    from .courtinit import assemble_genesis

    try:
        path = assemble_genesis([Path(d) for d in args.dirs], Path(args.out), args.chain_id)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {path}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0: attested and every proof checks out; 1: not attested; 2: a proof
    is invalid (the node answered something the validators did not sign)."""
    from config import ConfigError, load_genesis
    from rpc.client import RpcCallError, RpcClient, RpcTransportError, verify_attestation
    from rpc.verify import ProofError

    from .proofcli import format_attestation

    url = args.rpc or _default_rpc()[0]
    genesis_path = Path(args.genesis) if args.genesis else Path("testnet") / "genesis.json"
    try:
        genesis = load_genesis(genesis_path)
    except (ConfigError, OSError) as exc:
        raise UsageError(f"cannot use {genesis_path} as the keys to trust: {exc}") from None
    try:
        digest = sha256_file(Path(args.file))
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    print(f"sha256  {digest}")
    try:
        # Anonymous: a document with several records can cost more proofs
        # than the bucket holds at once, so wait out the limit (30 s in all).
        client = RpcClient(url, timeout_s=30, rate_limit_wait_s=30)
        proven = verify_attestation(client, digest, genesis)
    except ProofError as exc:
        print(f"proof invalid: {exc}", file=sys.stderr)
        return 2
    except (RpcCallError, RpcTransportError) as exc:
        raise UsageError(str(exc)) from None
    if not proven:
        print("not attested on this chain")
        return 1
    for result in proven:
        print()
        for line in format_attestation(result, genesis):
            print(line)
    print(f"\n{len(proven)} attestation(s), each proven by the validators' signatures")
    return 0


def _cmd_verify_proof(args: argparse.Namespace) -> int:
    from .proofcli import run_verify_proof

    return run_verify_proof(args.proof, args.genesis)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pbftd", description="PBFT consensus node for the courts' consortium chain.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser(
        "sim", help="run the deterministic fault simulator",
        description="Run seeded simulations of a cluster under faults and check safety after "
                    "every step and liveness after healing. Exit 1 on any violation, printing "
                    "the command that replays it.")
    sim.add_argument("--nodes", type=int, default=4, help="validators (default 4)")
    sim.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    sim.add_argument("--seed", type=int, help="first seed (default 1); with --seeds 1 replays it")
    sim.add_argument("--faults", default="all",
                     help="'all', 'none' or a comma list of: drop, dup, delay, partition, "
                          "oneway, isolate, crash, crash_mid, wipe, replay, equivocate, silent, "
                          "forge, bogus, censor (default all)")
    sim.add_argument("--plant", help="run a deliberately broken replica (checks the checkers): "
                                     "commit-on-2f, new-view-without-prepared-certs")
    sim.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    sim.add_argument("--safety-ms", type=int, default=8_000,
                     help="simulated ms of faults before healing (default 8000)")
    sim.add_argument("-v", "--verbose", action="store_true", help="a line per seed")
    sim.set_defaults(func=_cmd_sim)

    testnet = sub.add_parser("testnet", help="a whole consortium on this machine")
    tsub = testnet.add_subparsers(dest="testnet_command", metavar="COMMAND", required=True)
    for name, func, helptext in (
            ("up", _cmd_testnet_up, "create DIR if missing, start every court, stop on Ctrl-C"),
            ("init", _cmd_testnet_init, "only write the genesis, keys and configs")):
        t = tsub.add_parser(name, help=helptext, description=helptext)
        t.add_argument("dir", nargs="?" if name == "up" else None, default="testnet",
                       metavar="DIR", help="testnet directory (default ./testnet)")
        t.add_argument("--nodes", type=int, default=4, help="validators (default 4)")
        t.add_argument("--base-port", type=int, default=26650,
                       help="first loopback port; court i uses base+2i (p2p), base+2i+1 (rpc)")
        t.add_argument("--observers", type=int, default=0,
                       help="observer courts that follow without voting (default 0)")
        t.set_defaults(func=func)

    run = sub.add_parser("run", help="run one daemon in the foreground (systemd ExecStart)",
                         description="Run one court's daemon until SIGTERM or SIGINT.")
    run.add_argument("--config", required=True, metavar="FILE", help="the node's config.toml")
    run.set_defaults(func=_cmd_run)

    init = sub.add_parser("init", help="keys and config for one real court",
                          description="Create a court's key, admin token, config and the public "
                                      "court.json that 'pbftd genesis' assembles.")
    init.add_argument("--court-id", required=True)
    init.add_argument("--name", required=True)
    init.add_argument("--tier", required=True,
                      choices=["supreme", "high", "intermediate", "basic"])
    init.add_argument("--parent", help="court id of the supervising court")
    init.add_argument("--role", default="validator", choices=["validator", "observer"])
    init.add_argument("--p2p-address", default="0.0.0.0:26656", metavar="HOST:PORT")
    init.add_argument("--rpc-address", default="127.0.0.1:26657", metavar="HOST:PORT")
    init.add_argument("--dir", required=True, help="the court's new directory")
    init.set_defaults(func=_cmd_init)

    gen = sub.add_parser("genesis", help="assemble genesis.json from courts' public files",
                         description="Read DIR/court.json of each court and write a genesis.")
    gen.add_argument("dirs", nargs="+", metavar="DIR")
    gen.add_argument("--chain-id", default="court-chain")
    gen.add_argument("--out", default="genesis.json", metavar="FILE")
    gen.set_defaults(func=_cmd_genesis)

    status = sub.add_parser("status", help="one screen about a node",
                            description="Ask a node for node.status and print it.")
    status.add_argument("--rpc", help="node URL (default: first court of ./testnet)")
    status.add_argument("--token", help="bearer token (default: that court's admin.token)")
    status.set_defaults(func=_cmd_status)

    attest = sub.add_parser("attest", help="hash a file locally and attest it",
                            description="Hash FILE locally (streaming), attest its SHA-256 as "
                                        "this court, wait for commit, print tx id and height.")
    attest.add_argument("file", metavar="FILE")
    attest.add_argument("--kind", required=True,
                        choices=["judgment", "ruling", "mediation_agreement",
                                 "effectiveness_certificate", "efile_item", "delivery_receipt",
                                 "enforcement_notice", "enforcement_application",
                                 "electronic_evidence", "other"])
    attest.add_argument("--case", required=True, metavar="CASE_NO",
                        help="case number, e.g. '(2020)吉0102民初1234号'")
    attest.add_argument("--title", help="optional title (no personal data)")
    attest.add_argument("--request-id", help="makes a retry idempotent")
    attest.add_argument("--rpc", help="node URL (default: first court of ./testnet)")
    attest.add_argument("--token", help="bearer token (default: that court's admin.token)")
    attest.set_defaults(func=_cmd_attest)

    verify = sub.add_parser(
        "verify", help="hash a file locally and prove who attested it",
        description="Hash FILE locally, ask the node for its attestations, fetch each proof "
                    "and check it here against the genesis keys. Exit 0 attested and proven, "
                    "1 not attested, 2 a proof is invalid.")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--rpc", help="node URL (default: first court of ./testnet)")
    verify.add_argument("--genesis", metavar="GENESIS.json",
                        help="keys to trust (default: ./testnet/genesis.json)")
    verify.set_defaults(func=_cmd_verify)

    vproof = sub.add_parser(
        "verify-proof", help="check a saved proof offline against a genesis file",
        description="Verify PROOF.json (from evidence.getProof) with no network: every hash, "
                    "the Merkle path and the validators' signatures, against GENESIS.json. "
                    "Exit 0 valid, 2 'proof invalid: <reason>', 1 a file cannot be read.")
    vproof.add_argument("proof", metavar="PROOF.json")
    vproof.add_argument("--genesis", required=True, metavar="GENESIS.json",
                        help="the chain's genesis file: the keys to trust")
    vproof.set_defaults(func=_cmd_verify_proof)

    # --- pbftd bench (pbftd/bench/, issue 6) -- begin ---
    def _cmd_bench(args: argparse.Namespace) -> int:
        from .bench.command import OptionError, run_command

        try:
            return run_command(args)
        except OptionError as exc:
            raise UsageError(str(exc)) from None

    from .bench.command import DESCRIPTION as _BENCH_DESCRIPTION
    from .bench.command import add_arguments as _add_bench_arguments

    bench = sub.add_parser("bench", help="measure throughput and commit latency",
                           description=_BENCH_DESCRIPTION)
    _add_bench_arguments(bench)
    bench.set_defaults(func=_cmd_bench)
    # --- pbftd bench -- end ---
    return parser


def _attach_option_values(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--token VALUE`` as ``--token=VALUE``.

    argparse takes a separate value that starts with '-' for an option and
    refuses it ("expected one argument"). Bearer tokens are random base64url,
    which may start with '-' (tokens issued before generate_token avoided
    that, or made by hand), so the word after ``--token`` is always its value.
    """
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            out.append(word)
            out.extend(words)
            break
        if word in _VALUE_ALWAYS_NEXT:
            value = next(words, None)
            out.append(word if value is None else f"{word}={value}")
        else:
            out.append(word)
    return out


_VALUE_ALWAYS_NEXT = frozenset({"--token"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_option_values(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"pbftd {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
