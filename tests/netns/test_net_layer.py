"""Real tests of the act layer: namespaces, firewall, processes, allocation, clean-up.

Each test takes its own slot (safe under ``pytest -n auto``) and tears it
down in a fixture even on failure. Every node namespace runs a tiny echo
server on TCP 7000 (``topology.NODE_PORT``, the port the firewall guards).
It echoes each line and remembers it, except for these commands:

    COUNT       the number of UDP datagrams received on 7001
    NAME tok    remember this connection as ``tok``; answers ``tok``
    PUSH tok    send ``push`` on connection ``tok`` (server speaks first); answers ``ok``
    SEEN line   1 if ``line`` ever arrived (on any connection), else 0

Waiting is polling against a deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.lab import alloc, cleanup, firewall, netns, process
from harness.lab.firewall import Backend
from harness.lab.process import NodeProcess, ProcessGoneError
from harness.model import topology
from harness.model.topology import Topology
from node.raft.types import NodeId

pytestmark = pytest.mark.netns

TCP_PORT = topology.NODE_PORT
UDP_PORT = 7001

# argv: address tcp_port udp_port
ECHO_SERVER = r"""
import socket, sys, threading
addr, tcp_port, udp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
count = 0
conns, seen = {}, set()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    udp.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE
except OSError:
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
udp.bind((addr, udp_port))
def count_datagrams():
    global count
    while True:
        udp.recv(2048)
        count += 1
def answer(conn, line):
    words = line.split()
    if words == [b"COUNT"]:
        return b"%d\n" % count
    if len(words) == 2 and words[0] == b"NAME":
        conns[words[1]] = conn
        return words[1] + b"\n"
    if len(words) == 2 and words[0] == b"PUSH":
        conns[words[1]].sendall(b"push\n")
        return b"ok\n"
    if len(words) == 2 and words[0] == b"SEEN":
        return b"%d\n" % (words[1] in seen)
    seen.add(line.strip())
    return line
def serve(conn):
    with conn:
        conn.settimeout(30)  # outlives a test's partition: a close would reach the client
        try:
            for line in conn.makefile("rb"):
                conn.sendall(answer(conn, line))
        except OSError:
            pass
threading.Thread(target=count_datagrams, daemon=True).start()
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((addr, tcp_port))
tcp.listen(128)
while True:
    conn, _ = tcp.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# argv: address port timeout -> exit 0 iff a line comes back echoed
ECHO_CLIENT = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    s.sendall(b"ping\n")
    ok = s.recv(16) == b"ping\n"
    s.close()
except OSError:
    ok = False
sys.exit(0 if ok else 1)
"""

# argv: address port count -> send numbered datagrams, paced so no socket buffer overflows
UDP_SENDER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    try:
        s.sendto(b"%d" % i, (sys.argv[1], int(sys.argv[2])))
    except PermissionError:  # dropped by a local output rule
        pass
    if i % 50 == 49:
        time.sleep(0.001)
"""

# argv: address port name -> open one connection and NAME it, then obey stdin:
# "send WORD TIMEOUT" sends a line WORD and waits for its echo, "wait WORD
# TIMEOUT" only waits; each answers echoed / silent / closed / error on stdout.
# Other lines that arrive (pushes) are skipped.
CONNECTION = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
buf = b""
def expect(word, timeout):
    global buf
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line == word:
                return "echoed"
        left = deadline - time.monotonic()
        if left <= 0:
            return "silent"
        s.settimeout(left)
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            return "silent"
        except OSError:
            return "error"
        if not chunk:
            return "closed"
        buf += chunk
name = sys.argv[3].encode()
s.sendall(b"NAME " + name + b"\n")
print(expect(name, 5), flush=True)
for command in sys.stdin:
    verb, word, timeout = command.split()
    if verb == "send":
        s.sendall(word.encode() + b"\n")
    print(expect(word.encode(), float(timeout)), flush=True)
