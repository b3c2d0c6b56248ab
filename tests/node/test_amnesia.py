"""A node whose data dir was wiped and that comes back under the same id
(issue 10): its votes and acknowledgements must never count, and the
operator must be told what to do.

- with --peers it bootstraps again at term 0; every member refuses its
  batches (HTTP 409 stale_incarnation), so with the leader gone the last
  healthy voter cannot win with it, and its status and log say why;
- with --join to a cluster that still has it as a member it exits 2 with a
  one-line reason (409 member_exists);
- removed first, the same id with a wiped data dir joins and catches up,
  and its votes count again.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

from tests.node.localcluster import ROOT, LocalCluster, MakeCluster, Node, wait_for


def hold(check: Callable[[], None], seconds: float, interval: float = 0.05) -> None:
    """Run ``check`` (it asserts) again and again for ``seconds``: a property that must
    hold throughout a window, not a condition to wait for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check()
        time.sleep(interval)


def roles(c: LocalCluster, ids: list[str]) -> dict[str, tuple[str, int]]:
    out = {}
    for i in ids:
        try:
            st = c.nodes[i].status()
        except OSError:
            continue
        out[i] = (st["role"], st["term"])
    return out


def wipe_and_restart(c: LocalCluster, node: Node, membership_args: list[str] | None = None) -> Node:
    """SIGKILL ``node``, remove its data dir, start it again under the same id and address."""
    c.kill(node.id)
    shutil.rmtree(node.data_dir)
    if membership_args is not None:
        node = c._node(node.id, node.address, membership_args)
        c.nodes[node.id] = node
    c.start(node.id)
    return node


def recorded(c: LocalCluster, via: Node) -> bool:
    """``via`` knows every member's incarnation from the replicated configuration."""
    incs = via.status()["incarnations"]
    return len(incs) == len(c.nodes) and all(incs.values())


def test_a_wiped_node_restarted_with_peers_is_refused_and_its_vote_never_counts(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(3)
    for i in range(10):
        assert c.put(f"k{i}", f"v{i}").status == 200
    leader = c.leader()
    victim, other = c.followers(leader)
    old_incarnation = victim.status().get("incarnation")
    wait_for(lambda: recorded(c, other), 10, what=f"{other.id} to know every member's incarnation")

    # wiped while a peer that knows its incarnation is up: it refuses to bootstrap again
    c.kill(victim.id)
    shutil.rmtree(victim.data_dir)
    p = subprocess.run(victim.args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("raftnet-node: error: ") and "already lived in this cluster" in last, last
    assert f"remove {victim.id}" in last and "--join" in last, last

    # wiped while no peer could tell (both down): it bootstraps, then the leader dies and the
    # other comes back: the two alone, and the wiped node's vote must never count
    c.kill(other.id)
    c.kill(leader.id)
    victim = wipe_and_restart(c, victim)
    c.start(other.id)
    pair = [other.id, victim.id]

    def no_leader() -> None:
        rs = roles(c, pair)
        assert all(r != "leader" for r, _ in rs.values()), f"elected with an amnesiac vote: {rs}"

    hold(no_leader, 5.0)  # 8+ maximal election timeouts: the wiped node's vote never counts
    assert victim.status()["incarnation"] != old_incarnation
    # it is refused, and says so: /v1/status and an ERROR line in its log
    wait_for(lambda: other.id in victim.status()["refused_by"], 10, what=f"{other.id} to refuse {victim.id}")
    reason = victim.status()["refused_by"][other.id]
    assert "new incarnation" in reason and "--join" in reason, reason
    log = victim.log_path.read_text()
    assert f"ERROR raftnet.transport: peer {other.id} refuses us" in log, c.tail(victim.id)

    # the leader comes back: the cluster works again, has lost nothing, and refuses the wiped node too
    c.start(leader.id)
    new = c.leader(timeout=20, among=[leader.id, other.id])
    assert c.put("after", "back").status == 200
    for i in range(10):
        assert new.stale(f"k{i}").body["value"] == f"v{i}"
    # (it talks to the leader only, as a follower does)
    wait_for(lambda: new.id in victim.status()["refused_by"], 10, what=f"the leader {new.id} to refuse {victim.id}")
    assert victim.status()["role"] != "leader" and c.leader().id == new.id


def test_a_wiped_member_cannot_join_again_until_removed(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(3)
    for i in range(10):
        assert c.put(f"k{i}", f"v{i}").status == 200
    leader = c.leader()
    victim = c.followers(leader)[0]
    wait_for(lambda: victim.status()["last_applied"] >= leader.status()["commit_index"], 10,
             what=f"{victim.id} to apply everything")

    # --join while still a member: exit 2 with one line that says what to do
    c.kill(victim.id)
    shutil.rmtree(victim.data_dir)
    joiner = c._node(victim.id, victim.address, ["--join", leader.address])
    p = subprocess.run(joiner.args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr
    last = err[-1]
    assert last.startswith("raftnet-node: error: ") and "member_exists" in last, p.stderr
    assert f"remove {victim.id}" in last and "--join" in last, last
    assert {m["id"] for m in leader.request("GET", "/v1/members").body["members"]} == {"n1", "n2", "n3"}
    assert c.put("still", "works").status == 200

    # removed first, the same id with a wiped data dir joins, catches up and votes again
    assert c.call("DELETE", f"/v1/members/{victim.id}", timeout=20).status == 200
    shutil.rmtree(victim.data_dir, ignore_errors=True)
    c.nodes[victim.id] = joiner
    c.start(victim.id)

    def voter_again() -> bool:
        ms = {m["id"]: m["voter"] for m in c.leader().request("GET", "/v1/members").body["members"]}
        return ms == {"n1": True, "n2": True, "n3": True}

    wait_for(voter_again, 30, interval=0.1, what=f"{victim.id} to be a voter again")
    c.wait_caught_up(joiner, c.leader())
    for i in range(10):
        assert joiner.stale(f"k{i}").body["value"] == f"v{i}"
    assert joiner.stale("still").body["value"] == "works"
    assert joiner.status()["refused_by"] == {}
    me = joiner.status()["incarnation"]
    wait_for(lambda: c.leader().status()["incarnations"].get(victim.id) == me, 10,
             what="the configuration to record the new incarnation")
    # a join retried by the same data dir (a lost reply) is still 200; another one is refused
    lead = c.leader()
    body = {"id": victim.id, "address": victim.address}
    assert lead.request("POST", "/v1/members", {**body, "incarnation": me}).status == 200
    assert lead.request("POST", "/v1/members", body).status == 200  # an older client: no incarnation
    r = lead.request("POST", "/v1/members", {**body, "incarnation": "0123abcd"})
    assert (r.status, r.body["error"]) == (409, "member_exists"), r.body
    # and the peer endpoint refuses a batch from another incarnation of it
    batch = {"cluster": lead.status()["cluster_id"], "from": victim.id, "msgs": []}
    r = lead.request("POST", "/raft/messages", batch, headers={"X-Raftnet-Incarnation": "0123abcd"})
    assert (r.status, r.body["error"]) == (409, "stale_incarnation"), r.body
    assert lead.request("POST", "/raft/messages", batch, headers={"X-Raftnet-Incarnation": me}).status == 204
    # its vote counts: with the leader gone, the other two elect one of themselves
    old = c.leader()
    c.kill(old.id)
    rest = [i for i in ("n1", "n2", "n3") if i != old.id]
    new = c.leader(timeout=20, among=rest)
    assert c.put("after-rejoin", "yes", via=new).status == 200
