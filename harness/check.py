"""``raftnet check``: a whole randomized nemesis run on its own cluster.

Concurrent clients (each bound to one node, Jepsen-style) read, write,
compare-and-set and delete a few keys while a seeded nemesis cycles through
faults with quiet periods between them. Then everything is healed, the
cluster converges, every key is read back, and the run is judged:
linearizability of the whole history, nothing acknowledged lost, nothing
applied twice, one leader per term, identical committed prefixes. The last
line printed is the verdict; the run folder holds the history, the event
log, the node logs and report.html.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from . import checker, invariants, nemesis
from .client import Client
from .cluster import Cluster, ClusterError
from .history import History, OpType
from .local import wait_for
from .report import RunReport, write_run


@dataclass
class CheckConfig:
    nodes: int = 5
    time: float = 60.0
    clients: int = 10
    keys: int = 5
    kinds: tuple[str, ...] = nemesis.KINDS
    seed: int = 0
    out: Path = Path("runs/check")
    node_args: tuple[str, ...] = ("--snapshot-every", "2000")


@dataclass
class CheckResult:
    ok: bool
    verdict: str
    out: Path
    ops: int
    faults: int
    problems: list[str] = field(default_factory=list)


class _Counters:
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


async def _client_loop(c: Client, rng: random.Random, keys: list[str], stop: float, counters: _Counters,
                       pick_node: Callable[[int], str | None]) -> None:
    """One Jepsen-style process: reads, writes of unique values, cas from the last value it saw, deletes."""
    known: dict[str, str | None] = {}
    n = 0
    while time.monotonic() < stop:
        node = pick_node(c.process)
        if node is None:
            await asyncio.sleep(0.05)
            continue
        c.node = node
        key = rng.choice(keys)
        r = rng.random()
        n += 1
        value = f"{c.process}-{n}"
        if r < 0.45:
            out = await c.read(key)
            if out.type is OpType.OK:
                known[key] = out.value
        elif r < 0.80:
            out = await c.write(key, value)
            if out.type is OpType.OK:
                known[key] = value
        elif r < 0.95:
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


class _Nemesis(threading.Thread):
    def __init__(self, cluster: Cluster, plan: list[nemesis.Fault], t0: float, deadline: float,
                 counters: _Counters, log: Callable[[str], None]) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.cluster, self.plan, self.t0, self.deadline = cluster, plan, t0, deadline
        self.counters, self.log = counters, log
        self.done = 0
        self.errors: list[str] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        for f in self.plan:
            if self.stop_flag.wait(max(0.0, self.t0 + f.at - time.monotonic())):
                return
            try:
                applied = nemesis.apply(self.cluster, f)
            except (ClusterError, TimeoutError, Exception) as e:  # a fault that cannot be applied is skipped
                self.errors.append(f"{f.describe()}: {e}")
                self.log(f"nemesis: could not start {f.describe()}: {e}")
                continue
            self.counters.fault = applied.text
            self.log(f"nemesis: {applied.text}")
            self.done += 1
            self.stop_flag.wait(max(0.0, min(self.t0 + f.at + f.duration, self.deadline) - time.monotonic()))
            try:
                said = nemesis.undo(self.cluster, applied)
                self.log(f"nemesis: end of {applied.text} ({said})")
            except Exception as e:
                self.errors.append(f"undo {applied.text}: {e}")
                self.log(f"nemesis: could not end {applied.text}: {e}")
            self.counters.fault = "none"


def _heal_all(c: Cluster) -> None:
    c.heal()
    for n in list(c.links_down):
        c.link_up(n)
    for n in c.nodes:
        p = c.procs[n]
        if p.is_paused():
            c.resume(n)
        if not p.is_alive():
            c.restart(n)


def _converge(c: Cluster, timeout: float = 60.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        ld = c.leader(timeout=5.0)
        st = c.status(ld)
        if not st:
            return None
        target = st["commit_index"]
        members = [m["id"] for m in st["members"]]
        for m in members:
            s = c.status(m)
            if not s or s["last_applied"] < target or s["leader_id"] != ld:
                return None
        return st

    return wait_for(done, timeout, interval=0.2, what="the cluster to converge after heal")


def run_check(cfg: CheckConfig, out_stream: TextIO = sys.stdout) -> CheckResult:
    tty = out_stream.isatty()
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        if tty:
            out_stream.write("\r\033[K")
        out_stream.write(line + "\n")
        out_stream.flush()

    log(f"raftnet check: {cfg.nodes} nodes, {cfg.clients} clients, {cfg.keys} keys, {cfg.time:.0f} s, "
        f"nemesis {','.join(cfg.kinds) or 'none'}, seed {cfg.seed}, output {out}")
    history = History()
    counters = _Counters()
    problems: list[str] = []
    cluster = Cluster(cfg.nodes, workdir=out / "cluster", name=f"check-{cfg.seed}-{int(time.time())}",
                      node_args=cfg.node_args)
    plan = nemesis.schedule(cfg.seed, cfg.time, cfg.kinds, [f"n{i}" for i in range(1, cfg.nodes + 1)])
    with cluster:
        cluster.leader(timeout=30)
        log(f"cluster up in slot {cluster.topo.slot if cluster.topo else '?'}: {', '.join(cluster.nodes)}; "
            f"{len(plan)} faults planned")
        t0 = time.monotonic()
        stop = t0 + cfg.time
        watch = invariants.LeaderWatch(cluster.status, lambda: list(cluster.nodes))
        nem = _Nemesis(cluster, plan, t0, stop, counters, log)
        with watch:
            nem.start()
            asyncio.run(_drive_clients(cfg, cluster, history, counters, t0, stop, log, tty, out_stream))
            nem.stop_flag.set()
            nem.join(120)
        log("healing and waiting for the cluster to converge")
        _heal_all(cluster)
        try:
            st = _converge(cluster)
        except (TimeoutError, ClusterError) as e:
            problems.append(f"no convergence after heal: {e}")
            st = None
        ops_before_final = len(history)
        if st is not None:
            asyncio.run(_final_reads(cluster, history, cfg.keys))
            problems += _replicas_agree(cluster, cfg.keys)
            logs = invariants.gather_logs(cluster.members(), lambda n, p: cluster.http(n, "GET", p, timeout=10).body)
            problems += invariants.check_prefixes(logs)
            problems += invariants.check_duplicates(logs)
            lost, acked = invariants.check_acknowledged(history, logs)
            problems += lost
        else:
            lost, acked = [], 0
        problems += watch.violations()
        log(f"checking {len(history.operations())} operations for linearizability")
        result = checker.check(history, timeout=120)
        node_logs = {n: cluster.tail(n, 400) for n in [*cluster.nodes, *sorted(cluster.removed)]}
    ops = len(history.operations())
    faults = nem.done
    if result.result is checker.Result.OK and not problems:
        verdict = f"VERDICT: linearizable, 0 acknowledged writes lost, {ops} ops, {faults} faults"
        ok = True
    else:
        what = []
        if result.result is checker.Result.ILLEGAL:
            what.append(f"NOT linearizable on key {result.key!r}")
        elif result.result is checker.Result.UNKNOWN:
            what.append("linearizability unknown (checker budget exhausted)")
        else:
            what.append("linearizable")
        what.append(f"{len(lost)} acknowledged writes lost")
        if problems:
            what.append(f"{len(problems)} invariant violations: {problems[0]}")
        verdict = "VERDICT: FAILED: " + ", ".join(what) + f", {ops} ops, {faults} faults"
        ok = False
    summary = {"nodes": cfg.nodes, "clients": cfg.clients, "keys": cfg.keys, "seconds": cfg.time, "seed": cfg.seed,
               "nemesis": ",".join(cfg.kinds), "operations": ops, "ok": counters.ok, "fail": counters.fail,
               "info": counters.info, "faults": faults, "acknowledged writes checked": acked,
               "final reads": len(history) - ops_before_final, "problems": problems,
               "nemesis errors": nem.errors}
    report = write_run(out, RunReport(
        title=f"raftnet check, seed {cfg.seed}", verdict=verdict, ok=ok, history=history,
        events=cluster.events, t0=cluster.t0, summary=summary,
        violation=result.window if not result.ok else (), violation_key=result.key, node_logs=node_logs,
    ))
    if not result.ok:
        log(result.explain())
    for p in problems[:10]:
        log(f"problem: {p}")
    log(f"report: {report}")
    log(verdict)
    return CheckResult(ok, verdict, out, ops, faults, problems)


async def _drive_clients(cfg: CheckConfig, cluster: Cluster, history: History, counters: _Counters, t0: float,
                         stop: float, log: Callable[[str], None], tty: bool, stream: TextIO) -> None:
    keys = [f"k{i}" for i in range(cfg.keys)]
    rng = random.Random(cfg.seed)

    def pick(process: int) -> str | None:
        members = list(cluster.nodes)
        return members[process % len(members)] if members else None

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients = [Client(session, history, p, cluster.addresses, pick(p), client_id=f"check{cfg.seed}-p{p}",
                          timeout=5.0, clock=time.monotonic, follow_redirects=True) for p in range(cfg.clients)]

        async def refresh() -> None:
            last = (0, 0, 0)
            last_t = time.monotonic()
            next_plain = 0.0
            while time.monotonic() < stop:
                await asyncio.sleep(0.5)
                for c in clients:
                    c.addresses = cluster.addresses
                now = time.monotonic()
                cur = (counters.ok, counters.fail, counters.info)
                rate = [(a - b) / (now - last_t) for a, b in zip(cur, last)]
                last, last_t = cur, now
                sts = [s for s in (cluster.status(n, timeout=0.3) for n in cluster.nodes[:1]) if s]
                lead = f"{sts[0]['leader_id']}/t{sts[0]['term']}" if sts else "?"
                line = (f"{now - t0:5.1f}s  leader {lead:<8} ops/s ok {rate[0]:5.0f} fail {rate[1]:4.0f} "
                        f"info {rate[2]:4.0f}  fault: {counters.fault}")
                if tty:
                    stream.write("\r\033[K" + line)
                    stream.flush()
                elif now >= next_plain:
                    stream.write(line + "\n")
                    stream.flush()
                    next_plain = now + 5.0
            if tty:
                stream.write("\r\033[K")

        loops = [_client_loop(c, random.Random(cfg.seed * 1000 + c.process), keys, stop, counters, pick)
                 for c in clients]
        await asyncio.gather(refresh(), *loops)


async def _final_reads(cluster: Cluster, history: History, keys: int) -> None:
    """Read every key linearizably through the leader, so the history ends with the final state."""
    ld = cluster.leader(timeout=10)
    async with aiohttp.ClientSession() as session:
        c = Client(session, history, 10_000, cluster.addresses, ld, follow_redirects=True, timeout=10.0)
        for i in range(keys):
            await c.read(f"k{i}")


def _replicas_agree(cluster: Cluster, keys: int) -> list[str]:
    out = []
    for i in range(keys):
        seen = {}
        for n in cluster.nodes:
            r = cluster.http(n, "GET", f"/v1/kv/k{i}?stale=true")
            seen[n] = r.body.get("value") if r.status == 200 else None
        if len(set(seen.values())) > 1:
            out.append(f"replicas disagree on k{i} after convergence: {seen}")
    return out
