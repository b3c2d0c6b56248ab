"""etcd under network partitions and crashes: a test suite to copy.

Everything comes from raftnet's pytest plugin (the ``cluster`` fixture, the
``netns`` marker, rootless mode) and raftnet's public harness modules; no
conftest needed. Each test starts its own 3-node etcd cluster, each node in
its own network namespace, and every fault goes through the kernel
(nftables rules, SIGKILL). Waiting is polling with a deadline (``wait_for``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import pytest

from harness.model.history import History, OpType
from harness.orchestration.cluster import Cluster
from harness.orchestration.local import wait_for
from harness.orchestration.recorder import Recorder
from harness.orchestration.workload import verify
from harness.pytest_plugin import ClusterFactory
from harness.systems.base import Outcome

pytestmark = pytest.mark.netns

SYSTEM = "etcd"  # or "etcd-serializable": stale reads, which verify() should catch
PROCESS = itertools.count(10_000)  # history process ids of our own clients (the workload's are 0..)


def run_ops(c: Cluster, h: History, node: str, calls: Sequence[tuple[str, str, str | None]],
            timeout: float = 3.0) -> list[Outcome]:
    """(f, key, value) calls in order through one recording client bound to ``node``: f is read or write."""

    async def go() -> list[Outcome]:
        kv = c.system.client(timeout=timeout, client_id=f"example-{next(PROCESS)}", follow_redirects=True)
        rec = Recorder(kv, h, next(PROCESS), c.endpoints, node)
        try:
            return [await (rec.read(k) if f == "read" else rec.write(k, v or "")) for f, k, v in calls]
        finally:
            await rec.close()

    return asyncio.run(go())


def write_ok(c: Cluster, h: History, node: str, key: str, value: str) -> bool:
    return run_ops(c, h, node, [("write", key, value)])[0].type is OpType.OK


def read_ok(c: Cluster, h: History, node: str, key: str) -> Outcome | None:
    out = run_ops(c, h, node, [("read", key, None)])[0]
    return out if out.type is OpType.OK else None


def others(c: Cluster, *but: str) -> list[str]:
    return [n for n in c.nodes if n not in but]


def test_majority_writes_minority_cannot(cluster: ClusterFactory) -> None:
    c = cluster(3, system=SYSTEM)
    h = cluster.record()
    old = c.leader()
    majority = others(c, old)
    c.partition([old], majority)

    # The majority elects a leader of its own and commits.
    new = c.leader(timeout=30, among=majority)
    assert new in majority
    wait_for(lambda: write_ok(c, h, majority[0], "k", "majority"), 30, interval=0.2, what="a majority write")

    # The old leader, alone, never acknowledges a write: a bounded number of tries, each refused
    # (no leader) or timed out.
    deadline = time.monotonic() + 5
    tries = 0
    while time.monotonic() < deadline:
        out = run_ops(c, h, old, [("write", "k", f"minority-{tries}")], timeout=2.0)[0]
        assert out.type is not OpType.OK, f"the minority ({old}) acknowledged a write: {out}"
        tries += 1
    assert tries >= 2

    c.heal()
    verdict = verify(c, h)
    assert verdict.ok, verdict.explain()


def test_leader_kill_fails_over(cluster: ClusterFactory) -> None:
    c = cluster(3, system=SYSTEM)
    h = cluster.record()
    old = c.leader()
    wait_for(lambda: write_ok(c, h, old, "k", "before"), 30, interval=0.2, what="a write before the kill")

    c.kill(old)
    new = c.leader(timeout=30, among=others(c, old))
    assert new != old
    wait_for(lambda: write_ok(c, h, new, "k", "after"), 30, interval=0.2, what="a write to the new leader")
    got = wait_for(lambda: read_ok(c, h, new, "k"), 30, interval=0.2, what="a read from the new leader")
    assert got.value == "after"

    verdict = verify(c, h)  # restarts the killed node, waits until all agree, reads back, checks
    assert verdict.ok, verdict.explain()


def test_killed_node_rejoins_and_serves_its_data(cluster: ClusterFactory) -> None:
    c = cluster(3, system=SYSTEM)
    h = cluster.record()
    leader = c.leader()
    follower = others(c, leader)[0]
    wait_for(lambda: write_ok(c, h, leader, "a", "1"), 30, interval=0.2, what="a write before the kill")

    c.kill(follower)
    wait_for(lambda: write_ok(c, h, leader, "b", "2"), 30, interval=0.2, what="a write while it is down")
    c.restart(follower)

    # Through the restarted node: what it had (a) and what it missed while down (b).
    got = wait_for(lambda: read_ok(c, h, follower, "a"), 30, interval=0.2, what=f"a read of a through {follower}")
    assert got.value == "1"
    got = wait_for(lambda: read_ok(c, h, follower, "b"), 30, interval=0.2, what=f"a read of b through {follower}")
    assert got.value == "2"

    verdict = verify(c, h)
    assert verdict.ok, verdict.explain()


def test_workload_under_a_partition_is_linearizable(cluster: ClusterFactory) -> None:
    c = cluster(3, system=SYSTEM)
    with cluster.workload(c, clients=4, keys=3, seed=7) as w:
        w.wait_ops(20)  # acknowledged operations before the fault
        leader = c.leader()
        c.partition([leader], others(c, leader))
        c.leader(timeout=30, among=others(c, leader))
        w.wait_ops(20)  # the majority side goes on
        c.heal()
        w.wait_ops(20)
    verdict = verify(c, w.history)
    assert verdict.ok, verdict.explain()
    assert verdict.operations > 60
