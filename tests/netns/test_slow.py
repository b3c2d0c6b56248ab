"""Slow networks measured on real namespaces: the delay, jitter, duplication
and reordering that harness/lab/slownet.py sets up on a node, seen from
another node's namespace, and that heal leaves nothing behind (no rule, no
qdisc, no handler process).

Each node namespace runs a probe server on the peer port (TCP and UDP
7000): TCP echoes each line; UDP datagrams carry a sequence number and the
server counts them (received, duplicates, out of order: a number lower than
one already seen). ``STATS`` / ``RESET`` over TCP read and reset those
counts; they are asked over the control path, which no slow fault touches.
A TCP ping-pong client measures round trips from inside a node's namespace.
This kernel has no netem, so here the mechanism is the netfilter queue
(netem is chosen only where a probe finds it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.lab import alloc, cleanup, netns, process, slownet
from harness.lab.process import NodeProcess
from harness.model import topology
from harness.model.slow import Mechanism, Shaping
from harness.model.topology import Topology
from harness.orchestration.cluster import Cluster, ClusterError
from tests.netns.conftest import Lab
from tests.netns.test_cli import Cli, cli, one_line_error, slot_of  # noqa: F401 (cli: the fixture)

pytestmark = pytest.mark.netns

PORT = topology.NODE_PORT
ROOT = Path(__file__).resolve().parents[2]

SERVER = r"""
import socket, sys, threading
addr, port = sys.argv[1], int(sys.argv[2])
stats = {"received": 0, "duplicates": 0, "out_of_order": 0}
seen, top = set(), [-1]
def count():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    u.bind((addr, port))
    while True:
        seq = int(u.recv(64))
        stats["received"] += 1
        if seq in seen:
            stats["duplicates"] += 1
            continue
        if seq < top[0]:
            stats["out_of_order"] += 1
        seen.add(seq)
        top[0] = max(top[0], seq)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with c:
        for line in c.makefile("rb"):
            if line == b"STATS\n":
                c.sendall(("%(received)d %(duplicates)d %(out_of_order)d\n" % stats).encode())
            elif line == b"RESET\n":
                for k in stats:
                    stats[k] = 0
                seen.clear()
                top[0] = -1
                c.sendall(b"ok\n")
            else:
                c.sendall(line)
