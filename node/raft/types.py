"""Value types shared by the Raft core and its drivers.

Everything here is immutable and free of I/O. ``Membership`` is the cluster
configuration carried by configuration entries and snapshots.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import NewType

NodeId = NewType("NodeId", str)
Term = NewType("Term", int)
Index = NewType("Index", int)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class EntryKind(enum.Enum):
    NORMAL = "normal"  # a client command (data is its JSON text)
    NOOP = "noop"  # appended by each new leader (§5.4.2, §8)
    CONFIG = "config"  # data is a Membership in JSON


@dataclass(frozen=True, slots=True)
class Entry:
    index: Index
    term: Term
    kind: EntryKind = EntryKind.NORMAL
    data: str = ""

    def size(self) -> int:
        return len(self.data) + 32


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message of the same Ready leaves (§5.1, Figure 2)."""

    term: Term
    voted_for: NodeId | None
    commit: Index


@dataclass(frozen=True, slots=True)
class Member:
    id: NodeId
    address: str
    voter: bool = True
    # The random id of the member's data dir (node/storage.py), once known: peers refuse
    # messages from another incarnation of this id (a wiped data dir). The core ignores it.
    incarnation: str | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"id": self.id, "address": self.address, "voter": self.voter}
        if self.incarnation is not None:  # absent, not null: older nodes read the same JSON
            d["incarnation"] = self.incarnation
        return d

    @staticmethod
    def from_dict(d: dict[str, object]) -> Member:
        inc = d.get("incarnation")
        return Member(NodeId(str(d["id"])), str(d["address"]), bool(d["voter"]), str(inc) if inc else None)


@dataclass(frozen=True, slots=True)
class Membership:
    """A cluster configuration: members sorted by id."""

    members: tuple[Member, ...] = ()

    @staticmethod
    def of(members: list[Member] | tuple[Member, ...]) -> Membership:
        return Membership(tuple(sorted(members, key=lambda m: m.id)))

    @property
    def voters(self) -> frozenset[NodeId]:
        return frozenset(m.id for m in self.members if m.voter)

    @property
    def ids(self) -> frozenset[NodeId]:
        return frozenset(m.id for m in self.members)

    def get(self, node_id: str) -> Member | None:
        for m in self.members:
            if m.id == node_id:
                return m
        return None

    def address_of(self, node_id: str) -> str | None:
        m = self.get(node_id)
        return m.address if m else None

    def with_member(self, member: Member) -> Membership:
        return Membership.of([m for m in self.members if m.id != member.id] + [member])

    def without(self, node_id: str) -> Membership:
        return Membership.of([m for m in self.members if m.id != node_id])

    def to_json(self) -> str:
        return json.dumps([m.to_dict() for m in self.members], separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Membership:
        return Membership.of([Member.from_dict(d) for d in json.loads(text)])


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: Index
    term: Term
    membership: Membership


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine image at ``meta.index``; ``data`` is opaque to the core."""

    meta: SnapshotMeta
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read registered under ``ctx`` may be served once last_applied >= index."""

    ctx: int
    index: Index
