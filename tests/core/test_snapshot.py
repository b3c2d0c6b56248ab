"""Log compaction and InstallSnapshot (§7)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from node.raft import (
    AppendEntries,
    Index,
    InstallSnapshot,
    InstallSnapshotReply,
    ProgressState,
    SnapshotMeta,
    Term,
)

from .helpers import (
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
