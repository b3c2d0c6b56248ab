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

from harness.model import checker, invariants
from harness.model.history import History, OpType
from harness.orchestration.cluster import ClusterError
from harness.orchestration.local import wait_for
from harness.orchestration.protocol import LabCluster
from harness.orchestration.recorder import Recorder
from harness.systems.base import Feature, NotSupportedError, Op


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


async def client_loop(c: Recorder, rng: random.Random, keys: Sequence[str], running: Callable[[], bool],
                      counters: Counters, pick_node: Callable[[int], str | None],
                      mix: tuple[float, float, float] = (0.45, 0.80, 0.95),
                      ops: frozenset[str] = frozenset({"read", "write", "cas", "delete"})) -> None:
    """One process: reads, writes of unique values, cas from the last value it saw, deletes
    (only the ``ops`` the system offers; the others' share goes to writes)."""
    known: dict[str, str | None] = {}
    slot = c.process  # the client's first process id: its node and its values stay after an info
    n = 0
    while running():
        node = pick_node(slot)
        if node is None:
            await asyncio.sleep(0.05)
            continue
        c.node = node
        key = rng.choice(keys)
        r = rng.random()
        n += 1
        value = f"{slot}-{n}"
        kind = "read" if r < mix[0] else "write" if r < mix[1] else "cas" if r < mix[2] else "delete"
        if kind not in ops:
            kind = "write"
        if kind == "read":
            out = await c.read(key)
            if out.type is OpType.OK:
                known[key] = out.value
        elif kind == "write":
            out = await c.write(key, value)
            if out.type is OpType.OK:
                known[key] = value
        elif kind == "cas":
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

    def __init__(self, cluster: LabCluster, clients: int = 4, keys: int = 3, seed: int = 0,
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
        system = self.cluster.system
        endpoints = self.cluster.endpoints()
        ops = frozenset(getattr(system, "ops", ("read", "write", "cas", "delete")))
        clients = [
            Recorder(system.client(timeout=self.timeout, client_id=f"w{self.seed}-p{self.base + p}-{id(self):x}",
                                   follow_redirects=self.follow),
                     self.history, self.base + p, lambda: endpoints, self._pick(self.base + p), stride=self.clients)
            for p in range(self.clients)
        ]

        async def refresh() -> None:
            nonlocal endpoints
            while not self._stop.is_set():
                endpoints = self.cluster.endpoints()
                await asyncio.sleep(0.2)

        try:
            await asyncio.gather(refresh(), *(
                client_loop(c, random.Random(self.seed * 1000 + c.process), self.keys,
                            lambda: not self._stop.is_set(), self.counters, self._pick, ops=ops)
                for c in clients
            ))
        finally:
            for c in clients:
                await c.close()


def heal_all(c: LabCluster) -> None:
    """Remove every fault: network rules, unplugged links, paused and dead nodes."""
    c.recover()


def converge(c: LabCluster, timeout: float = 60.0) -> None:
    """Wait until one leader is followed by every member and all applied its commit index (as far as
    the system reports it); without a status hook: until every node serves and a read succeeds."""
    if not c.knows_leader:
        _probe_reads(c, timeout)
        return

    def done() -> bool:
        ld = c.leader(timeout=5.0)
        st = c.node_status(ld)
        if not st:
            return False
        for m in [m for m, _v in st.members] if st.members else list(c.nodes):
            s = c.node_status(m)
            if not s or s.leader != ld:
                return False
            if None not in (s.applied_index, st.commit_index) and s.applied_index < st.commit_index:  # type: ignore[operator]
                return False
        return True

    wait_for(done, timeout, interval=0.2, what="the cluster to converge after heal")


def _probe_reads(c: LabCluster, timeout: float) -> None:
    async def once() -> bool:
        kv = c.system.client(timeout=2.0, client_id="converge", follow_redirects=True)
        try:
            eps = c.endpoints()
            for n in c.nodes:
                if not c.system.ready(eps[n], 1.0):
                    return False
            for n in c.nodes:
                if (await kv.call(n, Op("read", "__converge__"), eps)).type is OpType.OK:
                    return True
            return False
        finally:
            await kv.close()

    wait_for(lambda: asyncio.run(once()), timeout, interval=0.2, what="every node to serve after heal")


async def _final_reads(cluster: LabCluster, history: History, keys: Sequence[str], process: int) -> None:
    """Read every key back (recorded), through the leader when known; a failed read is tried again."""
    ld = cluster.leader(timeout=10) if cluster.knows_leader else None
    kv = cluster.system.client(timeout=10.0, client_id=f"final-{process}", follow_redirects=True)
    rec = Recorder(kv, history, process, cluster.endpoints, ld)
    try:
        for k in keys:
            for attempt in range(20):
                rec.node = ld or cluster.nodes[attempt % len(cluster.nodes)]
                if (await rec.read(k)).type is OpType.OK:
                    break
                await asyncio.sleep(0.2)
    finally:
        await rec.close()


def replicas_agree(cluster: LabCluster, keys: Sequence[str]) -> list[str]:
    """After convergence every node's own (local) value of every key is the same."""
    if Feature.LOCAL_READ not in cluster.system.features:
        return []
    out = []
    for k in keys:
        seen = {n: cluster.system.local_read(cluster.endpoint(n), k, 10.0) for n in cluster.nodes}
        if len(set(map(repr, seen.values()))) > 1:
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


def verify(cluster: LabCluster, history: History, keys: Sequence[str] = (),
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
    lost: list[str] = []
    if Feature.LOG in cluster.system.features:  # the white-box checks
        try:
            logs = {n: cluster.system.log(cluster.endpoint(n), 10.0) for n in cluster.members()}
        except NotSupportedError:
            logs = {}
        problems += invariants.check_prefixes(logs)
        problems += invariants.check_duplicates(logs)
        lost, acked = invariants.check_acknowledged(history, logs)
        problems += lost
    else:  # black box: an acknowledged write that is gone shows as a read the checker cannot explain
        acked = sum(1 for op in history.operations()
                    if op.status == "ok" and op.f != "read" and not (op.f == "cas" and op.output is False))
    problems += invariants.check_leaders(leader_samples)
    result = checker.check(history, timeout=120)
    ok = result.ok and not problems
    return Verdict(ok, problems, result, len(history.operations()), acked, lost)
