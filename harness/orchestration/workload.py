"""Client traffic and the end-of-run verdict, shared by tests and ``raftnet check``.

``Workload`` runs Jepsen-style clients (reads, unique writes, cas, deletes on
a few keys) in a background thread with its own event loop, recording one
History, until stopped. ``verify`` heals the cluster, waits until it
converges, reads every key back, and checks everything: linearizability,
acknowledged writes present, nothing in the log twice, one leader per term,
identical committed prefixes, replicas that agree.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from harness.model import checker, invariants
from harness.model.history import History, OpType
from harness.orchestration.cluster import Cluster, ClusterError
from harness.orchestration.local import wait_for
from harness.systems.raftnet_client import Client


class Counters:
    def __init__(self) -> None:
        self.ok = self.fail = self.info = 0
        self.fault = "none"

    def add(self, t: OpType) -> None:
        if t is OpType.OK:
            self.ok += 1
        elif t is OpType.FAIL:
            self.fail += 1
        else:
            self.info += 1


async def client_loop(c: Client, rng: random.Random, keys: Sequence[str], running: Callable[[], bool],
                      counters: Counters, pick_node: Callable[[int], str | None],
                      mix: tuple[float, float, float] = (0.45, 0.80, 0.95)) -> None:
    """One process: reads, writes of unique values, cas from the last value it saw, deletes."""
    known: dict[str, str | None] = {}
    n = 0
    while running():
        node = pick_node(c.process)
        if node is None:
            await asyncio.sleep(0.05)
            continue
        c.node = node
        key = rng.choice(keys)
        r = rng.random()
        n += 1
        value = f"{c.process}-{n}"
        if r < mix[0]:
            out = await c.read(key)
            if out.type is OpType.OK:
                known[key] = out.value
        elif r < mix[1]:
            out = await c.write(key, value)
            if out.type is OpType.OK:
                known[key] = value
        elif r < mix[2]:
            out = await c.cas(key, known.get(key), value)
            if out.type is OpType.OK and out.value:
                known[key] = value
        else:
            out = await c.delete(key)
            if out.type is OpType.OK:
                known[key] = None
        counters.add(out.type)
        if out.type is not OpType.OK:
            await asyncio.sleep(rng.uniform(0.02, 0.1))  # back off from a failing node a little
        else:
            await asyncio.sleep(rng.uniform(0, 0.01))


class Workload:
    """Background clients against ``cluster``; ``with Workload(c) as w: ...`` then ``w.history``."""

    def __init__(self, cluster: Cluster, clients: int = 4, keys: int = 3, seed: int = 0,
                 follow_redirects: bool = True, timeout: float = 5.0, process_base: int = 0) -> None:
        self.cluster = cluster
        self.clients = clients
        self.keys = [f"k{i}" for i in range(keys)]
        self.seed = seed
        self.follow = follow_redirects
        self.timeout = timeout
        self.base = process_base
        self.history = History()
        self.counters = Counters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> Workload:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)
        self._thread.start()

    def stop(self) -> History:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 30)
            self._thread = None
        if self._error is not None:
            raise self._error
        return self.history

    def wait_ops(self, ok: int, timeout: float = 30.0) -> None:
        """Wait until at least ``ok`` more operations have succeeded."""
        target = self.counters.ok + ok
        wait_for(lambda: self.counters.ok >= target, timeout, what=f"{ok} successful operations")

    def _pick(self, process: int) -> str | None:
        nodes = list(self.cluster.nodes)
        return nodes[process % len(nodes)] if nodes else None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # surfaced by stop()
            self._error = e

    async def _main(self) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            clients = [
                Client(session, self.history, self.base + p, self.cluster.addresses, self._pick(self.base + p),
                       client_id=f"w{self.seed}-p{self.base + p}-{id(self):x}", timeout=self.timeout,
                       follow_redirects=self.follow, secret=self.cluster.secret)
                for p in range(self.clients)
            ]

            async def refresh() -> None:
                while not self._stop.is_set():
                    for c in clients:
                        c.addresses = self.cluster.addresses
                    await asyncio.sleep(0.2)

            await asyncio.gather(refresh(), *(
                client_loop(c, random.Random(self.seed * 1000 + c.process), self.keys,
                            lambda: not self._stop.is_set(), self.counters, self._pick)
                for c in clients
            ))


def heal_all(c: Cluster) -> None:
    """Remove every fault: network rules, unplugged links, paused and dead nodes."""
    c.heal()
    for n in list(c.links_down):
        c.link_up(n)
    for n in c.nodes:
        p = c.procs[n]
        if p.is_paused():
            c.resume(n)
        if not p.is_alive():
            c.restart(n)


def converge(c: Cluster, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until one leader is followed by every member and all applied its commit index."""

    def done() -> dict[str, Any] | None:
        ld = c.leader(timeout=5.0)
        st = c.status(ld)
        if not st:
            return None
        for m in st["members"]:
            s = c.status(m["id"])
            if not s or s["last_applied"] < st["commit_index"] or s["leader_id"] != ld:
                return None
        return st

    return wait_for(done, timeout, interval=0.2, what="the cluster to converge after heal")


async def _final_reads(cluster: Cluster, history: History, keys: Sequence[str], process: int) -> None:
    ld = cluster.leader(timeout=10)
    async with aiohttp.ClientSession() as session:
        c = Client(session, history, process, cluster.addresses, ld, follow_redirects=True, timeout=10.0,
                   secret=cluster.secret)
        for k in keys:
            await c.read(k)


def replicas_agree(cluster: Cluster, keys: Sequence[str]) -> list[str]:
    out = []
    for k in keys:
        seen = {}
        for n in cluster.nodes:
            r = cluster.http(n, "GET", f"/v1/kv/{k}?stale=true")
            seen[n] = r.body.get("value") if r.status == 200 else None
        if len(set(seen.values())) > 1:
            out.append(f"replicas disagree on {k} after convergence: {seen}")
    return out


@dataclass
class Verdict:
    ok: bool
    problems: list[str]
    check: checker.CheckResult
    operations: int
    acknowledged: int
    lost: list[str] = field(default_factory=list)

    def explain(self) -> str:
        lines = [f"{self.operations} operations, {self.acknowledged} acknowledged writes checked"]
        if not self.check.ok:
            lines.append(self.check.explain())
        lines += self.problems
        return "\n".join(lines)


def verify(cluster: Cluster, history: History, keys: Sequence[str] = (),
           leader_samples: Sequence[tuple[str, int, str]] = (), timeout: float = 60.0) -> Verdict:
    """Heal, converge, read back, and judge the run (see the module docstring)."""
    problems: list[str] = []
    heal_all(cluster)
    keys = list(keys) or history.keys()
    try:
        converge(cluster, timeout)
    except (TimeoutError, ClusterError) as e:
        problems.append(f"no convergence after heal: {e}")
        result = checker.check(history, timeout=120)
        return Verdict(False, problems, result, len(history.operations()), 0)
    asyncio.run(_final_reads(cluster, history, keys, 100_000))
    problems += replicas_agree(cluster, keys)
    logs = invariants.gather_logs(cluster.members(), lambda n, p: cluster.http(n, "GET", p, timeout=10).body)
    problems += invariants.check_prefixes(logs)
    problems += invariants.check_duplicates(logs)
    lost, acked = invariants.check_acknowledged(history, logs)
    problems += lost
    problems += invariants.check_leaders(leader_samples)
    result = checker.check(history, timeout=120)
    ok = result.ok and not problems
    return Verdict(ok, problems, result, len(history.operations()), acked, lost)
