"""Every scenario of the seed's fault-tolerance analysis
(../shared/seed/raft-fault-tolerance-analysis.md), against real node
processes, each in its own network namespace, faults through the kernel.

One test per seed name, snake-cased (TestNetworkPartition_Majority ->
test_network_partition_majority); tests/README.md maps each to what it
asserts. Every scenario with client traffic records a History (background
Workload clients, plus the explicit writes and probes below, recorded by the
same Client) and ends with ``verify``: heal, converge, read back,
linearizability, nothing acknowledged lost, nothing applied twice, identical
committed prefixes (these three where the system dumps its log: raftnet), one
leader per term (LeaderWatch samples).

The suite is parametrized by system (the ``system`` fixture): a scenario whose
checks hold for a black box (status as ``NodeStatus``, local reads, the
recorded history) runs against raftnet's node and against etcd; one that reads
raftnet's internals (its debug log, client sessions, snapshot indices, leader
transfer endpoint, raw /v1/status fields) carries the ``raftnet_internals``
marker and runs against raftnet only. Where a black-box scenario has one
raftnet-only check, that check is guarded by ``is_raftnet(c)``.

Synchronisation is polling against generous deadlines (etcd's are longer:
election 1 s, randomized up to 2 s; a write to a leader without a quorum waits
for its request timeout, 7 s); nothing asserts speed. Probe keys (``p-*``,
``a*``, ``b*``...) never collide with the workload's ``k*`` keys.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pytest

from harness.model.history import History, OpType
from harness.model.invariants import LeaderWatch
from harness.orchestration import local
from harness.orchestration.cluster import Cluster
from harness.orchestration.local import Response, wait_for
from harness.orchestration.recorder import Recorder
from harness.orchestration.workload import verify
from harness.systems.base import NodeStatus, Outcome, SystemError_
from harness.systems.etcd import EtcdSystem
from harness.systems.raftnet import RaftnetSystem

pytestmark = pytest.mark.netns

PROCESS = itertools.count(10_000)  # recording processes of the explicit operations (workload: 0.., final reads: 100000)
NO_STATUS = NodeStatus()  # what a node that does not answer reports


@pytest.fixture(params=["raftnet", "etcd"])
def system(request: pytest.FixtureRequest) -> str | None:
    """What ``cluster(..., system=system)`` runs: None is raftnet's node (``node_args`` apply), "etcd" is
    etcd (skipped with one line where it is not installed)."""
    return None if request.param == "raftnet" else str(request.param)


# ---------------------------------------------------------------- helpers


def is_raftnet(c: Cluster) -> bool:
    return isinstance(c.system, RaftnetSystem)


def watch(c: Cluster) -> LeaderWatch:
    return LeaderWatch(c.node_status, lambda: list(c.nodes))


def status(c: Cluster, node: str) -> NodeStatus:
    """``node``'s status, which it must report."""
    st = c.node_status(node, timeout=5.0)
    assert st is not None, f"{node} did not report its status"
    return st


def others(c: Cluster, *but: str) -> list[str]:
    return [n for n in c.nodes if n not in but]


def run_ops(c: Cluster, h: History, node: str, calls: Sequence[tuple[str, str, str | None]],
            follow: bool = True, timeout: float = 10.0) -> list[Outcome]:
    """(f, key, value) calls, in order, through one recording client bound to ``node``."""

    async def go() -> list[Outcome]:
        kv = c.system.client(timeout=timeout, client_id=f"scenario-{next(PROCESS)}", follow_redirects=follow)
        cl = Recorder(kv, h, next(PROCESS), c.endpoints, node)
        try:
            return [await (cl.read(k) if f == "read" else cl.write(k, v or "")) for f, k, v in calls]
        finally:
            await cl.close()

    return asyncio.run(go())


def write(c: Cluster, h: History, items: dict[str, str], node: str | None = None, timeout: float = 60.0) -> None:
    """Write every item (recorded); a write that fails is tried again until acknowledged."""

    def acknowledged(k: str, v: str) -> bool:
        return run_ops(c, h, node or c.leader(timeout=30), [("write", k, v)])[0].type is OpType.OK

    for k, v in items.items():
        wait_for(partial(acknowledged, k, v), timeout, interval=0.1, what=f"write {k}={v} acknowledged")


