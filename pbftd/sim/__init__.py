"""Deterministic fault simulator for the pure replica (see runner.run_seed)."""

from .faults import FAULT_KINDS, parse_faults
from .runner import SeedResult, run_seed, run_seeds

__all__ = ["FAULT_KINDS", "SeedResult", "parse_faults", "run_seed", "run_seeds"]
