"""The client API of CONTRACT.md section 2 against a real 3-node cluster:
reads and writes, keys, status, members, metrics and every error row that
a healthy cluster can produce."""

from __future__ import annotations

import re
import uuid
from functools import partial
from typing import Any

import pytest

from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster, MakeCluster, Node, Response, wait_for

STATUS_FIELDS = {"id", "role", "term", "leader_id", "commit_index", "last_applied", "last_log_index",
                 "snapshot_index", "members"}
ROLES = {"leader", "follower", "candidate", "pre-candidate"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def a_follower(c: LocalCluster) -> tuple[Node, Node]:
    """(leader, a follower that knows the leader)."""
    leader = c.leader()
    follower = wait_for(lambda: next((n for n in c.followers(leader) if n.status()["leader_id"] == leader.id), None),
                        10, what="a follower that knows the leader")
    return leader, follower


def has_state(node: Node, key: str, expected: dict[str, Any]) -> bool:
    return bool(node.stale(key).body == expected)


def assert_error(r: Response, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert isinstance(r.body, dict), r.body
    assert r.body["error"] == code, r.body
    assert isinstance(r.body.get("message"), str), r.body


# ---------------------------------------------------------------------- reads and writes
def test_write_then_linearizable_read_on_leader_and_stale_read_everywhere(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    key = unique("k")
    w = c.call("PUT", kv(key), {"value": "v1"})
    assert w.status == 200 and isinstance(w.body["index"], int) and w.body["index"] > 0, w.body
    r = c.call("GET", kv(key))  # linearizable, on the leader
    assert (r.status, r.body) == (200, {"value": "v1", "index": w.body["index"]})
    v1 = {"value": "v1", "index": w.body["index"]}
    for n in c.live():
        wait_for(partial(has_state, n, key, v1), 10, what=f"{key} replicated to {n.id}")
    w2 = c.call("PUT", kv(key), {"value": "v2"})
    assert w2.status == 200 and w2.body["index"] > w.body["index"]
    assert c.call("GET", kv(key)).body == {"value": "v2", "index": w2.body["index"]}


def test_get_of_a_missing_key_is_404_not_found(shared_cluster: LocalCluster) -> None:
    assert_error(shared_cluster.call("GET", kv(unique("missing"))), 404, "not_found")
    for n in shared_cluster.live():
        assert_error(n.stale(unique("missing")), 404, "not_found")


def test_delete_answers_200_with_an_index_also_for_a_missing_key(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    key = unique("del")
    put = c.call("PUT", kv(key), {"value": "x"})
    d = c.call("DELETE", kv(key))
    assert d.status == 200 and d.body["index"] > put.body["index"], d.body
    assert_error(c.call("GET", kv(key)), 404, "not_found")
    d2 = c.call("DELETE", kv(key))
    assert d2.status == 200 and d2.body["index"] > d.body["index"], d2.body
    d3 = c.call("DELETE", kv(unique("never-written")))
    assert d3.status == 200 and isinstance(d3.body["index"], int), d3.body


def test_cas_success_conflict_and_only_if_absent(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    key = unique("cas")
    path = kv(key) + "/cas"
    # expect null on an absent key: succeeds once, then reports the current value
    first = c.call("POST", path, {"expect": None, "value": "a"})
    assert first.status == 200 and isinstance(first.body["index"], int), first.body
    again = c.call("POST", path, {"expect": None, "value": "z"})
    assert (again.status, again.body["error"], again.body["current"]) == (409, "cas_failed", "a")
    # expect the current value: succeeds
    ok = c.call("POST", path, {"expect": "a", "value": "b"})
    assert ok.status == 200 and ok.body["index"] > first.body["index"]
    # expect a stale value: 409 with the current one, nothing changes
    stale = c.call("POST", path, {"expect": "a", "value": "c"})
    assert (stale.status, stale.body["error"], stale.body["current"]) == (409, "cas_failed", "b")
    assert c.call("GET", kv(key)).body == {"value": "b", "index": ok.body["index"]}
    # on an absent key, a non-null expectation fails with current null
    absent = c.call("POST", kv(unique("cas-absent")) + "/cas", {"expect": "x", "value": "y"})
    assert (absent.status, absent.body["error"], absent.body["current"]) == (409, "cas_failed", None)
    # after a delete, expect null succeeds again
    assert c.call("DELETE", kv(key)).status == 200
    assert c.call("POST", path, {"expect": None, "value": "d"}).status == 200
    assert c.call("GET", kv(key)).body["value"] == "d"


@pytest.mark.parametrize("key", ["a/b", "été", "雪", "😀 emoji", "sp ace", "100%", "?q=1&x#frag", "a+b", "a/../b",
                                 "%2F", "tab\there", ".", ".."])
def test_keys_with_percent_encoded_characters_round_trip(shared_cluster: LocalCluster, key: str) -> None:
    c = shared_cluster
    if key.strip("."):
        key = f"{key}-{uuid.uuid4().hex[:6]}"
    w = c.call("PUT", kv(key), {"value": f"value of {key}"})
    assert w.status == 200, w.body
    assert c.call("GET", kv(key)).body == {"value": f"value of {key}", "index": w.body["index"]}
    assert c.call("POST", kv(key) + "/cas", {"expect": f"value of {key}", "value": "2"}).status == 200
    assert c.call("GET", kv(key)).body["value"] == "2"
    assert c.call("DELETE", kv(key)).status == 200
    assert c.call("GET", kv(key)).status == 404


def test_percent_escapes_in_a_key_are_decoded_exactly_once(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    suffix = uuid.uuid4().hex[:6]
    plain, literal = f"aA{suffix}", f"a%41{suffix}"  # the second key holds a literal '%41'
    assert c.call("PUT", kv(plain), {"value": "plain"}).status == 200
    assert c.call("PUT", kv(literal), {"value": "literal"}).status == 200  # sent as a%2541...
    assert c.call("GET", kv(plain)).body["value"] == "plain"
    assert c.call("GET", kv(literal)).body["value"] == "literal"


def test_key_of_1024_bytes_is_accepted_and_1025_bytes_is_400(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    tag = uuid.uuid4().hex[:8]
    for key in (tag + "k" * (1024 - len(tag)), tag + "é" * ((1024 - len(tag)) // 2)):
        assert len(key.encode()) == 1024
        w = c.call("PUT", kv(key), {"value": "long"})
        assert w.status == 200, w.body
        assert c.call("GET", kv(key)).body["value"] == "long"
    leader = c.leader()
    for key in (tag + "k" * (1025 - len(tag)), tag + "é" * ((1024 - len(tag)) // 2) + "k"):
        assert len(key.encode()) == 1025
        for method, path, body in (("PUT", kv(key), {"value": "x"}), ("GET", kv(key), None), ("DELETE", kv(key), None),
                                   ("POST", kv(key) + "/cas", {"expect": None, "value": "x"})):
            assert_error(leader.request(method, path, body), 400, "bad_request")


@pytest.mark.parametrize("raw_key", ["%FF", "%ED%A0%80", "a%C3"])
def test_key_that_is_not_utf8_is_400(shared_cluster: LocalCluster, raw_key: str) -> None:
    leader = shared_cluster.leader()
    assert_error(leader.request("PUT", "/v1/kv/" + raw_key, {"value": "x"}), 400, "bad_request")
    assert_error(leader.request("GET", "/v1/kv/" + raw_key), 400, "bad_request")


# ---------------------------------------------------------------------- cluster endpoints
def test_status_has_the_contract_fields_on_every_node(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    leader = c.leader()
    c.call("PUT", kv(unique("status")), {"value": "x"})
    ids = set(c.nodes)
    for n in c.live():
        r = n.request("GET", "/v1/status")
        assert r.status == 200, r.body
        st = r.body
        assert STATUS_FIELDS <= set(st), STATUS_FIELDS - set(st)
        assert st["id"] == n.id
        assert st["role"] in ROLES
        assert st["leader_id"] is None or st["leader_id"] in ids
        for f in ("term", "commit_index", "last_applied", "last_log_index", "snapshot_index"):
            assert isinstance(st[f], int) and st[f] >= 0, (f, st[f])
        assert st["snapshot_index"] <= st["last_applied"] <= st["commit_index"] <= st["last_log_index"], st
        assert {m["id"] for m in st["members"]} == ids
    st = leader.status()
    assert st["role"] == "leader" and st["leader_id"] == leader.id and st["last_applied"] >= 1
    wait_for(lambda: all(n.status()["leader_id"] == leader.id and n.status()["role"] == "follower"
                         for n in c.followers(leader)), 10, what="followers agree on the leader")


def test_members_lists_the_configuration_on_every_node(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    expected = [{"id": n.id, "address": n.address, "voter": True} for n in c.nodes.values()]
    for n in c.live():
        r = n.request("GET", "/v1/members")
        assert r.status == 200
        assert sorted(r.body["members"], key=lambda m: m["id"]) == expected


SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*"
                    r"(\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\})?"
                    r" (-?[0-9.]+([eE][-+]?[0-9]+)?|[-+]Inf|NaN)( -?[0-9]+)?$")


def test_metrics_is_prometheus_text(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    c.call("PUT", kv(unique("metrics")), {"value": "x"})
    leader = c.leader()
    r = leader.request("GET", "/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    text = r.body
    assert isinstance(text, str) and text.endswith("\n")
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}, line
            typed.add(name)
        elif line.startswith("#") or not line:
            continue
        else:
            assert SAMPLE.match(line), f"not a Prometheus sample line: {line!r}"
            name_labels, value = line.rsplit(" ", 1)
            samples[name_labels] = float(value)
    assert samples["raftnet_is_leader"] == 1
    assert samples["raftnet_term"] == leader.status()["term"]
    assert samples["raftnet_commit_index"] >= 1
    # what the node had at start-up is frozen out of the collector's sight (node/__main__.py)
    assert samples["raftnet_gc_frozen_objects"] > 10_000
    assert samples['raftnet_gc_collections_total{generation="0"}'] >= 0
    base = {re.sub(r"(_bucket|_sum|_count)$", "", k.split("{")[0]) for k in samples}
    assert base <= typed, f"samples without a # TYPE line: {base - typed}"
    follower = c.followers(leader)[0]
    assert follower.request("GET", "/metrics").status == 200


# ---------------------------------------------------------------------- errors
def test_follower_answers_307_with_the_leader_for_writes_and_linearizable_reads(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    key = unique("redirect")
    assert c.call("PUT", kv(key), {"value": "x"}).status == 200
    leader, follower = a_follower(c)
    for method, path, body in (("PUT", kv(key), {"value": "y"}), ("DELETE", kv(key), None),
                               ("POST", kv(key) + "/cas", {"expect": "x", "value": "y"}), ("GET", kv(key), None)):
        r = follower.request(method, path, body)
        assert_error(r, 307, "not_leader")
        assert r.body["leader"] == {"id": leader.id, "address": leader.address}, r.body
        assert r.headers["Location"] == f"http://{leader.address}{path}", r.headers
    # nothing was applied through the follower
    assert c.call("GET", kv(key)).body["value"] == "x"
    # status and stale reads are answered locally, never redirected
    assert follower.request("GET", "/v1/status").status == 200
    wait_for(lambda: follower.stale(key).status == 200, 10, what="stale read on the follower")


@pytest.mark.parametrize("method,suffix", [("PUT", ""), ("POST", "/cas")])
@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"value": "x"', b"\xff\xfe\x00", b"{'value': 'x'}"])
def test_malformed_json_is_400(shared_cluster: LocalCluster, method: str, suffix: str, raw: bytes) -> None:
    leader = shared_cluster.leader()
    assert_error(leader.request(method, kv(unique("bad")) + suffix, raw=raw), 400, "bad_request")


def test_deeply_nested_json_is_400(shared_cluster: LocalCluster) -> None:
    leader = shared_cluster.leader()
    assert_error(leader.request("PUT", kv(unique("deep")), raw=b"[" * 100_000), 400, "bad_request")


@pytest.mark.parametrize("method,suffix,body", [
    ("PUT", "", [1, 2]),
    ("PUT", "", "just a string"),
    ("PUT", "", 42),
    ("PUT", "", None),
    ("PUT", "", {}),
    ("PUT", "", {"value": 1}),
    ("PUT", "", {"value": None}),
    ("PUT", "", {"value": ["x"]}),
    ("PUT", "", {"value": {"a": "b"}}),
    ("PUT", "", {"value": True}),
    ("POST", "/cas", {"value": "x"}),  # expect missing
    ("POST", "/cas", {"expect": "x"}),  # value missing
    ("POST", "/cas", {"expect": 1, "value": "x"}),
    ("POST", "/cas", {"expect": None, "value": None}),
    ("POST", "/cas", []),
])
def test_wrong_types_are_400(shared_cluster: LocalCluster, method: str, suffix: str, body: object) -> None:
    leader = shared_cluster.leader()
    key = unique("types")
    raw = b"null" if body is None else None
    assert_error(leader.request(method, kv(key) + suffix, body, raw=raw), 400, "bad_request")
    assert shared_cluster.call("GET", kv(key)).status == 404  # nothing was written


def test_bad_stale_parameter_is_400(shared_cluster: LocalCluster) -> None:
    assert_error(shared_cluster.leader().request("GET", kv("x") + "?stale=maybe"), 400, "bad_request")


def test_huge_content_length_is_413_without_reading_the_body(shared_cluster: LocalCluster) -> None:
    leader = shared_cluster.leader()
    for method, suffix in (("PUT", ""), ("POST", "/cas")):
        r = leader.request(method, kv(unique("huge")) + suffix, raw=b"{}", headers={"Content-Length": str(10**12)},
                           timeout=10)
        assert_error(r, 413, "too_large")
    assert leader.request("GET", "/v1/health").status == 200


def test_body_over_the_limit_is_413(shared_cluster: LocalCluster) -> None:
    leader = shared_cluster.leader()
    body = b'{"value": "' + b"a" * (8 << 20) + b'"}'  # larger than any value body may be
    assert_error(leader.request("PUT", kv(unique("big")), raw=body, timeout=30), 413, "too_large")


def test_value_of_exactly_1_mib_is_accepted_and_one_byte_more_is_413(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    key = unique("mib")
    leader = c.leader()
    over = leader.request("PUT", kv(key), {"value": "b" * ((1 << 20) + 1)}, timeout=30)
    assert_error(over, 413, "too_large")
    w = leader.request("PUT", kv(key), {"value": "a" * (1 << 20)}, timeout=30)
    assert w.status == 200, w.body
    r = c.call("GET", kv(key), timeout=30)
    assert r.status == 200 and r.body["value"] == "a" * (1 << 20)


def test_unknown_route_is_404_json(shared_cluster: LocalCluster) -> None:
    n = shared_cluster.leader()
    for path in ("/nope", "/v1/kv", "/v1/kv/a/b/c", "/v2/kv/x", "/v1/status/x"):
        assert_error(n.request("GET", path), 404, "not_found")


def test_wrong_method_is_405_json(shared_cluster: LocalCluster) -> None:
    n = shared_cluster.leader()
    for method, path in (("PATCH", kv("x")), ("POST", kv("x")), ("POST", "/v1/status"), ("PUT", "/v1/members"),
                         ("GET", "/v1/leader/transfer"), ("DELETE", "/v1/health"), ("GET", "/raft/messages"),
                         ("GET", kv("x") + "/cas")):
        r = n.request(method, path)
        assert r.status == 405, (method, path, r.status, r.body)
        assert isinstance(r.body, dict) and isinstance(r.body.get("error"), str), r.body


# ---------------------------------------------------------------------- values that must not hurt
def test_a_value_with_a_lone_surrogate_is_refused_or_stored_but_never_fatal(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(1)
    leader = c.leader(timeout=20)
    r = leader.request("PUT", kv("poison"), raw=b'{"value": "a\\ud800b"}', timeout=30)
    assert r.status in (200, 400), r.body
    c.kill("n1")
    c.start("n1")  # the entry, if committed, is applied again from the log
    assert c.put("after", "ok", timeout=20).status == 200
    got = c.call("GET", kv("poison"))
    if r.status == 200:
        assert got.body["value"] == "a\ud800b"
    else:
        assert got.status == 404
