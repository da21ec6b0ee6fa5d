"""Run seeds, collect violations, print how to replay a failure."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .checkers import Violation
from .cluster import Cluster
from .planted import PLANTED


@dataclass
class SeedResult:
    seed: int
    violations: list[Violation]
    stats: dict[str, int] = field(default_factory=dict)


def run_seed(nodes: int, seed: int, faults: frozenset[str], plant: str | None = None,
             safety_ms: int = 8_000) -> SeedResult:
    factory = PLANTED[plant] if plant else None
    cluster = Cluster(nodes, seed, faults, **({"replica_factory": factory} if factory else {}),
                      safety_ms=safety_ms)
    try:
        cluster.run()
    except AssertionError as exc:  # a replica's own invariant broke: also a violation
        cluster.checker.fail(cluster.now, "assertion", str(exc) or "assertion failed")
    return SeedResult(seed, cluster.checker.violations, dict(cluster.stats))


def _run_args(args: tuple[int, int, frozenset[str], str | None, int]) -> SeedResult:
    return run_seed(*args)


def run_seeds(nodes: int, seeds: Iterable[int], faults: frozenset[str],
              plant: str | None = None, jobs: int = 1, safety_ms: int = 8_000,
              on_result: Callable[[SeedResult], None] | None = None) -> list[SeedResult]:
    work = [(nodes, s, faults, plant, safety_ms) for s in seeds]
    results: list[SeedResult] = []
    if jobs <= 1:
        for args in work:
            results.append(_run_args(args))
            if on_result:
                on_result(results[-1])
        return results
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for result in pool.imap(_run_args, work, chunksize=4):
            results.append(result)
            if on_result:
                on_result(result)
    return results


def replay_command(nodes: int, seed: int, faults_text: str, plant: str | None) -> str:
    cmd = f"pbftd sim --nodes {nodes} --seeds 1 --seed {seed} --faults {faults_text}"
    return cmd + (f" --plant {plant}" if plant else "")
