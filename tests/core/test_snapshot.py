"""Log compaction and InstallSnapshot (§7)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from node.raft import (
    AppendEntries,
    Entry,
    EntryKind,
    Index,
    InitialState,
    InstallSnapshot,
    InstallSnapshotReply,
    ProgressState,
    RaftCore,
    SnapshotMeta,
    Term,
)

from .helpers import (
    CFG,
    ELECTION_MAX,
    HEARTBEAT,
    Net,
    drain,
    kind,
    leader_cluster,
    log_of,
    make_core,
    membership,
    nid,
    of_type,
    restart,
    to,
)

VOTERS = ("n1", "n2", "n3")


def install(meta_index: int, meta_term: int, *, term: int = 3, voters: tuple[str, ...] = VOTERS,
            data: bytes = b"image") -> InstallSnapshot:
    meta = SnapshotMeta(Index(meta_index), Term(meta_term), membership(voters))
    return InstallSnapshot(Term(term), nid("n1"), nid("n2"), meta, data)


def fill_snapshot_data(net: Net, data: bytes) -> None:
    """What the driver does: put the stored image into each outgoing InstallSnapshot."""
    net.queue = [replace(m, data=data) if isinstance(m, InstallSnapshot) else m for m in net.queue]


def lagging_follower_cluster() -> Net:
    """n1 leads; n3 was down while 10 entries were committed; n1 compacted up to 8."""
    net = leader_cluster()
    n1 = net["n1"]
    net.crash("n3")
    for i in range(10):
        n1.propose(f"v{i}")
    net.settle()
    assert n1.commit == n1.applied == 11
    n1.compact(8)
    assert (n1.log.snapshot_index, n1.log.snapshot_term) == (8, 1)
    assert [e.index for e in n1.log.entries] == [9, 10, 11]
    net.restart("n3")
    return net


def test_lagging_follower_gets_install_snapshot_then_the_rest() -> None:  # §7
    net = lagging_follower_cluster()
    n1, n3 = net["n1"], net["n3"]
    snapshots: list[InstallSnapshot] = []
    for _ in range(4):
        net.tick("n1", n=HEARTBEAT)
        net.flush()
        snapshots += of_type(net.pending(to("n3")), InstallSnapshot)
        fill_snapshot_data(net, b"image-8")
        net.deliver()
    net.settle()
    assert snapshots, "no InstallSnapshot was sent"
    sent = snapshots[0]
    assert sent.meta == SnapshotMeta(Index(8), Term(1), n1.membership)
    assert sent.data == b""  # the core sends metadata; the driver attaches the image
    (restored,) = [rd.snapshot for rd in net.readies["n3"] if rd.snapshot is not None]
    assert restored.meta.index == 8 and restored.data == b"image-8"
    assert n3.log.snapshot_index == 8 and n3.log.entries == n1.log.entries
    assert n3.commit == n3.applied == 11
    assert net.committed("n3") == ["v7", "v8", "v9"]  # 1..8 came with the snapshot
    pr = n1.progress(nid("n3"))
    assert pr is not None and (pr.state, pr.match_index) == (ProgressState.REPLICATE, 11)


def test_restore_keeps_a_matching_suffix() -> None:  # §7: "retain the entries following it"
    f = make_core("n2", term=3, log=log_of(1, 1, 1, 1, 1, 2, 2, 2, 3, 3), commit=3, applied=3)
    f.step(install(5, 1))
    rd = drain(f)
    assert rd.snapshot is not None and rd.snapshot.meta.index == 5 and rd.snapshot.data == b"image"
    assert f.log.snapshot_index == 5 and f.last_index == 10
    assert [e.index for e in rd.entries] == [6, 7, 8, 9, 10]  # storage rewrites the kept suffix
    assert f.commit == f.applied == 5
    assert of_type(rd.messages, InstallSnapshotReply)[0].match_index == 5


@pytest.mark.parametrize(
    ("log", "why"),
    [((1, 1, 1, 1, 2, 2, 2), "entry at the snapshot index has another term"), ((1, 1), "log too short")],
)
def test_restore_discards_a_conflicting_or_short_log(log: tuple[int, ...], why: str) -> None:  # §7
    f = make_core("n2", term=3, log=log_of(*log), commit=2, applied=2)
    f.step(install(5, 3))
    rd = drain(f)
    assert f.log.snapshot_index == 5 and f.last_index == 5 and f.log.entries == [], why
    assert rd.entries == () and f.log.last_term == 3
    assert f.commit == f.applied == 5


def test_stale_snapshot_is_ignored_and_answered_with_the_commit_index() -> None:  # §7
    f = make_core("n2", term=3, log=log_of(1, 1, 1, 1, 1, 1, 1, 1, 2, 2), commit=8, applied=8)
    before = list(f.log.entries)
    f.step(install(5, 1))
    rd = drain(f)
    assert rd.snapshot is None and f.log.entries == before and f.log.snapshot_index == 0
    (reply,) = of_type(rd.messages, InstallSnapshotReply)
    assert reply.match_index == 8


def test_snapshot_carries_the_membership() -> None:  # §7 + §4: the configuration is part of the image
    f = make_core("n2", term=3, log=log_of(1), commit=1, applied=1)
    f.step(install(5, 2, voters=("n1", "n2", "n3", "n4")))
    drain(f)
    assert f.membership.voters == {"n1", "n2", "n3", "n4"}


def test_snapshot_from_a_stale_leader_is_rejected() -> None:  # §5.1 + §7
    f = make_core("n2", term=5, log=log_of(1), commit=1, applied=1)
    f.step(install(5, 2, term=4))
    rd = drain(f)
    assert rd.snapshot is None and f.log.snapshot_index == 0
    assert [m.term for m in rd.messages] == [5]  # it tells the old leader about term 5


def test_leader_resends_a_lost_snapshot() -> None:  # §7: InstallSnapshot may be lost like any message
    net = lagging_follower_cluster()
    n1 = net["n1"]
    first: list[InstallSnapshot] = []
    while not first:
        net.tick("n1", n=HEARTBEAT)
        net.flush("n1")
        first = of_type(net.pending(to("n3")), InstallSnapshot)
        net.drop(kind(InstallSnapshot))  # lost
        net.deliver()
        net.flush()
        net.deliver()
    pr = n1.progress(nid("n3"))
    assert pr is not None and pr.state is ProgressState.SNAPSHOT
    net.drop()
    resent: list[InstallSnapshot] = []
    for _ in range(11 * ELECTION_MAX):  # the leader waits 10 election timeouts for a big snapshot
        n1.tick()
        out = net.flush("n1")
        resent += of_type(out, InstallSnapshot)
        # while the snapshot is outstanding the follower only gets empty heartbeats
        assert all(not m.entries for m in of_type(out, AppendEntries) if m.dst == "n3")
        net.drop(kind(InstallSnapshot))
        net.deliver()
        net.flush()
        net.deliver()
    assert resent and resent[0].meta.index == 8
    for _ in range(11 * ELECTION_MAX):  # the network recovers: the next copy gets through
        n1.tick()
        net.flush()
        fill_snapshot_data(net, b"image-8")
        net.deliver()
        if net["n3"].commit == n1.commit:
            break
    net.settle()
    assert net["n3"].commit == net["n3"].applied == n1.commit == 11


def test_restart_from_a_snapshot() -> None:  # §7: the snapshot replaces the compacted prefix on disk
    net = leader_cluster()
    n1 = net["n1"]
    for i in range(5):
        n1.propose(f"v{i}")
    net.settle()
    n1.compact(4)
    again = restart(n1)
    assert (again.log.snapshot_index, again.last_index, again.commit, again.applied) == (4, 6, 6, 6)
    assert again.term == 1 and again.voted_for == "n1"
    assert again.membership == n1.membership


# ------------------------------------------------------------------ catch-up entries kept by compaction


def catchup_cluster(keep: int) -> Net:
    """n1 leads and keeps ``keep`` catch-up entries; n3 (log: 1) was down while 2..11 were
    committed; n1 compacted up to 11, its whole log."""
    net = leader_cluster(config=replace(CFG, snapshot_catchup_entries=keep))
    n1 = net["n1"]
    net.crash("n3")
    for i in range(10):
        n1.propose(f"v{i}")
    net.settle()
    assert n1.commit == n1.applied == 11 and net["n3"].last_index == 1
    n1.compact(11)
    assert n1.log.snapshot_index == 11
    net.restart("n3")
    return net


def transcript(net: Net, rounds: int = 3) -> list[str]:
    """What n1 sends n3 to catch it up (empty heartbeats left out), in golden notation:
    ``append prev..last`` or ``snapshot index``; each heartbeat round runs until quiet."""
    out: list[str] = []
    for _ in range(rounds):
        net.tick("n1", n=HEARTBEAT)
        for _ in range(20):
            net.flush()
            if not net.queue:
                break
            for m in net.pending(to("n3")):
                if isinstance(m, InstallSnapshot):
                    out.append(f"snapshot {m.meta.index}")
                elif isinstance(m, AppendEntries) and m.entries:
                    out.append(f"append {m.prev_index}..{m.entries[-1].index}")
            fill_snapshot_data(net, b"image-11")
            net.deliver()
    return out


CATCHUP = [
    # (catch-up entries kept, log start after compact(11), what n3 (next_index 2) gets)
    (0, 11, ["snapshot 11"]),  # nothing kept: the only way
    (9, 2, ["snapshot 11"]),  # first kept entry is 3: n3 lacks 2, one entry too far behind
    (10, 1, ["append 1..11"]),  # first kept entry is 2: just enough
    (20, 0, ["append 1..11"]),  # everything kept (the log starts at 0)
]


@pytest.mark.parametrize(("keep", "start", "golden"), CATCHUP, ids=[f"keep-{c[0]}" for c in CATCHUP])
def test_compaction_keeps_catch_up_entries_for_a_lagging_follower(  # §7
        keep: int, start: int, golden: list[str]) -> None:
    net = catchup_cluster(keep)
    n1, n3 = net["n1"], net["n3"]
    assert (n1.log.start, n1.log.first_index, n1.log.last_index) == (start, start + 1, 11)
    assert [e.index for e in n1.log.entries] == list(range(start + 1, 12))
    assert transcript(net) == golden
    assert n3.commit == n3.applied == n3.last_index == 11
    installed = [rd.snapshot.meta.index for rd in net.readies["n3"] if rd.snapshot is not None]
    if golden[0].startswith("snapshot"):
        assert installed == [11] and net.committed("n3") == []
    else:  # the entries themselves, applied one by one
        assert installed == [] and net.committed("n3") == [f"v{i}" for i in range(10)]
    pr = n1.progress(nid("n3"))
    assert pr is not None and (pr.state, pr.match_index) == (ProgressState.REPLICATE, 11)


def test_catch_up_entries_survive_a_restart() -> None:  # §7: storage keeps them, the anchor gives the term
    net = catchup_cluster(4)
    n1 = net["n1"]
    assert (n1.log.start, n1.log.snapshot_index) == (7, 11)
    # what storage holds: the anchor (7) and the entries after it
    anchor = Entry(Index(7), n1.log.term(7) or Term(0), EntryKind.NORMAL, "v5")
    state = InitialState(n1.hard_state(), SnapshotMeta(Index(11), Term(1), n1.membership),
                         (anchor, *n1.log.entries), n1.applied)
    again = RaftCore(n1.id, state, n1.cfg, random.Random(0))
    assert (again.log.start, again.log.first_index, again.log.snapshot_index, again.last_index) == (7, 8, 11, 11)
    assert again.log.term(7) == again.log.term(8) == 1 and again.log.term(6) is None
    assert [e.index for e in again.log.entries] == [8, 9, 10, 11]
    assert again.commit == again.applied == 11


def lost_snapshot_cluster() -> tuple[Net, RaftCore]:
    """catchup_cluster(0) with n1's first InstallSnapshot to n3 lost: n3 is in SNAPSHOT state."""
    net = catchup_cluster(0)
    n1 = net["n1"]
    for _ in range(ELECTION_MAX):
        net.tick("n1", n=HEARTBEAT)
        net.flush()
        if net.drop(kind(InstallSnapshot)):
            break
        net.deliver()
    net.drop()
    pr = n1.progress(nid("n3"))
    assert pr is not None and pr.state is ProgressState.SNAPSHOT
    return net, n1


