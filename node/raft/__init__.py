"""The sans-io Raft core: no asyncio, no sockets, no clock, no disk.

Drive it with ``tick()``, ``step()`` and the leader calls; act on each
``Ready`` in order (persist, send, apply) and ``advance()``.
"""

from .core import CoreConfig, InitialState, Progress, ProgressState, RaftCore, Ready
from .errors import MembershipChangeError, NotLeaderError, ProposalDroppedError, RaftError
from .messages import (
    AppendEntries,
    AppendEntriesReply,
    InstallSnapshot,
    InstallSnapshotReply,
    Message,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)
from .types import (
    Entry,
    EntryKind,
    HardState,
    Index,
    Member,
    Membership,
    NodeId,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
    Term,
)

__all__ = [
    "AppendEntries", "AppendEntriesReply", "CoreConfig", "Entry", "EntryKind", "HardState", "Index",
    "InitialState", "InstallSnapshot", "InstallSnapshotReply", "Member", "Membership",
    "MembershipChangeError", "Message", "NodeId", "NotLeaderError", "Progress", "ProgressState",
    "ProposalDroppedError", "RaftCore", "RaftError", "ReadState", "Ready", "RequestVote",
    "RequestVoteReply", "Role", "Snapshot", "SnapshotMeta", "Term", "TimeoutNow",
]
