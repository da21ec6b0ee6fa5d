"""The validator set: who votes, who is primary in a view, and quorum sizes.

Quorums are computed for any n, not only n = 3f+1: a quorum q must make any
two quorums intersect in at least f+1 replicas (so in one honest one), hence
q = ceil((n + f + 1) / 2), which is 2f+1 when n = 3f+1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["ValidatorSet"]


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    ids: tuple[str, ...]
    keys: tuple[bytes, ...]
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.ids or len(self.ids) != len(self.keys):
            raise ValueError("validator ids and keys must be non-empty and of equal length")
        if len(set(self.ids)) != len(self.ids) or len(set(self.keys)) != len(self.keys):
            raise ValueError("validator ids and keys must be unique")
        object.__setattr__(self, "_index", {v: i for i, v in enumerate(self.ids)})

    @classmethod
    def of(cls, members: Sequence[tuple[str, bytes]]) -> ValidatorSet:
        return cls(tuple(m[0] for m in members), tuple(m[1] for m in members))

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        return (self.n + self.f + 2) // 2

    @property
    def weak_quorum(self) -> int:
        """f+1: at least one honest replica among them."""
        return self.f + 1

    def primary(self, view: int) -> str:
        return self.ids[view % self.n]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def key(self, node_id: str) -> bytes:
        return self.keys[self._index[node_id]]

    def as_dict(self) -> dict[str, bytes]:
        return dict(zip(self.ids, self.keys, strict=True))
