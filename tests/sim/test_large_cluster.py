"""31 validators (f = 10): the largest cluster the issue names. Slow (about a
minute a seed on two cores), so it runs with `pytest -m slow`."""

import pytest

from pbftd.sim import parse_faults, run_seed


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_thirty_one_validators_under_crashes_and_loss(seed: int) -> None:
    result = run_seed(31, seed, parse_faults("drop,crash,delay"), safety_ms=3_000)
    assert not result.violations, [str(v) for v in result.violations]
    assert result.stats["blocks_executed"] > 31 * 10
