"""Majority rules: the commit index of a set of match indexes, and vote tallies."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from .types import Index, NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Collection[NodeId], match: Mapping[NodeId, int]) -> Index:
    """Largest index stored on a majority of ``voters`` (0 when there are none)."""
    if not voters:
        return Index(0)
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    return Index(acked[majority(len(voters)) - 1])


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    if not voters:
        return VoteResult.LOST
    need = majority(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    if granted >= need:
        return VoteResult.WON
    if rejected > len(voters) - need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[NodeId], alive: Collection[NodeId]) -> bool:
    return sum(1 for v in voters if v in alive) >= majority(len(voters)) if voters else False
