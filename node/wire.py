"""JSON encoding of Raft messages between nodes, with strict validation.

A batch on the wire is ``{"cluster": ID, "from": NODE, "msgs": [...]}``.
Decoding never trusts its input: a wrong type or a missing field raises
``WireError`` (rendered as 400), never anything else.
"""

from __future__ import annotations

import base64
from typing import Any

from .raft import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryKind,
    Index,
    InstallSnapshot,
    InstallSnapshotReply,
    Member,
    Membership,
    Message,
    NodeId,
    RequestVote,
    RequestVoteReply,
    SnapshotMeta,
    Term,
    TimeoutNow,
)


class WireError(ValueError):
    pass


_KINDS = {k.value: k for k in EntryKind}


def _membership_out(m: Membership) -> list[dict[str, Any]]:
    return [x.to_dict() for x in m.members]


def encode(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"t": type(m).__name__, "term": m.term, "src": m.src, "dst": m.dst}
    match m:
        case RequestVote():
            d.update(lli=m.last_log_index, llt=m.last_log_term, pre=m.pre_vote, xfer=m.transfer)
        case RequestVoteReply():
            d.update(granted=m.granted, pre=m.pre_vote)
        case AppendEntries():
            d.update(
                pi=m.prev_index, pt=m.prev_term, lc=m.leader_commit, seq=m.seq,
                e=[[e.index, e.term, e.kind.value, e.data] for e in m.entries],
            )
        case AppendEntriesReply():
            d.update(ok=m.success, mi=m.match_index, ri=m.reject_index, ci=m.conflict_index,
                     ct=m.conflict_term, seq=m.seq)
        case InstallSnapshot():
            d.update(si=m.meta.index, st=m.meta.term, members=_membership_out(m.meta.membership),
                     data=base64.b64encode(m.data).decode())
        case InstallSnapshotReply():
            d.update(mi=m.match_index)
        case TimeoutNow():
            pass
    return d


def _int(d: dict[str, Any], k: str) -> int:
    v = d.get(k)
    if type(v) is not int or v < 0:
        raise WireError(f"field {k!r} must be a non-negative integer")
    return v


def _bool(d: dict[str, Any], k: str) -> bool:
    v = d.get(k)
    if type(v) is not bool:
        raise WireError(f"field {k!r} must be a boolean")
    return v


def _str(d: dict[str, Any], k: str) -> str:
    v = d.get(k)
    if type(v) is not str:
        raise WireError(f"field {k!r} must be a string")
    return v


def _membership_in(v: Any) -> Membership:
    if not isinstance(v, list):
        raise WireError("members must be a list")
    out = []
    for x in v:
        if not isinstance(x, dict):
            raise WireError("member must be an object")
        inc = x.get("incarnation")
        if inc is not None and type(inc) is not str:
            raise WireError("field 'incarnation' must be a string")
        out.append(Member(NodeId(_str(x, "id")), _str(x, "address"), _bool(x, "voter"), inc))
    return Membership.of(out)


def decode(d: Any) -> Message:
    if not isinstance(d, dict):
        raise WireError("message must be an object")
    t = d.get("t")
    term, src, dst = Term(_int(d, "term")), NodeId(_str(d, "src")), NodeId(_str(d, "dst"))
    if t == "RequestVote":
        return RequestVote(term, src, dst, Index(_int(d, "lli")), Term(_int(d, "llt")),
                           _bool(d, "pre"), _bool(d, "xfer"))
    if t == "RequestVoteReply":
        return RequestVoteReply(term, src, dst, _bool(d, "granted"), _bool(d, "pre"))
    if t == "AppendEntries":
        raw = d.get("e")
        if not isinstance(raw, list):
            raise WireError("entries must be a list")
        entries = []
        prev = _int(d, "pi")
        for i, e in enumerate(raw):
            if (not isinstance(e, list) or len(e) != 4 or type(e[0]) is not int or type(e[1]) is not int
                    or e[2] not in _KINDS or type(e[3]) is not str):
                raise WireError("malformed entry")
            if e[0] != prev + 1 + i or e[1] > term:
                raise WireError("entries out of sequence")
            entries.append(Entry(Index(e[0]), Term(e[1]), _KINDS[e[2]], e[3]))
        return AppendEntries(term, src, dst, Index(prev), Term(_int(d, "pt")), tuple(entries),
                             Index(_int(d, "lc")), _int(d, "seq"))
    if t == "AppendEntriesReply":
        return AppendEntriesReply(term, src, dst, _bool(d, "ok"), Index(_int(d, "mi")), Index(_int(d, "ri")),
                                  Index(_int(d, "ci")), Term(_int(d, "ct")), _int(d, "seq"))
    if t == "InstallSnapshot":
        try:
            data = base64.b64decode(_str(d, "data"), validate=True)
        except ValueError:
            raise WireError("snapshot data is not base64") from None
        meta = SnapshotMeta(Index(_int(d, "si")), Term(_int(d, "st")), _membership_in(d.get("members")))
        return InstallSnapshot(term, src, dst, meta, data)
    if t == "InstallSnapshotReply":
        return InstallSnapshotReply(term, src, dst, Index(_int(d, "mi")))
    if t == "TimeoutNow":
        return TimeoutNow(term, src, dst)
    raise WireError(f"unknown message type {t!r}")
