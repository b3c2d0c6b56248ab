"""Membership changes: a node started with --join becomes a voter with the
data; DELETE /v1/members/{id} removes a member, the leader included; two
learners never stand in for two lost voters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

from node.raft import Member, Membership, NodeId
from node.storage import SqliteStorage
from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster, MakeCluster, Node, serves, wait_for


def follows(node: Node, leader: Node) -> bool:
    return bool(node.status()["leader_id"] == leader.id)


def members(node: Node) -> dict[str, bool]:
    r = node.request("GET", "/v1/members")
    assert r.status == 200
    return {m["id"]: m["voter"] for m in r.body["members"]}


def metrics(node: Node) -> dict[str, float]:
    text = node.request("GET", "/metrics").body
    return {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines() if ln and not ln.startswith("#")}


def test_a_node_started_with_join_becomes_a_voter_with_the_data(local_cluster: MakeCluster) -> None:
    # compacted early, no catch-up entries kept: the newcomer can only come through InstallSnapshot
    c: LocalCluster = local_cluster(3, ["--snapshot-every", "20", "--snapshot-catchup-entries", "0"])
    data = {f"k{i}": f"v{i}" for i in range(30)}
    for k, v in data.items():
        assert c.put(k, v).status == 200
    follower = c.followers(c.leader())[0]
    # join through a follower: the request finds its way to the leader
    n4 = c.add_node("n4", join_via=follower.id)
    four = {"n1": True, "n2": True, "n3": True, "n4": True}

    def joined() -> bool:
        assert "HTTP 504" not in n4.log_path.read_text(), f"the join request timed out:\n{c.tail('n4')}"
        m = metrics(n4)
        assert not (m["raftnet_transport_sent_total"] == 0 and m["raftnet_transport_dropped_total"] > 50), (
            f"n4 drops every message it sends: {m}, status {n4.status()}")
        return members(c.leader()) == four

    wait_for(joined, 30, interval=0.1, what="n4 to become a voter")
    c.wait_caught_up(n4, c.leader())
    for k, v in data.items():
        assert n4.stale(k).body["value"] == v
    st = n4.status()
    assert st["snapshot_index"] >= 20, st
    assert st["role"] == "follower" and st["leader_id"] == c.leader().id
    wait_for(lambda: all(members(n) == four for n in c.live()), 10, what="every node to see four voters")
    assert c.put("with-n4", "yes").status == 200
    wait_for(lambda: n4.stale("with-n4").status == 200, 10, what="n4 to receive new writes")
    # and it can be removed again
    assert c.call("DELETE", "/v1/members/n4", timeout=20).status == 200
    wait_for(lambda: all(set(members(c.nodes[i])) == {"n1", "n2", "n3"} for i in ("n1", "n2", "n3")), 10,
             what="n4 gone from every configuration")


def test_remove_a_follower_then_the_leader_itself(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(4)
    data = {f"k{i}": f"v{i}" for i in range(10)}
    for k, v in data.items():
        assert c.put(k, v).status == 200
    leader = c.leader()
    victim = c.followers(leader)[0]
    # an unknown member: 404, nothing changes
    r = leader.request("DELETE", "/v1/members/n99")
    assert (r.status, r.body["error"]) == (404, "not_found"), r.body
    # on a follower: 307 to the leader, nothing changes
    other = next(n for n in c.followers(leader) if n.id != victim.id)
    r = other.request("DELETE", f"/v1/members/{victim.id}")
    assert r.status == 307 and r.body["leader"] == {"id": leader.id, "address": leader.address}, r.body
    assert len(members(leader)) == 4

    # remove a follower
    r = c.call("DELETE", f"/v1/members/{victim.id}", timeout=20)
    assert r.status == 200, r.body
    three = {n.id for n in c.nodes.values()} - {victim.id}
    assert {m["id"] for m in r.body["members"]} == three
    wait_for(lambda: all(set(members(c.nodes[i])) == three for i in three), 10,
             what=f"{victim.id} gone from every configuration")
    assert c.put("after-follower-removed", "x").status == 200
    c.kill(victim.id)  # with 3 voters left, the remaining 3 are all it takes

    # remove the leader itself: the other two elect a new leader and keep writing
    leader = c.leader()
    rest = sorted(three - {leader.id})
    r = leader.request("DELETE", f"/v1/members/{leader.id}", timeout=30)
    assert r.status == 200, r.body
    assert {m["id"] for m in r.body["members"]} == set(rest)
    new = c.leader(timeout=20, among=rest)
    wait_for(lambda: members(new) == {i: True for i in rest}, 10, what="a two-voter configuration")
    assert c.put("after-leader-removed", "y", via=new, timeout=20).status == 200
    for k, v in {**data, "after-follower-removed": "x", "after-leader-removed": "y"}.items():
        assert c.call("GET", kv(k), via=new).body["value"] == v
    # the removed leader leads nothing any more; the others follow the new one
    wait_for(lambda: c.nodes[leader.id].status()["role"] != "leader", 10, what="the removed leader to step down")
    for i in rest:
        wait_for(partial(follows, c.nodes[i], new), 10, what=f"{i} to follow {new.id}")
    # the two of them are a majority of their configuration, not of the old one
    assert c.nodes[leader.id].request("PUT", kv("via-removed"), {"value": "z"}).status != 200


def test_two_learners_do_not_replace_two_lost_voters(local_cluster: MakeCluster) -> None:
    # 3 voters + 2 healthy learners, bootstrapped that way in every data dir (a restart
    # takes its membership from the data dir, not from --peers). With 2 voters killed,
    # the leader and the learners are 3 of 5 members: counting learners in a quorum
    # would commit writes and serve linearizable reads. Nothing may be.
    c: LocalCluster = local_cluster(5, start=False)
    voters, learners = ["n1", "n2", "n3"], ["n4", "n5"]
    config = Membership.of([Member(NodeId(n.id), n.address, voter=n.id in voters) for n in c.nodes.values()])
    for n in c.nodes.values():
        n.data_dir.mkdir(parents=True)
        s = SqliteStorage(n.data_dir / "raft.db")
        s.bootstrap(n.id, "two-learners", config)
        s.close()
    c.start()
    leader = c.leader(among=voters)
    assert members(leader) == {"n1": True, "n2": True, "n3": True, "n4": False, "n5": False}
    assert c.put("before", "1").status == 200
    for name in learners:
        wait_for(partial(serves, c.nodes[name], "before"), 10, what=f"{name} to get the write")
    for name in voters:
        if name != leader.id:
            c.kill(name)
    # both at once, while it still leads (CheckQuorum gives it an election timeout)
    with ThreadPoolExecutor(2) as pool:
        read = pool.submit(leader.request, "GET", kv("before"), timeout=15)
        write = pool.submit(leader.request, "PUT", kv("after"), {"value": "2"}, timeout=15)
        read_r, write_r = read.result(), write.result()
    # never 200: n1 + n4 + n5 is no majority of the voters n1..n3
    assert read_r.status in (307, 503), read_r.body
    assert write_r.status in (307, 503, 504), write_r.body
    # CheckQuorum: the learners' answers do not keep it leading; they never lead either
    wait_for(lambda: leader.status()["role"] != "leader", 5, what=f"{leader.id} to step down")
    assert all(c.nodes[n].status()["role"] == "follower" for n in learners)
    for name in [leader.id, *learners]:
        assert c.nodes[name].stale("after").status == 404
