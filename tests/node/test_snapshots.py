"""Log compaction and InstallSnapshot with real processes, restarts from a
data dir that holds a snapshot, and followers that fall far behind."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster, MakeCluster, Node, wait_for

ODD_VALUES = {
    "empty": "",
    "nul": "a\x00b",
    "unicode": "été 雪 😀",
    "quotes": "\"'\\ {}[]",
    "lines": "one\ntwo\r\nthree\t",
    "long": "x" * 20_000,
}


def write_workload(c: LocalCluster, n: int, writers: int = 4) -> dict[str, str | None]:
    """n writes over 60 keys (overwrites and deletes) by ``writers`` threads, each with its own
    keys so that the final state is known; returns the expected final state."""
    expected: dict[str, str | None] = {}
    failures: list[str] = []

    def run(w: int) -> None:
        for i in range(w, n, writers):
            key = f"s{i % 60}"  # 60 % writers == 0: a key belongs to one writer
            if i % 11 == 10:
                r = c.call("DELETE", kv(key))
                expected[key] = None
            else:
                r = c.put(key, f"v{i}")
                expected[key] = f"v{i}"
            if r.status != 200:
                failures.append(f"{key}: {r.status} {r.body}")
                return

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(run, range(writers)))
    assert not failures, failures
    for k, v in ODD_VALUES.items():
        assert c.put(k, v).status == 200
        expected[k] = v
    return expected


def assert_state(node: Node, expected: Mapping[str, str | None]) -> None:
    for k, v in expected.items():
        r = node.stale(k)
        if v is None:
            assert r.status == 404, (node.id, k, r.body)
        else:
            assert (r.status, r.body["value"]) == (200, v), (node.id, k, r.body)


@pytest.mark.slow
def test_a_follower_behind_the_compacted_log_is_restored_by_install_snapshot(local_cluster: MakeCluster) -> None:
    # few catch-up entries: 300 writes behind is beyond them
    c: LocalCluster = local_cluster(3, ["--snapshot-every", "50", "--snapshot-catchup-entries", "20"])
    leader = c.leader()
    assert c.put("early", "1").status == 200
    follower = c.followers(leader)[0]
    behind = c.wait_caught_up(follower, leader)["last_log_index"]
    c.kill(follower.id)
    expected = {"early": "1", **write_workload(c, 300)}
    leader = c.leader()
    st = wait_for(lambda: (s := leader.status())["snapshot_index"] > behind + 200 and s, 10,
                  what="the leader to compact its log")
    # the leader no longer has the entries the follower lacks: only a snapshot can bring it back
    c.start(follower.id)
    fst = c.wait_caught_up(follower, leader, timeout=30)
    assert fst["snapshot_index"] >= st["snapshot_index"] > behind, (fst, st)
    assert_state(follower, expected)
    # same mod indexes as the leader: the same state, not merely the same values
    for k in expected:
        assert follower.stale(k).body == leader.stale(k).body

    # every node restarts from a data dir with a snapshot and a log suffix
    assert c.put("s0", "last").status == 200
    expected["s0"] = "last"
    for n in c.live():
        c.wait_caught_up(n, c.leader())
    before = {n.id: n.status() for n in c.live()}
    c.kill_all()
    c.start()
    for n in c.nodes.values():
        # straight after the restart, before any new write: the state on disk, a snapshot and
        # the log applied after it (up to the commit index on disk)
        st = n.status()
        assert st["snapshot_index"] > 0 and st["last_applied"] >= st["snapshot_index"], st
    def reapplied(n: Node) -> bool:
        return bool(n.status()["last_applied"] >= before[n.id]["last_applied"])

    for n in c.nodes.values():
        # the commit index is volatile (node/storage.py: a commit alone is written with the
        # next transaction): what the node had applied comes back once a leader commits
        wait_for(functools.partial(reapplied, n), 20, what=f"{n.id} to apply again what it had applied")
        assert_state(n, expected)
    assert c.put("after-restart", "ok", timeout=20).status == 200
    expected["after-restart"] = "ok"
    leader = c.leader()
    for n in c.live():
        c.wait_caught_up(n, leader)
        assert_state(n, expected)


def test_a_follower_behind_by_megabytes_of_log_catches_up(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(3)
    leader = c.leader()
    follower = c.followers(leader)[0]
    c.kill(follower.id)
    expected = {f"big{i}": f"{i}:" + "z" * 30_000 for i in range(40)}  # 1.2 MB of log
    for k, v in expected.items():
        assert c.put(k, v).status == 200
    leader = c.leader()
    target = leader.status()["commit_index"]
    c.start(follower.id)

    def caught_up() -> bool:
        refused = [ln for ln in leader.log_path.read_text().splitlines() if "refused" in ln and "HTTP 400" in ln]
        assert not refused, f"the follower refuses the leader's messages: {refused[-1]}"
        return follower.status()["last_applied"] >= target

    wait_for(caught_up, 30, interval=0.1, what="the follower to catch up")
    assert_state(follower, expected)


def snapshots_sent(node: Node) -> float:
    text = node.request("GET", "/metrics").body
    (line,) = [ln for ln in text.splitlines() if ln.startswith("raftnet_snapshots_sent_total ")]
    return float(line.split()[1])


@pytest.mark.parametrize(("keep", "via_snapshot"), [("1000", False), ("0", True)],
                         ids=["catch-up-entries", "none-kept"])
def test_a_follower_down_briefly_catches_up_from_the_kept_entries(local_cluster: MakeCluster, keep: str,
                                                                  via_snapshot: bool) -> None:
    # the leader compacts every 20 entries; the follower misses 60. With 1000 catch-up entries
    # kept it gets them by AppendEntries: the leader sends no InstallSnapshot (its metric says
    # so). With none kept (the control case) it needs one.
    c: LocalCluster = local_cluster(3, ["--snapshot-every", "20", "--snapshot-catchup-entries", keep])
    leader = c.leader()
    assert c.put("early", "1").status == 200
    follower = c.followers(leader)[0]
    behind = c.wait_caught_up(follower, leader)["last_log_index"]
    c.kill(follower.id)
    expected = {f"b{i}": f"v{i}" for i in range(60)}
    for k, v in expected.items():
        assert c.put(k, v).status == 200
    leader = c.leader()
    st = leader.status()
    assert st["snapshot_index"] > behind, st  # compacted past everything the follower has
    before = snapshots_sent(leader)
    c.start(follower.id)
    c.wait_caught_up(follower, leader, timeout=30)
    assert_state(follower, {"early": "1", **expected})
    assert leader.status()["role"] == "leader"
    assert (snapshots_sent(leader) > before) is via_snapshot, (before, snapshots_sent(leader))
