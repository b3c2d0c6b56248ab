"""A cluster of any system on 127.0.0.1: no root, no namespaces.

Each node gets its own free ports (a client port, and a peer port unless
the system serves both on one) and its own data dir; process faults
(SIGKILL and restart, SIGSTOP and resume) work as in the namespace Cluster
and are logged the same way, so the workload records a history and
``verify`` judges it. Network faults need namespaces: they raise
ClusterError with one line saying so (use ``Cluster``, as root or rootless).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from harness.lab.process import NodeProcess, kill_all, spawn
from harness.orchestration.cluster import ClusterError, NodeStartError
from harness.orchestration.local import free_port, wait_for
from harness.orchestration.report import EventRecord
from harness.systems.base import Endpoint, Feature, Member, NodeSpec, NodeStatus, System, leader_of
from harness.systems.raftnet import RaftnetSystem

HOST = "127.0.0.1"
_NETWORK = "network faults need network namespaces (root, or rootless mode): not on 127.0.0.1"
_CLOCK = "clock faults run in the namespace cluster (Cluster(clock=True)), not on 127.0.0.1"


class LoopbackCluster:
    def __init__(self, n: int = 3, *, workdir: Path, system: System | None = None,
                 node_env: Mapping[str, str] | None = None) -> None:
        if n < 1:
            raise ClusterError("a cluster needs at least one node")
        self.n = n
        self.workdir = Path(workdir).absolute()
        self.system: System = system or RaftnetSystem()
        self.node_env = dict(node_env or {})
        self.members_: dict[str, Member] = {}
        self.specs: dict[str, NodeSpec] = {}
        self.procs: dict[str, NodeProcess] = {}
        self.removed: set[str] = set()
        self.events: list[EventRecord] = []
        self.t0 = time.monotonic()
        self._open: dict[str, int] = {}  # node -> index of its open process fault in events

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LoopbackCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        shared = self.system.client_port == self.system.peer_port
        for i in range(1, self.n + 1):
            cport = free_port()
            self.members_[f"n{i}"] = Member(f"n{i}", HOST, cport, cport if shared else free_port())
        members = tuple(self.members_.values())
        try:
            for m in members:
                self.specs[m.id] = NodeSpec(m.id, HOST, m.client_port, m.peer_port, self.workdir / m.id, members)
                self._spawn(m.id)
            for m in members:
                self.wait_healthy(m.id)
            self._note("node", f"cluster up: {self.n} nodes on {HOST}")
        except BaseException:
            self.destroy()
            raise
        return self

    def __enter__(self) -> LoopbackCluster:
        return self.start() if not self.procs else self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def destroy(self) -> None:
        procs = list(self.procs.values())
        for p in procs:
            try:
                p.resume()
            except Exception:
                pass
        try:
            kill_all([p for p in procs if p.is_alive()])
        except Exception:
            pass
        self._close(None)

    def _spawn(self, node: str) -> None:
        spec = self.specs[node]
        argv = self.system.argv(spec)
        env = {**os.environ, **self.system.env(spec), **self.node_env}
        try:
            self.procs[node] = spawn(None, argv, self.log_path(node), env=env)
        except OSError as e:
            raise NodeStartError(f"{node}: cannot start {argv[0]!r}: {e.strerror or e}") from None

    def wait_healthy(self, node: str, timeout: float = 30.0) -> None:
        p, ep = self.procs[node], self.endpoint(node)

        def up() -> bool:
            if not p.is_alive():
                raise NodeStartError(f"{node} exited at start: {self.tail(node, 3)[-300:]}")
            return self.system.ready(ep, 1.0)

        try:
            wait_for(up, timeout, interval=0.05, what=f"{node} healthy")
        except TimeoutError:
            raise NodeStartError(f"{node} did not serve on {ep.address} within {timeout:.0f} s") from None

    # ------------------------------------------------------------------ queries
    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(n for n in self.members_ if n not in self.removed)

    @property
    def knows_leader(self) -> bool:
        return Feature.STATUS in self.system.features

    def placement(self) -> str:
        return HOST

    def members(self) -> list[str]:
        return list(self.nodes)

    def endpoint(self, node: str) -> Endpoint:
        m = self.members_.get(node)
        if m is None:
            raise ClusterError(f"unknown node {node!r} (nodes: {', '.join(self.nodes)})")
        return Endpoint(node, HOST, m.client_port)

    def endpoints(self) -> dict[str, Endpoint]:
        return {n: self.endpoint(n) for n in self.nodes}

    def log_path(self, node: str) -> Path:
        return self.workdir / f"{node}.log"

    def tail(self, node: str, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path(node).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def node_status(self, node: str, timeout: float = 1.0) -> NodeStatus | None:
        if not self.knows_leader:
            return None
        try:
            return self.system.status(self.endpoint(node), timeout)
        except (OSError, ValueError):
            return None

    def _reachable(self, node: str) -> bool:
        p = self.procs.get(node)
        return p is not None and p.is_alive() and not p.is_paused()

    def leader(self, timeout: float = 10.0, among: Iterable[str] | None = None) -> str:
        if not self.knows_leader:
            raise ClusterError(f"{self.system.name} reports no status: its leader is unknown")
        pool = list(among) if among is not None else list(self.nodes)

        def find() -> str | None:
            return leader_of({n: s for n in pool if self._reachable(n) and (s := self.node_status(n))}, len(pool))

        try:
            return wait_for(find, timeout, interval=0.05, what="a leader")
        except TimeoutError as e:
            raise ClusterError(str(e)) from None

    # ------------------------------------------------------------------ process faults
    def kill(self, node: str) -> None:
        self.procs[self._check(node)].kill()
        self._fault(node, f"kill {node}")

    def pause(self, node: str) -> None:
        self.procs[self._check(node)].pause()
        self._fault(node, f"pause {node}")

    def resume(self, node: str) -> None:
        self.procs[self._check(node)].resume()
        self._close(node)
        self._note("heal", f"resume {node}")

    def restart(self, node: str) -> None:
        p = self.procs[self._check(node)]
        if p.is_alive():
            p.resume()
            p.kill()
        self._spawn(node)
        self._close(node)
        self._note("node", f"restart {node}")
        self.wait_healthy(node)

    def start_all(self) -> None:
        for n in self.nodes:
            if not self.procs[n].is_alive():
                self.restart(n)

    def recover(self) -> None:
        """End every fault: resume the paused nodes, restart the dead ones."""
        for n in self.nodes:
            p = self.procs[n]
            if p.is_alive() and p.is_paused():
                self.resume(n)
            if not p.is_alive():
                self.restart(n)

    def heal(self) -> None:
        """No network fault can be active here: nothing to remove."""

    # ------------------------------------------------------------------ what needs namespaces
    def partition(self, *groups: Sequence[str]) -> None:
        raise ClusterError(_NETWORK)

    def isolate(self, node: str) -> None:
        raise ClusterError(_NETWORK)

    def bridge(self, node: str) -> None:
        raise ClusterError(_NETWORK)

    def cut(self, src: str, dst: str) -> None:
        raise ClusterError(_NETWORK)

    def ring(self, reach: dict[str, set[str]]) -> None:
        raise ClusterError(_NETWORK)

    def loss(self, node: str, percent: int) -> None:
        raise ClusterError(_NETWORK)

    def slow(self, node: str, delay_ms: int, jitter_ms: int = 0) -> None:
        raise ClusterError(_NETWORK)

    def duplicate(self, node: str, percent: int) -> None:
        raise ClusterError(_NETWORK)

    def reorder(self, node: str, percent: int) -> None:
        raise ClusterError(_NETWORK)

    def remove(self, node: str) -> None:
        raise ClusterError("membership changes run in the namespace cluster")

    def add(self) -> str:
        raise ClusterError("membership changes run in the namespace cluster")

    def power_cut(self, node: str) -> None:
        raise ClusterError("power cuts run in the namespace cluster (powerfs disks)")

    def power_cut_all(self) -> None:
        raise ClusterError("power cuts run in the namespace cluster (powerfs disks)")

    def clock_rate(self, node: str, rate: float) -> None:
        raise ClusterError(_CLOCK)

    def clock_offset(self, node: str, seconds: float) -> None:
        raise ClusterError(_CLOCK)

    def clock_reset(self, node: str) -> None:
        raise ClusterError(_CLOCK)

    # ------------------------------------------------------------------ events
    def _check(self, node: str) -> str:
        if node not in self.procs or node in self.removed:
            raise ClusterError(f"unknown node {node!r} (nodes: {', '.join(self.nodes)})")
        return node

    def _now(self) -> float:
        return round(time.monotonic() - self.t0, 4)

    def _note(self, kind: str, text: str) -> None:
        self.events.append(EventRecord(self._now(), kind, text))

    def _fault(self, node: str, text: str) -> None:
        self.events.append(EventRecord(self._now(), "fault", text))
        self._open[node] = len(self.events) - 1

    def _close(self, node: str | None) -> None:
        for n in [node] if node is not None else list(self._open):
            i = self._open.pop(n, None) if n is not None else None
            if i is not None:
                e = self.events[i]
                self.events[i] = EventRecord(e.time, e.kind, e.text, self._now())
