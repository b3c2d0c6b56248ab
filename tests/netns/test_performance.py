"""Performance under failures (issue 4): leader kill, leader isolation and
follower loss (a follower SIGKILLed) under a steady workload.

For each fault the run measures, from the recorded history, the throughput
(ok operations per second) before, during and after the fault, and the
unavailability window: the longest gap between consecutive acknowledged
writes around the fault. It writes them as ``perf.json`` and a plot
``throughput.svg`` (drawn here, no plotting library), with the history and
the event log, into ``runs/performance/<test name>/`` under the repo root
(``$RAFTNET_PERF_DIR/<test name>/`` when set).

The tests assert recovery within generous bounds only, never a speed: this
runs on a 2-core machine next to other tests.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.model.history import History, Operation, OpType
from harness.model.invariants import LeaderWatch
from harness.orchestration.cluster import Cluster
from harness.orchestration.local import wait_for
from harness.orchestration.report import buckets
from harness.orchestration.workload import Workload, verify
from tests.netns.conftest import Lab

pytestmark = [pytest.mark.netns, pytest.mark.slow]


ROOT = Path(__file__).resolve().parents[2]
PHASE_S = 3.0  # at least this long before, during and after the fault
MIN_OPS = 15  # and at least this many ok operations in the phases where the cluster is available
RECOVERY_BOUND_S = 15.0


def perf_dir(test_name: str) -> Path:
    base = Path(os.environ.get("RAFTNET_PERF_DIR") or ROOT / "runs" / "performance")
    out = base / test_name
    out.mkdir(parents=True, exist_ok=True)
    return out


# -- measuring (pure) -------------------------------------------------------------------------


def is_ok_write(o: Operation) -> bool:
    return (o.status == "ok" and o.ret is not None
            and (o.f in ("write", "delete") or (o.f == "cas" and o.output is True)))


@dataclass
class Marks:
    start: float  # monotonic: the workload runs
    inject: float  # the fault is being injected (the before-window ends)
    fault: float  # the fault is in place (the during-window starts)
    heal: float  # the fault is being undone (the after-window starts)
    end: float


def rate(ops: Sequence[Operation], a: float, b: float) -> float:
    n = sum(1 for o in ops if o.status == "ok" and o.ret is not None and a <= o.ret < b)
    return n / max(b - a, 1e-9)


def unavailability(ops: Sequence[Operation], fault: float, heal: float) -> tuple[float, float, float]:
    """The longest gap between consecutive acknowledged writes (by completion
    time) among the gaps that overlap [fault, heal]: (seconds, from, to)."""
    done = sorted(o.ret for o in ops if o.ret is not None and is_ok_write(o))
    best = (0.0, fault, fault)
    for a, b in itertools.pairwise(done):
        if b >= fault and a <= heal and b - a > best[0]:
            best = (b - a, a, b)
    return best


def recovery(ops: Sequence[Operation], fault: float) -> float | None:
    """Seconds from the fault being in place to the first acknowledged write invoked after that."""
    after = [o.ret for o in ops if o.ret is not None and is_ok_write(o) and o.call >= fault]
    return min(after) - fault if after else None


def measure(history: History, m: Marks) -> dict[str, Any]:
    ops = history.operations()
    gap, g_from, g_to = unavailability(ops, m.inject, m.heal)
    rec = recovery(ops, m.fault)
    rel = lambda t: round(t - m.start, 3)  # noqa: E731
    return {
        "phases_s": {"before": [0.0, rel(m.inject)], "during": [rel(m.fault), rel(m.heal)],
                     "after": [rel(m.heal), rel(m.end)]},
        "fault_window_s": [rel(m.inject), rel(m.heal)],
        "fault_injection_s": round(m.fault - m.inject, 3),
        "throughput_ok_per_s": {
            "before": round(rate(ops, m.start, m.inject), 2),
            "during": round(rate(ops, m.fault, m.heal), 2),
            "after": round(rate(ops, m.heal, m.end), 2),
        },
        "unavailability_s": round(gap, 3),
        "unavailability_window_s": [rel(g_from), rel(g_to)],
        "recovery_s": None if rec is None else round(rec, 3),
        "operations": {s: sum(1 for o in ops if o.status == s) for s in ("ok", "fail", "info")},
        "acknowledged_writes": sum(1 for o in ops if is_ok_write(o)),
        "series": [{k: round(v, 3) for k, v in r.items()} for r in buckets(ops, m.start, 0.5)],
    }


# -- the plot ---------------------------------------------------------------------------------


def render_svg(title: str, data: dict[str, Any]) -> str:
    """Ok ops/s per half second, the fault window shaded, the unavailability
    window hatched, the phase means as dashed lines."""
    width, height, left, right, top, bottom = 900, 320, 60, 20, 40, 40
    series = data["series"]
    t_end = max([data["phases_s"]["after"][1], *(r["t"] + 0.5 for r in series), 1.0])
    y_top = max([1.0, *(r["ops_per_s"] for r in series)]) * 1.1
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + t / t_end * pw

    def y(v: float) -> float:
        return top + ph - v / y_top * ph

    e = html.escape
    fa, fb = data["fault_window_s"]
    ua, ub = data["unavailability_window_s"]
    tp = data["throughput_ok_per_s"]
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' "
        f"font-size='11'>",
        f"<title>{e(title)}</title>",
        "<rect width='100%' height='100%' fill='white'/>",
        f"<text x='{left}' y='16' font-size='14'>{e(title)}</text>",
        f"<text x='{left}' y='32'>ok ops/s before {tp['before']:.1f}, during {tp['during']:.1f}, after "
        f"{tp['after']:.1f}; unavailable {data['unavailability_s']:.2f} s; recovery "
        f"{data['recovery_s'] if data['recovery_s'] is not None else 'none'} s</text>",
        f"<rect class='fault' x='{x(fa):.1f}' y='{top}' width='{max(1.0, x(fb) - x(fa)):.1f}' height='{ph}' "
        f"fill='#ffcdd2' opacity='0.7'><title>fault: {e(data['fault'])}</title></rect>",
        f"<rect class='unavailable' x='{x(ua):.1f}' y='{top}' width='{max(1.0, x(ub) - x(ua)):.1f}' height='{ph}' "
        f"fill='#b71c1c' opacity='0.25'><title>longest gap between acknowledged writes: "
        f"{data['unavailability_s']:.2f} s</title></rect>",
        f"<line x1='{left}' y1='{top + ph}' x2='{left + pw}' y2='{top + ph}' stroke='black'/>",
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + ph}' stroke='black'/>",
    ]
    step = max(1, round(t_end / 10))
    t = 0
    while t <= t_end:
        out.append(f"<line x1='{x(t):.1f}' y1='{top + ph}' x2='{x(t):.1f}' y2='{top + ph + 4}' stroke='black'/>")
        out.append(f"<text x='{x(t):.1f}' y='{top + ph + 16}' text-anchor='middle'>{t}s</text>")
        t += step
    for frac in (0.0, 0.5, 1.0):
        v = y_top / 1.1 * frac
        out.append(f"<text x='{left - 6}' y='{y(v) + 4:.1f}' text-anchor='end'>{v:.0f}</text>")
    out.append(f"<text x='12' y='{top + ph / 2:.0f}' transform='rotate(-90 12 {top + ph / 2:.0f})' "
               "text-anchor='middle'>ok ops/s</text>")
    for name in ("before", "during", "after"):
        a, b = data["phases_s"][name]
        v = tp[name]
        out.append(f"<line class='mean' x1='{x(a):.1f}' y1='{y(v):.1f}' x2='{x(b):.1f}' y2='{y(v):.1f}' "
                   f"stroke='#555' stroke-dasharray='4 3'><title>{name}: {v:.1f} ok ops/s</title></line>")
    pts = " ".join(f"{x(r['t'] + 0.25):.1f},{y(r['ops_per_s']):.1f}" for r in series)
    out.append(f"<polyline fill='none' stroke='#1565c0' stroke-width='1.5' points='{pts}'/>")
    out.append("</svg>")
    return "\n".join(out)


def write_results(out: Path, name: str, data: dict[str, Any], history: History, c: Cluster) -> None:
    (out / "perf.json").write_text(json.dumps(data, indent=2))
    (out / "throughput.svg").write_text(render_svg(f"{name}: {data['fault']}", data))
    history.write_jsonl(out / "history.jsonl")
    with open(out / "events.jsonl", "w") as f:
        for ev in c.events:
            f.write(json.dumps(ev.to_json()) + "\n")


# -- the run ----------------------------------------------------------------------------------


def ok_since(w: Workload, t: float) -> int:
    return sum(1 for e in list(w.history) if e.type is OpType.OK and e.time >= t)


def writes_invoked_after(w: Workload, t: float) -> bool:
    """An acknowledged write whose invocation came after ``t``: the cluster commits again."""
    pending: dict[int, float] = {}
    for e in list(w.history):
        if e.type is OpType.INVOKE:
            pending[e.process] = e.time
        elif e.process in pending:
            call = pending.pop(e.process)
            if e.type is OpType.OK and call >= t and (e.f in ("write", "delete") or (e.f == "cas" and e.value is True)):
                return True
    return False


def phase(w: Workload, since: float, min_ok: int, what: str, timeout: float = 60.0) -> None:
    """A measuring window: at least PHASE_S long and ``min_ok`` ok operations."""
    wait_for(lambda: time.monotonic() - since >= PHASE_S and ok_since(w, since) >= min_ok, timeout,
             interval=0.05, what=what)


def run_fault(request: pytest.FixtureRequest, cluster: Lab, fault: str, start: Callable[[Cluster], str],
              end: Callable[[Cluster, str], None], seed: int) -> dict[str, Any]:
    c = cluster(3)
    c.leader(timeout=30)
    w = cluster.workload(c, clients=4, keys=3, seed=seed)
    with LeaderWatch(c.status, lambda: list(c.nodes)) as lw, w:
        t_start = time.monotonic()
        phase(w, t_start, MIN_OPS, "the before-fault window")
        t_inject = time.monotonic()
        target = start(c)
        t_fault = time.monotonic()
        # during: the cluster must commit again (a write invoked after the fault acknowledged)
        wait_for(lambda: writes_invoked_after(w, t_fault), 60, interval=0.05, what=f"writes to commit after {fault}")
        wait_for(lambda: time.monotonic() - t_fault >= PHASE_S, 30, interval=0.05, what="the fault window")
        t_heal = time.monotonic()
        end(c, target)
        phase(w, t_heal, MIN_OPS, "the after-fault window")
        t_end = time.monotonic()
    v = verify(c, w.history, w.keys, lw.samples)
    data = {"test": request.node.name, "fault": f"{fault} {target}", "nodes": len(c.nodes), "clients": w.clients,
            **measure(w.history, Marks(t_start, t_inject, t_fault, t_heal, t_end)), "verdict_ok": v.ok,
            "problems": v.problems}
    out = perf_dir(request.node.name)
    write_results(out, request.node.name, data, w.history, c)
    assert (out / "perf.json").exists() and (out / "throughput.svg").exists()
    assert data["recovery_s"] is not None and data["recovery_s"] <= RECOVERY_BOUND_S, data
    assert data["throughput_ok_per_s"]["before"] > 0 and data["throughput_ok_per_s"]["after"] > 0, data
    assert v.ok, v.explain()
    return data


def test_performance_leader_kill(request: pytest.FixtureRequest, cluster: Lab) -> None:
    def kill(c: Cluster) -> str:
        ld = c.leader(timeout=30)
        c.kill(ld)
        return ld

    data = run_fault(request, cluster, "kill leader", kill, lambda c, n: c.restart(n), seed=21)
    assert data["unavailability_s"] > 0


def test_performance_leader_isolation(request: pytest.FixtureRequest, cluster: Lab) -> None:
    def isolate(c: Cluster) -> str:
        ld = c.leader(timeout=30)
        c.isolate(ld)
        return ld

    data = run_fault(request, cluster, "isolate leader", isolate, lambda c, n: c.heal(), seed=22)
    assert data["unavailability_s"] > 0


def test_performance_follower_loss(request: pytest.FixtureRequest, cluster: Lab) -> None:
    def kill_follower(c: Cluster) -> str:
        ld = c.leader(timeout=30)
        f = next(n for n in c.nodes if n != ld)
        c.kill(f)
        return f

    data = run_fault(request, cluster, "kill follower", kill_follower, lambda c, n: c.restart(n), seed=23)
    assert data["throughput_ok_per_s"]["during"] > 0, data


# -- the measuring itself, on a made-up history (no cluster) --------------------------------------


def test_measure_on_a_made_up_history(tmp_path: Path) -> None:
    h = History()
    t = 1000.0
    # one write every 0.1 s, none invoked strictly between 2.0 and 3.5 (the fault at 2.2, healed at 4.0)
    k = 0
    while t < 1006.0:
        if not 1002.0 < t < 1003.5:
            h.invoke(0, "write", "k", f"v{k}", t)
            h.complete(0, OpType.OK, None, t + 0.05, index=k + 1)
            k += 1
        t = round(t + 0.1, 3)
    d = measure(h, Marks(1000.0, 1002.2, 1002.2, 1004.0, 1006.0))
    assert d["unavailability_s"] == pytest.approx(1.5, abs=0.02)
    a, b = d["unavailability_window_s"]
    assert a == pytest.approx(2.05, abs=0.02) and b == pytest.approx(3.55, abs=0.02)
    assert d["recovery_s"] == pytest.approx(1.35, abs=0.02)
    assert d["throughput_ok_per_s"]["before"] == pytest.approx(10.0, abs=1.0)
    assert d["throughput_ok_per_s"]["after"] == pytest.approx(10.0, abs=1.0)
    assert 0 < d["throughput_ok_per_s"]["during"] < 6
    svg = render_svg("made up", {**d, "fault": "kill leader n1"})
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "class='fault'" in svg and "class='unavailable'" in svg and "<polyline" in svg