"""

SHORT = 0.5  # seconds we wait before calling a connection blocked
LONG = 5.0  # seconds a connection that should work is allowed


def poll(pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def control_echo(address: str, timeout: float = LONG) -> bool:
    try:
        with socket.create_connection((address, TCP_PORT), timeout=timeout) as s:
            s.sendall(b"ping\n")
            return s.recv(16) == b"ping\n"
    except OSError:
        return False


def control_ask(address: str, command: str) -> bytes:
    """One command to an echo server over the control path; its one-line answer."""
    with socket.create_connection((address, TCP_PORT), timeout=5) as s:
        s.sendall(command.encode() + b"\n")
        return s.recv(64)


def control_count(address: str) -> int:
    return int(control_ask(address, "COUNT"))


def settled_count(address: str, before: int) -> int:
    """The datagram count once it stops moving (two equal readings 50 ms apart)."""
    last = -1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = control_count(address)
        if now == last:
            return now - before
        last = now
        time.sleep(0.05)
    raise AssertionError("datagram count never settled")


@dataclass
class Net:
    topo: Topology
    servers: dict[NodeId, NodeProcess]

    def echo(self, src: str, dst: str, timeout: float = LONG) -> bool:
        """Whether ``src`` can open a connection to ``dst`` and get its reply."""
        argv = [sys.executable, "-c", ECHO_CLIENT, self.topo.address(dst), str(TCP_PORT), str(timeout)]
        return netns.run_in_netns(self.topo.netns(src), argv, timeout=30).returncode == 0

    def send_udp(self, src: str, dst: str, count: int) -> None:
        argv = [sys.executable, "-c", UDP_SENDER, self.topo.address(dst), str(UDP_PORT), str(count)]
        assert netns.run_in_netns(self.topo.netns(src), argv, timeout=30).returncode == 0

    def matrix(self, timeout: float = 1.0) -> dict[tuple[str, str], bool]:
        """``echo`` for every ordered pair, all clients at once."""
        clients = {
            (a, b): netns.spawn_in_netns(
                self.topo.netns(a),
                [sys.executable, "-c", ECHO_CLIENT, self.topo.address(b), str(TCP_PORT), str(timeout)],
            )
            for a in self.topo.nodes
            for b in self.topo.nodes
            if a != b
        }
        try:
            return {pair: c.wait(timeout=30) == 0 for pair, c in clients.items()}
        finally:
            for c in clients.values():
                c.kill()
                c.wait()


@dataclass
class Connection:
    """One long-lived connection from a node to a peer's echo server (``CONNECTION``)."""

    client: subprocess.Popen[bytes]

    def ask(self, verb: str, word: str, timeout: float) -> str:
        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.write(f"{verb} {word} {timeout}\n".encode())
        self.client.stdin.flush()
        return self.client.stdout.readline().decode().strip()


