"""Beyond the seed analysis (issue 4): faults its Go suite could not write,
on real node processes in network namespaces, faults through the kernel.

Every test runs client traffic that records a history and ends with
``verify`` (heal, converge, read back; linearizable, nothing acknowledged
lost, nothing applied twice, one leader per term, identical committed
prefixes). Waiting is polling against generous deadlines.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import psutil
import pytest

from harness.lab import netns
from harness.model import topology
from harness.model.history import History, OpType
from harness.model.invariants import LeaderWatch, gather_logs
from harness.orchestration.cluster import Cluster
from harness.orchestration.local import request, wait_for
from harness.orchestration.workload import Workload, verify
from tests.netns.conftest import Lab

pytestmark = [pytest.mark.netns, pytest.mark.slow]



# -- helpers ------------------------------------------------------------------------------------


def watch(c: Cluster) -> LeaderWatch:
    return LeaderWatch(c.status, lambda: list(c.nodes))


def st(c: Cluster, node: str) -> dict[str, Any]:
    """The status of a node that must answer (polled: a busy node may be slow once)."""
    return wait_for(lambda: c.status(node, timeout=2.0), 20, what=f"status of {node}")


def commit(c: Cluster, node: str) -> int:
    return int(st(c, node)["commit_index"])


def ok_writes_since(h: History, t: float) -> int:
    """Acknowledged writes (put, delete, applied cas) completed at or after monotonic ``t``."""
    n = 0
    for e in list(h):
        if e.type is OpType.OK and e.time >= t and (e.f in ("write", "delete") or (e.f == "cas" and e.value is True)):
            n += 1
    return n


def wait_writes(w: Workload, n: int, timeout: float = 60.0, since: float | None = None) -> None:
    t = time.monotonic() if since is None else since
    wait_for(lambda: ok_writes_since(w.history, t) >= n, timeout, interval=0.05,
             what=f"{n} acknowledged writes")


def wait_commits(c: Cluster, node: str, n: int, timeout: float = 60.0) -> None:
    """Wait until ``node`` (a leader) has committed ``n`` more entries."""
    base = commit(c, node)
    wait_for(lambda: (s := c.status(node)) and s["commit_index"] >= base + n, timeout, interval=0.05,
             what=f"{node} to commit {n} more entries")


def leaders(c: Cluster, among: Iterable[str] | None = None) -> list[str]:
    out = []
    for n in among or c.nodes:
        s = c.status(n)
        if s and s["role"] == "leader":
            out.append(n)
    return out


def finish(c: Cluster, w: Workload, lw: LeaderWatch) -> None:
    v = verify(c, w.history, w.keys, lw.samples)
    assert v.ok, v.explain()
    assert v.acknowledged > 0


class RecordedWrite(threading.Thread):
    """One PUT sent to one node (no redirects), recorded into ``history`` as
    process ``process``: 200 ok, 307/503/4xx fail, 504/timeouts info."""

    def __init__(self, c: Cluster, history: History, process: int, node: str, key: str, value: str,
                 timeout: float) -> None:
        super().__init__(name=f"write-{process}", daemon=True)
        self.c, self.history, self.process, self.node = c, history, process, node
        self.key, self.value, self.timeout = key, value, timeout
        self.status: int | None = None
        self.body: Any = None
        self.error: str | None = None

    def run(self) -> None:
        self.history.invoke(self.process, "write", self.key, self.value, time.monotonic(), node=self.node)
        try:
            r = request(self.c.address(self.node), "PUT", f"/v1/kv/{self.key}", {"value": self.value},
                        headers={"X-Client-Id": f"stale-{self.process}", "X-Request-Seq": "1"},
                        timeout=self.timeout)
            self.status, self.body = r.status, r.body
        except (OSError, http.client.HTTPException) as e:
            self.error = repr(e)
        now = time.monotonic()
        index = self.body.get("index") if isinstance(self.body, dict) else None
        if self.status == 200:
            self.history.complete(self.process, OpType.OK, None, now, index=index)
        elif self.status is not None and (self.status in (307, 503) or 400 <= self.status < 500):
            self.history.complete(self.process, OpType.FAIL, None, now, error=str(self.status))
        else:
            self.history.complete(self.process, OpType.INFO, None, now, error=self.error or str(self.status))


# -- the scenarios ------------------------------------------------------------------------------


def test_one_way_partition(cluster: Lab) -> None:
    """cut(leader, follower): the follower stops hearing the leader (its own messages
    still go through: the probes of test_harness_cluster.py show the cut is one-way);
    PreVote and CheckQuorum keep one leader that commits, undisturbed by the deaf follower."""
    c = cluster(3)
    ld = c.leader(timeout=30)
    f = next(n for n in c.nodes if n != ld)
    w = cluster.workload(c, clients=4, keys=3, seed=11)
    with watch(c) as lw, w:
        w.wait_ops(20)
        term0 = st(c, ld)["term"]
        c.cut(ld, f)
        assert c.faults() == [f"drop {ld} -> {f}"]
        # the follower no longer hears the leader: it gives it up (pre-candidate, leader unknown)
        fs = wait_for(lambda: (s := c.status(f)) and s["leader_id"] != ld and s, 30, what=f"{f} to lose {ld}")
        assert fs["role"] != "leader"
        # the rest still has exactly one leader, and it commits
        now_ld = c.leader(timeout=30, among=[n for n in c.nodes if n != f])
        wait_commits(c, now_ld, 10)
        wait_writes(w, 5)
        assert leaders(c) == [now_ld]
        s_f, s_ld = st(c, f), st(c, now_ld)
        assert s_f["role"] != "leader"
        if now_ld == ld and s_ld["term"] == term0:
            # undisturbed: the deaf follower's pre-votes bumped no term and it fell behind
            assert s_f["term"] == term0, (s_f, s_ld)
            assert s_f["commit_index"] < s_ld["commit_index"], (s_f, s_ld)
            assert s_f["leader_id"] is None
    finish(c, w, lw)


def test_bridge_partition(cluster: Lab) -> None:
    """bridge(n) on 5 nodes: the halves cannot talk, n sees both; a leader with
    a majority (its half plus the bridge) keeps or takes over and commits."""
    c = cluster(5)
    ld = c.leader(timeout=30)
    b = next(n for n in c.nodes if n != ld)  # the leader sits in one half
    left, right = topology.bridge_halves(b, c.nodes)
    w = cluster.workload(c, clients=5, keys=3, seed=12)
    with watch(c) as lw, w:
        w.wait_ops(20)
        c.bridge(b)
        pairs = {tuple(x.split()[1::2]) for x in c.faults()}
        assert pairs == {(s, d) for s in left for d in right} | {(s, d) for s in right for d in left}
        # a leader that commits, in spite of the split
        now_ld = c.leader(timeout=30)
        wait_commits(c, now_ld, 10)
        wait_writes(w, 5)
        now_ld = c.leader(timeout=30)
        assert leaders(c) == [now_ld]
        # its majority goes through the bridge: the half without the leader does not follow it
        if now_ld != b:
            far = right if now_ld in left else left
            ld_commit = commit(c, now_ld)
            for n in far:
                s = st(c, n)
                assert s["leader_id"] != now_ld or s["commit_index"] < ld_commit, (n, s)
            assert st(c, b)["leader_id"] == now_ld
    finish(c, w, lw)


@pytest.mark.parametrize("percent", [20, 40])
def test_packet_loss_on_one_node(cluster: Lab, percent: int) -> None:
    """loss on the leader's peer traffic: writes still commit; history linearizable."""
    c = cluster(3)
    ld = c.leader(timeout=30)
    w = cluster.workload(c, clients=4, keys=3, seed=13 + percent)
    with watch(c) as lw, w:
        w.wait_ops(20)
        c.loss(ld, percent)
        assert c.faults() == [f"loss {ld} {percent}%"]
        t = time.monotonic()
        wait_writes(w, 30, timeout=120, since=t)
        now_ld = c.leader(timeout=30)
        wait_commits(c, now_ld, 5, timeout=60)
    finish(c, w, lw)


