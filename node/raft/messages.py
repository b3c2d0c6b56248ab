"""Raft RPCs and their replies as frozen dataclasses (Figure 2, §9.6, §3.10, §6.4).

Every message carries ``term``, ``src`` and ``dst``. Delivery is
fire-and-forget: a lost, delayed, duplicated or reordered message is a
normal event the core must survive.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Entry, Index, NodeId, SnapshotMeta, Term


@dataclass(frozen=True, slots=True)
class RequestVote:
    term: Term
    src: NodeId
    dst: NodeId
    last_log_index: Index
    last_log_term: Term
    pre_vote: bool = False  # §9.6: asks "would you vote", changes nothing
    transfer: bool = False  # §3.10: sent on TimeoutNow; overrides the leader lease


@dataclass(frozen=True, slots=True)
class RequestVoteReply:
    term: Term
    src: NodeId
    dst: NodeId
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: Term
    src: NodeId
    dst: NodeId
    prev_index: Index
    prev_term: Term
    entries: tuple[Entry, ...]
    leader_commit: Index
    seq: int = 0  # leader's heartbeat round, echoed back; confirms ReadIndex (§6.4)


@dataclass(frozen=True, slots=True)
class AppendEntriesReply:
    term: Term
    src: NodeId
    dst: NodeId
    success: bool
    match_index: Index  # on success: last index known to match the leader
    reject_index: Index = Index(0)  # on reject: the prev_index that did not match
    conflict_index: Index = Index(0)  # on reject: where the leader should retry (§5.3 optimisation)
    conflict_term: Term = Term(0)  # on reject: term of the follower's entry at prev_index (0 if none)
    seq: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    term: Term
    src: NodeId
    dst: NodeId
    meta: SnapshotMeta
    data: bytes = b""  # filled in by the driver from storage just before sending


@dataclass(frozen=True, slots=True)
class InstallSnapshotReply:
    term: Term
    src: NodeId
    dst: NodeId
    match_index: Index


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    term: Term
    src: NodeId
    dst: NodeId


Message = (
    RequestVote
    | RequestVoteReply
    | AppendEntries
    | AppendEntriesReply
    | InstallSnapshot
    | InstallSnapshotReply
    | TimeoutNow
)
