"""The pure building blocks: majority rules (quorum.py) and the in-memory log (log.py)."""

from __future__ import annotations

from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.raft import Entry, EntryKind, Index, NodeId, SnapshotMeta, Term, quorum
from node.raft.log import RaftLog
from node.raft.quorum import VoteResult

from .helpers import log_of, membership

T = TypeVar("T")


def ids(d: dict[str, T]) -> dict[NodeId, T]:
    return {NodeId(k): v for k, v in d.items()}


V3 = frozenset({NodeId("a"), NodeId("b"), NodeId("c")})
V4 = V3 | {NodeId("d")}

COMMITTED = [
    # (voters, match, expected, why)
    (V3, {"a": 5, "b": 3, "c": 1}, 3, "median of three"),
    (V3, {"a": 5}, 0, "one of three knows nothing"),
    (V4, {"a": 5, "b": 4, "c": 3, "d": 2}, 3, "3 of 4 needed"),
    (V3, {"a": 9, "b": 9, "x": 9}, 9, "non-voters are not counted (but two voters suffice)"),
    (V3, {"x": 9, "y": 9, "a": 9}, 0, "learners do not make a majority"),
    (frozenset(), {"a": 5}, 0, "no voters"),
]


@pytest.mark.parametrize(("voters", "match", "expected", "why"), COMMITTED, ids=[c[3] for c in COMMITTED])
def test_committed_index(voters: frozenset[NodeId], match: dict[str, int], expected: int, why: str) -> None:  # §5.3
    assert quorum.committed_index(voters, ids(match)) == expected, why


@given(st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 20), min_size=1))
@settings(max_examples=200, derandomize=True, database=None)
def test_committed_index_is_the_largest_index_a_majority_has(match: dict[str, int]) -> None:  # §5.3
    voters = frozenset(NodeId(v) for v in match)
    n = quorum.committed_index(voters, ids(match))
    assert sum(1 for v in match.values() if v >= n) >= quorum.majority(len(voters))
    assert sum(1 for v in match.values() if v >= n + 1) < quorum.majority(len(voters))


VOTES = [
    (V3, {"a": True, "b": True}, VoteResult.WON),
    (V3, {"a": True}, VoteResult.PENDING),
    (V3, {"a": True, "b": False}, VoteResult.PENDING),
    (V3, {"a": True, "b": False, "c": False}, VoteResult.LOST),
    (V4, {"a": True, "b": True}, VoteResult.PENDING),
    (V4, {"a": True, "b": True, "c": False, "d": False}, VoteResult.LOST),
    (V3, {"a": True, "x": True}, VoteResult.PENDING),  # a learner's vote does not count
    (frozenset(), {}, VoteResult.LOST),
]


@pytest.mark.parametrize(("voters", "votes", "expected"), VOTES)
def test_vote_result(voters: frozenset[NodeId], votes: dict[str, bool], expected: VoteResult) -> None:  # §5.2
    assert quorum.vote_result(voters, ids(votes)) is expected


def test_majority_and_has_quorum() -> None:
    assert [quorum.majority(n) for n in range(1, 7)] == [1, 2, 2, 3, 3, 4]
    a, b, x = NodeId("a"), NodeId("b"), NodeId("x")
    assert quorum.has_quorum(V3, {a, b}) and not quorum.has_quorum(V3, {a, x})
    assert not quorum.has_quorum(frozenset(), {a})


# ------------------------------------------------------------------ RaftLog

M = membership(("n1", "n2", "n3"))


def raft_log(*terms: int, snapshot_index: int = 0, snapshot_term: int = 0) -> RaftLog:
    meta = SnapshotMeta(Index(snapshot_index), Term(snapshot_term), M)
    return RaftLog(meta, log_of(*terms, start=snapshot_index + 1))


def test_term_lookup_around_the_snapshot() -> None:
    log = raft_log(2, 2, 3, snapshot_index=4, snapshot_term=1)
    assert [log.term(i) for i in range(3, 9)] == [None, 1, 2, 2, 3, None]
    assert (log.last_index, log.last_term, log.stable_index) == (7, 3, 7)


def test_slice_respects_max_bytes_but_returns_at_least_one_entry() -> None:
    log = raft_log(1, 1, 1, 1)  # 34 bytes each
    assert [e.index for e in log.slice(1, 4, max_bytes=70)] == [1, 2]
    assert [e.index for e in log.slice(1, 4, max_bytes=1)] == [1]
    assert [e.index for e in log.slice(3, 9)] == [3, 4]
    assert log.slice(5, 9) == []


@pytest.mark.parametrize(
    ("index", "first"), [(1, 1), (2, 1), (3, 3), (5, 3), (6, 6)]
)
def test_first_index_of_term(index: int, first: int) -> None:  # §5.3 conflict hint
    assert raft_log(1, 1, 2, 2, 2, 4).first_index_of_term(index) == first


def test_last_index_of_term() -> None:  # §5.3 conflict hint, leader side
    log = raft_log(1, 1, 4, 4, 5, 5, 6, 6, 6)
    assert [log.last_index_of_term(t) for t in (1, 2, 4, 5, 6, 7)] == [2, None, 4, 6, 9, None]


@pytest.mark.parametrize(
    ("last_index", "last_term", "ok"),
    [(3, 2, True), (4, 2, True), (2, 2, False), (1, 3, True), (9, 1, False)],
)
def test_is_up_to_date(last_index: int, last_term: int, ok: bool) -> None:  # §5.4.1
    assert raft_log(1, 1, 2).is_up_to_date(last_index, last_term) is ok


def test_truncation_drops_entries_and_configs_and_marks_the_rest_unstable() -> None:  # §5.3, §4.1
    grown = M.with_member(membership(("n4",)).members[0])
    log = raft_log(1, 1)
    log.append([Entry(Index(3), Term(1), EntryKind.CONFIG, grown.to_json())])
    assert log.membership() == grown and log.unstable() == [log.entry(3)]
    log.stable_to(3, 1)
    assert log.unstable() == []
    log.truncate_from(3)
    assert log.membership() == M and log.last_index == 2
    log.append(log_of(2, start=3))
    assert [e.index for e in log.unstable()] == [3]


def test_stable_to_ignores_a_stale_acknowledgement() -> None:
    log = raft_log(1)
    log.append(log_of(2, start=2))
    log.stable_to(2, 1)  # the entry at 2 is now of term 2: this is about an older write
    assert log.unstable_from == 2


def test_compact_and_restore() -> None:  # §7
    log = raft_log(1, 1, 2, 2)
    log.compact(2)
    assert (log.snapshot_index, log.snapshot_term, [e.index for e in log.entries]) == (2, 1, [3, 4])
    log.restore(SnapshotMeta(Index(3), Term(2), M))  # matches: keep 4
    assert (log.snapshot_index, log.last_index) == (3, 4)
    log.restore(SnapshotMeta(Index(4), Term(9), M))  # conflicts: drop everything
    assert (log.snapshot_index, log.last_index, log.entries) == (4, 4, [])
    with pytest.raises(AssertionError):
        log.compact(9)


def test_membership_at() -> None:  # §4.1 + §7: the snapshot records the configuration at its index
    a = M.without("n3")
    log = raft_log(1)
    log.append([Entry(Index(2), Term(1), EntryKind.CONFIG, a.to_json()), *log_of(1, start=3)])
    assert [log.membership_at(i) for i in (1, 2, 3)] == [M, a, a]
    log.stable_to(3, 1)
    log.compact(2)
    assert log.snapshot_membership == a and log.membership() == a and log.last_config_index() == 2