def test_paused_leader_wakes_after_new_election(cluster: Lab) -> None:
    """SIGSTOP the leader; the others elect a new one; writes sent to the paused
    leader meanwhile are never acknowledged (they cannot commit); on SIGCONT it
    steps down, and nothing is corrupted."""
    c = cluster(3)
    old = c.leader(timeout=30)
    others = [n for n in c.nodes if n != old]
    w = cluster.workload(c, clients=4, keys=3, seed=14)
    stale: list[RecordedWrite] = []
    with watch(c) as lw, w:
        w.wait_ops(20)
        term0 = st(c, old)["term"]
        c.pause(old)
        assert c.procs[old].is_paused()
        assert psutil.Process(c.procs[old].pid).status() == psutil.STATUS_STOPPED
        # writes to the paused leader: they wait in its socket backlog
        for i in range(3):
            t = RecordedWrite(c, w.history, 1000 + i, old, w.keys[i % len(w.keys)], f"stale-{i}", timeout=90)
            t.start()
            stale.append(t)
        new = c.leader(timeout=30, among=others)
        assert new != old and st(c, new)["term"] > term0
        wait_writes(w, 10)
        assert all(t.is_alive() for t in stale), "a write to a stopped process was answered"
        new_term = st(c, new)["term"]
        c.resume(old)
        # it wakes up as a leader of a past term, learns the new term and steps down
        s_old = wait_for(lambda: (s := c.status(old, timeout=2)) and s["role"] != "leader"
                         and s["term"] >= new_term and s, 30, what=f"{old} to step down")
        assert s_old["term"] > term0
        for t in stale:
            t.join(120)
            assert not t.is_alive()
        assert leaders(c) == [c.leader(timeout=30)]
        wait_writes(w, 5)
    answers = [(t.status, t.body, t.error) for t in stale]
    assert all(t.status != 200 for t in stale), f"a stale leader acknowledged a write: {answers}"
    assert all(t.status in (None, 307, 503, 504) for t in stale), answers
    finish(c, w, lw)
    # none of the stale writes is in any node's log
    logs = gather_logs(c.nodes, lambda n, path: c.http(n, "GET", path, timeout=10).body)
    for n, lg in logs.items():
        assert lg.commit_index > 0
        stale_entries = [(i, e) for i, e in lg.entries.items() if '"stale-' in e[2]]
        assert not stale_entries, (n, stale_entries)


