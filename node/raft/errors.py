"""Caller-misuse errors raised by the core (normal protocol outcomes are not exceptions)."""

from __future__ import annotations

from .types import NodeId


class RaftError(Exception):
    """Base of the core's exceptions."""


class NotLeaderError(RaftError):
    """A leader-only call reached a node that is not the leader."""

    def __init__(self, leader_id: NodeId | None) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id


class ProposalDroppedError(RaftError):
    """The leader refused the proposal; it is definitely not in the log."""


class MembershipChangeError(RaftError):
    """A membership change that is not a valid single-server change."""
