"""Power cuts of real node clusters: every data dir on its own powerfs disk.

A power cut loses what the node never fsynced (harness/lab/powerfs.py); a SIGKILL
alone does not, so these are the tests that would catch a missing fsync.
The last one proves that the fault bites: with the test-only switch
RAFTNET_UNSAFE_NO_FSYNC=1 (SQLite synchronous=OFF), acknowledged writes are
lost and the verdict says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.lab import alloc, cleanup, netns
from harness.lab.process import node_processes
from harness.orchestration.cluster import Cluster
from harness.orchestration.local import wait_for
from harness.orchestration.workload import verify
from tests.netns.conftest import Lab

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.netns, pytest.mark.fuse, pytest.mark.slow]


def hard_states(c: Cluster) -> dict[str, tuple[int, Any]]:
    """(term, voted_for) of every node that answers."""
    return {n: (s["term"], s["voted_for"]) for n in c.nodes if (s := c.status(n)) is not None}


def went_back(before: dict[str, tuple[int, Any]], after: dict[str, tuple[int, Any]]) -> list[str]:
    """Nodes whose term went back, or whose vote changed within a term (§5.2: one vote per term)."""
    out = []
    for n, (term, vote) in before.items():
        if n not in after:
            continue
        t2, v2 = after[n]
        if t2 < term or (t2 == term and vote is not None and v2 != vote):
            out.append(f"{n}: (term, voted_for) {term, vote} before the cut, {t2, v2} after")
    return out


def test_twenty_whole_cluster_power_cuts_under_write_load(cluster: Lab) -> None:
    c = cluster(3, power=True)
    problems: list[str] = []
    with cluster.workload(c, clients=4, keys=3) as w:
        for _ in range(20):
            w.wait_ops(10, timeout=60)
            before = hard_states(c)
            c.power_cut_all()
            c.start_all()
            problems += went_back(before, hard_states(c))
            c.leader(timeout=30)
        w.wait_ops(10, timeout=60)
    assert not problems, problems
    v = verify(c, w.history, w.keys)
    assert v.ok, v.explain()
    assert v.acknowledged > 0
    assert sum(1 for e in c.events if e.text == "power cut all") == 20


def test_power_cut_of_the_leader_with_a_batch_in_flight(cluster: Lab) -> None:
    c = cluster(3, power=True)
    with cluster.workload(c, clients=24, keys=5) as w:
        w.wait_ops(200, timeout=60)  # 24 concurrent clients: a batch is always being written
        old = c.leader()
        before = hard_states(c)
        c.power_cut(old)
        rest = [n for n in c.nodes if n != old]
        c.leader(among=rest, timeout=30)
        w.wait_ops(100, timeout=60)
        c.restart(old)
        assert not went_back({old: before[old]}, hard_states(c))
        w.wait_ops(50, timeout=60)
    in_flight = [op for op in w.history.operations() if op.status == "info" and op.f != "read"]
    assert in_flight, "no write was in flight at the cut"
    v = verify(c, w.history, w.keys)
    assert v.ok, v.explain()


def test_power_cut_of_a_follower_that_acknowledged_entries(cluster: Lab) -> None:
    """The follower's acknowledgement was the only one besides the leader's; then the leader
    goes too, and the follower's disk alone must carry every committed entry."""
    c = cluster(3, power=True)
    leader = c.leader()
    f1, f2 = [n for n in c.nodes if n != leader]
    c.kill(f2)  # f1's acknowledgements now make every commit
    with cluster.workload(c, clients=4, keys=3) as w:
        w.wait_ops(100, timeout=60)
    c.power_cut(f1)
    c.power_cut(leader)
    c.restart(f1)
    c.restart(f2)
    c.leader(among=[f1, f2], timeout=30)
    c.restart(leader)
    v = verify(c, w.history, w.keys)
    assert v.ok, v.explain()
    assert v.acknowledged > 0
    # and destroy leaves nothing: no node, no powerfs daemon, no mount namespace
    assert c.mntns is not None
    ident = os.readlink(f"/proc/{c.mntns.pid}/ns/mnt")
    c.destroy()
    assert not in_mount_namespace(ident)
    assert node_processes(c.workdir) == [] and powerfs_processes(c.workdir) == []


