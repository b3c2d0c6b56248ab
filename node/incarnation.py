"""Incarnations: telling a wiped node from the member whose id it reuses (issue 10).

A node whose data dir was wiped forgot its term, its vote and its log. If it
comes back under the same id and its peers count what it says, it can vote
twice in one term, or help elect a leader that lacks committed entries. So
every data dir gets a random incarnation id when it is bootstrapped
(node/storage.py), every peer batch carries the sender's incarnation (the
``X-Raftnet-Incarnation`` header), and a receiver steps a batch only when the
incarnation is the one it knows for that id (``judge``):

1. The replicated configuration is authoritative: ``Member.incarnation``,
   written when a member is added (``--join`` sends its incarnation) or,
   for members without one (bootstrap members, data dirs from before
   incarnations), adopted by the leader from its own record (``to_adopt``).
   Every node that has that configuration entry refuses another
   incarnation, including followers that never heard from the member.
2. Until then, trust on first use: the first incarnation heard from a member
   is recorded durably before its messages are stepped; another one is
   refused.
3. A non-member is admitted and nothing is recorded: it has no vote in our
   configuration, and a record would be stale when it is added back.
4. A batch without an incarnation (a node of an older version, during a
   rolling upgrade) is admitted.

Refused batches get 409 ``stale_incarnation``; the refused node logs and
shows the reason. Removing a member removes its record with it, so the id can
be added back with a new data dir. Pure: no I/O here.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

from .raft import Member, Membership

HEADER = "X-Raftnet-Incarnation"
MAX_LEN = 64


class Verdict(enum.Enum):
    ADMIT = "admit"  # step the batch
    RECORD = "record"  # first use: record it durably (unless another won the race), then step
    SYNC = "sync"  # matches the configuration: replace our local record with it, then step
    REFUSE = "refuse"  # another incarnation of a member: 409, never stepped


def judge(presented: str | None, member: Member | None, recorded: str | None) -> Verdict:
    """What to do with a batch from a sender presenting ``presented``, whose member record in
    our configuration is ``member`` (None: not a member) and whose incarnation we recorded
    locally as ``recorded``."""
    if presented is None or member is None:
        return Verdict.ADMIT
    if member.incarnation is not None:
        if presented != member.incarnation:
            return Verdict.REFUSE
        return Verdict.ADMIT if recorded == presented else Verdict.SYNC
    if recorded is None:
        return Verdict.RECORD
    return Verdict.ADMIT if recorded == presented else Verdict.REFUSE


def conflicts(presented: str | None, member: Member | None, recorded: str | None) -> bool:
    """A join request presenting ``presented`` for an existing member: is it another incarnation?"""
    if presented is None or member is None:
        return False
    known = member.incarnation or recorded
    return known is not None and known != presented


def to_adopt(membership: Membership, recorded: Callable[[str], str | None], own_id: str,
             own_incarnation: str | None) -> Member | None:
    """The first member without an incarnation in ``membership`` whose incarnation we know,
    with it filled in: the leader proposes it as a configuration change (one at a time)."""
    for m in membership.members:
        if m.incarnation is None:
            inc = own_incarnation if m.id == own_id else recorded(m.id)
            if inc:
                return dataclasses.replace(m, incarnation=inc)
    return None


def refusal(sender: str) -> str:
    """The reason a refused node reads (and logs as "peer X refuses us: <reason>")."""
    return (f"this data dir is a new incarnation of {sender} (the old one was wiped?); "
            f"remove {sender} from the cluster and add it back with --join")


def member_exists(node_id: str) -> str:
    return (f"{node_id} is already a member with another incarnation (its data dir was wiped?): "
            f"remove {node_id} from the cluster first (DELETE /v1/members/{node_id}), then start it again "
            f"with --join")


def valid(text: object) -> bool:
    return isinstance(text, str) and 0 < len(text) <= MAX_LEN and text.isascii() and text.isalnum()
