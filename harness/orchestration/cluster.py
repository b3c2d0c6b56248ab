"""The Cluster facade: n node processes of a system under test (raftnet's
node unless ``system=`` says otherwise, see harness/systems/), each in its
own network namespace, and the faults the harness injects into them through
the kernel. The firewall matches the system's peer ports.

    with Cluster(3, workdir=tmp) as c:
        c.partition(["n1"], ["n2", "n3"])
        ...
        c.heal()

Network faults compose (a partition plus a one-way cut plus loss on a node)
until ``heal()`` removes them all; each change re-renders the rules of every
node and installs them atomically per node, verified by reading them back
(harness/lab/firewall.py). Node-to-node traffic only: the harness reaches every
node through the control path, which only ``link_down`` cuts.

Slow networks (``slow``, ``duplicate``, ``reorder``) act on the packets a
node sends to its peers (to their peer port, or from its own; see
harness/lab/slownet.py), through tc netem where the kernel has it, else
through a netfilter queue and a userspace handler process inside the node's
namespace; the mechanism is probed when the cluster starts
(``slow_mechanism``). ``heal()`` ends them too.

With ``power=True`` each node's data dir is its own powerfs mount (a disk
that keeps unsynced writes in the daemon's memory, harness/lab/powerfs.py),
inside a mount namespace private to the cluster (harness/lab/mountns.py):
``power_cut(node)`` and ``power_cut_all()`` lose exactly what the nodes
never fsynced; ``restart``/``start_all`` mount the disk again first.

With ``clock=True`` each node runs with libfaketime preloaded and its own
control file ``workdir/<node>.clock`` (harness/lab/clock.py):
``clock_rate(node, 3.0)`` makes its clock run three times as fast,
``clock_offset(node, 5.0)`` jumps it 5 s ahead, ``clock_reset(node)``
gives it the real rate again; while it runs, no restart (how a rate change
avoids stepping the clock back: harness/model/clock.py).

Every fault and heal goes into the event log (monotonic timestamps) kept in
``workdir/events.jsonl``. The cluster's state (slot, nodes, processes,
faults) is saved in ``workdir/state.json`` so that a CLI command from
another shell can re-attach (``Cluster.attach``).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.lab import alloc, firewall, netns, powerfs, slownet
from harness.lab import clock as lab_clock
from harness.lab.mountns import MountNamespace, PowerDisk
from harness.lab.process import NodeProcess, ProcessGoneError, kill_all, spawn
from harness.model import topology
from harness.model.clock import MARGIN, ClockLine, check_offset, format_duration, parse_rate
from harness.model.faults import Active, Scope
from harness.model.slow import Mechanism, Shaping, ShapingError, format_ms
from harness.model.topology import Topology
from harness.orchestration.local import request, wait_for
from harness.orchestration.report import EventRecord
from harness.systems import load_system, source_of
from harness.systems.base import (
    Endpoint,
    Feature,
    Member,
    NodeSpec,
    NodeStatus,
    NotSupportedError,
    System,
    leader_of,
)
from harness.systems.raftnet import RaftnetSystem


class ClusterError(HarnessError):
    """A cluster operation that cannot be done (unknown node, no leader, ...)."""


class NodeStartError(ClusterError):
    """A node's command does not start, or its process never serves the system's client port: a
    configuration error (the CLI exits 2)."""


@dataclass
class _OpenFault:
    index: int  # position in events
    fault: Active


class Cluster:
    def __init__(
        self,
        n: int = 3,
        *,
        workdir: Path,
        name: str = "default",
        node_args: Sequence[str] = (),
        secret: str | None = None,
        owner_pid: int | None = None,
        base_dir: str | None = None,
        power: bool = False,
        node_env: Mapping[str, str] | None = None,
        system: System | None = None,
        clock: bool = False,
    ) -> None:
        """``system``: what runs on the nodes (default: raftnet's node with ``node_args`` and ``secret``).
        ``power``: each data dir on its own powerfs disk (power cuts possible).
        ``clock``: each node's clock under the harness's control (libfaketime; clock faults possible).
        ``node_env``: extra environment of the node processes (e.g. the test-only
        RAFTNET_UNSAFE_NO_FSYNC=1)."""
        if n < 1:
            raise ClusterError("a cluster needs at least one node")
        self.n = n
        self.name = name
        self.workdir = Path(workdir)
        self.node_args = list(node_args)
        self.secret = secret
        if system is None:
            system = RaftnetSystem(self.node_args, secret=secret)
        elif node_args or secret:
            raise ClusterError("node_args and secret belong to the raftnet system; pass them to it instead")
        self.system: System = system
        self.owner_pid = owner_pid or os.getpid()
        self.base_dir = base_dir
        self.topo: Topology | None = None
        self.procs: dict[str, NodeProcess] = {}
        self.argv: dict[str, list[str]] = {}
        self.grudge: dict[str, set[str]] = {}
        self.loss_pct: dict[str, int] = {}
        self.links_down: set[str] = set()
        self.removed: set[str] = set()
        self.t0 = time.monotonic()
        self.events: list[EventRecord] = []
        self._open: list[_OpenFault] = []
        self.backend: firewall.Backend | None = None
        self.power = power
        self.node_env = dict(node_env or {})
        self.mntns: MountNamespace | None = None
        self.disks: dict[str, PowerDisk] = {}
        self.specs: dict[str, NodeSpec] = {}
        self.clock = clock
        self.clocks: dict[str, ClockLine] = {}  # each node's clock as its current process runs it
        self.shaping: dict[str, Shaping] = {}  # slow-network faults per node
        self.shapers: dict[str, NodeProcess] = {}  # their nfqueue handlers
        self.slow_mechanism: Mechanism | None = None
        self.slow_unavailable: str | None = None  # why no slow-network fault can run here
        self._released = False  # destroy() gave the slot back

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Cluster:
        if self.clock:
            if Feature.CLOCK not in self.system.features:
                raise ClusterError(f"libfaketime cannot reach {self.system.name}'s clock (no Feature.CLOCK: "
                                   "a Go program such as etcd reads the clock without libc)")
            if reason := lab_clock.unavailable_reason():
                raise ClusterError(reason)
        if self.power:
            if Feature.POWER not in self.system.features:
                raise ClusterError(f"{self.system.name} does not support power cuts (its disk on powerfs)")
            if reason := powerfs.unavailable_reason():
                raise ClusterError(reason)
            self.workdir = self.workdir.absolute()  # paths as seen from inside the mount namespace
        self.workdir.mkdir(parents=True, exist_ok=True)
        a = alloc.allocate(self.name, self.owner_pid, topology.node_ids(self.n), base_dir=self.base_dir)
        self.topo = Topology.of(a.slot, self.n)
        self._released = False
        try:
            self.backend = firewall.detect_backend()
            netns.create_cluster_net(self.topo)
            try:
                self._choose_slow()
            except (ClusterError, OSError):
                pass  # kept in slow_unavailable: status says it, and a slow fault raises it
            if self.power:
                self.mntns = MountNamespace.start(self.topo.switch_netns, self.workdir / "mountns.log")
            members = tuple(self._member(i) for i in self.topo.nodes)
            for i in self.topo.nodes:
                self.specs[i] = self._spec(i, members)
                self.argv[i] = self.system.argv(self.specs[i])
                self._spawn(i)
            for i in self.topo.nodes:
                self.wait_healthy(i)
            self._note("node", f"cluster up: {self.n} nodes in slot {a.slot} ({self.topo.subnet})")
            self.save()
        except BaseException:
            self.destroy()
            raise
        return self

    def __enter__(self) -> Cluster:
        return self.start() if self.topo is None else self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def destroy(self) -> None:
        """Stop every process and remove the namespaces, links, rules and allocation."""
        for p in self.shapers.values():
            try:
                p.kill()
            except Exception:
                pass
        for p in self.procs.values():
            try:
                p.resume()
            except Exception:
                pass
        for p in self.procs.values():
            try:
                p.kill()
            except Exception:
                pass
        for d in self.disks.values():
            if d.proc is not None:
                try:
                    d.proc.kill()
                except Exception:
                    pass
        if self.mntns is not None:
            try:
                self.mntns.kill()  # the last process in the namespace: its mounts go with it
            except Exception:
                pass
        if self.clock:
            for p in self.procs.values():
                lab_clock.forget(p.pid)
        if self.topo is not None and not self._released:
            netns.destroy_cluster_net(self.topo)
            alloc.release(self.topo.slot, base_dir=self.base_dir)
            # Once released the slot may be another cluster's (a parallel test's): a second
            # destroy must not tear its namespaces down.
            self._released = True
        self._close_open(None)
        self.save_events()

    # ------------------------------------------------------------------ nodes
    def _member(self, node: str) -> Member:
        assert self.topo is not None
        return Member(node, topology.node_address(self.topo.slot, node), self.system.client_port,
                      self.system.peer_port)

    def _spec(self, node: str, members: tuple[Member, ...], join_via: str | None = None) -> NodeSpec:
        m = self._member(node)
        return NodeSpec(node, m.ip, m.client_port, m.peer_port, self.data_dir(node), members,
                        joining=join_via is not None, join_via=join_via)

    def _spawn(self, node: str) -> None:
        assert self.topo is not None
        spec = self.specs.get(node)
        env = {**os.environ, **(self.system.env(spec) if spec else {}), **self.node_env}
        if self.clock:
            env = self._clock_env(node, env)
        mntns = None
        if self.power:
            self.disk(node).mount()  # after a power cut: a fresh daemon on the durable state
            assert self.mntns is not None
            mntns = self.mntns.path
        try:
            self.procs[node] = spawn(self.topo.netns(node), self.argv[node], self.log_path(node), env=env,
                                     mntns=mntns)
        except OSError as e:
            raise NodeStartError(f"{node}: cannot start {self.argv[node][0]!r}: {e.strerror or e}") from None
        if self.clock:  # libfaketime starts in the new process within milliseconds
            self.clocks[node] = replace(self.clocks[node], start=time.monotonic())

    def disk(self, node: str) -> PowerDisk:
        """``node``'s powerfs disk (power clusters only): store ``<node>.disk``, mounted on its data dir."""
        if self.mntns is None:
            raise ClusterError("not a power cluster: start it with power=True (raftnet up --power)")
        if node not in self.disks:
            assert self.topo is not None
            self.disks[node] = PowerDisk(self.mntns, self.workdir / f"{node}.disk", self.data_dir(node),
                                         self.workdir / f"{node}.powerfs.log", netns=self.topo.netns(node))
        return self.disks[node]

    def data_dir(self, node: str) -> Path:
        return self.workdir / node

    def log_path(self, node: str) -> Path:
        return self.workdir / f"{node}.log"

    def clock_path(self, node: str) -> Path:
        """``node``'s clock control file (clock clusters): the line libfaketime follows."""
        return self.workdir / f"{node}.clock"

    def address(self, node: str) -> str:
        assert self.topo is not None
        return f"{topology.node_address(self.topo.slot, node)}:{self.system.client_port}"

    def endpoint(self, node: str) -> Endpoint:
        assert self.topo is not None
        return Endpoint(node, topology.node_address(self.topo.slot, node), self.system.client_port)

    def endpoints(self) -> dict[str, Endpoint]:
        return {n: self.endpoint(n) for n in self.nodes}

    @property
    def nodes(self) -> tuple[str, ...]:
        assert self.topo is not None
        return tuple(self.topo.nodes)

    @property
    def addresses(self) -> dict[str, str]:
        return {n: self.address(n) for n in self.nodes}

    def members(self) -> list[str]:
        return list(self.nodes)

    def check_node(self, node: str) -> str:
        if self.topo is None or node not in self.topo.nodes:
            raise ClusterError(f"unknown node {node!r} (nodes: {', '.join(self.nodes) if self.topo else 'none'})")
        return node

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}

    def http(self, node: str, method: str, path: str, body: Any = None, timeout: float = 5.0) -> Any:
        """An HTTP request to ``node``'s client address (raftnet's secret sent when set)."""
        return request(self.address(node), method, path, body, headers=self._headers(), timeout=timeout)

    def wait_healthy(self, node: str, timeout: float = 30.0) -> None:
        """Wait until ``node``'s process serves its client port (the system's ``ready``)."""
        p = self.procs[node]
        ep = self.endpoint(node)

        def up() -> bool:
            if not p.is_alive():
                last = " | ".join(line.strip() for line in self.tail(node, 3).splitlines() if line.strip())
                raise NodeStartError(f"{node} exited at start (command: {' '.join(self.argv.get(node, []))[:200]})"
                                     f"{': ' + last[-300:] if last else ''}")
            return self.system.ready(ep, 1.0)

        try:
            wait_for(up, timeout, interval=0.05, what=f"{node} healthy")
        except TimeoutError:
            last = " | ".join(line.strip() for line in self.tail(node, 3).splitlines() if line.strip())
            raise NodeStartError(f"{node} did not serve on {ep.address} within {timeout:.0f} s (is the "
                                 f"{self.system.name} client port {self.system.client_port} right?)"
                                 f"{': ' + last[-300:] if last else ''}") from None

    def tail(self, node: str, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path(node).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def status(self, node: str, timeout: float = 1.0) -> dict[str, Any] | None:
        """The node's own status document (raftnet: /v1/status), or None when it does not answer."""
        if isinstance(self.system, RaftnetSystem):
            return self.system.raw_status(self.endpoint(node), timeout)
        st = self.node_status(node, timeout)
        return dict(st.raw) if st else None

    def node_status(self, node: str, timeout: float = 1.0) -> NodeStatus | None:
        """``node``'s status as the system reports it (None: no answer, or no status hook)."""
        if Feature.STATUS not in self.system.features:
            return None
        try:
            return self.system.status(self.endpoint(node), timeout)
        except (OSError, http.client.HTTPException, ValueError):
            return None

    @property
    def knows_leader(self) -> bool:
        return Feature.STATUS in self.system.features

    def placement(self) -> str:
        return f"slot {self.topo.slot} ({self.topo.subnet})" if self.topo else "not started"

    def recover(self) -> None:
        """End every fault: network rules, unplugged links, paused and dead nodes."""
        self.heal()
        for n in list(self.links_down):
            self.link_up(n)
        for n in self.nodes:
            p = self.procs[n]
            if p.is_paused():
                self.resume(n)
            if not p.is_alive():
                self.restart(n)
        for n in self._skewed():
            if n in self.nodes:
                self.clock_reset(n)

    def leader(self, timeout: float = 10.0, among: Iterable[str] | None = None) -> str:
        """Wait for a node that leads the highest term seen and that a peer (or no peer) follows."""
        if not self.knows_leader:
            raise ClusterError(f"{self.system.name} reports no status: its leader is unknown")
        pool = list(among) if among is not None else None

        def find() -> str | None:
            nodes = pool or self.nodes
            sts = {n: s for n in nodes if self._reachable(n) and (s := self.node_status(n))}
            return leader_of(sts, len(nodes))

        try:
            return wait_for(find, timeout, interval=0.05, what="a leader")
        except TimeoutError as e:
            raise ClusterError(str(e)) from None

    def _reachable(self, node: str) -> bool:
        p = self.procs.get(node)
        return p is not None and node not in self.links_down and p.is_alive() and not p.is_paused()

    # ------------------------------------------------------------------ network faults
    def partition(self, *groups: Sequence[str]) -> None:
        for g in groups:
            for n in g:
                self.check_node(n)
        self._add_grudge(topology.partition_grudge([list(g) for g in groups]),
                         "partition " + " | ".join(",".join(g) for g in groups))

    def isolate(self, node: str) -> None:
        self._add_grudge(topology.isolation_grudge(self.check_node(node), self.nodes), f"isolate {node}")

    def bridge(self, node: str) -> None:
        self._add_grudge(topology.bridge_grudge(self.check_node(node), self.nodes), f"bridge {node}")

    def cut(self, src: str, dst: str) -> None:
        self._add_grudge(topology.cut_grudge(self.check_node(src), self.check_node(dst)), f"cut {src} -> {dst}")

    def ring(self, reach: dict[str, set[str]]) -> None:
        grudge = {n: {m for m in self.nodes if m not in reach.get(n, set()) and m != n} for n in self.nodes}
        self._add_grudge(grudge, "majority ring")

    def loss(self, node: str, percent: int) -> None:
        firewall.check_percent(percent)
        self.loss_pct[self.check_node(node)] = percent
        self._apply_rules()
        self._fault(Active(Scope.NET, node, f"loss {node} {percent}%"))

    def slow(self, node: str, delay_ms: int, jitter_ms: int = 0) -> None:
        """``node``'s packets to its peers wait ``delay_ms`` ± ``jitter_ms`` (uniform) before they leave."""
        s = replace(self.shaping.get(self.check_node(node), Shaping()), delay_ms=delay_ms, jitter_ms=jitter_ms)
        jitter = f" jitter {format_ms(jitter_ms)}" if jitter_ms else ""
        self._shape(node, s, f"slow {node} {format_ms(delay_ms)}{jitter}")

    def duplicate(self, node: str, percent: int) -> None:
        """``percent``% of ``node``'s packets to its peers leave twice."""
        s = replace(self.shaping.get(self.check_node(node), Shaping()), duplicate=percent)
        self._shape(node, s, f"duplicate {node} {percent}%")

    def reorder(self, node: str, percent: int) -> None:
        """``percent``% of ``node``'s packets to its peers leave at once, ahead of the others (which wait
        the delay, or 10 ms without one)."""
        s = replace(self.shaping.get(self.check_node(node), Shaping()), reorder=percent)
        self._shape(node, s, f"reorder {node} {percent}%")

    def _choose_slow(self) -> Mechanism:
        """The slow-network mechanism of this kernel, probed once (in the first node's namespace)."""
        assert self.topo is not None
        if self.slow_mechanism is None:
            try:
                self.slow_mechanism = slownet.choose(self.topo.netns(self.topo.nodes[0]))
                self.slow_unavailable = None
            except ShapingError as e:
                self.slow_unavailable = str(e)
                raise ClusterError(str(e)) from None
        return self.slow_mechanism

    def _shape(self, node: str, s: Shaping, text: str) -> None:
        assert self.topo is not None
        mech = self._choose_slow()
        old = self.shapers.pop(node, None)
        try:
            proc = slownet.apply(self.topo, node, mech, s, ports=self.system.peer_ports, handler=old,
                                 log=self.workdir / f"{node}.slow.log")
        except slownet.SlowNetError as e:
            self.shaping.pop(node, None)
            try:
                slownet.clear(self.topo, node, mech, None)
            except slownet.SlowNetError:
                pass
            self.save()
            raise ClusterError(str(e).splitlines()[0]) from None
        if proc is not None:
            self.shapers[node] = proc
        if s.active:
            self.shaping[node] = s
        else:
            self.shaping.pop(node, None)
        self.save()
        self._fault(Active(Scope.NET, node, f"{text} ({mech})"))

    def _unshape(self, node: str) -> None:
        """End ``node``'s slow-network faults (rules, netem tree, handler)."""
        assert self.topo is not None
        proc = self.shapers.pop(node, None)
        if node in self.shaping or proc is not None:
            slownet.clear(self.topo, node, self.slow_mechanism, proc)
        self.shaping.pop(node, None)

    def heal(self) -> None:
        for n in sorted(set(self.shaping) | set(self.shapers)):
            self._unshape(n)
        self.grudge.clear()
        self.loss_pct.clear()
        self._apply_rules()
        self._close_open(lambda f: f.ended_by_heal())
        self._note("heal", "heal: every network fault removed")

    def _add_grudge(self, grudge: Any, text: str) -> None:
        for dst, srcs in grudge.items():
            self.grudge.setdefault(str(dst), set()).update(str(s) for s in srcs)
        self._apply_rules()
        self._fault(Active(Scope.NET, None, text))

    def _apply_rules(self) -> None:
        assert self.topo is not None
        firewall.apply(self.topo, {topology.NodeId(k): {topology.NodeId(s) for s in v} for k, v in self.grudge.items()},
                       {topology.NodeId(k): v for k, v in self.loss_pct.items()}, self.backend,
                       port=self.system.peer_ports)
        self.save()

    def link_down(self, node: str) -> None:
        assert self.topo is not None
        netns.link_down(self.topo, self.check_node(node))
        self.links_down.add(node)
        self._fault(Active(Scope.LINK, node, f"link down {node}"))
        self.save()

    def link_up(self, node: str) -> None:
        assert self.topo is not None
        netns.link_up(self.topo, self.check_node(node))
        self.links_down.discard(node)
        self._close_open(lambda f: f.scope is Scope.LINK and f.node == node)
        self._note("heal", f"link up {node}")
        self.save()

    # ------------------------------------------------------------------ process faults
    def kill(self, node: str) -> None:
        self.procs[self.check_node(node)].kill()
        self._fault(Active(Scope.PROC, node, f"kill {node}"))
        self.save()

    def restart(self, node: str, wait: bool = True) -> None:
        p = self.procs[self.check_node(node)]
        if p.is_alive():
            p.resume()
            p.kill()
        self._spawn(node)
        self._close_open(lambda f: f.scope is Scope.PROC and f.node == node)
        if all(p.is_alive() for n, p in self.procs.items() if n not in self.removed):
            self._close_open(lambda f: f.scope is Scope.PROC and f.node is None)
        self._note("node", f"restart {node}")
        self.save()
        if wait and node not in self.links_down:
            self.wait_healthy(node)

    def power_cut(self, node: str) -> None:
        """Power failure of ``node``: SIGKILL it, then lose its disk's unsynced data.

        It stays down until ``restart`` (which mounts the durable state first)."""
        self._power_off([self.check_node(node)])
        self._fault(Active(Scope.PROC, node, f"power cut {node}"))
        self.save()

    def power_cut_all(self) -> None:
        """The classic power failure: every node at once (``start_all`` brings them back)."""
        self._power_off([n for n in self.nodes if n not in self.removed])
        self._fault(Active(Scope.PROC, None, "power cut all"))
        self.save()

    def _power_off(self, nodes: list[str]) -> None:
        self.disk(nodes[0])  # raises on a cluster without power
        procs = [self.procs[n] for n in nodes]
        for p in procs:
            try:
                p.resume()  # a paused node dies too
            except ProcessGoneError:
                pass
        kill_all(procs)  # first the processes that use the disks,
        for n in nodes:
            self.disk(n).cut()  # then the disks' caches

    def stop_node(self, node: str) -> int | None:
        """SIGTERM (graceful); returns the exit code."""
        code = self.procs[self.check_node(node)].stop()
        self._fault(Active(Scope.PROC, node, f"stop {node}"))
        self.save()
        return code

    def pause(self, node: str) -> None:
        self.procs[self.check_node(node)].pause()
        self._fault(Active(Scope.PROC, node, f"pause {node}"))
        self.save()

    def resume(self, node: str) -> None:
        self.procs[self.check_node(node)].resume()
        self._close_open(lambda f: f.scope is Scope.PROC and f.node == node)
        self._note("heal", f"resume {node}")
        self.save()

    def stop_all(self) -> None:
        for n in self.nodes:
            if self.procs[n].is_alive():
                self.procs[n].resume()
                self.procs[n].kill()
        self._note("node", "every node killed")
        self.save()

    def start_all(self) -> None:
        if self.power:  # the disks of the nodes that are down mount in parallel first
            down = [self.disk(n) for n in self.nodes if not self.procs[n].is_alive()]
            for d in down:
                d.start()
            for d in down:
                d.wait_mounted()
        for n in self.nodes:
            if not self.procs[n].is_alive():
                self._spawn(n)
        for n in self.nodes:
            self.wait_healthy(n)
        self._close_open(lambda f: f.scope is Scope.PROC)
        self._note("node", "every node started")
        self.save()

    # ------------------------------------------------------------------ clock faults
    def clock_rate(self, node: str, rate: float) -> None:
        """``node``'s clock runs at ``rate`` times the real one from now on (never stepping back)."""
        rate = parse_rate(rate)
        self._set_clock(node, lambda line, now: line.with_rate(rate, now), f"clock {node} rate {rate:g}x")

    def clock_offset(self, node: str, seconds: float) -> None:
        """``node``'s clock jumps ``seconds`` ahead (behind, when negative: its monotonic clock steps back)."""
        seconds = check_offset(seconds)
        self._set_clock(node, lambda line, now: line.jumped(seconds), f"clock {node} jump {format_duration(seconds)}")

    def clock_reset(self, node: str) -> None:
        """The real rate again for ``node``'s clock, from where it is: it keeps its offset instead of
        stepping back (its next restart gives it the real time)."""
        line = self._set_clock(node, lambda line, now: line.reset(now), None)
        self._close_open(lambda f: f.scope is Scope.CLOCK and f.node == node)
        self._note("heal", f"clock reset {node}: real rate, {format_duration(line.skew(time.monotonic()))} kept")
        self.save()

    def clock_state(self, node: str) -> ClockLine:
        """``node``'s clock as the harness runs it (clock clusters)."""
        self._clock_armed()
        return self.clocks.get(self.check_node(node)) or ClockLine(time.monotonic())

    def _clock_armed(self) -> None:
        if not self.clock:
            raise ClusterError("this cluster's clocks are real: start it with clock=True (raftnet up --clock) "
                               "to skew them")

    def _set_clock(self, node: str, change: Callable[[ClockLine, float], ClockLine], text: str | None) -> ClockLine:
        self._clock_armed()
        p = self.procs.get(self.check_node(node))
        alive = p is not None and p.is_alive()
        if alive and p is not None and p.is_paused():
            raise ClusterError(f"{node} is paused: resume it first (a stopped process reads its new clock only "
                               "when it runs again, too late to keep its clock from stepping back)")
        now = time.monotonic()
        line = change(self.clocks.get(node) or ClockLine(now), now)
        lab_clock.write(self.clock_path(node), line)
        self.clocks[node] = line
        lag = lab_clock.wait_read(self.clock_path(node)) if alive else None
        if text is not None:
            self._fault(Active(Scope.CLOCK, node, text))
        if lag is not None and lag > MARGIN:
            self._note("note", f"{node} read its new clock {lag:.3f} s after it was written: a slower rate may "
                       "have stepped its clock back")
        self.save()
        return line

    def _clock_env(self, node: str, env: dict[str, str]) -> dict[str, str]:
        """The environment of a new process of ``node`` under a clock: its control file written first."""
        lib = lab_clock.library()
        if lib is None:
            raise ClusterError(lab_clock.unavailable_reason() or "libfaketime not found")
        old = self.procs.get(node)
        if old is not None and not old.is_alive():
            lab_clock.forget(old.pid)
        now = time.monotonic()
        keep = node in self._skewed()
        line = self.clocks[node].respawned(now, keep=keep) if node in self.clocks else ClockLine(now)
        lab_clock.write(self.clock_path(node), line)
        self.clocks[node] = line
        return lab_clock.env(env, self.clock_path(node), lib)

    # ------------------------------------------------------------------ membership
    def _membership(self) -> None:
        if Feature.MEMBERSHIP not in self.system.features:
            raise ClusterError(f"{self.system.name} has no membership hooks: nodes cannot be added or removed")

    def add(self, node: str | None = None) -> str:
        """Add a new node: a new namespace, the system's add hook, its process (joining), then wait
        until the leader counts it as a voter."""
        self._membership()
        assert self.topo is not None
        node = node or self.topo.next_node_id()
        if node in self.topo.nodes:
            raise ClusterError(f"node {node} already exists")
        via = self.leader()
        self.topo = netns.add_node(self.topo, node)
        alloc.update(self.topo.slot, base_dir=self.base_dir, node_ids=self.topo.nodes)
        if self.backend is not None and (self.grudge or self.loss_pct):
            self._apply_rules()
        shutil.rmtree(self.data_dir(node), ignore_errors=True)
        if self.power:  # a removed node's id comes back on a fresh disk, not its old store
            shutil.rmtree(self.workdir / f"{node}.disk", ignore_errors=True)
        members = tuple(self._member(i) for i in self.topo.nodes)
        self.specs[node] = self._spec(node, members, join_via=self.address(via))
        self.system.add_member(self.endpoint(via), self.specs[node], 30.0)
        self.argv[node] = self.system.argv(self.specs[node])
        self._spawn(node)
        self.wait_healthy(node)

        def voter() -> bool:
            return self.system.promoted(self.endpoint(self.leader(timeout=5.0)), node, 2.0)

        wait_for(voter, 60, interval=0.1, what=f"{node} to become a voter")
        self._close_open(lambda f: f.scope is Scope.MEMBER)  # a removal's window ends here
        self._note("member", f"add {node}")
        self.save()
        return node

    def remove(self, node: str) -> None:
        """Remove ``node`` from the membership through the leader, then its process and namespace."""
        self._membership()
        assert self.topo is not None
        self.check_node(node)
        try:
            self.system.remove_member(self.endpoint(self.leader(timeout=30.0)), node, 30.0)
        except (NotSupportedError, TimeoutError) as e:
            raise ClusterError(f"remove {node}: {e}") from None
        p = self.procs.pop(node)
        try:
            p.resume()
            p.kill()
        except Exception:
            pass
        shaper = self.shapers.pop(node, None)
        if shaper is not None:
            shaper.kill()  # its namespace goes next
        self.shaping.pop(node, None)
        disk = self.disks.pop(node, None)
        if disk is not None:
            disk.cut()
        self.topo = netns.remove_node(self.topo, node)
        alloc.update(self.topo.slot, base_dir=self.base_dir, node_ids=self.topo.nodes)
        self.grudge = {d: {s for s in srcs if s != node} for d, srcs in self.grudge.items() if d != node}
        self.loss_pct.pop(node, None)
        self.links_down.discard(node)
        self.removed.add(node)
        self.specs.pop(node, None)
        self.clocks.pop(node, None)
        if self.clock:
            lab_clock.forget(p.pid)
        if self.grudge or self.loss_pct:
            self._apply_rules()
        self._fault(Active(Scope.MEMBER, node, f"remove {node}"))
        self.save()

    # ------------------------------------------------------------------ events
    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _note(self, kind: str, text: str) -> None:
        self.events.append(EventRecord(round(self._now(), 4), kind, text))
        self._append_event(self.events[-1])

    def _fault(self, fault: Active) -> None:
        text = fault.text
        self.events.append(EventRecord(round(self._now(), 4), "fault", text))
        self._open.append(_OpenFault(len(self.events) - 1, fault))
        self._append_event(self.events[-1])

    def _close_open(self, which: Callable[[Active], bool] | None) -> None:
        keep = []
        now = round(self._now(), 4)
        for f in self._open:
            if which is None or which(f.fault):
                e = self.events[f.index]
                self.events[f.index] = EventRecord(e.time, e.kind, e.text, now)
            else:
                keep.append(f)
        self._open = keep

    def _append_event(self, e: EventRecord) -> None:
        try:
            with open(self.workdir / "events.jsonl", "a") as f:
                f.write(json.dumps({**e.to_json(), "monotonic": self.t0 + e.time}) + "\n")
        except OSError:
            pass

    def save_events(self) -> None:
        try:
            with open(self.workdir / "events.final.jsonl", "w") as f:
                for e in self.events:
                    f.write(json.dumps(e.to_json()) + "\n")
        except OSError:
            pass

    def faults(self) -> list[str]:
        out = []
        for dst, srcs in sorted(self.grudge.items()):
            for s in sorted(srcs):
                out.append(f"drop {s} -> {dst}")
        out += [f"loss {n} {p}%" for n, p in sorted(self.loss_pct.items())]
        out += [f for n in topology.sorted_nodes(self.shaping) for f in self.shaping[n].describe(n)]
        out += [f"link down {n}" for n in sorted(self.links_down)]
        now = time.monotonic()
        out += [f"clock {n}: {self.clocks[n].describe(now)}" for n in self._skewed() if n in self.clocks]
        return out

    def _skewed(self) -> list[str]:
        """The nodes with a clock fault on (not reset yet)."""
        return sorted({f.fault.node for f in self._open if f.fault.scope is Scope.CLOCK and f.fault.node is not None})

    # ------------------------------------------------------------------ persistence
    def save(self) -> None:
        if self.topo is None:
            return
        state = {
            "name": self.name, "n": self.n, "slot": self.topo.slot, "nodes": list(self.topo.nodes),
            "workdir": str(self.workdir), "node_args": self.node_args, "secret": self.secret,
            "system": source_of(self.system),
            "argv": self.argv, "procs": {n: p.record() for n, p in self.procs.items()},
            "grudge": {k: sorted(v) for k, v in self.grudge.items()}, "loss": self.loss_pct,
            "links_down": sorted(self.links_down), "removed": sorted(self.removed), "t0": self.t0,
            "backend": self.backend.value if self.backend else None, "owner_pid": self.owner_pid,
            "base_dir": self.base_dir, "power": self.power, "node_env": self.node_env,
            "mntns": self.mntns.record() if self.mntns else None,
            "disks": {n: d.record() for n, d in self.disks.items()},
            "clock": self.clock, "clocks": {n: line.to_json() for n, line in self.clocks.items()},
            "slow": {"mechanism": self.slow_mechanism.value if self.slow_mechanism else None,
                     "unavailable": self.slow_unavailable,
                     "shaping": {n: s.to_json() for n, s in self.shaping.items()},
                     "handlers": {n: p.record() for n, p in self.shapers.items()}},
            "open": [[f.index, f.fault.key] for f in self._open], "events": [e.to_json() for e in self.events],
        }
        tmp = self.workdir / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.workdir / "state.json")

    @classmethod
    def attach(cls, workdir: Path) -> Cluster:
        """Re-open a running cluster from its state file (a CLI command from another shell)."""
        try:
            st = json.loads((Path(workdir) / "state.json").read_text())
        except (OSError, ValueError) as e:
            raise ClusterError(f"no cluster state in {workdir}: {e}") from None
        src = st.get("system")
        system = load_system(src) if src else None
        raftnet = system is None or isinstance(system, RaftnetSystem)
        c = cls(st["n"], workdir=Path(st["workdir"]), name=st["name"],
                node_args=st["node_args"] if raftnet else (), secret=st["secret"] if raftnet else None,
                owner_pid=st["owner_pid"], base_dir=st.get("base_dir"), power=st.get("power", False),
                node_env=st.get("node_env"), system=None if raftnet else system, clock=st.get("clock", False))
        c.topo = Topology(st["slot"], tuple(topology.NodeId(n) for n in st["nodes"]))
        c.argv = st["argv"]
        members = tuple(c._member(n) for n in c.topo.nodes)
        c.specs = {n: c._spec(n, members) for n in c.topo.nodes}
        c.procs = {n: _reattach(r) for n, r in st["procs"].items()}
        c.grudge = {k: set(v) for k, v in st["grudge"].items()}
        c.loss_pct = dict(st["loss"])
        c.links_down = set(st["links_down"])
        c.removed = set(st.get("removed", ()))
        c.clocks = {n: ClockLine.from_json(d) for n, d in st.get("clocks", {}).items()}
        c.t0 = st["t0"]
        c.backend = firewall.Backend(st["backend"]) if st.get("backend") else None
        slow = st.get("slow") or {}
        c.slow_mechanism = Mechanism(slow["mechanism"]) if slow.get("mechanism") else None
        c.slow_unavailable = slow.get("unavailable")
        c.shaping = {n: Shaping.from_json(s) for n, s in slow.get("shaping", {}).items()}
        c.shapers = {n: _reattach(r) for n, r in slow.get("handlers", {}).items()}
        c.events = [EventRecord(e["time"], e["kind"], e["text"], e.get("end")) for e in st["events"]]
        c._open = [_OpenFault(i, Active.from_key(k, c.events[i].text)) for i, k in st["open"]]
        if st.get("mntns"):
            c.mntns = MountNamespace.attach(st["mntns"])
            if c.mntns is None:
                raise ClusterError("the cluster's mount namespace holder is gone (raftnet clean removes the rest)")
            for n, r in st.get("disks", {}).items():
                c.disk(n).proc = _reattach(r) if r else None
        return c


def _reattach(record: dict[str, Any]) -> NodeProcess:
    """A recorded node process; a dead one stays dead (is_alive() False), it is not an error."""
    try:
        return NodeProcess.attach(record)
    except ProcessGoneError:
        log = record.get("log_path")
        return NodeProcess(int(record["pid"]), float(record["create_time"]), str(record["netns"]),
                           [str(a) for a in record.get("argv", ())], Path(log) if log else None)