def read(c: Cluster, h: History, node: str, keys: Sequence[str], timeout: float = 60.0) -> dict[str, Any]:
    """Linearizable reads (recorded) through ``node``, tried again until they all succeed."""

    def once() -> dict[str, Any] | None:
        outs = run_ops(c, h, node, [("read", k, None) for k in keys])
        return {k: o.value for k, o in zip(keys, outs, strict=True)} if all(o.type is OpType.OK for o in outs) else None

    return wait_for(once, timeout, interval=0.1, what=f"reads of {list(keys)} through {node}")


def stale(c: Cluster, node: str, key: str) -> Any:
    """``key`` in ``node``'s own state, possibly stale (raftnet: ?stale=true; etcd: a serializable range)."""
    return c.system.local_read(c.endpoint(node), key, 5.0)


def everywhere(c: Cluster, items: dict[str, str], nodes: Sequence[str] | None = None, timeout: float = 60.0) -> None:
    """Wait until every node serves every item from its own state."""

    def served() -> bool:
        try:
            return all(stale(c, n, k) == v for n in nodes or c.nodes for k, v in items.items())
        except SystemError_:  # etcd: a node that does not answer (yet)
            return False

    wait_for(served, timeout, interval=0.1, what=f"{sorted(items)} on every node")


def refused(c: Cluster, h: History, node: str, key: str, timeout: float = 60.0) -> None:
    """Writes to ``node`` (no redirects followed) are never acknowledged; poll until it refuses one:
    raftnet answers 503 or 504; etcd fails it ("etcdserver: no leader") or leaves it indeterminate
    (a leader without a quorum holds a proposal until its request timeout), but it must be the
    node's answer, not a connection that never opened."""
    n = itertools.count()

    def probe() -> bool:
        [out] = run_ops(c, h, node, [("write", key, f"{node}-{next(n)}")], follow=False)
        assert out.type is not OpType.OK, f"{node} acknowledged a write it cannot commit: {out}"
        if is_raftnet(c):
            return out.error in ("unavailable", "timeout")
        return not (out.error or "").startswith("connect")

    wait_for(probe, timeout, interval=0.1, what=f"{node} to refuse writes")


def resend(c: Cluster, node: str, cmd: dict[str, Any]) -> Response:
    """raftnet: send a logged command again, with its X-Client-Id / X-Request-Seq."""
    body: dict[str, Any] | None
    path, method, body = f"/v1/kv/{cmd['key']}", "PUT", {"value": cmd.get("value")}
    if cmd["op"] == "delete":
        method, body = "DELETE", None
    elif cmd["op"] == "cas":
        path, method, body = path + "/cas", "POST", {"expect": cmd["expect"], "value": cmd["value"]}
    return local.request(c.address(node), method, path, body, timeout=10,
                         headers={"X-Client-Id": cmd["client"], "X-Request-Seq": str(cmd["seq"])})


def entries(c: Cluster, node: str, start: int) -> dict[int, tuple[int, str, str]]:
    """raftnet: client commands in ``node``'s log from index ``start`` on, committed or not:
    index -> (term, kind, data)."""
    body = c.http(node, "GET", f"/v1/debug/log?from={start}&to={start + 9999}").body
    return {i: (t, k, d) for i, t, k, d in body["entries"] if k == "normal" and '"client"' in d}


def agreed(c: Cluster, timeout: float = 60.0) -> str:
    """Wait until every node answers with one term and one leader, which alone leads; return it."""

    def one() -> str | None:
        sts = {n: s for n in c.nodes if (s := c.node_status(n))}
        if len(sts) != len(c.nodes) or len({(s.term, s.leader) for s in sts.values()}) != 1:
            return None
        leaders = [n for n, s in sts.items() if s.role == "leader"]
        return leaders[0] if leaders == [sts[c.nodes[0]].leader] else None

    return wait_for(one, timeout, interval=0.1, what="every node to agree on one leader")