def snapshots_sent_within(net: Net, ticks: int) -> int:
    """Tick n1 ``ticks`` times, the network delivering everything; count its InstallSnapshots."""
    sent = 0
    for _ in range(ticks):
        net.tick("n1")
        for _ in range(20):
            sent += len(of_type(net.flush(), InstallSnapshot))
            if not net.queue:
                break
            fill_snapshot_data(net, b"image-11")
            net.deliver()
    return sent


@pytest.mark.parametrize(("reported", "resent"), [(True, 1), (False, 0)], ids=["reported", "not-reported"])
def test_a_failed_snapshot_send_goes_back_to_probing_at_once(reported: bool, resent: int) -> None:  # §7
    net, n1 = lost_snapshot_cluster()
    if reported:  # the driver could not deliver it
        n1.report_snapshot_failed(nid("n3"))
        pr = n1.progress(nid("n3"))
        assert pr is not None and pr.state is ProgressState.PROBE
        assert drain(n1).messages == ()  # paused until the next heartbeat, not hammering the peer
    # within one heartbeat interval: a new copy, which brings n3 up to date; not reported,
    # the leader still waits for its last-resort timeout of ten election timeouts
    assert snapshots_sent_within(net, HEARTBEAT) == resent
    assert net["n3"].commit == (11 if reported else 1)


def test_report_snapshot_failed_leaves_other_progress_alone() -> None:
    net = catchup_cluster(20)
    n1 = net["n1"]
    transcript(net)
    n1.report_snapshot_failed(nid("n3"))  # a stale report: n3 is replicating
    n1.report_snapshot_failed(nid("n9"))  # not a member
    pr = n1.progress(nid("n3"))
    assert pr is not None and pr.state is ProgressState.REPLICATE
