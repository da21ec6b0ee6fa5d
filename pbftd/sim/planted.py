"""Deliberately broken replicas, to prove the simulator's checkers can fail.

These exist only for ``pbftd sim --plant`` and the planted-bug tests; the
daemon never constructs them.  Each breaks exactly one rule of the paper.
"""

from __future__ import annotations

from typing import Any

from ..core.messages import Batch, ViewChange
from ..core.replica import Replica


class CommitOnTwoF(Replica):
    """Commits with 2f commits instead of 2f+1 (quorum minus one)."""

    def _check_committed(self, entry: Any, now_ms: int) -> list[Any]:
        if entry.committed or not entry.sent_commit or entry.pp is None:
            return []
        matching = [c for c in entry.commits.values() if c.digest == entry.pp.digest]
        if len(matching) < self.vals.quorum - 1:
            return []
        entry.committed = True
        entry.commit_cert = tuple(matching)
        return self._execute_ready(now_ms)


class NewViewWithoutPreparedCerts(Replica):
    """The new primary ignores prepared certificates and fills every slot of
    the new view with null batches; backups accept that NEW-VIEW unchecked."""

    def _plan_new_view(self, view: int, vcs: list[ViewChange]) -> Any:
        plan = super()._plan_new_view(view, vcs)
        primary = self.vals.primary(view)
        nulls = tuple((seq, Batch.null(seq, view, primary)) for seq, _ in plan.batches)
        return Replica._Plan(plan.min_s, plan.min_hash, plan.proof, nulls)


PLANTED = {
    "commit-on-2f": CommitOnTwoF,
    "new-view-without-prepared-certs": NewViewWithoutPreparedCerts,
}
