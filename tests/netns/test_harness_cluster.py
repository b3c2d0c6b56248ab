"""Tests of the harness itself (issue 3 section 8), at the level of the Cluster
facade with real node processes: faults do what they say in the kernel
(checked by probes from inside the node namespaces, not by asking the
harness), heal undoes them, process and membership faults act on the real
processes, and destroy / clean leave nothing behind.

A probe is a tiny HTTP GET /v1/health run with ``python -c`` inside one
node's namespace against another node's port; it exits 0 only when a 200
comes back. Probes that should fail get a short timeout (a failure cannot
be faked by a slow machine); probes that should pass get a long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.lab import alloc, cleanup, firewall, netns
from harness.lab.process import node_processes
from harness.model import topology
from harness.model.history import History, OpType
from harness.orchestration.cluster import Cluster, ClusterError
from harness.orchestration.local import wait_for
from harness.orchestration.recorder import Recorder
from harness.orchestration.workload import converge
from harness.systems.base import Endpoint
from harness.systems.raftnet_client import RaftnetClient
from tests.netns.conftest import Lab

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import http.client, sys
try:
    c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=float(sys.argv[3]))
    c.request("GET", "/v1/health")
    ok = c.getresponse().status == 200
except Exception:
    ok = False
sys.exit(0 if ok else 1)
"""
FAIL_TIMEOUT = 1.5
PASS_TIMEOUT = 10.0


# -- helpers ------------------------------------------------------------------------------------


def host(c: Cluster, node: str) -> str:
    return c.address(node).rsplit(":", 1)[0]


def probe(c: Cluster, src: str, dst: str, expect: bool) -> bool:
    """Whether an HTTP request from ``src``'s namespace to ``dst``'s node port gets its answer."""
    timeout = PASS_TIMEOUT if expect else FAIL_TIMEOUT
    r = netns.run_in_netns(topo(c).netns(src),
                           [sys.executable, "-I", "-c", PROBE, host(c, dst), str(topology.NODE_PORT), str(timeout)],
                           timeout=timeout + 60)
    return r.returncode == 0


def topo(c: Cluster) -> topology.Topology:
    """The topology of a started cluster."""
    assert c.topo is not None
    return c.topo


def assert_matrix(c: Cluster, can: Callable[[str, str], bool]) -> None:
    """Probe every ordered pair of nodes; ``can(src, dst)`` says what is expected."""
    got = {}
    for s in c.nodes:
        for d in c.nodes:
            if s != d:
                got[(s, d)] = probe(c, s, d, can(s, d))
    want = {p: can(*p) for p in got}
    assert got == want, {f"{s}->{d}": v for (s, d), v in got.items() if v != want[(s, d)]}


def control_path_up(c: Cluster) -> None:
    """The harness reaches every node (HTTP through the root-side link)."""
    for n in c.nodes:
        assert wait_for(partial(c.status, n, timeout=PASS_TIMEOUT), 30, what=f"control path to {n}")


def st(c: Cluster, node: str) -> dict[str, Any]:
    return wait_for(lambda: c.status(node, timeout=2.0), 20, what=f"status of {node}")


def put(c: Cluster, key: str, value: str) -> int:
    def attempt() -> int | None:
        ld = c.leader(timeout=20)
        r = c.http(ld, "PUT", f"/v1/kv/{key}", {"value": value}, timeout=10)
        return int(r.body["index"]) if r.status == 200 else None

    return wait_for(attempt, 60, interval=0.1, what=f"PUT {key}")


def stale_read(c: Cluster, node: str, key: str) -> str | None:
    r = c.http(node, "GET", f"/v1/kv/{key}?stale=true", timeout=2)
    return r.body.get("value") if r.status == 200 else None


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def root_rules_mention(slot: int, backend: firewall.Backend | None) -> bool:
    """Whether the root namespace's packet filter holds anything of ``slot`` (it never should)."""
    if backend is firewall.Backend.NFT:
        r = subprocess.run([firewall._which("nft") or "nft", "list", "tables"],
                           capture_output=True, text=True, timeout=30)
        return topology.nft_table(slot) in r.stdout.split()
    if backend is firewall.Backend.IPTABLES:
        r = subprocess.run([firewall._which("iptables-save") or "iptables-save", "-t", "filter"],
                           capture_output=True, text=True, timeout=30)
        return any(ch in r.stdout for ch in topology.iptables_chains(slot))
    return False


