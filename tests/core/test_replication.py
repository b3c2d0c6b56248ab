"""Log replication (§5.3), the commit rule of Figure 8 (§5.4.2), batching and
pipelining (§10.2.1 of the thesis)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from node.raft import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryKind,
    Index,
    ProgressState,
    RaftCore,
    Role,
    Term,
    quorum,
)

from .helpers import (
    CFG,
    CLASSIC,
    ELECTION_MAX,
    HEARTBEAT,
    Net,
    appends_carrying,
    both,
    drain,
    drain_all,
    frm,
    kind,
    leader_cluster,
    log_of,
    make_core,
    nid,
    of_type,
    progress_of,
    tick_until,
    to,
)


def ae(term: int, prev: int, prev_term: int, entries: tuple[Entry, ...], commit: int = 0, *,
       src: str = "n1", dst: str = "n2") -> AppendEntries:
    return AppendEntries(Term(term), nid(src), nid(dst), Index(prev), Term(prev_term), entries, Index(commit))


def terms(core: RaftCore) -> list[int]:
    return [e.term for e in core.log.entries]


def reply_of(core: RaftCore) -> AppendEntriesReply:
    (reply,) = of_type(drain(core).messages, AppendEntriesReply)
    return reply


# ------------------------------------------------------------------ follower side, §5.3


def test_log_matching_after_replication() -> None:  # §5.3 Log Matching Property
    net = leader_cluster(("n1", "n2", "n3", "n4", "n5"))
    for i in range(20):
        net["n1"].propose(f"v{i}")
        if i % 3 == 0:
            net.settle()
    net.tick("n1", n=HEARTBEAT)
    net.settle()
    logs = {n: tuple(net[n].log.entries) for n in net.cores}
    assert len(set(logs.values())) == 1
    assert {net[n].commit for n in net.cores} == {21}
    assert net.committed("n3") == [f"v{i}" for i in range(20)]


REJECT_CASES = [
    # (follower log terms, prev_index, prev_term, conflict_index, conflict_term, why)
    ((1, 1, 2), 3, 3, 3, 2, "term at prev differs: first index of that term"),
    ((1, 2, 2, 2), 4, 3, 2, 2, "a run of the conflicting term is skipped at once"),
    ((1, 1), 5, 1, 3, 0, "prev beyond the end: retry after our last entry"),
    ((), 1, 1, 1, 0, "empty log"),
]


@pytest.mark.parametrize(("log", "prev", "prev_term", "conflict_index", "conflict_term", "why"), REJECT_CASES,
                         ids=[c[5] for c in REJECT_CASES])
def test_append_with_a_mismatching_prev_is_rejected_with_a_hint(
    log: tuple[int, ...], prev: int, prev_term: int, conflict_index: int, conflict_term: int, why: str
) -> None:  # §5.3 consistency check and its optimisation
    f = make_core("n2", term=3, log=log_of(*log))
    before = list(f.log.entries)
    f.step(ae(3, prev, prev_term, log_of(3, start=prev + 1)))
    r = reply_of(f)
    assert not r.success
    assert (r.reject_index, r.conflict_index, r.conflict_term) == (prev, conflict_index, conflict_term), why
    assert f.log.entries == before


def test_conflicting_uncommitted_entries_are_truncated() -> None:  # §5.3
    f = make_core("n2", term=2, log=log_of(1, 1, 2, 2), commit=2)
    f.step(ae(3, 2, 1, log_of(3, start=3), commit=2))
    rd = drain(f)
    assert terms(f) == [1, 1, 3]
    # the Ready tells storage to replace everything from index 3 on
    assert [(e.index, e.term) for e in rd.entries] == [(3, 3)]
    (r,) = of_type(rd.messages, AppendEntriesReply)
    assert r.success and r.match_index == 3


def test_matching_entries_are_not_truncated_by_a_shorter_append() -> None:  # §5.3 "if an existing entry conflicts"
    f = make_core("n2", term=1, log=log_of(1, 1, 1, 1, 1))
    f.step(ae(1, 1, 1, log_of(1, 1, start=2)))
    r = reply_of(f)
    assert r.success and r.match_index == 3
    assert f.last_index == 5  # entries 4 and 5 stay: they do not conflict


COMMIT_CASES = [
    # (prev, n_entries, leader_commit, follower commit before, expected)
    (1, 2, 5, 0, 3),  # min(leader_commit, index of last new entry)
    (1, 0, 5, 0, 1),  # heartbeat: only up to prev is known to match
    (4, 1, 5, 0, 5),
    (1, 2, 2, 0, 2),  # the leader's commit is the bound
    (0, 5, 3, 0, 3),
    (1, 0, 5, 4, 4),  # the commit index never goes back
]


@pytest.mark.parametrize(("prev", "n", "leader_commit", "before", "expected"), COMMIT_CASES)
def test_follower_commit_is_min_of_leader_commit_and_last_new_entry(
    prev: int, n: int, leader_commit: int, before: int, expected: int
) -> None:  # §5.3, Figure 2 AppendEntries step 5
    f = make_core("n2", term=1, log=log_of(1, 1, 1, 1, 1), commit=before, applied=before)
    f.step(ae(1, prev, 1 if prev else 0, log_of(*[1] * n, start=prev + 1), leader_commit))
    assert reply_of(f).success
    assert f.commit == expected


def test_stale_duplicated_and_reordered_appends_are_harmless() -> None:  # §5.3
    f = make_core("n2", term=2, log=log_of(1), commit=1, applied=1)
    long = ae(2, 1, 1, log_of(2, 2, 2, start=2), commit=1)
    short = ae(2, 1, 1, log_of(2, start=2), commit=1)
    f.step(long)
    assert reply_of(f).match_index == 4
    f.step(short)  # delivered late
    r = reply_of(f)
    assert r.success and r.match_index == 2 and f.last_index == 4
    f.step(long)  # duplicated
    assert reply_of(f).match_index == 4 and terms(f) == [1, 2, 2, 2]
    f.step(ae(1, 0, 0, log_of(1, 1, 1), commit=3))  # a deposed leader of term 1
    r = reply_of(f)
    assert not r.success and r.term == 2  # tells it about term 2
    assert terms(f) == [1, 2, 2, 2] and f.commit == 1 and f.leader_id == "n1"


def test_append_below_the_snapshot_is_accepted_as_matching() -> None:  # §7 + §5.3
    from node.raft import SnapshotMeta

    from .helpers import membership

    snap = SnapshotMeta(Index(5), Term(1), membership(("n1", "n2", "n3")))
    f = make_core("n2", term=1, snapshot=snap, commit=5, applied=5)
    f.step(ae(1, 3, 1, log_of(1, 1, 1, 1, start=4), commit=6))
    r = reply_of(f)
    assert r.success and r.match_index == 7 and f.last_index == 7 and f.commit == 6


# ------------------------------------------------------------------ leader side, §5.3


def test_reordered_and_duplicated_replies_are_harmless() -> None:  # §5.3
    net = leader_cluster()
    n1 = net["n1"]
    replies: list[AppendEntriesReply] = []
    for i in range(3):
        n1.propose(f"v{i}")
        net.flush("n1")
        net.deliver(to("n2"))
        net.drop(to("n3"))
        replies += of_type(net.flush("n2"), AppendEntriesReply)
        net.drop()
    assert [r.match_index for r in replies] == [2, 3, 4]
    for r in [replies[2], replies[0], replies[2], replies[1], replies[0]]:
        n1.step(r)
    pr = n1.progress(nid("n2"))
    assert pr is not None
    assert (pr.match_index, pr.next_index, pr.state) == (4, 5, ProgressState.REPLICATE)
    assert n1.commit == 4


def test_stale_rejection_does_not_move_next_index_back_below_match() -> None:  # §5.3
    net = leader_cluster()
    n1 = net["n1"]
    n1.propose("a")
    net.settle()
    pr = n1.progress(nid("n2"))
    assert pr is not None and pr.match_index == 2
    n1.step(AppendEntriesReply(Term(1), nid("n2"), nid("n1"), False, Index(0), reject_index=Index(1),
                               conflict_index=Index(1)))
    assert (pr.match_index, pr.next_index, pr.state) == (2, 3, ProgressState.REPLICATE)


# Figure 7: the leader of term 8 and six possible followers.
FIGURE_7_LEADER = (1, 1, 1, 4, 4, 5, 5, 6, 6, 6)
FIGURE_7 = [
    # (follower, its log, at most this many rejections before it matches)
    ("a", (1, 1, 1, 4, 4, 5, 5, 6, 6), 1),
    ("b", (1, 1, 1, 4), 1),
    ("c", (1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6), 0),
    ("d", (1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7), 0),
    ("e", (1, 1, 1, 4, 4, 4, 4), 2),
    ("f", (1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3), 2),
]


def figure7_net(follower_log: tuple[int, ...]) -> Net:
    """n1 has the leader's log of Figure 7, n2 the follower's, n3 a copy of the leader's."""
    return divergent_net(log_of(*FIGURE_7_LEADER), log_of(*follower_log), term=7, commit=3)


