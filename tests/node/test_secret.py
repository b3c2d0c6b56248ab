"""--secret-file: every endpoint but /v1/health needs the shared secret, the
peers authenticate each other with it, and the cluster works as usual."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster, MakeCluster, request, serves, wait_for


def test_wrong_or_missing_secret_is_403_and_the_cluster_works_with_it(local_cluster: MakeCluster,
                                                                     tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    c: LocalCluster = local_cluster(3, ["--secret-file", str(secret)])
    # with the secret: writes commit and replicate (so the peers accept each other's RPCs)
    assert c.put("k", "v", timeout=20).status == 200
    leader = c.leader()
    for n in c.followers(leader):
        wait_for(partial(serves, n, "k"), 10, what=f"replication to {n.id}")
    cluster_id = leader.status()["cluster_id"]
    bad_headers = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer s3cr3t-valu"},
        {"Authorization": "Bearer s3cr3t-value2"},
        {"Authorization": "s3cr3t-value"},
        {"Authorization": "Basic s3cr3t-value"},
        {"Authorization": "Bearer "},
    ]
    calls = [
        ("GET", kv("k"), None),
        ("GET", kv("k") + "?stale=true", None),
        ("PUT", kv("k"), {"value": "intruder"}),
        ("DELETE", kv("k"), None),
        ("POST", kv("k") + "/cas", {"expect": "v", "value": "intruder"}),
        ("GET", "/v1/status", None),
        ("GET", "/v1/members", None),
        ("POST", "/v1/members", {"id": "n9", "address": "127.0.0.1:1"}),
        ("DELETE", "/v1/members/n1", None),
        ("POST", "/v1/leader/transfer", {}),
        ("GET", "/metrics", None),
        ("POST", "/raft/messages", {"cluster": cluster_id, "from": "n1", "msgs": []}),
    ]
    for n in c.live():
        for headers in bad_headers:
            for method, path, body in calls:
                r = request(n.address, method, path, body, headers=headers)
                assert (r.status, r.body["error"]) == (403, "forbidden"), (n.id, headers, method, path, r.body)
            # the peer stream's handshake too, even with the right cluster id
            r = request(n.address, "GET", "/raft/stream", headers={**headers, "X-Raftnet-Cluster": cluster_id,
                                                                   "X-Raftnet-From": "n1"})
            assert r.status == 403 and "secret" in r.body["message"], (n.id, headers, r.body)
            # the health check needs no secret
            assert request(n.address, "GET", "/v1/health", headers=headers).status == 200
    # nothing was changed by the refused calls
    leader = c.leader()
    assert c.call("GET", kv("k"), via=leader).body["value"] == "v"
    assert len(leader.request("GET", "/v1/members").body["members"]) == 3
    assert c.put("k2", "v2").status == 200
    for n in c.live():
        wait_for(partial(serves, n, "k2"), 10, what=f"replication to {n.id}")