def assert_nothing_left(slot: int, name: str, workdir: Path, pids: list[int],
                        backend: firewall.Backend | None) -> None:
    """No namespace, root link, firewall rule, allocation or process of the
    cluster ``name`` in ``slot``. Checked under the allocation lock: if
    another worker took the freed slot meanwhile, its own names are not ours
    to judge (our processes still are)."""
    assert all(gone(p) for p in pids), [p for p in pids if not gone(p)]
    assert node_processes(workdir) == []
    with alloc.lock():
        a = alloc.allocation(slot)
        if a is not None:
            assert a.name != name, f"allocation of {name} left: {a}"
            return  # slot reused by another cluster already
        assert netns.slot_netns(slot) == []
        assert not netns.link_exists(topology.root_link(slot))
        assert not any(topology.slot_of_name(n) == slot for n in netns.root_links())
        assert not root_rules_mention(slot, backend)


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line of ``proc``'s stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line from pid {proc.pid} in {timeout}s (got {buf!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"pid {proc.pid} exited before printing a line (got {buf!r})")
            buf += chunk
    return buf


# -- network faults -----------------------------------------------------------------------------


@pytest.mark.slow
def test_partition_stops_node_traffic_both_ways_and_keeps_the_control_path(cluster: Lab) -> None:
    c = cluster(3)
    ld = c.leader(timeout=30)
    lone = next(n for n in c.nodes if n != ld)
    rest = [n for n in c.nodes if n != lone]
    put(c, "before", "1")
    c.partition([lone], rest)
    # in the kernel: nothing between the groups, in either direction; inside a group all passes
    assert_matrix(c, lambda s, d: (s == lone) == (d == lone))
    # and the harness still reaches every node
    control_path_up(c)
    for n in c.nodes:
        with socket.create_connection((host(c, n), topology.NODE_PORT), timeout=PASS_TIMEOUT):
            pass
    # the minority stops: it has no leader, its commit index and (PreVote) its term stay put
    wait_for(lambda: (s := c.status(lone)) and s["leader_id"] is None and s["role"] != "leader", 30,
             what=f"{lone} to lose its leader")
    frozen = st(c, lone)
    for i in range(10):
        put(c, f"during{i}", str(i))
    assert commit_of(c, c.leader(timeout=20, among=rest)) > frozen["commit_index"]
    now = st(c, lone)
    assert (now["term"], now["commit_index"]) == (frozen["term"], frozen["commit_index"])
    assert now["leader_id"] is None and now["role"] != "leader"
    assert stale_read(c, lone, "during9") is None
    c.heal()
    assert_matrix(c, lambda s, d: True)
    wait_for(lambda: stale_read(c, lone, "during9") == "9", 30, what=f"{lone} to catch up after heal")


def commit_of(c: Cluster, node: str) -> int:
    return int(st(c, node)["commit_index"])


@pytest.mark.slow
def test_one_way_cut_is_one_way(cluster: Lab) -> None:
    c = cluster(3)
    a, b, other = c.nodes
    c.cut(a, b)
    assert c.faults() == [f"drop {a} -> {b}"]
    assert_matrix(c, lambda s, d: (s, d) != (a, b))
    control_path_up(c)
    c.heal()
    assert c.faults() == []
    assert_matrix(c, lambda s, d: True)


@pytest.mark.slow
def test_faults_compose_until_heal_restores_everything(cluster: Lab) -> None:
    c = cluster(3)
    a, b, d = c.nodes
    assert c.backend is not None
    c.cut(a, b)
    c.bridge(d)  # halves [a] and [b]: a <-> b dropped both ways, d sees both
    c.loss(d, 50)
    assert set(c.faults()) == {f"drop {a} -> {b}", f"drop {b} -> {a}", f"loss {d} 50%"}
    assert all(firewall.installed_rules(topo(c), n, c.backend) for n in (a, b, d))
    assert not probe(c, a, b, False) and not probe(c, b, a, False)
    c.heal()
    assert c.faults() == []
    for n in c.nodes:
        assert firewall.installed_rules(topo(c), n, c.backend) is None
    assert_matrix(c, lambda s, d: True)
    assert delivery(c, d, a, 500) >= 0.98
    converge(c, timeout=60)
    heals = [e for e in c.events if e.kind == "heal"]
    assert heals and all(e.end is not None and e.end >= e.time for e in c.events if e.kind == "fault")


