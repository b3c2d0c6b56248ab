"""``raftnet check``: a whole randomized nemesis run on its own cluster.

Concurrent clients (each bound to one node, Jepsen-style) read, write,
compare-and-set and delete a few keys while a seeded nemesis cycles through
faults with quiet periods between them. Then everything is healed, the
cluster converges, every key is read back, and the run is judged:
linearizability of the whole history, nothing acknowledged lost, nothing
applied twice, one leader per term, identical committed prefixes. The last
line printed is the verdict; the run folder holds the history, the event
log, the nodes' status samples, the node logs and report.html (which
``raftnet analyze FOLDER/history.jsonl`` can write again). Run folders go to ``runs/`` by default
(``default_out``), and ``runs/latest`` links to the newest (``link_latest``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from harness.lab import clock as lab_clock
from harness.lab import slownet
from harness.model import checker, invariants
from harness.orchestration import nemesis
from harness.orchestration.cluster import Cluster, ClusterError
from harness.orchestration.loopback import LoopbackCluster
from harness.orchestration.protocol import LabCluster
from harness.orchestration.report import RunReport, write_run
from harness.orchestration.workload import Counters, Workload, verify
from harness.systems.base import System
from harness.systems.raftnet import RaftnetSystem

RUNS = Path("runs")


def default_out(seed: int, runs: Path = RUNS) -> Path:
    """Where a run goes without ``--out``: ``runs/check-DATE-TIME-seedSEED``."""
    return runs / f"check-{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"


def link_latest(out: Path) -> Path:
    """Point ``latest`` next to ``out`` at it (a relative symlink, replaced atomically); return the link."""
    out.mkdir(parents=True, exist_ok=True)
    link = out.parent / "latest"
    tmp = out.parent / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(out.name, tmp)
    os.replace(tmp, link)
    return link


@dataclass
class CheckConfig:
    nodes: int = 5
    time: float = 60.0
    clients: int = 10
    keys: int = 5
    kinds: tuple[str, ...] = nemesis.KINDS
    seed: int = 0
    out: Path = Path("runs/check")
    node_args: tuple[str, ...] = ("--snapshot-every", "2000", "--snapshot-catchup-entries", "500")
    power: bool = False  # data dirs on powerfs disks (needed by the power nemesis)
    system: System | None = None  # None: raftnet's node with node_args
    loopback: bool = False  # on 127.0.0.1 without namespaces (no root): process faults only


@dataclass
class CheckResult:
    ok: bool
    verdict: str
    out: Path
    ops: int
    faults: int
    problems: list[str] = field(default_factory=list)


class _Nemesis(threading.Thread):
    def __init__(self, cluster: LabCluster, plan: list[nemesis.Fault], t0: float, deadline: float,
                 counters: Counters, log: Callable[[str], None]) -> None:
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


def run_check(cfg: CheckConfig, out_stream: TextIO = sys.stdout) -> CheckResult:
    tty = out_stream.isatty()
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        out_stream.write(("\r\033[K" if tty else "") + line + "\n")
        out_stream.flush()

    system = cfg.system or RaftnetSystem(cfg.node_args)
    kinds = cfg.kinds
    left_out = nemesis.unsupported(system, kinds)
    if cfg.loopback:
        for k in kinds:
            if k not in ("kill", "pause"):
                left_out.setdefault(k, "needs network namespaces (root or rootless mode), not 127.0.0.1")
    if "clock" in kinds and (reason := lab_clock.unavailable_reason()):
        left_out.setdefault("clock", reason)
    if "slow" in kinds and (reason := slownet.unavailable_reason()):
        left_out.setdefault("slow", reason)
    for kind, why in left_out.items():
        log(f"nemesis: {kind} left out: {why}")
        kinds = tuple(k for k in kinds if k != kind)
    log(f"raftnet check: {system.describe()}, {cfg.nodes} nodes, {cfg.clients} clients, {cfg.keys} keys, "
        f"{cfg.time:.0f} s, nemesis {','.join(kinds) or 'none'}, seed {cfg.seed}, output {out}")
    cluster: LabCluster
    if cfg.loopback:
        cluster = LoopbackCluster(cfg.nodes, workdir=out / "cluster", system=system)
    else:
        cluster = Cluster(cfg.nodes, workdir=out / "cluster", name=f"check-{cfg.seed}-{os.getpid()}",
                          system=system, power=cfg.power or "power" in kinds, clock="clock" in kinds)
    plan = nemesis.schedule(cfg.seed, cfg.time, kinds, [f"n{i}" for i in range(1, cfg.nodes + 1)])
    with cluster:
        if cluster.knows_leader:
            cluster.leader(timeout=30)
        log(f"cluster up in {cluster.placement()}: {', '.join(cluster.nodes)}; "
            f"{len(plan)} faults planned")
        if "slow" in kinds and isinstance(cluster, Cluster):
            log(f"nemesis: slow networks through {cluster.slow_mechanism or cluster.slow_unavailable}")
        work = Workload(cluster, clients=cfg.clients, keys=cfg.keys, seed=cfg.seed)
        watch = invariants.LeaderWatch(cluster.node_status, lambda: list(cluster.nodes))
        t0 = time.monotonic()
        stop = t0 + cfg.time
        nem = _Nemesis(cluster, plan, t0, stop, work.counters, log)
        with watch, work:
            nem.start()
            _live_view(cluster, work.counters, t0, stop, tty, out_stream)
            nem.stop_flag.set()
            nem.join(120)
        log("healing, waiting for the cluster to converge, reading every key back, checking")
        v = verify(cluster, work.history, work.keys, watch.samples)
        node_logs = {n: cluster.tail(n, 400) for n in [*cluster.nodes, *sorted(cluster.removed)]}
    c = work.counters
    if v.ok:
        verdict = f"VERDICT: linearizable, 0 acknowledged writes lost, {v.operations} ops, {nem.done} faults"
    else:
        culprit = v.check.culprit
        stale = (f" (a stale read? {culprit} fits no order)" if culprit is not None and culprit.f == "read"
                 else f" ({culprit} fits no order)" if culprit is not None else "")
        what = {checker.Result.ILLEGAL: f"NOT linearizable on key {v.check.key!r}{stale}",
                checker.Result.UNKNOWN: "linearizability unknown (checker budget exhausted)",
                checker.Result.OK: "linearizable"}[v.check.result]
        extra = f", {len(v.problems)} invariant violations: {v.problems[0]}" if v.problems else ""
        verdict = (f"VERDICT: FAILED: {what}, {len(v.lost)} acknowledged writes lost{extra}, "
                   f"{v.operations} ops, {nem.done} faults")
    summary = {"system": system.describe(),
               "nodes": cfg.nodes, "clients": cfg.clients, "keys": cfg.keys, "seconds": cfg.time, "seed": cfg.seed,
               "nemesis": ",".join(kinds), "operations": v.operations, "ok": c.ok, "fail": c.fail,
               "info": c.info, "faults": nem.done, "acknowledged writes checked": v.acknowledged,
               "problems": v.problems, "nemesis errors": nem.errors}
    status = [replace(s, time=round(s.time - cluster.t0, 4)) for s in watch.timeline] if cluster.knows_leader else []
    report = write_run(out, RunReport(
        title=f"raftnet check, seed {cfg.seed}", verdict=verdict, ok=v.ok, history=work.history,
        events=cluster.events, t0=cluster.t0, summary=summary,
        violation=v.check.window if not v.check.ok else (), violation_key=v.check.key, node_logs=node_logs,
        status=status, check=v.check,
    ))
    if not v.check.ok:
        log(v.check.explain())
    for p in v.problems[:10]:
        log(f"problem: {p}")
    log(f"report: {report}")
    log(verdict)
    return CheckResult(v.ok, verdict, out, v.operations, nem.done, v.problems)


def _live_view(cluster: LabCluster, counters: Counters, t0: float, stop: float, tty: bool, stream: TextIO) -> None:
    """One line refreshed in place on a terminal; a plain line every 5 s otherwise."""
    last, last_t, next_plain = (0, 0, 0), time.monotonic(), 0.0
    while (now := time.monotonic()) < stop:
        time.sleep(min(0.5, max(0.0, stop - now)))
        now = time.monotonic()
        cur = (counters.ok, counters.fail, counters.info)
        rate = [(a - b) / max(1e-3, now - last_t) for a, b in zip(cur, last, strict=True)]
        last, last_t = cur, now
        lead = "?"
        for n in cluster.nodes:
            st = cluster.node_status(n, timeout=0.3)
            if st and st.leader:
                lead = f"{st.leader}/t{st.term}"
                break
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