threading.Thread(target=count, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((addr, port))
t.listen(64)
while True:
    c, _ = t.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# argv: address port count -> one round trip time (ms) per line
PING = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    s.sendall(b"p\n")
    assert f.readline() == b"p\n"
    print(f"{(time.perf_counter() - t) * 1000:.3f}")
"""

# argv: address port count -> numbered datagrams, one every half millisecond or so
SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"%d" % i, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.0005)
"""


@dataclass
class Stats:
    received: int
    duplicates: int
    out_of_order: int


@dataclass
class Pair:
    """Three node namespaces with probe servers; faults go on through ``slownet`` directly."""

    topo: Topology
    servers: dict[str, NodeProcess]
    mechanism: Mechanism
    logs: Path

    def rtts(self, src: str, dst: str, count: int = 40) -> list[float]:
        argv = [sys.executable, "-c", PING, self.topo.address(dst), str(PORT), str(count)]
        r = netns.run_in_netns(self.topo.netns(src), argv, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        return [float(x) for x in r.stdout.split()]

    def median_rtt(self, src: str, dst: str, count: int = 40) -> float:
        return statistics.median(self.rtts(src, dst, count))

    def control_rtt(self, node: str, count: int = 20) -> float:
        """Round trips from the root namespace (the control path) to ``node``."""
        with socket.create_connection((self.topo.address(node), PORT), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = s.makefile("rb")
            out = []
            for _ in range(count):
                t = time.perf_counter()
                s.sendall(b"c\n")
                assert f.readline() == b"c\n"
                out.append((time.perf_counter() - t) * 1000)
        return statistics.median(out)

    def ask(self, node: str, line: str) -> str:
        with socket.create_connection((self.topo.address(node), PORT), timeout=10) as s:
            s.sendall(line.encode() + b"\n")
            return s.makefile("rb").readline().decode().strip()

    def udp(self, src: str, dst: str, count: int) -> Stats:
        """Send ``count`` numbered datagrams src -> dst's peer port; dst's counts once they settle."""
        assert self.ask(dst, "RESET") == "ok"
        argv = [sys.executable, "-c", SEND, self.topo.address(dst), str(PORT), str(count)]
        assert netns.run_in_netns(self.topo.netns(src), argv, timeout=60).returncode == 0
        last = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = Stats(*map(int, self.ask(dst, "STATS").split()))
            if now == last:
                return now
            last = now
            time.sleep(0.3)  # longer than any wait planned here
        raise AssertionError("datagram counts never settled")

    def shape(self, node: str, s: Shaping, handler: NodeProcess | None = None) -> NodeProcess | None:
        return slownet.apply(self.topo, node, self.mechanism, s, ports=PORT, handler=handler,
                             log=self.logs / f"{node}.slow.log", seed=7)

    def clear(self, node: str, handler: NodeProcess | None) -> None:
        slownet.clear(self.topo, node, self.mechanism, handler)

    def others_in(self, node: str) -> list[int]:
        """Processes in ``node``'s namespace besides its probe server."""
        ns = self.topo.netns(node)
        return [p for p in netns.netns_pids([ns])[ns] if p != self.servers[node].pid]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    a = alloc.allocate(f"test-slow-{alloc.worker_id()}", node_ids=topology.node_ids(3))
    topo = a.topology
    servers: dict[str, NodeProcess] = {}
    try:
        netns.create_cluster_net(topo)
        for n in topo.nodes:
            servers[n] = process.spawn(topo.netns(n), [sys.executable, "-c", SERVER, topo.address(n), str(PORT)],
                                       tmp_path / f"{n}.log")
        p = Pair(topo, servers, slownet.choose(topo.netns("n1")), tmp_path)
        for n in topo.nodes:
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert p.ask(n, "RESET") == "ok"
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"probe server on {n} never came up"
                    time.sleep(0.02)
        yield p
    finally:
        try:
            for n in topo.nodes:  # handlers first (they are our children), then the namespaces
                for pid in netns.netns_pids([topo.netns(n)]).get(topo.netns(n), []):
                    if pid not in {s.pid for s in servers.values()}:
                        psutil.Process(pid).kill()
            process.kill_all(list(servers.values()))
        finally:
            try:
                netns.destroy_cluster_net(topo)
            finally:
                alloc.release(a.slot)


def nothing_left(pair: Pair, node: str, handler: NodeProcess | None) -> None:
    assert slownet.installed(pair.topo, node).empty
    assert not [q for q in slownet.qdiscs(pair.topo.netns(node)) if q[0] in ("prio", "netem")]
    assert handler is None or not handler.is_alive()
    assert pair.others_in(node) == []


# -- the mechanism -------------------------------------------------------------------------------


def test_the_mechanism_is_probed() -> None:
    """This kernel: netem only where the probe builds the tree; the queue otherwise."""
    a = alloc.allocate(f"test-slow-probe-{alloc.worker_id()}", node_ids=topology.node_ids(1))
    try:
        netns.create_cluster_net(a.topology)
        ns = a.topology.netns("n1")
        has_netem = slownet.probe_netem(ns)
        assert slownet.probe_nfqueue(ns)
        assert slownet.choose(ns) is (Mechanism.NETEM if has_netem else Mechanism.NFQUEUE)
        assert slownet.qdiscs(ns, "lo") == [] or all(k not in ("prio", "netem") for k, _, _ in
                                                     slownet.qdiscs(ns, "lo"))
        assert netns.netns_pids([ns])[ns] == []  # the probes leave no process
    finally:
        netns.destroy_cluster_net(a.topology)
        alloc.release(a.slot)


# -- delay and jitter, measured -----------------------------------------------------------------------


def test_slow_adds_the_delay_to_every_peer_connection_of_the_node(pair: Pair) -> None:
    before = {(a, b): pair.median_rtt(a, b) for a, b in (("n1", "n2"), ("n2", "n1"), ("n1", "n3"))}
    assert all(v < 20 for v in before.values()), before
    h = pair.shape("n2", Shaping(100))
    try:
        # n1's connection to n2 (n2's replies wait) and n2's own connection to n1 (its requests wait)
        added_in = pair.median_rtt("n1", "n2") - before["n1", "n2"]
        added_out = pair.median_rtt("n2", "n1") - before["n2", "n1"]
        assert 90 <= added_in <= 140, added_in
        assert 90 <= added_out <= 140, added_out
        assert pair.median_rtt("n1", "n3") < 20  # other pairs are untouched
        assert pair.control_rtt("n2") < 20  # and so is the control path
    finally:
        pair.clear("n2", h)
    assert pair.median_rtt("n1", "n2") < 20


def test_jitter_spreads_the_delay(pair: Pair) -> None:
    h = pair.shape("n2", Shaping(100, 30))
    try:
        rtts = pair.rtts("n1", "n2", 80)
    finally:
        pair.clear("n2", h)
    deciles = statistics.quantiles(rtts, n=10)
    assert 85 <= statistics.median(rtts) <= 120, rtts
    assert min(rtts) >= 69, rtts  # nothing leaves before 100 - 30 ms
    # 100 ± 30 uniformly: p10 76 ms, p90 124 ms (a loaded machine may add to a few)
    assert deciles[0] >= 70 and deciles[-1] <= 145, deciles
    assert deciles[-1] - deciles[0] >= 25, deciles


def test_a_constant_delay_keeps_the_order(pair: Pair) -> None:
    h = pair.shape("n2", Shaping(50))
    try:
        got = pair.udp("n2", "n1", 1000)
    finally:
        pair.clear("n2", h)
    assert got == Stats(1000, 0, 0)


# -- duplication and reordering, counted ---------------------------------------------------------------


def test_duplicate_sends_the_percentage_twice(pair: Pair) -> None:
    assert pair.udp("n2", "n1", 2000) == Stats(2000, 0, 0)  # the baseline: nothing lost, doubled or reordered
    h = pair.shape("n2", Shaping(duplicate=20))
    try:
        got = pair.udp("n2", "n1", 2000)
        assert pair.median_rtt("n1", "n2") < 20  # duplication alone adds no delay
        back = pair.udp("n1", "n2", 500)  # what n2 receives is not duplicated
    finally:
        pair.clear("n2", h)
    assert got.received - got.duplicates == 2000, got  # every datagram arrived
    assert 300 <= got.duplicates <= 500, got  # 20% of 2000 = 400 expected
    assert back == Stats(500, 0, 0)


def test_reorder_sends_some_ahead_of_the_others(pair: Pair) -> None:
    h = pair.shape("n2", Shaping(reorder=25))
    try:
        got = pair.udp("n2", "n1", 2000)
        rtt = pair.median_rtt("n1", "n2")
    finally:
        pair.clear("n2", h)
    assert got.received == 2000 and got.duplicates == 0, got
    # a datagram sent at once overtakes the ones held 10 ms before it (about 20 of them at this pace)
    assert got.out_of_order >= 300, got
    assert rtt <= 20  # a quarter go at once: the median round trip is held 10 ms


def test_changes_compose_and_replace_the_handler(pair: Pair) -> None:
    h1 = pair.shape("n2", Shaping(100))
    h2 = pair.shape("n2", Shaping(100, 0, 20), handler=h1)
    try:
        assert h1 is not None and not h1.is_alive() and h2 is not None and h2.is_alive()
        assert pair.others_in("n2") == [h2.pid]
        assert 90 <= pair.median_rtt("n1", "n2") <= 140
        got = pair.udp("n2", "n1", 1000)
        assert 100 <= got.duplicates <= 300 and got.received - got.duplicates == 1000, got
    finally:
        pair.clear("n2", h2)
    nothing_left(pair, "n2", h2)


def test_clear_leaves_nothing_and_the_handler_sends_what_it_held(pair: Pair) -> None:
    if pair.mechanism is not Mechanism.NFQUEUE:
        pytest.skip("the handler is the nfqueue mechanism's")
    h = pair.shape("n2", Shaping(2000))  # two seconds: still held when we clear
    assert h is not None and h.is_alive()
    targets = [line.split(" -j ")[-1] for line in slownet.installed(pair.topo, "n2").lines]
    assert targets == ["RETURN", *["NFQUEUE --queue-num 213 --queue-bypass"] * 2]
    assert pair.ask("n1", "RESET") == "ok"
    argv = [sys.executable, "-c", SEND, pair.topo.address("n1"), str(PORT), "50"]
    assert netns.run_in_netns(pair.topo.netns("n2"), argv, timeout=30).returncode == 0
    assert pair.ask("n1", "STATS").split()[0] == "0"  # all 50 held
    t = time.monotonic()
    pair.clear("n2", h)
    assert time.monotonic() - t < 1.5
    deadline = time.monotonic() + 5
    while pair.ask("n1", "STATS").split()[0] != "50":  # sent on the way out, not dropped
        assert time.monotonic() < deadline, pair.ask("n1", "STATS")
        time.sleep(0.02)
    nothing_left(pair, "n2", h)
    assert pair.median_rtt("n1", "n2") < 20
    assert h.log_path is not None and "stopped: packets=50 sent=50" in h.log_path.read_text()


# -- through the Cluster, the state file and a real raftnet cluster --------------------------------------


def put_ms(c: Cluster, leader: str, key: str, count: int = 15) -> float:
    out = []
    for i in range(count):
        t = time.perf_counter()
        r = c.http(leader, "PUT", f"/v1/kv/{key}", {"value": str(i)}, timeout=10)
        assert r.status == 200, r
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


@pytest.mark.slow
def test_slow_followers_slow_the_commits_and_heal_from_another_shell_ends_it(cluster: Lab) -> None:
    c = cluster(3)
    ld = c.leader()
    followers = [n for n in c.nodes if n != ld]
    assert c.slow_mechanism is not None
    fast = put_ms(c, ld, "a")
    assert fast < 60, fast
    for f in followers:
        c.slow(f, 150, 10)
    # a commit needs a follower's answer, which now waits 150 ± 10 ms (twice when the answer to the last
    # heartbeat still holds the connection the append goes on)
    slow = put_ms(c, c.leader(), "a")
    assert 140 <= slow - fast <= 400, (fast, slow)
    c.duplicate(followers[0], 10)
    c.reorder(followers[1], 10)
    assert set(c.faults()) == {f"slow {followers[0]} 150ms jitter 10ms", f"slow {followers[1]} 150ms jitter 10ms",
                               f"duplicate {followers[0]} 10%", f"reorder {followers[1]} 10%"}
    assert set(c.shapers) == set(followers) and all(p.is_alive() for p in c.shapers.values())
    assert c.http(c.leader(), "PUT", "/v1/kv/b", {"value": "through it all"}, timeout=10).status == 200
    events = [e.text for e in c.events if e.kind == "fault"]
    assert f"slow {followers[0]} 150ms jitter 10ms ({c.slow_mechanism})" in events

    other = Cluster.attach(c.workdir)  # `raftnet heal` from another shell
    assert other.shaping == c.shaping and other.slow_mechanism is c.slow_mechanism
    assert {n: p.pid for n, p in other.shapers.items()} == {n: p.pid for n, p in c.shapers.items()}
    other.heal()
    assert other.faults() == [] and other.shapers == {}
    assert all(not p.is_alive() for p in c.shapers.values())
    for p in c.shapers.values():
        p.wait(5)  # ours to reap
    assert c.topo is not None
    for n in c.nodes:
        assert slownet.installed(c.topo, n).empty
        assert {p for p in netns.netns_pids([c.topo.netns(n)])[c.topo.netns(n)]} == {c.procs[n].pid}
    assert put_ms(c, other.leader(), "a") < 60
    ended = [e for e in other.events if e.kind == "fault" and e.text.startswith("slow")]
    assert ended and all(e.end is not None for e in ended)


@pytest.mark.slow
def test_bad_values_and_unknown_nodes_change_nothing(cluster: Lab) -> None:
    c = cluster(3)
    for call in (lambda: c.slow("n2", 10, 20), lambda: c.duplicate("n2", 101), lambda: c.reorder("n2", -1),
                 lambda: c.slow("n2", 20_000)):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ClusterError, match="unknown node 'n9'"):
        c.slow("n9", 100)
    assert c.faults() == [] and c.shapers == {}
    assert c.topo is not None and all(slownet.installed(c.topo, n).empty for n in c.nodes)


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_destroy_kills_the_handlers(tmp_path: Path) -> None:
    c = Cluster(2, workdir=tmp_path / "c", name=f"slow-destroy-{os.getpid()}")
    try:
        c.start()
        c.slow("n1", 50)
        (h,) = c.shapers.values()
    finally:
        c.destroy()
    assert gone(h.pid)


OWNER = r"""
import json, sys, time
from pathlib import Path
from harness.orchestration.cluster import Cluster
c = Cluster(2, workdir=Path(sys.argv[1]), name=sys.argv[2]).start()
c.slow("n2", 100)
c.duplicate("n1", 5)
print(json.dumps({"slot": c.topo.slot, "handlers": [p.pid for p in c.shapers.values()]}), flush=True)
time.sleep(3600)
"""


@pytest.mark.slow
def test_clean_finds_the_handlers_of_a_crashed_run(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path / "c"), f"slow-crash-{os.getpid()}"],
                             cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert owner.stdout is not None
        info = json.loads(owner.stdout.readline())
        slot, handlers = info["slot"], info["handlers"]
        assert len(handlers) == 2
        owner.send_signal(signal.SIGKILL)
        owner.wait(30)
        assert all(not gone(p) for p in handlers)  # what a crash leaves: handlers nobody owns
        cleanup.clean(sweep_orphans=False)
        deadline = time.monotonic() + 10
        while not all(gone(p) for p in handlers):
            assert time.monotonic() < deadline, handlers
            time.sleep(0.05)
        assert netns.slot_netns(slot) == [] and alloc.allocation(slot) is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            owner.kill()
        owner.wait(30)
        if owner.stdout is not None:
            owner.stdout.close()
        cleanup.clean(sweep_orphans=False)


@pytest.mark.skipif(os.environ.get("RAFTNET_SLOW") == "netem", reason="netem forced")
def test_forcing_netem_where_the_kernel_lacks_it_says_so(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    if slownet.probe_netem(pair.topo.netns("n1")):
        pytest.skip("this kernel has netem")
    monkeypatch.setenv("RAFTNET_SLOW", "netem")
    with pytest.raises(ValueError, match="netem requested"):
        slownet.choose(pair.topo.netns("n1"))


# -- the CLI ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_slow_duplicate_reorder_status_and_heal(cli: Cli) -> None:  # noqa: F811 (the fixture)
    cli.ok("up", "--nodes", "3")
    assert "slow n2 100ms jitter 20ms" in cli.ok("slow", "n2", "100ms", "--jitter", "20ms")
    cli.ok("duplicate", "n2", "5")
    cli.ok("reorder", "n3", "10")
    doc = cli.status()
    assert set(doc["faults"]) == {"slow n2 100ms jitter 20ms", "duplicate n2 5%", "reorder n3 10%"}
    mechanism = doc["slow_mechanism"]
    assert mechanism in ("netem", "nfqueue")
    assert f"slow networks: {mechanism}\n" in cli.ok("status")
    state = json.loads((cli.workdir / "state.json").read_text())["slow"]
    handlers = [r["pid"] for r in state["handlers"].values()]
    assert len(handlers) == (2 if mechanism == "nfqueue" else 0) and not any(gone(p) for p in handlers)
    # bad input: one line, nothing changed
    assert "unknown node 'n9'" in one_line_error(cli("slow", "n9", "10ms"))
    r = cli("slow", "n2", "10ms", "--jitter", "20ms")
    assert r.returncode == 2 and "exceeds the delay" in one_line_error(r)
    r = cli("duplicate", "n2", "150")
    assert r.returncode == 2 and "0..100" in one_line_error(r)
    assert len(cli.faults()) == 3
    cli.ok("heal")
    assert cli.faults() == set()
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in handlers):
        assert time.monotonic() < deadline, handlers
        time.sleep(0.05)
    slot = slot_of(doc)
    for n in ("n1", "n2", "n3"):
        assert slownet.installed(Topology(slot, topology.node_ids(3)), n).empty