def caught_up(c: Cluster, node: str, timeout: float = 60.0) -> None:
    """Wait until ``node`` applied what the leader had committed when asked."""
    target = status(c, c.leader(timeout=30)).commit_index
    assert target is not None, "the leader reports no commit index"
    wait_for(lambda: ((c.node_status(node) or NO_STATUS).applied_index or -1) >= target, timeout, interval=0.1,
             what=f"{node} to apply up to {target}")


def never(pred: Callable[[], bool], seconds: float, what: str) -> None:
    """Observe for ``seconds``: ``pred`` must stay false (an absence, so it takes a window)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert not pred(), what
        time.sleep(0.05)


def election_window(c: Cluster) -> float:
    """Five of the system's longest election timeouts: a window in which an election would show."""
    if isinstance(c.system, EtcdSystem):
        return 5 * 2 * c.system.election_ms / 1000  # etcd draws its timeout from [election, 2 x election)
    return 3.0


def transfer(c: Cluster, to: str, timeout: float = 60.0) -> None:
    """Ask the leader to hand leadership to ``to`` until ``to`` leads (raftnet: POST /v1/leader/transfer;
    etcd: its MoveLeader call, which takes the member id)."""

    def ask(leader: str) -> None:
        if is_raftnet(c):
            c.http(leader, "POST", "/v1/leader/transfer", {"to": to}, timeout=10)
            return
        assert isinstance(c.system, EtcdSystem), f"{c.system.name}: no leader transfer"
        member_id = status(c, to).raw["maintenance"]["header"]["member_id"]
        local.request(c.address(leader), "POST", "/v3/maintenance/transfer-leadership", {"targetID": member_id},
                      timeout=10)

    def moved() -> bool:
        ld = c.leader(timeout=30)
        if ld != to:
            ask(ld)
        return c.leader(timeout=30) == to

    wait_for(moved, timeout, interval=0.2, what=f"leadership to move to {to}")


ITEMS = {f"a{i}": f"v{i}" for i in range(5)}


# ---------------------------------------------------------------- basics, on real multi-node clusters


@pytest.mark.parametrize("n", [3, 5])
def test_multi_node_cluster_formation(cluster: Any, system: str | None, n: int) -> None:
    c = cluster(n, system=system)
    ld = agreed(c)
    for node in c.nodes:
        st = status(c, node)
        assert st.role == ("leader" if node == ld else "follower"), st
        assert sorted(st.members or ()) == [(x, True) for x in sorted(c.nodes)], st
    v = verify(c, cluster.record())  # the invariants, on an idle cluster
    assert v.ok, v.explain()


def test_multi_node_cluster_two_nodes(cluster: Any, system: str | None) -> None:
    c = cluster(1, system=system)
    n2 = c.add()  # a fresh node joins (raftnet: --join, promoted to voter; etcd: member add, then started)
    assert set(c.nodes) == {"n1", n2} and agreed(c) in c.nodes
    wait_for(lambda: all(sorted((c.node_status(n) or NO_STATUS).members or ()) == [("n1", True), (n2, True)]
                         for n in c.nodes), 30, what="both nodes to list both as voters")
    h = cluster.record()
    write(c, h, ITEMS)
    everywhere(c, ITEMS)
    v = verify(c, h, list(ITEMS))
    assert v.ok, v.explain()