def test_link_cut_and_restored(cluster: Lab) -> None:
    """link_down the leader: unreachable even from the control path; the others
    elect a leader and go on; link_up: it catches up."""
    c = cluster(3)
    x = c.leader(timeout=30)
    w = cluster.workload(c, clients=4, keys=3, seed=15)
    with watch(c) as lw, w:
        w.wait_ops(20)
        c.link_down(x)
        assert c.faults() == [f"link down {x}"]
        assert c.status(x, timeout=2.0) is None
        host = c.address(x).rsplit(":", 1)[0]
        with pytest.raises(OSError):
            socket.create_connection((host, topology.NODE_PORT), timeout=2.0).close()
        assert c.procs[x].is_alive()  # unplugged, not dead
        new = c.leader(timeout=30)
        assert new != x
        wait_commits(c, new, 10)
        wait_writes(w, 10)
        target = commit(c, new)
        c.link_up(x)
        assert c.faults() == []
        wait_for(lambda: (s := c.status(x, timeout=2)) and s["last_applied"] >= target and s["leader_id"] is not None,
                 60, what=f"{x} to catch up")
    finish(c, w, lw)


def test_membership_change_during_partition(cluster: Lab) -> None:
    """5 nodes, two followers cut off; through the majority remove one of them and
    add a new node; heal: every node agrees on the membership and the data."""
    c = cluster(5)
    ld = c.leader(timeout=30)
    followers = [n for n in c.nodes if n != ld]
    minority = followers[:2]
    majority = [n for n in c.nodes if n not in minority]
    gone, stranded = minority
    original = set(c.nodes)
    w = cluster.workload(c, clients=5, keys=3, seed=16)
    with watch(c) as lw, w:
        w.wait_ops(20)
        c.partition(minority, majority)
        wait_for(lambda: all((s := c.status(n)) and s["leader_id"] is None for n in minority), 30,
                 what="the minority to lose its leader")
        assert c.topo is not None
        gone_ns = c.topo.netns(gone)
        gone_pid = c.procs[gone].pid
        c.remove(gone)
        added = c.add()
        assert added not in original
        now = set(c.nodes)
        assert now == original - {gone} | {added}
        wait_writes(w, 10)
        ld_now = c.leader(timeout=30, among=[*majority, added])
        members = {m["id"]: m["voter"] for m in st(c, ld_now)["members"]}
        assert members == {n: True for n in now}
        # the stranded node heard nothing of it
        assert {m["id"] for m in st(c, stranded)["members"]} == original
        assert gone_ns not in netns.list_netns()
        assert _gone(gone_pid)
    finish(c, w, lw)
    # after heal: one membership everywhere, the data the same (verify read every replica)
    views = {n: sorted((m["id"], m["voter"]) for m in c.http(n, "GET", "/v1/members").body["members"])
             for n in c.nodes}
    want = sorted((n, True) for n in c.nodes)
    assert all(v == want for v in views.values()), views
    assert set(c.nodes) == original - {gone} | {added}


def test_power_failure_kill_all_and_restart(cluster: Lab) -> None:
    """Under load, SIGKILL every node at once; start them all again: no
    acknowledged write is lost."""
    c = cluster(3)
    w = cluster.workload(c, clients=4, keys=3, seed=17)
    with watch(c) as lw, w:
        wait_writes(w, 20)
        pids = {n: c.procs[n].pid for n in c.nodes}
        acked_before = ok_writes_since(w.history, 0.0)
        c.stop_all()
        assert not any(c.procs[n].is_alive() for n in c.nodes)
        assert all(_gone(p) for p in pids.values())
        c.start_all()
        assert all(c.procs[n].pid != pids[n] for n in c.nodes)
        c.leader(timeout=30)
        wait_writes(w, 20)
    v = verify(c, w.history, w.keys, lw.samples)
    assert v.ok, v.explain()
    assert v.acknowledged >= acked_before > 0


# -- small helpers ------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    """No such process (or only a zombie waiting for its parent)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
