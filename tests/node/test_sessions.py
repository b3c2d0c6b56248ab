"""Exactly-once writes: X-Client-Id / X-Request-Seq. A retry with the same
pair returns the first outcome and is applied at most once. (A retry on a
new leader after the old one was killed: test_failover.py.)"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster


def session(client: str, seq: int) -> dict[str, str]:
    return {"X-Client-Id": client, "X-Request-Seq": str(seq)}


def test_a_retried_put_returns_the_first_index_and_is_not_applied_again(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    client, key = f"client-{uuid.uuid4().hex[:8]}", f"once-{uuid.uuid4().hex[:8]}"
    first = c.call("PUT", kv(key), {"value": "v1"}, headers=session(client, 1))
    assert first.status == 200, first.body
    retry = c.call("PUT", kv(key), {"value": "v1"}, headers=session(client, 1))
    assert (retry.status, retry.body) == (200, first.body)
    # the key's mod index is the first write's: the retry did not write again
    assert c.call("GET", kv(key)).body == {"value": "v1", "index": first.body["index"]}
    # a later write by someone else is not undone by a late retry of the first one
    other = c.call("PUT", kv(key), {"value": "v2"})
    assert other.status == 200
    late = c.call("PUT", kv(key), {"value": "v1"}, headers=session(client, 1))
    assert (late.status, late.body) == (200, first.body)
    assert c.call("GET", kv(key)).body == {"value": "v2", "index": other.body["index"]}
    # the next sequence number is a new write
    nxt = c.call("PUT", kv(key), {"value": "v3"}, headers=session(client, 2))
    assert nxt.status == 200 and nxt.body["index"] > other.body["index"]


def test_concurrent_duplicates_are_applied_once(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    client, key = f"client-{uuid.uuid4().hex[:8]}", f"dup-{uuid.uuid4().hex[:8]}"
    leader = c.leader()

    def send(_: int) -> tuple[int, Any]:
        r = leader.request("POST", kv(key) + "/cas", {"expect": None, "value": "only-once"},
                           headers=session(client, 1))
        return r.status, r.body

    # the same request, several times at once: proposed more than once, applied once
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    assert {a[0] for a in answers} == {200}, answers
    assert len({str(a[1]) for a in answers}) == 1, answers  # one outcome, the same for all
    index = answers[0][1]["index"]
    assert c.call("GET", kv(key)).body == {"value": "only-once", "index": index}


def test_a_retried_cas_returns_the_first_outcome(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    client, key = f"client-{uuid.uuid4().hex[:8]}", f"counter-{uuid.uuid4().hex[:8]}"
    path = kv(key) + "/cas"
    # a CAS-based counter 0 -> 1 -> 2: re-applying a step would fail its precondition (409)
    step1 = c.call("POST", path, {"expect": None, "value": "1"}, headers=session(client, 1))
    assert step1.status == 200
    assert c.call("POST", path, {"expect": None, "value": "1"}, headers=session(client, 1)).body == step1.body
    step2 = c.call("POST", path, {"expect": "1", "value": "2"}, headers=session(client, 2))
    assert step2.status == 200
    for seq, expected in ((2, step2), (1, step1), (2, step2)):
        again = c.call("POST", path, {"expect": "1" if seq == 2 else None, "value": str(seq)},
                       headers=session(client, seq))
        assert (again.status, again.body) == (200, expected.body), (seq, again.body)
    assert c.call("GET", kv(key)).body == {"value": "2", "index": step2.body["index"]}
    # a failed CAS is an outcome too: its retry answers the same 409 even once it would succeed
    failed = c.call("POST", path, {"expect": "7", "value": "8"}, headers=session(client, 3))
    assert (failed.status, failed.body["current"]) == (409, "2")
    assert c.call("PUT", kv(key), {"value": "7"}).status == 200
    retry = c.call("POST", path, {"expect": "7", "value": "8"}, headers=session(client, 3))
    assert (retry.status, retry.body["error"], retry.body["current"]) == (409, "cas_failed", "2")
    assert c.call("GET", kv(key)).body["value"] == "7"


def test_a_retried_delete_returns_the_first_index(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    client, key = f"client-{uuid.uuid4().hex[:8]}", f"del-{uuid.uuid4().hex[:8]}"
    assert c.call("PUT", kv(key), {"value": "x"}).status == 200
    d = c.call("DELETE", kv(key), headers=session(client, 1))
    assert d.status == 200
    again = c.call("PUT", kv(key), {"value": "back"})
    assert c.call("DELETE", kv(key), headers=session(client, 1)).body == d.body
    assert c.call("GET", kv(key)).body == {"value": "back", "index": again.body["index"]}


def test_a_sequence_number_older_than_the_session_window_is_refused(shared_cluster: LocalCluster) -> None:
    c = shared_cluster
    client, key = f"client-{uuid.uuid4().hex[:8]}", f"window-{uuid.uuid4().hex[:8]}"
    answers = {}
    for seq in range(1, 41):
        r = c.call("PUT", kv(key), {"value": str(seq)}, headers=session(client, seq))
        assert r.status == 200
        answers[seq] = r.body
    # a recent one is still remembered
    assert c.call("PUT", kv(key), {"value": "40"}, headers=session(client, 40)).body == answers[40]
    # the oldest has left the window: refused, and not applied
    old = c.call("PUT", kv(key), {"value": "1"}, headers=session(client, 1))
    assert old.status == 400 and old.body["error"] == "bad_request", old.body
    assert c.call("GET", kv(key)).body == {"value": "40", "index": answers[40]["index"]}


@pytest.mark.parametrize("headers", [
    {"X-Client-Id": "only-client"},
    {"X-Request-Seq": "1"},
    {"X-Client-Id": "c", "X-Request-Seq": "one"},
    {"X-Client-Id": "c", "X-Request-Seq": "-1"},
    {"X-Client-Id": "c", "X-Request-Seq": ""},
    {"X-Client-Id": "", "X-Request-Seq": "1"},
])
def test_incomplete_or_malformed_session_headers_are_400(shared_cluster: LocalCluster, headers: dict[str, str]) -> None:
    leader = shared_cluster.leader()
    key = f"hdr-{uuid.uuid4().hex[:8]}"
    for method, path, body in (("PUT", kv(key), {"value": "x"}), ("DELETE", kv(key), None),
                               ("POST", kv(key) + "/cas", {"expect": None, "value": "x"})):
        r = leader.request(method, path, body, headers=headers)
        assert (r.status, r.body["error"]) == (400, "bad_request"), (method, headers, r.body)
    assert shared_cluster.call("GET", kv(key)).status == 404
