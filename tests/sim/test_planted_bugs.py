"""The checkers must be able to fail: deliberately broken replicas are caught."""

import subprocess
import sys

import pytest

from pbftd.sim import parse_faults, run_seed

ALL = parse_faults("all")


def _first_violation(plant: str, seeds: range) -> tuple[int, str]:
    for seed in seeds:
        result = run_seed(4, seed, ALL, plant=plant)
        if result.violations:
            return seed, result.violations[0].kind
    pytest.fail(f"planted bug {plant} went unnoticed over {len(seeds)} seeds")


def test_new_view_without_prepared_certificates_breaks_agreement() -> None:
    _seed, kind = _first_violation("new-view-without-prepared-certs", range(1, 21))
    assert kind in ("agreement", "assertion")


def test_commit_on_2f_commits_is_caught() -> None:
    _first_violation("commit-on-2f", range(1, 11))


def test_cli_exits_non_zero_and_prints_the_replay_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pbftd.cli", "sim", "--nodes", "4", "--seeds", "1", "--seed", "1",
         "--plant", "new-view-without-prepared-certs"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "1 seeds, 2 violations" or lines[-1].endswith("violations")
    assert not lines[-1].startswith("1 seeds, 0")
    assert "replay: pbftd sim --nodes 4 --seeds 1 --seed 1 --faults all " \
           "--plant new-view-without-prepared-certs" in proc.stdout


def test_cli_clean_run_ends_with_zero_violations() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pbftd.cli", "sim", "--nodes", "4", "--seeds", "2"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "2 seeds, 0 violations"


def test_cli_rejects_unknown_fault_kind_in_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "pbftd.cli", "sim", "--faults", "meteor"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "meteor" in proc.stderr
    assert "Traceback" not in proc.stderr
