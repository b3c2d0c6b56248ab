"""503 versus 504, and leaders that lose their majority (SIGKILL, SIGSTOP):
no write is acknowledged unless committed, no linearizable read is served
by a leader that cannot confirm it still leads."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster, MakeCluster, Node, Response, wait_for


class Background(threading.Thread):
    """One request in a thread; ``result`` is its Response or the exception it raised."""

    def __init__(self, node: Node, method: str, path: str, body: Any = None, timeout: float = 60) -> None:
        super().__init__(daemon=True)
        self.args_ = (method, path, body)
        self.node, self.timeout = node, timeout
        self.result: Response | BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.node.request(*self.args_, timeout=self.timeout)
        except BaseException as e:
            self.result = e

    def response(self) -> Response:
        self.join(self.timeout + 10)
        assert isinstance(self.result, Response), f"no answer: {self.result!r}"
        return self.result


@pytest.mark.slow
def test_503_when_no_leader_is_known_and_504_when_a_proposal_cannot_commit(local_cluster: MakeCluster) -> None:
    # long election timeouts: the leader keeps leading for a second after losing its followers
    c: LocalCluster = local_cluster(3, ["--election-timeout-ms", "1000:2000"])
    assert c.put("before", "1", timeout=20).status == 200
    leader = c.leader()
    for f in c.followers(leader):
        c.kill(f.id)
    # proposed on a leader that cannot commit it any more: 504, never 200
    doomed = leader.request("PUT", kv("doomed"), {"value": "maybe"}, timeout=30)
    assert doomed.status == 504 and doomed.body["error"] == "timeout", doomed.body
    # it steps down, knows no leader and cannot win: 503 for writes and linearizable reads
    wait_for(lambda: leader.status()["role"] != "leader", 10, what="the leader to step down")

    refused: list[int] = []

    def refuses() -> bool:
        w = leader.request("PUT", kv("refused"), {"value": "no"}, timeout=30)
        r = leader.request("GET", kv("before"), timeout=30)
        assert w.status != 200 and r.status != 200, (w.body, r.body)
        refused.append(w.status)
        return (w.status, r.status) == (503, 503) and w.body["error"] == r.body["error"] == "unavailable"

    wait_for(refuses, 15, interval=0.1, what="503 from a lone node")
    assert leader.status()["leader_id"] is None
    assert leader.stale("before").body["value"] == "1"  # a stale read is still served
    # the others come back: the 504 write is either applied or not, the 503 one is not
    c.start()
    assert c.put("after", "2", timeout=30).status == 200
    got = c.call("GET", kv("doomed"))
    assert got.status == 404 or got.body["value"] == "maybe", got.body
    if set(refused) == {503}:
        assert c.call("GET", kv("refused")).status == 404, "answered 503 (not applied) but applied"
    # a lone follower whose leader died: 307 to the dead leader at first, then 503, never 200
    leader = c.leader()
    survivor = c.followers(leader)[0]
    c.kill(leader.id)
    c.kill(next(n.id for n in c.followers(leader) if n.id != survivor.id))

    def survivor_refuses() -> bool:
        w = survivor.request("PUT", kv("lonely"), {"value": "no"}, timeout=30)
        assert w.status in (307, 503), w.body
        return w.status == 503

    wait_for(survivor_refuses, 15, interval=0.1, what="503 from the lone follower")
    assert survivor.request("GET", kv("after")).status == 503


def test_sigstop_of_the_leader_then_of_a_leaders_followers(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(3)
    assert c.put("k", "old").status == 200
    old = c.leader()
    old_term = old.status()["term"]
    for f in c.followers(old):
        c.wait_caught_up(f, old)

    # a paused leader is replaced by the other two
    c.pause(old.id)
    try:
        # requests that reach the paused leader wait in its socket backlog
        write = Background(old, "PUT", kv("paused-write"), {"value": "from-the-past"})
        read = Background(old, "GET", kv("k"))
        write.start()
        read.start()
        new = c.leader()
        assert new.id != old.id and new.status()["term"] > old_term
        assert c.put("k", "new", via=new).status == 200
    finally:
        c.resume(old.id)
    # resumed, it steps down in the higher term
    st = wait_for(lambda: (s := old.status())["role"] != "leader" and s, 20, what="the old leader to step down")
    assert st["term"] > old_term
    w, r = write.response(), read.response()
    assert w.status in (200, 307, 503, 504), w.body
    assert r.status in (200, 307, 503), r.body
    if r.status == 200:
        assert r.body["value"] == "new", "the deposed leader served a stale linearizable read"
    after = c.call("GET", kv("paused-write"))
    if w.status == 200:
        assert after.body["value"] == "from-the-past", "acknowledged but not committed"
    elif w.status in (307, 503):
        assert after.status == 404, f"answered {w.status} (not applied) but applied"
    wait_for(lambda: old.stale("k").body["value"] == "new", 20, what="the old leader to catch up")
    st = old.status()
    assert st["role"] == "follower" and st["leader_id"] == c.leader().id

    # a leader whose two followers are paused steps down and serves nothing
    leader = c.leader()
    followers = c.followers(leader)
    for f in followers:
        c.pause(f.id)
    try:
        write = Background(leader, "PUT", kv("k2"), {"value": "isolated"}, timeout=30)
        write.start()
        got = leader.request("GET", kv("k"), timeout=30)
        assert got.status in (307, 503), f"an isolated leader served a linearizable read: {got.body}"
        wait_for(lambda: leader.status()["role"] != "leader", 10, what="the isolated leader to step down")
        refused = []
        for _ in range(3):
            r = leader.request("GET", kv("k"), timeout=30)
            assert r.status in (307, 503), r.body
            w = leader.request("PUT", kv("k3"), {"value": "x"}, timeout=30)
            assert w.status in (503, 504), w.body
            refused.append(w.status)
        assert write.response().status in (503, 504), write.response().body
    finally:
        for f in followers:
            c.resume(f.id)
    assert c.put("k4", "back").status == 200
    assert c.call("GET", kv("k")).body["value"] == "new"
    if set(refused) == {503}:  # definitely not applied
        assert c.call("GET", kv("k3")).status == 404