def divergent_net(leader_log: tuple[Entry, ...], follower_log: tuple[Entry, ...], *, term: int, commit: int) -> Net:
    def core(name: str, log: tuple[Entry, ...], seed: int) -> RaftCore:
        return make_core(name, log=log, seed=seed, term=term, commit=commit, applied=commit, config=CLASSIC)

    return Net({"n1": core("n1", leader_log, 1), "n2": core("n2", follower_log, 2), "n3": core("n3", leader_log, 3)})


def replicate_counting_rejections(net: Net, leader: str, follower: str, limit: int = 50) -> int:
    rejections = 0
    for _ in range(limit):
        net.flush()
        if not net.queue:
            break
        rejections += sum(
            1 for m in net.pending(frm(follower)) if isinstance(m, AppendEntriesReply) and not m.success
        )
        net.deliver()
    assert net[follower].log.entries == net[leader].log.entries
    return rejections


@pytest.mark.parametrize(("name", "follower_log", "max_rejections"), FIGURE_7, ids=[c[0] for c in FIGURE_7])
def test_figure_7_followers_converge_with_few_round_trips(
    name: str, follower_log: tuple[int, ...], max_rejections: int
) -> None:  # §5.3, Figure 7, and the conflict_term optimisation
    net = figure7_net(follower_log)
    tick_until(net["n1"], lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    net.flush("n1")
    net.deliver()  # n3 grants; n2 answers as its log allows
    net.flush()
    net.deliver(to("n1"))
    net.drop()
    assert net["n1"].role is Role.LEADER and net["n1"].term == 8
    rejections = replicate_counting_rejections(net, "n1", "n2")
    assert rejections <= max_rejections, f"figure 7 ({name}): {rejections} rejections"
    assert terms(net["n2"]) == [*FIGURE_7_LEADER, 8]  # extra entries of (c), (d), (e), (f) are gone


@pytest.mark.parametrize("length", [50, 2000])
def test_backtracking_over_a_long_divergent_log_is_fast(length: int) -> None:  # §5.3 optimisation
    leader_log = log_of(1, *[3] * length)
    follower_log = log_of(1, *[2] * (length + length // 2))
    net = divergent_net(leader_log, follower_log, term=3, commit=1)
    tick_until(net["n1"], lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    for _ in range(3):
        net.flush()
        net.deliver()
    assert net["n1"].role is Role.LEADER
    assert replicate_counting_rejections(net, "n1", "n2") <= 2


@pytest.mark.parametrize("seed", range(30))
def test_random_loss_duplication_and_reordering_converge(seed: int) -> None:  # §5.3: the network may do anything
    rng = random.Random(seed)
    net = leader_cluster(("n1", "n2", "n3"), config=replace(CLASSIC, max_append_bytes=100))
    n1 = net["n1"]
    for i in range(40):
        if n1.role is Role.LEADER and rng.random() < 0.6:
            n1.propose(f"v{i}")
        net.tick("n1")
        net.flush()
        rng.shuffle(net.queue)
        keep = [m for m in net.queue if rng.random() > 0.3]
        net.queue = keep + [m for m in keep if rng.random() < 0.2]  # duplicates
        net.deliver(lambda m: rng.random() < 0.5)  # the rest stays in flight
    for _ in range(4 * ELECTION_MAX):
        net.tick("n1")
        net.settle()
    assert n1.role is Role.LEADER and n1.term == 1
    assert net["n2"].log.entries == net["n3"].log.entries == n1.log.entries
    assert {net[n].commit for n in net.cores} == {n1.last_index}
    assert net.committed("n2") == net.committed("n1")


# ------------------------------------------------------------------ §5.4.2, Figure 8

FIG8 = replace(CLASSIC, max_append_bytes=1)  # one entry per AppendEntries: the old entry travels alone


def figure8_state_c() -> Net:
    """Play Figure 8 (a) to (c) with S1..S5 = n1..n5.

    Returns the network in state (c): S1 leads term 4 with log [1, 2@2, 3@4];
    the term-2 entry at index 2 is on S1, S2 and S3 (a majority), the entry
    of term 4 is on S1 and S2 only, and the AppendEntries that would bring
    3@4 to S3 is still in flight.
    """
    names = ("n1", "n2", "n3", "n4", "n5")
    net = Net({n: make_core(n, names, seed=i, config=FIG8) for i, n in enumerate(names)})
    # term 1: S1 leads and everyone commits its no-op at index 1
    tick_until(net["n1"], lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    net.settle()
    assert net["n1"].role is Role.LEADER and {net[n].commit for n in names} == {1}

    # (a) S1 leads term 2 and replicates index 2 to S2 only
    net.crash("n1")
    net.restart("n1")
    tick_until(net["n1"], lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    net.flush()
    net.deliver()
    net.flush()
    net.deliver(to("n1"))
    assert net["n1"].role is Role.LEADER and net["n1"].term == 2
    net.flush("n1")
    net.deliver(both(to("n2"), appends_carrying(2)))
    net.drop()
    net.flush()
    net.drop()
    assert [terms(net[n]) for n in names] == [[1, 2], [1, 2], [1], [1], [1]]

    # (b) S1 crashes; S5 is elected for term 3 by S3, S4, S5 and takes index 2 of term 3 locally only
    net.crash("n1")
    tick_until(net["n5"], lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    net.flush()
    net.deliver()
    net.flush()
    net.deliver(to("n5"))
    assert net["n5"].role is Role.LEADER and net["n5"].term == 3
    net.crash("n5")
    net.drop()
    assert [terms(net[n]) for n in names] == [[1, 2], [1, 2], [1], [1], [1, 3]]

    # (c) S5 crashes; S1 restarts and is elected for term 4 (by S1, S2, S3) ...
    net.restart("n1")
    n1 = net["n1"]
    while n1.role is not Role.LEADER:
        tick_until(n1, lambda c: c.role is Role.CANDIDATE, limit=2 * ELECTION_MAX)
        net.flush("n1")
        net.deliver(to("n2", "n3"))
        net.drop()
        net.flush()
        net.deliver(to("n1"))
        net.drop()
    assert n1.term == 4 and terms(n1) == [1, 2, 4]
    # ... and replicates: S2 takes 3@4; S3 first rejects, then takes 2@2 alone
    net.flush("n1")  # probes: prev (2, term 2) with 3@4
    net.drop(to("n4", "n5"))
    net.deliver()  # S2 matches and takes 3@4, S3 has no index 2 and rejects
    net.flush()
    net.deliver()
    net.flush("n1")  # S3 is probed again one step back: 2@2 alone (max_append_bytes=1)
    net.deliver(both(to("n3"), appends_carrying(2)))
    net.flush("n3")
    net.deliver(to("n1"))
    net.flush("n1")  # S3 now in the replicate state: 3@4 is sent to it, and stays in flight
    assert [terms(net[n]) for n in names] == [[1, 2, 4], [1, 2, 4], [1, 2], [1], [1, 3]]
    assert net.pending(both(to("n3"), appends_carrying(3)))
    return net


def test_figure_8_old_term_entry_on_a_majority_is_not_committed() -> None:  # §5.4.2, Figure 8 (c)
    net = figure8_state_c()
    n1 = net["n1"]
    match = {nid(p): int(progress_of(n1, p).match_index) for p in ("n2", "n3", "n4", "n5")}
    match[n1.id] = n1.log.stable_index
    assert match == {"n1": 3, "n2": 3, "n3": 2, "n4": 0, "n5": 0}
    # counting replicas would give index 2 ...
    assert quorum.committed_index(n1.membership.voters, match) == 2
    # ... but index 2 is of term 2, not the leader's term 4: it is not committed
    assert n1.commit == 1
    assert all(e.index < 2 for rd in net.readies["n1"] for e in rd.committed)


def test_figure_8_d_the_old_entry_can_still_be_overwritten() -> None:  # §5.4.2, Figure 8 (d)
    net = figure8_state_c()
    net.drop()
    net.crash("n1")  # S1 crashes before 3@4 reaches a majority
    net.restart("n5")
    n5 = net["n5"]
    while n5.role is not Role.LEADER:  # S5 wins with S3 and S4: its last term 3 beats their 2
        tick_until(n5, lambda c: c.role is Role.CANDIDATE, limit=2 * ELECTION_MAX)
        net.settle()
    net.settle()
    assert n5.term == 5
    # index 2 of term 2 was on a majority, and now it is gone: it must not have been committed
    assert [terms(net[n]) for n in ("n2", "n3", "n4", "n5")] == [[1, 3, 5]] * 4


def test_figure_8_e_committed_with_an_entry_of_the_current_term() -> None:  # §5.4.2, Figure 8 (e)
    net = figure8_state_c()
    net.deliver()  # 3@4 reaches S3
    net.flush()
    net.deliver()
    net.flush("n1")
    n1 = net["n1"]
    assert n1.commit == 3  # index 3 of term 4 is on a majority: it and index 2 before it are committed
    assert [(e.index, e.term) for rd in net.readies["n1"] for e in rd.committed] == [(1, 1), (2, 2), (3, 4)]
    # S5 can no longer win: S1, S2 and S3 have a log more up to date than its own
    net.crash("n1")
    net.restart("n5")
    for _ in range(5):
        tick_until(net["n5"], lambda c: c.role is Role.CANDIDATE, limit=2 * ELECTION_MAX)
        net.flush()
        net.deliver(lambda m: m.dst != "n1")
        net.flush()
        net.deliver(to("n5"))
        net.drop()
        assert net["n5"].role is not Role.LEADER
    assert terms(net["n2"])[:3] == terms(net["n3"])[:3] == [1, 2, 4]


def test_figure_8_a_leader_that_counts_old_entries_loses_a_committed_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # §5.4.2: why the rule exists (the broken rule, shown on our core)
    def counting_commit(self: RaftCore) -> None:
        match = {p: pr.match_index for p, pr in self._progress.items()}  # noqa: SLF001
        match[self.id] = self.log.stable_index
        n = quorum.committed_index(self.membership.voters, match)
        if n > self.commit:  # BROKEN on purpose: no "term(n) == current term" check
            self.commit = n
            self._commit_dirty = True  # noqa: SLF001

    monkeypatch.setattr(RaftCore, "_maybe_commit", counting_commit)
    net = figure8_state_c()
    applied_by_s1 = [(e.index, e.term) for rd in net.readies["n1"] for e in rd.committed]
    assert (2, 2) in applied_by_s1  # S1 committed and applied index 2 of term 2
    net.drop()
    net.crash("n1")
    net.restart("n5")
    while net["n5"].role is not Role.LEADER:
        tick_until(net["n5"], lambda c: c.role is Role.CANDIDATE, limit=2 * ELECTION_MAX)
        net.settle()
    net.settle()
    applied_by_s3 = [(e.index, e.term) for rd in net.readies["n3"] for e in rd.committed]
    assert (2, 3) in applied_by_s3  # S3 applied a different entry at index 2: state machine safety broken


# ------------------------------------------------------------------ batching and pipelining


def test_many_proposals_between_two_readies_make_one_ready() -> None:  # batching
    net = leader_cluster()
    n1 = net["n1"]
    for i in range(100):
        n1.propose(f"v{i}")
    rd = drain(n1)
    assert [e.data for e in rd.entries] == [f"v{i}" for i in range(100)]  # one write for the batch
    appends = of_type(rd.messages, AppendEntries)
    assert sorted(m.dst for m in appends) == ["n2", "n3"]  # one AppendEntries per follower
    assert all(len(m.entries) == 100 for m in appends)
    assert n1.ready() is None
    net.queue.extend(rd.messages)
    net.deliver()
    for f in ("n2", "n3"):
        readies = drain_all(net[f])
        assert len(readies) == 1 and len(readies[0].entries) == 100
        assert len(of_type(readies[0].messages, AppendEntriesReply)) == 1


def test_batch_larger_than_max_append_bytes_is_split() -> None:  # batching
    net = leader_cluster(config=replace(CFG, max_append_bytes=1000))
    n1 = net["n1"]
    for _ in range(100):
        n1.propose("x" * 68)  # 100 bytes each with the entry overhead
    appends = of_type(drain(n1).messages, AppendEntries)
    per_peer = [m for m in appends if m.dst == "n2"]
    assert [len(m.entries) for m in per_peer] == [10] * 10
    assert [m.prev_index for m in per_peer] == list(range(1, 101, 10))


def test_pipelining_sends_new_entries_before_acknowledgement() -> None:  # §10.2.1 (thesis)
    net = leader_cluster()
    n1 = net["n1"]
    assert progress_of(n1, "n2").state is ProgressState.REPLICATE
    sent: list[AppendEntries] = []
    for i in range(3):
        n1.propose(f"v{i}")
        sent += [m for m in of_type(drain(n1).messages, AppendEntries) if m.dst == "n2"]
    assert [(m.prev_index, [e.index for e in m.entries]) for m in sent] == [(1, [2]), (2, [3]), (3, [4])]


def test_pipelining_is_bounded_by_max_inflight() -> None:  # flow control
    net = leader_cluster(config=replace(CFG, max_append_bytes=1, max_inflight=4))
    n1 = net["n1"]
    for i in range(10):
        n1.propose(f"v{i}")
    net.flush("n1")
    to_n2 = of_type(net.pending(both(to("n2"), kind(AppendEntries))), AppendEntries)
    assert [[e.index for e in m.entries] for m in to_n2] == [[2], [3], [4], [5]]  # 4 beyond match 1
    # one acknowledgement opens the window by one
    first = to_n2[0]
    net.deliver(lambda m: m is first)
    net.flush("n2")
    net.deliver(to("n1"))
    more = [m for m in of_type(net.flush("n1"), AppendEntries) if m.dst == "n2"]
    assert [[e.index for e in m.entries] for m in more] == [[6]]


def test_max_inflight_bounds_entries_also_with_large_batches() -> None:  # flow control, core docstring
    net = leader_cluster(config=replace(CFG, max_inflight=4))
    n1 = net["n1"]
    for i in range(10):
        n1.propose(f"v{i}")
    to_n2 = [m for m in of_type(drain(n1).messages, AppendEntries) if m.dst == "n2"]
    pr = progress_of(n1, "n2")
    in_flight = sum(len(m.entries) for m in to_n2)
    # "up to max_inflight entries beyond what the follower has acknowledged"
    assert in_flight <= 4, f"{in_flight} entries in flight beyond match {pr.match_index}"


def test_leaders_own_entry_counts_only_once_durable() -> None:  # §10.2.1 (thesis): count it when durable
    net = leader_cluster(("n1", "n2", "n3", "n4", "n5"))
    n1 = net["n1"]
    n1.propose("a")
    rd = n1.ready()  # the driver is still writing this Ready when the answers come back
    assert rd is not None and [e.data for e in rd.entries] == ["a"]
    net.queue.extend(m for m in rd.messages if m.dst in ("n2", "n3"))
    net.deliver()
    net.flush("n2", "n3")
    net.deliver(to("n1"))
    assert n1.commit == 1  # n2 and n3 have it, but 2 of 5 plus a non-durable leader is no majority
    n1.advance(rd)
    assert n1.commit == 2


def test_committed_entries_come_out_in_batches_of_max_apply_batch() -> None:  # apply in order, bounded
    net = leader_cluster(config=replace(CFG, max_apply_batch=3))
    n1 = net["n1"]
    for i in range(7):
        n1.propose(f"v{i}")
    net.settle()
    batches = [[e.index for e in rd.committed] for rd in net.readies["n2"] if rd.committed]
    assert batches == [[1], [2, 3, 4], [5, 6, 7], [8]]


def test_probe_state_sends_one_append_at_a_time() -> None:  # §5.3 probing
    net = leader_cluster()
    n1 = net["n1"]
    net.crash("n3")
    for i in range(3):
        n1.propose(f"v{i}")
        net.flush("n1")
        net.drop()
    pr = n1.progress(nid("n3"))
    assert pr is not None and pr.state is ProgressState.REPLICATE
    n1.report_unreachable(nid("n3"))
    assert pr.state is ProgressState.PROBE
    sent = [m for m in of_type(net.flush("n1"), AppendEntries) if m.dst == "n3"]
    assert len(sent) == 1 and sent[0].prev_index == 1
    n1.propose("v3")
    assert [m for m in net.flush("n1") if m.dst == "n3"] == []  # still waiting for the probe's answer
    net.tick("n1", n=HEARTBEAT)
    assert len([m for m in net.flush("n1") if m.dst == "n3"]) == 1  # the heartbeat re-probes


def test_commit_advance_is_sent_to_followers() -> None:  # §5.3: followers learn leaderCommit
    net = leader_cluster()
    net["n1"].propose("a")
    net.settle()
    assert {net[n].commit for n in net.cores} == {2}
    assert net.committed("n2") == net.committed("n3") == ["a"]


def test_entry_kinds_of_a_term() -> None:
    net = leader_cluster()
    assert [e.kind for e in net["n1"].log.entries] == [EntryKind.NOOP]


# ------------------------------------------------------------------ the Ready contract


def behind_after_rejection() -> RaftCore:
    """n3 missed 3 entries; the leader just got its rejection and must probe again."""
    net = leader_cluster()
    net.crash("n3")
    for i in range(3):
        net["n1"].propose(f"v{i}")
    net.settle()
    net.restart("n3")
    net.tick("n1", n=HEARTBEAT)
    net.flush("n1")
    net.deliver()
    net.flush("n2", "n3")
    net.deliver(to("n1"))
    return net["n1"]


def more_to_send_after_probe_ack() -> RaftCore:
    """One entry per AppendEntries: the probe's ack leaves two entries to stream."""
    net = leader_cluster(config=replace(CFG, max_append_bytes=1))
    net.crash("n3")
    for i in range(3):
        net["n1"].propose(f"v{i}")
    net.settle()
    net.restart("n3")
    net["n1"].report_unreachable(nid("n3"))
    net.flush("n1")
    net.deliver(to("n3"))
    net.flush("n3")
    net.deliver(to("n1"))
    return net["n1"]


def window_opened_by_ack() -> RaftCore:
    """max_inflight=1: an ack (that commits nothing: 2 of 5) lets the next entry go."""
    net = leader_cluster(("n1", "n2", "n3", "n4", "n5"), config=replace(CFG, max_append_bytes=1, max_inflight=1))
    for i in range(3):
        net["n1"].propose(f"v{i}")
    net.flush("n1")
    net.deliver(to("n2"))
    net.flush("n2")
    net.deliver(to("n1"))
    return net["n1"]


def follower_after_append() -> RaftCore:
    net = leader_cluster()
    net["n1"].propose("a")
    net.flush("n1")
    net.deliver(to("n2"))
    return net["n2"]


def candidate_after_timeout() -> RaftCore:
    core = make_core("n1")
    tick_until(core, lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    return core


def leader_after_commit() -> RaftCore:
    net = leader_cluster()
    net["n1"].propose("a")
    net.flush("n1")
    net.deliver(to("n2"))
    net.flush("n2")
    net.deliver(to("n1"))
    return net["n1"]


@pytest.mark.parametrize("make", [follower_after_append, candidate_after_timeout, leader_after_commit])
def test_has_ready_announces_every_ready(make: Callable[[], RaftCore]) -> None:  # the driver contract of ready()
    core = make()
    assert core.has_ready() and core.ready() is not None
    assert drain_all(core) is not None and not core.has_ready() and core.ready() is None


@pytest.mark.parametrize("make", [behind_after_rejection, more_to_send_after_probe_ack, window_opened_by_ack])
def test_has_ready_announces_appends_the_leader_owes(make: Callable[[], RaftCore]) -> None:  # the driver contract
    core = make()
    announced = core.has_ready()
    rd = core.ready()
    assert rd is not None and of_type(rd.messages, AppendEntries)
    assert announced, "ready() had AppendEntries to send but has_ready() said there was nothing"
