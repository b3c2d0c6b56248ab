"""Leadership transfer: POST /v1/leader/transfer with and without "to"."""

from __future__ import annotations

from functools import partial

from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster, Node, Response, wait_for


def all_agree(c: LocalCluster, leader_id: str) -> bool:
    sts = [n.status() for n in c.live()]
    return all(st["leader_id"] == leader_id for st in sts) and all(
        (st["role"] == "leader") == (st["id"] == leader_id) for st in sts) and len({st["term"] for st in sts}) == 1


def transfer(node: Node, body: object) -> Response:
    """POST /v1/leader/transfer; a 503 ("did not move in time", e.g. on a starved machine) is retried."""
    for _ in range(3):
        r = node.request("POST", "/v1/leader/transfer", body)
        if r.status != 503:
            return r
        wait_for(lambda: node.status()["role"] == "leader", 10, what=f"{node.id} to lead again")
    return r


def test_leadership_transfer(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    old = c.leader()
    wait_for(lambda: all_agree(c, old.id), 10, what="a settled cluster")
    term = old.status()["term"]
    target = c.followers(old)[0]
    # to a named voter
    r = transfer(old, {"to": target.id})
    assert (r.status, r.body) == (200, {"leader": target.id}), r.body
    wait_for(lambda: all_agree(c, target.id), 10, what=f"every node to follow {target.id}")
    assert target.status()["term"] > term
    assert c.call("PUT", kv("after-transfer"), {"value": "x"}).status == 200
    # on a follower: 307 to the leader, and nothing moves
    follower = next(n for n in c.followers(target))
    r = follower.request("POST", "/v1/leader/transfer", {"to": follower.id})
    assert r.status == 307 and r.body["error"] == "not_leader", r.body
    assert r.body["leader"] == {"id": target.id, "address": target.address}
    assert r.headers["Location"] == f"http://{target.address}/v1/leader/transfer"
    # to a node that is not a member: 400, and nothing moves
    r = target.request("POST", "/v1/leader/transfer", {"to": "n99"})
    assert (r.status, r.body["error"]) == (400, "bad_request"), r.body
    r = target.request("POST", "/v1/leader/transfer", {"to": 3})
    assert (r.status, r.body["error"]) == (400, "bad_request"), r.body
    assert c.leader().id == target.id
    # without "to": some other voter, with or without a body
    body: dict[str, object] | None
    for body in ({}, None):
        cur: Node = c.leader()
        r = transfer(cur, body)
        assert r.status == 200, r.body
        new = r.body["leader"]
        assert new != cur.id and new in c.nodes
        wait_for(partial(all_agree, c, new), 10, what=f"every node to follow {new}")
    assert c.call("PUT", kv("after-transfers"), {"value": "y"}).status == 200