UDP_PORT = 7101


def delivery(c: Cluster, src: str, dst: str | None, count: int) -> float:
    """Share of ``count`` UDP datagrams sent from ``src``'s namespace (None: the
    root namespace, i.e. the control path) that arrive in ``dst``'s namespace."""
    assert c.topo is not None
    rx_ns = c.topo.netns(dst) if dst else None

    def receiver() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.bind((host(c, dst) if dst else topo(c).control_address, UDP_PORT))
        return s

    rx = netns.in_netns(rx_ns, receiver) if rx_ns else receiver()
    tx = netns.in_netns(c.topo.netns(src), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    got = 0

    def drain(wait: float) -> int:
        n = 0
        rx.settimeout(wait)
        while True:
            try:
                rx.recv(64)
                n += 1
            except (TimeoutError, BlockingIOError):
                return n

    with rx, tx:
        to = (host(c, dst) if dst else c.topo.control_address, UDP_PORT)
        for i in range(count):
            try:
                tx.sendto(b"%d" % i, to)
            except PermissionError:  # dropped by a rule on the way out
                pass
            if i % 50 == 49:
                got += drain(0.0)
        got += drain(0.5)
    return got / count


@pytest.mark.slow
def test_loss_drops_roughly_its_share(cluster: Lab) -> None:
    c = cluster(3)
    x, y, z = c.nodes
    assert delivery(c, x, y, 1000) >= 0.98  # no fault: (nearly) everything arrives
    c.loss(x, 30)
    assert c.faults() == [f"loss {x} 30%"]
    out_of_x = delivery(c, x, y, 2000)  # dropped on the way out of x
    into_x = delivery(c, y, x, 2000)  # dropped on the way into x
    assert 0.55 <= out_of_x <= 0.85, out_of_x
    assert 0.55 <= into_x <= 0.85, into_x
    assert delivery(c, y, z, 1000) >= 0.98  # other pairs untouched
    control_path_up(c)
    c.loss(x, 80)  # replaces the percentage
    assert c.faults() == [f"loss {x} 80%"]
    assert 0.05 <= delivery(c, x, y, 2000) <= 0.35
    c.heal()
    assert delivery(c, x, y, 1000) >= 0.98


# -- process faults -----------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_restart_pause_resume_do_what_they_say(cluster: Lab) -> None:
    c = cluster(3)
    ld = c.leader(timeout=30)
    f = next(n for n in c.nodes if n != ld)
    p = c.procs[f]
    pid, argv = p.pid, psutil.Process(p.pid).cmdline()
    assert "--id" in argv and f in argv

    c.kill(f)
    assert not p.is_alive() and p.exit_code == -signal.SIGKILL and gone(pid)
    assert c.status(f, timeout=1.0) is None
    put(c, "k", "while-dead")

    c.restart(f)
    q = c.procs[f]
    assert q.pid != pid and q.is_alive() and not q.is_paused()
    assert psutil.Process(q.pid).cmdline() == argv  # same flags, same data dir
    wait_for(lambda: stale_read(c, f, "k") == "while-dead", 30, what=f"{f} to catch up after restart")

    c.pause(f)
    assert q.is_paused() and psutil.Process(q.pid).status() == psutil.STATUS_STOPPED
    assert c.status(f, timeout=1.0) is None  # a stopped process answers nothing
    put(c, "k", "while-paused")

    c.resume(f)
    assert not q.is_paused() and psutil.Process(q.pid).status() != psutil.STATUS_STOPPED
    wait_for(lambda: stale_read(c, f, "k") == "while-paused", 30, what=f"{f} to catch up after resume")
    assert c.procs[f].pid == q.pid

    texts = [(e.kind, e.text) for e in c.events]
    for want in (("fault", f"kill {f}"), ("node", f"restart {f}"), ("fault", f"pause {f}"), ("heal", f"resume {f}")):
        assert want in texts
    times = [e.time for e in c.events]
    assert times == sorted(times)
    kill = next(e for e in c.events if e.text == f"kill {f}")
    pause = next(e for e in c.events if e.text == f"pause {f}")
    assert kill.end is not None and kill.end >= kill.time and pause.end is not None and pause.end >= pause.time


def test_unknown_nodes_are_refused(cluster: Lab) -> None:
    c = cluster(1)
    for act in (lambda: c.kill("n9"), lambda: c.isolate("n9"), lambda: c.cut("n1", "n9"),
                lambda: c.loss("n9", 10), lambda: c.partition(["n1"], ["n9"])):
        with pytest.raises(ClusterError, match="unknown node 'n9'"):
            act()
    with pytest.raises(ValueError):
        c.loss("n1", 101)
    assert c.faults() == []


# -- membership ---------------------------------------------------------------------------------


def members_of(c: Cluster, node: str) -> dict[str, bool]:
    return {m["id"]: m["voter"] for m in c.http(node, "GET", "/v1/members", timeout=5).body["members"]}


@pytest.mark.slow
def test_a_node_removed_and_added_back_at_once_is_reachable_at_once(cluster: Lab) -> None:
    """Same id, same address: the control path and the peers must reach the new process, not the old
    one's MAC (it failed in 2 of 4 rounds with random MACs: the neighbour caches kept the old one for
    15-45 s, and ``add`` gave up after 30 s)."""
    c = cluster(3)
    for _ in range(4):
        for n in c.nodes:
            assert c.status(n) is not None  # the caches just confirmed every node's current MAC
        c.remove("n3")
        t0 = time.monotonic()
        assert c.add("n3") == "n3"  # waits until it serves and is a voter
        assert time.monotonic() - t0 < 10, "n3 was unreachable for a while: a stale neighbour entry?"
        put(c, "k", "v")


def test_add_and_remove_change_the_membership(cluster: Lab) -> None:
    c = cluster(3)
    put(c, "k", "v1")
    new = c.add()
    assert new == "n4" and c.nodes == ("n1", "n2", "n3", "n4")
    assert netns.netns_exists(topo(c).netns(new))
    a = alloc.allocation(topo(c).slot)
    assert a is not None and topo(c).netns(new) in a.netns
    want = {n: True for n in c.nodes}
    wait_for(lambda: all(members_of(c, n) == want for n in c.nodes), 30, what="every node to see n4 as a voter")
    wait_for(lambda: stale_read(c, new, "k") == "v1", 30, what="n4 to catch up")

    ld = c.leader(timeout=30)
    victim = next(n for n in c.nodes if n not in (ld, new))
    pid, ns = c.procs[victim].pid, topo(c).netns(victim)
    c.remove(victim)
    assert victim not in c.nodes and victim in c.removed
    assert gone(pid) and not netns.netns_exists(ns)
    a = alloc.allocation(topo(c).slot)
    assert a is not None and ns not in a.netns
    want = {n: True for n in c.nodes}
    wait_for(lambda: all(members_of(c, n) == want for n in c.nodes), 30, what=f"every node to drop {victim}")
    put(c, "k", "v2")
    wait_for(lambda: all(stale_read(c, n, "k") == "v2" for n in c.nodes), 30, what="the smaller cluster to commit")
    with pytest.raises(ClusterError):
        c.add(new)  # ids are not reused while present


# -- destroy and clean --------------------------------------------------------------------------


@pytest.mark.slow
def test_destroy_after_every_kind_of_fault_leaves_nothing(tmp_path: Path) -> None:
    name = f"hc-destroy-{os.getpid()}"
    c = Cluster(3, workdir=tmp_path / "c", name=name)
    try:
        c.start()
        c.leader(timeout=30)
        c.add()
        c.partition(["n1"], ["n2", "n3", "n4"])
        c.loss("n2", 30)
        c.pause("n3")
        c.link_down("n4")
        c.kill("n2")
        slot, backend = topo(c).slot, c.backend
        pids = [p.pid for p in c.procs.values()]
        assert len(netns.slot_netns(slot)) == 5
        assert node_processes(tmp_path) != []
    finally:
        c.destroy()
    assert_nothing_left(slot, name, tmp_path, pids, backend)
    c.destroy()  # idempotent


def test_an_exception_inside_the_with_block_leaves_nothing(tmp_path: Path) -> None:
    name = f"hc-with-{os.getpid()}"
    seen: dict[str, Any] = {}
    with pytest.raises(RuntimeError, match="boom"):
        with Cluster(2, workdir=tmp_path / "c", name=name) as c:
            c.isolate("n1")
            seen.update(slot=topo(c).slot, backend=c.backend, pids=[p.pid for p in c.procs.values()])
            raise RuntimeError("boom")
    assert_nothing_left(seen["slot"], name, tmp_path, seen["pids"], seen["backend"])


OWNER = r"""
import json, sys, time
from pathlib import Path
from harness.orchestration.cluster import Cluster
c = Cluster(2, workdir=Path(sys.argv[1]), name=sys.argv[2]).start()
c.partition(["n1"], ["n2"])
print(json.dumps({"slot": c.topo.slot, "pids": [p.pid for p in c.procs.values()], "backend": c.backend.value}),
      flush=True)
time.sleep(3600)
"""


@pytest.mark.slow
def test_clean_removes_a_sigkilled_owners_cluster_and_leaves_a_live_one(cluster: Lab, tmp_path: Path) -> None:
    live = cluster(1)
    name = f"hc-orphaned-{os.getpid()}"
    wd = tmp_path / "orphaned"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(wd), name], cwd=ROOT, stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
    try:
        info = json.loads(read_line(owner, 120))
        slot, pids = info["slot"], info["pids"]
        a = alloc.allocation(slot)
        assert a is not None and a.owner_pid == owner.pid and alloc.owner_alive(a)
        owner.send_signal(signal.SIGKILL)
        owner.wait(30)
        # what a crash leaves: nodes still running in namespaces nobody owns
        assert all(not gone(p) for p in pids)
        held = alloc.allocation(slot)
        assert netns.slot_netns(slot) and held is not None
        assert not alloc.owner_alive(held)

        report = cleanup.clean(sweep_orphans=False)  # only recorded clusters: other tests' orphans are theirs
        assert topo(live).slot in report.kept
        assert slot not in report.kept
        # (a clean of a parallel test may have been first; either way it is all gone)
        assert_nothing_left(slot, name, wd, pids, firewall.Backend(info["backend"]))
        # the live owner's cluster is untouched and works
        assert netns.netns_exists(topo(live).netns("n1")) and alloc.allocation(topo(live).slot) is not None
        assert live.procs["n1"].is_alive() and live.status("n1", timeout=PASS_TIMEOUT)
        assert live.http("n1", "PUT", "/v1/kv/x", {"value": "still here"}, timeout=10).status == 200
        again = cleanup.clean(sweep_orphans=False)
        assert slot not in again.slots and topo(live).slot in again.kept
    finally:
        with contextlib.suppress(ProcessLookupError):
            owner.kill()
        owner.wait(30)
        if owner.stdout is not None:
            owner.stdout.close()
        cleanup.clean(sweep_orphans=False)