def test_multi_node_cluster_data_replication(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    h = cluster.record()
    write(c, h, ITEMS)
    everywhere(c, ITEMS)
    v = verify(c, h, list(ITEMS))
    assert v.ok, v.explain()


def test_multi_node_cluster_leader_election(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    ld = agreed(c)
    h = cluster.record()
    for node in c.nodes:
        assert status(c, node).leader == ld, status(c, node)
    if is_raftnet(c):  # raftnet names the leader's address, and a follower redirects a write to it
        for node in c.nodes:
            assert c.status(node)["leader_address"] == c.address(ld), c.status(node)
        for f in others(c, ld):
            r = c.http(f, "PUT", "/v1/kv/p-redirect", {"value": "x"})
            assert r.status == 307 and r.body["leader"] == {"id": ld, "address": c.address(ld)}, r.body
    else:  # etcd has no redirect: a follower forwards the write to the leader itself
        for f in others(c, ld):
            write(c, h, {f"p-via-{f}": "x"}, node=f)
    v = verify(c, h)
    assert v.ok, v.explain()


# ---------------------------------------------------------------- high priority


def test_leader_failure_data_consistency(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    ld = c.leader()
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        write(c, w.history, ITEMS)
        c.kill(ld)
        new = c.leader(among=others(c, ld), timeout=30)
        assert read(c, w.history, new, list(ITEMS)) == ITEMS
        w.wait_ops(30, 60)
    v = verify(c, w.history, w.keys + list(ITEMS), lw.samples)
    assert v.ok, v.explain()
    everywhere(c, ITEMS)


@pytest.mark.slow
def test_network_partition_majority(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    ld = c.leader()
    majority = others(c, ld)
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        c.partition([ld], majority)
        assert c.leader(among=majority, timeout=30) in majority
        w.wait_ops(50, 60)
        refused(c, w.history, ld, "p-minority")
        c.heal()
        w.wait_ops(20, 60)
    v = verify(c, w.history, w.keys + ["p-minority"], lw.samples)
    assert v.ok, v.explain()


def test_network_partition_minority(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    ld = c.leader()
    lone = others(c, ld)[0]
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        c.partition([lone], others(c, lone))
        cut_off = len(lw.samples)
        refused(c, w.history, lone, "p-minority")
        w.wait_ops(50, 60)  # the majority side goes on
        ahead = status(c, c.leader(among=others(c, lone), timeout=30)).commit_index
        behind = status(c, lone).commit_index
        assert behind is not None and ahead is not None and behind < ahead, (behind, ahead)
        assert (lone, "leader") not in {(s[0], s[2]) for s in lw.samples[cut_off:]}, "the minority node led"
        c.heal()
        caught_up(c, lone)
        w.wait_ops(20, 60)
    v = verify(c, w.history, w.keys + ["p-minority"], lw.samples)
    assert v.ok, v.explain()


@pytest.mark.slow
def test_multiple_failures(cluster: Any, system: str | None) -> None:
    c = cluster(5, system=system)
    ld = c.leader()
    f = others(c, ld)
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        c.kill(f[0])
        c.kill(f[1])
        w.wait_ops(40, 60)  # 3 of 5: writes go on
        c.kill(f[2])  # 2 of 5: no quorum
        refused(c, w.history, ld, "p-noquorum")
        ok = w.counters.ok
        refused(c, w.history, f[3], "p-noquorum")
        assert w.counters.ok == ok, "an operation succeeded without a quorum"
        for n in f[:3]:
            c.restart(n)
        c.leader(timeout=30)
        w.wait_ops(30, 60)
    v = verify(c, w.history, w.keys + ["p-noquorum"], lw.samples)
    assert v.ok, v.explain()


# raftnet's internals: its debug log and client sessions (X-Client-Id / X-Request-Seq), and a one-way cut, which
# loses src's messages only for a transport that sends on connections it opens (harness/lab/firewall.py)
@pytest.mark.raftnet_internals
def test_leader_failure_uncommitted_logs(cluster: Any) -> None:
    c = cluster(3)
    ld = c.leader()
    f = others(c, ld)
    with cluster.workload(c, clients=6, keys=3) as w, watch(c) as lw:
        w.wait_ops(20)
        for x in f:
            c.cut(x, ld)  # the leader's entries reach the followers; their acknowledgements never return
        new = c.leader(among=f, timeout=15)  # a follower holding its entries leads
        wait_for(lambda: c.status(ld)["role"] != "leader", 15, what=f"{ld} to step down (CheckQuorum)")
        held = entries(c, ld, c.status(ld)["commit_index"] + 1)  # appended, never committed by ld
        wait_for(lambda: c.status(new)["commit_index"] >= max(held, default=0), 15, what=f"{new} to commit")
        carried = {i: e for i, e in entries(c, new, min(held, default=1)).items() if held.get(i) == e}
        assert carried, f"no write was in flight on {ld}: {held}"
        c.kill(ld)  # the clients of those writes still wait on it: they must not count them as failed
        i, (_, _, data) = next(iter(carried.items()))
        r = resend(c, new, json.loads(data))  # a retry with the same X-Client-Id / X-Request-Seq
        assert r.status in (200, 409) and r.body.get("index", i) == i, r.body  # the first outcome, not a new write
        w.wait_ops(30)
    v = verify(c, w.history, w.keys, lw.samples)  # acknowledged kept; in-flight applied once or not at all
    assert v.ok, v.explain()


def test_node_rejoin(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    gone = others(c, c.leader())[0]
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        c.kill(gone)
        w.wait_ops(50, 60)
        c.restart(gone)
        caught_up(c, gone)
        transfer(c, gone)  # it can become leader
        w.wait_ops(30, 60)
    v = verify(c, w.history, w.keys, lw.samples)
    assert v.ok, v.explain()


@pytest.mark.slow
def test_concurrent_failures(cluster: Any, system: str | None) -> None:
    c = cluster(5, system=system)
    ld = c.leader()
    f = others(c, ld)[0]
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        write(c, w.history, ITEMS)
        c.kill(ld)
        c.kill(f)
        assert c.leader(among=others(c, ld, f), timeout=30) not in (ld, f)
        w.wait_ops(40, 60)
        c.restart(ld)
        c.restart(f)
        caught_up(c, ld)
        caught_up(c, f)
        w.wait_ops(20, 60)
    v = verify(c, w.history, w.keys + list(ITEMS), lw.samples)
    assert v.ok, v.explain()
    everywhere(c, ITEMS)


@pytest.mark.slow
def test_split_brain_recovery(cluster: Any, system: str | None) -> None:
    c = cluster(5, system=system)
    old = c.leader()
    minority = [old, others(c, old)[0]]
    majority = others(c, *minority)
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        c.partition(minority, majority)
        new = c.leader(among=majority, timeout=30)
        frozen = status(c, old).commit_index
        assert frozen is not None, f"{old} reports no commit index"
        [out] = run_ops(c, w.history, old, [("write", "p-split", "old")], follow=False)
        assert out.type is not OpType.OK, out
        write(c, w.history, {"p-split": "new"}, node=new)
        w.wait_ops(40, 60)
        ahead = status(c, new).commit_index
        assert status(c, old).commit_index == frozen < (ahead or 0), (frozen, ahead)  # only one side commits
        c.heal()
        agreed(c)  # exactly one leader; every node follows it in one term
        everywhere(c, {"p-split": "new"})
    v = verify(c, w.history, w.keys + ["p-split"], lw.samples)
    assert v.ok, v.explain()


# ---------------------------------------------------------------- medium priority


def test_leader_failure_under_load(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    ld = c.leader()
    with cluster.workload(c, clients=8, keys=4) as w, watch(c) as lw:
        w.wait_ops(50, 60)
        c.kill(ld)
        assert c.leader(among=others(c, ld), timeout=30) != ld
        w.wait_ops(50, 60)
        c.restart(ld)
        w.wait_ops(30, 60)
    v = verify(c, w.history, w.keys, lw.samples)
    assert v.ok, v.explain()


def test_follower_failure_recovery(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    f = others(c, c.leader())[0]
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        c.kill(f)
        w.wait_ops(40, 60)
        write(c, w.history, ITEMS)  # while it is down
        c.restart(f)
        caught_up(c, f)
        assert {k: stale(c, f, k) for k in ITEMS} == ITEMS  # it serves reads of what it missed
        w.wait_ops(20, 60)
    v = verify(c, w.history, w.keys + list(ITEMS), lw.samples)
    assert v.ok, v.explain()


@pytest.mark.slow
@pytest.mark.raftnet_internals  # --snapshot-every, snapshot_index and last_log_index of /v1/status
def test_snapshot_after_failure(cluster: Any) -> None:
    c = cluster(3, node_args=("--snapshot-every", "50", "--snapshot-catchup-entries", "0"))
    f = others(c, c.leader())[0]
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        write(c, w.history, ITEMS)
        c.kill(f)
        beyond = max(c.status(n)["last_log_index"] for n in others(c, f))  # >= anything f holds
        wait_for(lambda: c.status(c.leader(timeout=15))["snapshot_index"] > beyond, 60, interval=0.1,
                 what=f"the leader to compact past index {beyond}")
        c.restart(f)
        # its log ends at or below `beyond`; the leader's starts above it: only InstallSnapshot bridges that
        wait_for(lambda: c.status(f)["snapshot_index"] > beyond, 30, interval=0.1, what=f"{f} to install a snapshot")
        caught_up(c, f)
        assert {k: stale(c, f, k) for k in ITEMS} == ITEMS
        w.wait_ops(20)
    v = verify(c, w.history, w.keys + list(ITEMS), lw.samples)  # replicas agree key by key
    assert v.ok, v.explain()


@pytest.mark.slow
def test_rapid_leader_changes(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    leaders = [c.leader()]
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        for _ in range(3):
            c.kill(leaders[-1])
            leaders.append(c.leader(among=others(c, leaders[-1]), timeout=30))
            c.restart(leaders[-2])
        assert all(a != b for a, b in itertools.pairwise(leaders)), leaders
        agreed(c)  # stabilises
        w.wait_ops(30, 60)
    v = verify(c, w.history, w.keys, lw.samples)
    assert v.ok, v.explain()


# ---------------------------------------------------------------- the analysis's implemented list


def test_data_replication_multi_node(cluster: Any, system: str | None) -> None:
    c = cluster(5, system=system)
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        write(c, w.history, ITEMS)
        w.wait_ops(30, 60)
        everywhere(c, ITEMS)
    v = verify(c, w.history, w.keys + list(ITEMS), lw.samples)  # every key identical on all 5 nodes
    assert v.ok, v.explain()


def test_leader_election_after_failure(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    old = c.leader()
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        c.kill(old)
        new = c.leader(among=others(c, old), timeout=30)
        assert new != old
        c.restart(old)
        agreed(c)  # the old leader follows; no split brain
        w.wait_ops(20, 60)
    v = verify(c, w.history, w.keys, lw.samples)
    assert v.ok, v.explain()


@pytest.mark.slow
def test_quorum_loss(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    ld = c.leader()
    f, last = others(c, ld)
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        w.wait_ops(20, 60)
        c.kill(ld)
        c.kill(f)
        refused(c, w.history, last, "p-noquorum")
        ok = w.counters.ok
        never(lambda: (c.node_status(last) or NO_STATUS).role == "leader", election_window(c),
              f"{last} elected itself without a majority")
        refused(c, w.history, last, "p-noquorum")
        assert w.counters.ok == ok, "an operation succeeded without a quorum"
        c.restart(f)
        c.leader(timeout=30)
        w.wait_ops(20, 60)
    v = verify(c, w.history, w.keys + ["p-noquorum"], lw.samples)
    assert v.ok, v.explain()


def test_data_consistency_after_recovery(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    f = others(c, c.leader())[0]
    before, during, after = ({f"{p}{i}": f"{p}-v{i}" for i in range(3)} for p in "bdz")
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        write(c, w.history, before)
        c.kill(f)
        write(c, w.history, during)
        c.restart(f)
        write(c, w.history, after)
        everywhere(c, before | during | after)  # old data kept, missed and new data replicated
        w.wait_ops(20, 60)
    v = verify(c, w.history, w.keys + list(before | during | after), lw.samples)
    assert v.ok, v.explain()


def test_write_after_failover(cluster: Any, system: str | None) -> None:
    c = cluster(3, system=system)
    old = c.leader()
    first, second = {"w1": "before"}, {"w2": "after"}
    with cluster.workload(c, clients=4, keys=3) as w, watch(c) as lw:
        write(c, w.history, first)
        c.kill(old)
        new = c.leader(among=others(c, old), timeout=30)
        write(c, w.history, second, node=new)
        assert read(c, w.history, new, ["w1", "w2"]) == first | second
        w.wait_ops(20, 60)
    v = verify(c, w.history, w.keys + ["w1", "w2"], lw.samples)
    assert v.ok, v.explain()
    everywhere(c, first | second)