@contextlib.contextmanager
def connection(net: Net, src: str, dst: str, name: str) -> Iterator[Connection]:
    """A connection ``src`` opens to ``dst``'s port, registered there as ``name``."""
    topo = net.topo
    argv = [sys.executable, "-c", CONNECTION, topo.address(dst), str(TCP_PORT), name]
    client = netns.spawn_in_netns(topo.netns(src), argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert client.stdout is not None
        assert client.stdout.readline() == b"echoed\n", f"{src} could not connect to {dst}"
        yield Connection(client)
    finally:
        client.kill()
        client.communicate()


def server_argv(topo: Topology, node: str) -> list[str]:
    return [sys.executable, "-c", ECHO_SERVER, topo.address(node), str(TCP_PORT), str(UDP_PORT)]


def available_backends() -> list[Backend]:
    out = []
    for b in Backend:
        try:
            firewall.detect_backend(b)
        except firewall.FirewallUnavailableError:
            continue
        out.append(b)
    return out


@pytest.fixture(params=[b.value for b in Backend])
def backend(request: pytest.FixtureRequest) -> Backend:
    b = Backend(request.param)
    if b not in available_backends():
        pytest.skip(f"{b.value} binary not installed")
    return b


def _start_servers(topo: Topology, logs: Path) -> dict[NodeId, NodeProcess]:
    servers: dict[NodeId, NodeProcess] = {}
    for n in topo.nodes:
        servers[n] = process.spawn(topo.netns(n), server_argv(topo, n), logs / f"{n}.log")
    for n, s in servers.items():
        assert poll(functools.partial(control_echo, topo.address(n))), f"echo server on {n} never came up: {s.log_path}"
    return servers


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    a = alloc.allocate(f"test-net-layer-{alloc.worker_id()}", node_ids=topology.node_ids(3))
    topo = a.topology
    servers: dict[NodeId, NodeProcess] = {}
    try:
        netns.create_cluster_net(topo)
        servers = _start_servers(topo, tmp_path)
        yield Net(topo, servers)
    finally:
        try:
            process.kill_all(list(servers.values()))
        finally:
            try:
                netns.destroy_cluster_net(topo)
            finally:
                alloc.release(a.slot)


def assert_slot_gone(slot: int, base: Path | None = None) -> None:
    assert netns.slot_netns(slot) == []
    assert not netns.link_exists(topology.root_link(slot))
    assert alloc.allocation(slot, base) is None


# -- topology -----------------------------------------------------------------


def test_cluster_comes_up_and_everything_talks(net: Net) -> None:
    topo = net.topo
    assert all(net.matrix().values())
    for n in topo.nodes:
        assert control_echo(topo.address(n))
        assert netns.netns_pids([topo.netns(n)])[topo.netns(n)] == [net.servers[n].pid]
    # No default route anywhere; the root side only routes the cluster's /24.
    for ns in topo.all_netns:
        with netns.iproute(ns) as ipr:
            assert all(r["dst_len"] > 0 for r in ipr.get_routes(family=socket.AF_INET, table=254))
    with netns.iproute() as ipr:
        idx = ipr.link_lookup(ifname=topo.root_link)[0]
        mine = [r for r in ipr.get_routes(family=socket.AF_INET, table=254) if r.get_attr("RTA_OIF") == idx]
        assert [(r.get_attr("RTA_DST"), r["dst_len"]) for r in mine] == [(f"10.213.{topo.slot}.0", 24)]


def test_add_and_remove_node(net: Net, tmp_path: Path) -> None:
    grown = netns.add_node(net.topo, "n4")
    server = process.spawn(grown.netns("n4"), server_argv(grown, "n4"), tmp_path / "n4.log")
    try:
        assert poll(lambda: control_echo(grown.address("n4")))
        assert net.echo("n1", "n4") and Net(grown, {}).echo("n4", "n2")
    finally:
        shrunk = netns.remove_node(grown, "n4")  # kills what runs inside
        server.wait(10)
    assert shrunk.nodes == net.topo.nodes
    assert not server.is_alive()
    assert not netns.netns_exists(grown.netns("n4"))
    assert not netns.link_exists(grown.switch_link("n4"), grown.switch_netns)
    assert not control_echo(grown.address("n4"), timeout=SHORT)


# -- firewall -----------------------------------------------------------------


def test_partition_blocks_both_ways_and_spares_control(net: Net, backend: Backend) -> None:
    topo = net.topo
    firewall.apply(topo, topology.partition_grudge([["n1"], ["n2", "n3"]]), backend=backend)
    assert net.matrix() == {
        ("n1", "n2"): False,
        ("n1", "n3"): False,
        ("n2", "n1"): False,
        ("n3", "n1"): False,
        ("n2", "n3"): True,
        ("n3", "n2"): True,
    }
    assert all(control_echo(topo.address(n)) for n in topo.nodes)
    firewall.apply(topo, {}, backend=backend)  # heal
    assert all(net.matrix().values())
    assert all(firewall.installed_rules(topo, n, backend) is None for n in topo.nodes)


def test_cut_is_one_way(net: Net, backend: Backend) -> None:
    topo = net.topo
    firewall.apply(topo, topology.cut_grudge("n1", "n2"), backend=backend)
    assert not net.echo("n1", "n2", timeout=SHORT)
    assert net.echo("n2", "n1")  # n2's own connection, and n1's reply, pass
    assert net.echo("n1", "n3") and net.echo("n3", "n2")
    assert control_echo(topo.address("n2"))
    firewall.apply(topo, {}, backend=backend)
    assert net.echo("n1", "n2")


def test_cut_kills_an_established_connection(net: Net, backend: Backend) -> None:
    """A connection n1 opened before the cut stops delivering n1's packets."""
    topo = net.topo
    script = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.sendall(b"a\n"); assert s.recv(16) == b"a\n"
sys.stdout.write("connected\n"); sys.stdout.flush()
sys.stdin.readline()
s.settimeout(0.5)
try:
    s.sendall(b"b\n"); print("passed" if s.recv(16) == b"b\n" else "closed")
except OSError:
    print("dropped")
"""
    client = netns.spawn_in_netns(
        topo.netns("n1"),
        [sys.executable, "-c", script, topo.address("n2"), str(TCP_PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    with client:
        assert client.stdout is not None and client.stdin is not None
        assert client.stdout.readline() == b"connected\n"
        firewall.apply(topo, topology.cut_grudge("n1", "n2"), backend=backend)
        out, _ = client.communicate(b"go\n", timeout=30)
    assert out == b"dropped\n"


# Rules must also cut connections that predate them. Conntrack starts in a
# namespace only when a rule there first needs it, and then picks such a
# connection up mid-stream, taking its direction from the first packet it
# sees. ``PUSH`` makes that the server's packet (as a keep-alive HTTP
# server's late reply would), so rules that trust conntrack's direction would
# let the client's requests through.


def test_partition_kills_a_connection_that_predates_it(net: Net, backend: Backend) -> None:
    topo = net.topo
    a1 = topo.address("n1")
    with connection(net, "n2", "n1", "old") as old:
        assert old.ask("send", "before", LONG) == "echoed"
        firewall.apply(topo, topology.partition_grudge([["n1"], ["n2", "n3"]]), backend=backend)
        assert control_ask(a1, "PUSH old") == b"ok\n"
        # n1's data on n2's connection dies too (etcd sends on connections its peers opened)
        assert old.ask("wait", "push", SHORT) == "silent"
        assert old.ask("send", "during", SHORT) == "silent"
        assert control_ask(a1, "SEEN during") == b"0\n"  # n1 never got it
        firewall.apply(topo, {}, backend=backend)  # heal
        assert old.ask("wait", "push", LONG) == "echoed"  # both retransmitted, delivered at last
        assert old.ask("wait", "during", LONG) == "echoed"
        assert old.ask("send", "after", LONG) == "echoed"
    assert all(net.matrix().values())


def test_cut_kills_one_direction_of_connections_that_predate_it(net: Net, backend: Backend) -> None:
    topo = net.topo
    a1, a2 = topo.address("n1"), topo.address("n2")
    with connection(net, "n2", "n1", "old21") as old21, connection(net, "n1", "n2", "old12") as old12:
        assert old21.ask("send", "before", LONG) == "echoed"
        assert old12.ask("send", "before", LONG) == "echoed"
        firewall.apply(topo, topology.cut_grudge("n2", "n1"), backend=backend)
        assert control_ask(a1, "PUSH old21") == b"ok\n"
        assert control_ask(a2, "PUSH old12") == b"ok\n"
        assert old21.ask("send", "during", SHORT) == "silent"
        assert control_ask(a1, "SEEN during") == b"0\n"
        assert old12.ask("send", "during", LONG) == "echoed"  # n1's own connection, and n2's replies, pass
        firewall.apply(topo, {}, backend=backend)  # heal
        assert old21.ask("wait", "during", LONG) == "echoed"
        assert old21.ask("send", "after", LONG) == "echoed"
        assert old12.ask("send", "after", LONG) == "echoed"
    assert all(net.matrix().values())


def test_loss_drops_a_plausible_share(net: Net, backend: Backend) -> None:
    topo = net.topo
    a1, a2, a3 = (topo.address(n) for n in topo.nodes)
    firewall.apply(topo, {}, {NodeId("n2"): 50}, backend=backend)
    sent = 600
    before = control_count(a2)
    net.send_udp("n1", "n2", sent)  # n2's input is lossy
    into_n2 = settled_count(a2, before)
    before = control_count(a1)
    net.send_udp("n2", "n1", sent)  # n2's output is lossy
    out_of_n2 = settled_count(a1, before)
    before = control_count(a3)
    net.send_udp("n1", "n3", sent)  # unaffected
    n1_to_n3 = settled_count(a3, before)
    assert 0.2 * sent <= into_n2 <= 0.8 * sent, into_n2
    assert 0.2 * sent <= out_of_n2 <= 0.8 * sent, out_of_n2
    assert n1_to_n3 >= 0.99 * sent  # no loss (a full socket buffer aside)
    assert all(control_echo(a2) for _ in range(20))  # control path is exempt
    firewall.apply(topo, {}, backend=backend)
    before = control_count(a2)
    net.send_udp("n1", "n2", sent)
    assert settled_count(a2, before) >= 0.99 * sent


def test_firewall_apply_is_verified_and_replaces(net: Net, backend: Backend) -> None:
    topo = net.topo
    g1 = topology.isolation_grudge("n3", topo.nodes)
    planned = firewall.apply(topo, g1, {NodeId("n1"): 10}, backend=backend)
    for n in topo.nodes:
        assert firewall.installed_rules(topo, n, backend) == (planned[n] or None)
    g2 = topology.cut_grudge("n2", "n1")
    planned = firewall.apply(topo, g2, backend=backend)  # a full replacement, not an addition
    assert firewall.installed_rules(topo, "n1", backend) == planned[NodeId("n1")]
    assert firewall.installed_rules(topo, "n3", backend) is None
    firewall.clear_all(topo, backend)
    firewall.clear_all(topo, backend)  # idempotent
    assert all(firewall.installed_rules(topo, n, backend) is None for n in topo.nodes)


# -- links --------------------------------------------------------------------


def test_link_down_unplugs_the_node_from_everyone(net: Net) -> None:
    topo = net.topo
    a2 = topo.address("n2")
    netns.link_down(topo, "n2")
    assert not netns.link_is_up(topo, "n2")
    assert not control_echo(a2, timeout=SHORT)
    assert not net.echo("n1", "n2", timeout=SHORT)
    assert net.echo("n1", "n3")
    netns.link_up(topo, "n2")
    assert netns.link_is_up(topo, "n2")
    assert poll(lambda: control_echo(a2, timeout=SHORT))
    assert poll(lambda: net.echo("n1", "n2"))


# -- processes ----------------------------------------------------------------


def test_pause_resume_kill(net: Net) -> None:
    topo = net.topo
    server = net.servers[NodeId("n2")]
    a2 = topo.address("n2")
    assert server.is_alive() and not server.is_paused()
    server.pause()
    assert server.is_paused() and server.is_alive()
    with socket.create_connection((a2, TCP_PORT), timeout=2) as s:  # the kernel still accepts
        s.sendall(b"ping\n")
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(16)
        server.resume()
        assert not server.is_paused()
        s.settimeout(5)
        assert s.recv(16) == b"ping\n"
    server.kill()
    assert not server.is_alive()
    assert server.exit_code == -9
    assert not control_echo(a2, timeout=SHORT)
    assert netns.netns_pids([topo.netns("n2")])[topo.netns("n2")] == []


def test_stop_and_reattach(net: Net) -> None:
    server = net.servers[NodeId("n3")]
    record = server.record()
    other = NodeProcess.attach(record)  # as a CLI in another shell would
    assert other.pid == server.pid and other.is_alive() and not other.is_child
    other.pause()
    assert server.is_paused()
    other.resume()
    with pytest.raises(ProcessGoneError):
        NodeProcess.attach({**record, "create_time": record["create_time"] - 5})  # a reused pid
    assert server.stop(timeout=10) == -15
    assert not other.is_alive()
    with pytest.raises(ProcessGoneError):
        NodeProcess.attach(record)


def test_detached_process_is_managed_through_psutil(net: Net, tmp_path: Path) -> None:
    p = process.spawn(net.topo.netns("n1"), [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "d.log")
    p.detach()
    assert not p.is_child and p.is_alive()
    p.kill()  # signalled by pid, waited for by polling
    assert not p.is_alive() and p.exit_code is None


def test_spawn_logs_and_runs_in_its_own_session(net: Net, tmp_path: Path) -> None:
    log = tmp_path / "hello.log"
    log.write_bytes(b"earlier\n")
    script = ("import os, socket; print('hi', os.getsid(0) == os.getpid(), flush=True);"
              " import sys; print('err', file=sys.stderr)")
    p = process.spawn(net.topo.netns("n1"), [sys.executable, "-c", script], log)
    assert p.wait(30)
    assert p.exit_code == 0
    assert log.read_bytes() == b"earlier\nhi True\nerr\n"
    r = netns.run_in_netns(net.topo.netns("n1"), ["cat"], input=b"abc")
    assert (r.returncode, r.stdout) == (0, b"abc")
    with pytest.raises(subprocess.TimeoutExpired):
        netns.run_in_netns(net.topo.netns("n1"), [sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.2)


# -- allocation and clean-up ----------------------------------------------------------


def test_allocations_are_distinct_and_owned(tmp_path: Path) -> None:
    base = tmp_path / "run"
    a = alloc.allocate("one", node_ids=["n2", "n1"], base_dir=base)
    b = alloc.allocate("two", base_dir=base)
    assert a.slot != b.slot
    assert a.netns == (f"rn{a.slot}-sw", f"rn{a.slot}-n1", f"rn{a.slot}-n2")
    assert a.root_link == topology.root_link(a.slot)
    assert a.owner_pid == os.getpid() and alloc.owner_alive(a)
    assert a.worker == alloc.worker_id()
    assert [x.slot for x in alloc.list_allocations(base)] == sorted([a.slot, b.slot])
    assert json_roundtrip(a)
    # hand ownership to another process, then let it die
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    with holder:
        moved = alloc.update(a.slot, owner_pid=holder.pid, node_ids=["n1", "n2", "n3"], base_dir=base)
        assert moved.owner_pid == holder.pid and alloc.owner_alive(moved)
        assert moved.topology.nodes == ("n1", "n2", "n3")
        holder.communicate(b"")
    assert not alloc.owner_alive(moved)
    assert not alloc.owner_alive(dataclasses.replace(moved, owner_pid=os.getpid()))  # pid reuse
    alloc.release(a.slot, base)
    alloc.release(a.slot, base)  # idempotent
    assert [x.slot for x in alloc.list_allocations(base)] == [b.slot]
    with pytest.raises(alloc.AllocationError):
        alloc.update(a.slot, owner_pid=os.getpid(), base_dir=base)


def json_roundtrip(a: alloc.Allocation) -> bool:
    return alloc.Allocation.from_json(a.to_json()) == a


def test_destroy_and_clean_leave_nothing(tmp_path: Path) -> None:
    # 1. a cluster whose owner died, with a node process still running inside
    owner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    with owner:
        dead = alloc.allocate("test-clean-dead", owner_pid=owner.pid, node_ids=topology.node_ids(2))
        owner.communicate(b"")
    dead_topo = dead.topology
    # 2. a cluster of a live owner (us)
    live = alloc.allocate("test-clean-live", node_ids=topology.node_ids(1))
    # 3. an orphan: namespaces and link but no allocation file
    orphan = alloc.allocate("test-clean-orphan", node_ids=topology.node_ids(1))
    survivor: NodeProcess | None = None
    try:
        netns.create_cluster_net(dead_topo)
        netns.create_cluster_net(live.topology)
        netns.create_cluster_net(orphan.topology)
        alloc.release(orphan.slot)  # as if the record were lost; its names keep the slot taken
        assert alloc.allocate("probe", base_dir=tmp_path / "other").slot not in (dead.slot, live.slot, orphan.slot)
        survivor = process.spawn(dead_topo.netns("n1"), server_argv(dead_topo, "n1"), tmp_path / "s.log")
        assert poll(lambda: control_echo(dead_topo.address("n1")))
        assert not alloc.owner_alive(dead)

        report = cleanup.clean()
        assert live.slot in report.kept
        assert survivor.wait(10) and not survivor.is_alive()
        assert_slot_gone(dead.slot)
        assert_slot_gone(orphan.slot)
        assert alloc.allocation(live.slot) is not None and netns.netns_exists(live.topology.switch_netns)
        assert "removed" in report.summary()

        again = cleanup.clean()  # idempotent
        assert dead.slot not in again.slots and orphan.slot not in again.slots and live.slot in again.kept
    finally:
        if survivor is not None:
            survivor.kill()
        for a in (dead, live, orphan):
            netns.destroy_cluster_net(a.topology)
            alloc.release(a.slot)
    assert_slot_gone(live.slot)


def test_destroy_is_idempotent_and_kills_leftovers(tmp_path: Path) -> None:
    a = alloc.allocate("test-destroy", node_ids=topology.node_ids(2))
    try:
        netns.create_cluster_net(a.topology)
        p = process.spawn(a.topology.netns("n2"), server_argv(a.topology, "n2"), tmp_path / "x.log")
        assert poll(lambda: control_echo(a.topology.address("n2")))
        done = netns.destroy_cluster_net(a.topology)
        assert p.pid in done.pids and set(done.netns) == set(a.netns) and done.links == (a.root_link,)
        assert p.wait(10) and p.exit_code == -9
        assert netns.destroy_cluster_net(a.topology) == netns.Teardown()
    finally:
        netns.destroy_cluster_net(a.topology)
        alloc.release(a.slot)
    assert_slot_gone(a.slot)


def test_create_refuses_a_slot_that_is_not_free(net: Net) -> None:
    with pytest.raises(netns.NetnsError, match="not free"):
        netns.create_cluster_net(net.topo)
    with pytest.raises(netns.NetnsError, match="exists already"):
        netns.add_node(Topology(net.topo.slot, net.topo.nodes[:2]), net.topo.nodes[2])
    assert all(net.matrix().values())  # nothing was torn down