# -- the client's record of a write to a node that dies ------------------------------------------


@contextlib.contextmanager
def dying_server() -> Iterator[tuple[str, list[bytes]]]:
    """A one-connection HTTP server on 127.0.0.1: it answers the first request
    (keep-alive), reads the second one in full and then dies without an
    answer: it closes the connection and stops listening, as a SIGKILLed node
    does after a write reached it."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn, conn.makefile("rb") as f:
            for answer in (True, False):
                line = f.readline()
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v)
                got.append(line + f.read(length))
                if answer:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n"
                                 b"Connection: keep-alive\r\n\r\n{\"index\": 1}")
            lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{lsock.getsockname()[1]}", got
    finally:
        t.join(10)
        lsock.close()


@pytest.mark.parametrize("op", ["write", "delete"])
def test_a_write_that_reached_a_dying_node_is_not_recorded_as_failed(op: str) -> None:
    """Regression: aiohttp re-sends PUT/DELETE on a new connection when a pooled one
    breaks after the request went out; to a dead node that re-send is refused, and the
    write used to be recorded as a definite `fail` although it may commit (false
    "not linearizable" verdicts after leader kills). It must be `info`."""
    h = History()

    async def run(addr: str) -> None:
        host, _, port = addr.rpartition(":")
        c = Recorder(RaftnetClient(client_id="c", timeout=5, follow_redirects=True), h, 0,
                     lambda: {"n1": Endpoint("n1", host, int(port))}, "n1")  # as Workload's
        try:
            assert (await c.write("k", "first")).type is OpType.OK
            await (c.write("k", "second") if op == "write" else c.delete("k"))
        finally:
            await c.close()

    with dying_server() as (addr, got):
        asyncio.run(run(addr))
    assert len(got) == 2 and got[1].split()[0] == (b"PUT" if op == "write" else b"DELETE")  # it did reach the node
    last = h[-1]
    assert last.type is not OpType.FAIL, f"recorded as a definite failure: {last}"
    assert last.type is OpType.INFO