def test_without_fsync_power_cuts_lose_acknowledged_writes(cluster: Lab) -> None:
    """The fault bites: this test FAILS if no acknowledged write is lost."""
    c = cluster(3, power=True, node_env={"RAFTNET_UNSAFE_NO_FSYNC": "1"})
    with cluster.workload(c, clients=4, keys=3) as w:
        for _ in range(3):
            w.wait_ops(30, timeout=60)
            c.power_cut_all()
            c.start_all()
            c.leader(timeout=30)
        w.wait_ops(10, timeout=60)
    v = verify(c, w.history, w.keys)
    assert not v.ok, "power cuts of nodes without fsync lost nothing: the fault does not bite"
    assert v.lost, f"the verdict does not name a lost acknowledged write: {v.explain()}"
    print(f"\nwithout fsync: {len(v.lost)} lost-write findings ({v.acknowledged} acknowledged writes checked); "
          f"first: {v.lost[0]}")


OWNER = r"""
import json, os, sys, time
from pathlib import Path
from harness.orchestration.cluster import Cluster
c = Cluster(2, workdir=Path(sys.argv[1]), name=sys.argv[2], power=True).start()
print(json.dumps({"slot": c.topo.slot, "pids": [p.pid for p in c.procs.values()]
                  + [d.proc.pid for d in c.disks.values()] + [c.mntns.pid],
                  "mntns": os.readlink(f"/proc/{c.mntns.pid}/ns/mnt")}), flush=True)
time.sleep(3600)
"""


def in_mount_namespace(ident: str) -> list[int]:
    out = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/mnt") == ident:
                out.append(pid)
    return out


def powerfs_processes(where: Path) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "harness.lab.powerfs" in (p.info["cmdline"] or []) and any(str(where) in a for a in p.info["cmdline"])]


def test_clean_removes_what_a_crashed_power_cluster_left(tmp_path: Path) -> None:
    """The owner is SIGKILLed: its nodes, powerfs daemons and mount namespace holder live on
    until ``raftnet clean``; then nothing is left, and no mount ever reached the host."""
    name = f"power-orphaned-{os.getpid()}"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path / "w"), name], cwd=ROOT,
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert owner.stdout is not None
        info = json.loads(owner.stdout.readline() or "{}")
        slot, pids, ident = info["slot"], info["pids"], info["mntns"]
        assert len(pids) == 5 and set(pids) <= set(in_mount_namespace(ident))
        assert "powerfs" not in Path("/proc/self/mountinfo").read_text()
        owner.send_signal(signal.SIGKILL)
        owner.wait(30)
        assert all(psutil.pid_exists(p) for p in pids)  # what a crash leaves
        cleanup.clean(sweep_orphans=False)
        wait_for(lambda: not in_mount_namespace(ident), 10, what="the mount namespace to empty")
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
        assert not netns.slot_netns(slot) and alloc.allocation(slot) is None
        assert "powerfs" not in Path("/proc/self/mountinfo").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            owner.kill()
        owner.wait(30)
        if owner.stdout is not None:
            owner.stdout.close()
        cleanup.clean(sweep_orphans=False)


def test_single_node_power_cuts_across_snapshots(cluster: Lab) -> None:
    """Seeded single-node cuts (the leader half the time) while the nodes compact their logs
    every 50 entries: snapshots and the compaction they allow must be durable too."""
    import random

    rng = random.Random(7)
    c = cluster(3, power=True, node_args=("--snapshot-every", "50", "--snapshot-catchup-entries", "20"))
    problems: list[str] = []
    with cluster.workload(c, clients=6, keys=4) as w:
        for _ in range(8):
            w.wait_ops(40, timeout=60)
            victim = c.leader() if rng.random() < 0.5 else rng.choice(list(c.nodes))
            before = hard_states(c)
            c.power_cut(victim)
            w.wait_ops(20, timeout=60)  # the others go on (and may compact past the victim)
            c.restart(victim)
            problems += went_back({victim: before[victim]}, hard_states(c)) if victim in before else []
        w.wait_ops(30, timeout=60)
    assert not problems, problems
    snaps = [s["snapshot_index"] for n in c.nodes if (s := c.status(n))]
    assert max(snaps) > 0, "no node took a snapshot"
    v = verify(c, w.history, w.keys)
    assert v.ok, v.explain()


def test_a_removed_node_added_back_under_its_id_starts_on_a_fresh_disk(cluster: Lab) -> None:
    """The membership nemesis removes the highest id and may add it back: the new node must
    join with an empty disk, not boot from the removed node's old store."""
    c = cluster(3, power=True)
    assert c.http(c.leader(), "PUT", "/v1/kv/k", {"value": "v"}, timeout=10).status == 200
    c.remove("n3")
    assert c.add("n3") == "n3"  # waits until n3 is a voter again (it would hang on the old disk)
    st = c.status("n3")
    assert st is not None and st["id"] == "n3"
    assert c.http(c.leader(), "PUT", "/v1/kv/after", {"value": "yes"}, timeout=10).status == 200
