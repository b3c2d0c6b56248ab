"""SIGKILL and restart: a new leader is elected, no acknowledged write is
lost, a restarted node catches up, and a majority is needed to write."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest

from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster, MakeCluster, Node, Response, request, serves, wait_for


def assert_all_present(c: LocalCluster, acked: dict[str, str]) -> None:
    """Every acknowledged key reads back from the leader with its value.

    One linearizable read first: once it is answered, the leader has applied
    everything committed before it, so plain local reads on it see every
    acknowledged write (and cost no round of heartbeats each)."""
    first = next(iter(acked))

    def linearizable_read() -> tuple[Node, Response] | None:
        leader = c.leader(timeout=20)
        r = leader.request("GET", kv(first))
        return (leader, r) if r.status in (200, 404) else None

    leader, r = wait_for(linearizable_read, 20, what="a linearizable read")
    assert (r.status, r.body.get("value")) == (200, acked[first]), f"acknowledged {first} lost: {r.body}"
    for key, value in acked.items():
        r = leader.stale(key)
        assert (r.status, r.body.get("value")) == (200, value), f"acknowledged {key}={value!r} lost: {r.body}"


def session(client: str, seq: int) -> dict[str, str]:
    return {"X-Client-Id": client, "X-Request-Seq": str(seq)}


def test_sigkill_of_the_leader_then_restart_then_sigterm(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(3)
    acked = {}
    for i in range(20):
        assert c.put(f"k{i}", f"v{i}").status == 200
        acked[f"k{i}"] = f"v{i}"
    # exactly-once writes whose retry will go to the next leader
    first = c.call("PUT", kv("once"), {"value": "A"}, headers=session("client", 1))
    cas = c.call("POST", kv("counter") + "/cas", {"expect": None, "value": "1"}, headers=session("client", 2))
    assert first.status == 200 and cas.status == 200
    later = c.put("once", "B")
    assert later.status == 200
    acked.update(once="B", counter="1")

    # SIGKILL the leader: a new one is elected in a higher term, nothing acknowledged is lost
    old = c.leader()
    old_term = old.status()["term"]
    c.kill(old.id)
    new = c.leader()
    assert new.id != old.id and new.status()["term"] > old_term
    assert_all_present(c, acked)
    # a retry on the new leader returns the first outcome and is not applied again
    retry = c.call("PUT", kv("once"), {"value": "A"}, headers=session("client", 1))
    assert (retry.status, retry.body) == (200, first.body)
    retry_cas = c.call("POST", kv("counter") + "/cas", {"expect": None, "value": "1"}, headers=session("client", 2))
    assert (retry_cas.status, retry_cas.body) == (200, cas.body)
    assert c.call("GET", kv("once")).body == {"value": "B", "index": later.body["index"]}
    # the two survivors keep writing
    for i in range(20, 40):
        assert c.put(f"k{i}", f"v{i}").status == 200
        acked[f"k{i}"] = f"v{i}"
    assert c.put("k0", "latest").status == 200
    acked["k0"] = "latest"
    commit = c.leader().status()["commit_index"]

    # the old leader comes back as a follower and catches up
    c.start(old.id)
    back = c.nodes[old.id]
    st = wait_for(lambda: (s := back.status())["last_applied"] >= commit and s, 20, what="the old leader to catch up")
    assert st["role"] == "follower" and st["leader_id"] == c.leader().id
    for key, value in acked.items():
        assert back.stale(key).body["value"] == value
    assert_all_present(c, acked)

    # SIGTERM, of the leader (live peer connections) and of a follower: exit 0, restart with the data
    for node in (c.leader(), c.followers(c.leader())[0]):
        assert c.terminate(node.id, timeout=10) == 0
        assert c.put(f"while-{node.id}-away", "x").status == 200
        acked[f"while-{node.id}-away"] = "x"
        c.start(node.id)
        for key in ("k0", "k39", "once"):
            assert node.stale(key).body["value"] == acked[key]  # from its own data dir, at once
        wait_for(partial(serves, node, f"while-{node.id}-away"), 20, what=f"{node.id} to catch up")
    assert_all_present(c, acked)


@pytest.mark.slow
def test_five_nodes_write_with_three_alive_and_refuse_with_two(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(5)
    acked: dict[str, str] = {}

    def write(key: str, timeout: float = 20) -> None:
        r = c.put(key, "v-" + key, timeout=timeout)
        assert r.status == 200, (key, r.status, r.body)
        acked[key] = "v-" + key

    write("all-five")
    leader = c.leader()
    # kill the leader and one follower: three of five still elect and commit
    c.kill(leader.id)
    c.kill(c.followers(leader)[0].id)
    for i in range(10):
        write(f"three-{i}")
    # kill a third (the current leader): two of five can never commit
    c.kill(c.leader().id)
    survivors = c.live()
    assert len(survivors) == 2
    statuses: list[int] = []
    settled: set[str] = set()
    start = time.monotonic()
    i = 0
    # keep asking for a while, and at least until both survivors know there is no leader
    while time.monotonic() - start < 3 or len(settled) < 2:
        assert time.monotonic() - start < 30, f"survivors never settled on 503: {statuses}"
        for n in survivors:
            i += 1
            try:
                r = n.request("PUT", kv(f"two-{i}"), {"value": "never"}, timeout=15)
            except OSError as e:
                raise AssertionError(f"{n.id} did not answer: {e!r}") from None
            assert r.status != 200, f"{n.id} acknowledged a write without a majority: {r.body}"
            assert r.status in (307, 503, 504), (r.status, r.body)
            statuses.append(r.status)
            if r.status == 503:
                settled.add(n.id)
        time.sleep(0.05)
    # linearizable reads are refused too
    for n in survivors:
        assert n.request("GET", kv("all-five")).status in (307, 503)
    # bring everyone back: writes succeed again and nothing acknowledged was lost
    c.start()
    for i in range(5):
        write(f"again-{i}")
    assert_all_present(c, acked)


class Writer(threading.Thread):
    """Writes unique keys to the leader until stopped; remembers every answer."""

    def __init__(self, c: LocalCluster, name: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.c, self.prefix, self.stop = c, name, stop
        self.acked: dict[str, str] = {}
        self.unknown: dict[str, str] = {}  # 504 or no answer: may or may not be applied
        self.errors: list[str] = []

    def run(self) -> None:
        target: Node | None = None
        i = 0
        try:
            while not self.stop.is_set():
                if target is None:
                    target = next(iter(n for n in self.c.nodes.values() if n.alive()), None)
                    if target is None:
                        return
                key, value = f"{self.prefix}-{i}", f"value-{self.prefix}-{i}"
                i += 1
                try:
                    r = request(target.address, "PUT", kv(key), {"value": value}, timeout=10)
                except OSError:
                    r = Response(0, None, {})
                if r.status == 200:
                    self.acked[key] = value
                elif r.status == 307:
                    addr = r.body["leader"]["address"]
                    target = next(n for n in self.c.nodes.values() if n.address == addr)
                elif r.status in (0, 504):
                    self.unknown[key] = value
                    target = None
                elif r.status == 503:  # no leader yet: not applied
                    target = None
                    self.stop.wait(0.05)
                else:
                    self.errors.append(f"{key}: {r.status} {r.body}")
        except BaseException as e:  # never let a thread die silently
            self.errors.append(repr(e))


@pytest.mark.slow
def test_sigkill_of_every_node_under_load_loses_no_acknowledged_write(local_cluster: MakeCluster) -> None:
    c: LocalCluster = local_cluster(3)
    c.leader()
    stop = threading.Event()
    writers = [Writer(c, f"w{i}", stop) for i in range(6)]
    try:
        for w in writers:
            w.start()
        wait_for(lambda: sum(len(w.acked) for w in writers) >= 200, 60, what="200 acknowledged writes")
        c.kill_all()
    finally:
        stop.set()
        for w in writers:
            w.join(30)
    assert not any(w.is_alive() for w in writers)
    assert [e for w in writers for e in w.errors] == []
    acked = {k: v for w in writers for k, v in w.acked.items()}
    unknown = {k: v for w in writers for k, v in w.unknown.items()}
    c.start()
    assert_all_present(c, acked)
    # a write whose outcome was unknown is either absent or present with its own value
    leader = c.leader()
    for key, value in unknown.items():
        r = leader.stale(key)
        assert r.status == 404 or (r.status, r.body["value"]) == (200, value), (key, r.body)
    # and the cluster goes on
    assert c.put("after-restart", "ok").status == 200
