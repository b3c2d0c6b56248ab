"""A run's artefacts: history, event log, verdict, and a self-contained HTML
report (inline SVG, no scripts fetched from anywhere).

The report shows: the verdict; a timeline of operations per client with the
fault windows shaded (like Porcupine's and Jepsen's timelines); throughput
and latency over time with the faults marked; the event log; and, for a
violation, the minimal window of operations that shows it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.model.history import History, Operation

COLORS = {"ok": "#2e7d32", "fail": "#9e9e9e", "info": "#ef6c00"}


@dataclass(frozen=True)
class EventRecord:
    time: float  # seconds since the start of the run (monotonic)
    kind: str  # "fault", "heal", "node", "note"
    text: str
    end: float | None = None  # for a fault: when it was healed

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "text": self.text, "end": self.end}


@dataclass
class RunReport:
    title: str
    verdict: str
    ok: bool
    history: History
    events: list[EventRecord]
    t0: float  # monotonic time of the run's start
    summary: dict[str, Any] = field(default_factory=dict)
    violation: Sequence[Operation] = ()
    violation_key: str | None = None
    node_logs: dict[str, str] = field(default_factory=dict)


def buckets(ops: Sequence[Operation], t0: float, width: float = 1.0) -> list[dict[str, float]]:
    """Per ``width``-second bucket: ok/fail/info completions and mean/max latency of ok ops."""
    if not ops:
        return []
    end = max((o.ret if o.ret is not None else o.call) for o in ops) - t0
    n = int(end / width) + 1
    rows = [{"t": i * width, "ok": 0, "fail": 0, "info": 0, "lat_sum": 0.0, "lat_max": 0.0} for i in range(n)]
    for o in ops:
        at = (o.ret if o.ret is not None else o.call) - t0
        r = rows[min(n - 1, max(0, int(at / width)))]
        r[o.status] += 1
        if o.status == "ok" and o.ret is not None:
            lat = o.ret - o.call
            r["lat_sum"] += lat
            r["lat_max"] = max(r["lat_max"], lat)
    for r in rows:
        r["lat_mean_ms"] = 1000 * r["lat_sum"] / r["ok"] if r["ok"] else 0.0
        r["lat_max_ms"] = 1000 * r["lat_max"]
        r["ops_per_s"] = (r["ok"]) / width
        del r["lat_sum"], r["lat_max"]
    return rows


def write_run(out: Path, rep: RunReport) -> Path:
    """Write history.jsonl, events.jsonl, summary.json, node logs and report.html into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rep.history.write_jsonl(out / "history.jsonl")
    with open(out / "events.jsonl", "w") as f:
        for e in rep.events:
            f.write(json.dumps(e.to_json()) + "\n")
    ops = rep.history.operations()
    summary = {**rep.summary, "verdict": rep.verdict, "ok": rep.ok, "throughput": buckets(ops, rep.t0)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for node, text in rep.node_logs.items():
        (logs / f"{node}.log").write_text(text)
    path = out / "report.html"
    path.write_text(render_html(rep, ops))
    return path


def render_html(rep: RunReport, ops: Sequence[Operation]) -> str:
    e = html.escape
    t_end = max([(o.ret or o.call) - rep.t0 for o in ops] + [ev.end or ev.time for ev in rep.events] + [1.0])
    faults = [ev for ev in rep.events if ev.kind == "fault"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(rep.title)}</title>",
        "<style>body{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:1200px}"
        "h1{font-size:20px}h2{font-size:16px;margin-top:28px}.ok{color:#2e7d32}.bad{color:#c62828}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;font-size:12px}"
        "pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:300px;font-size:12px}"
        ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}</style>",
        "</head><body>",
        f"<h1>{e(rep.title)}</h1>",
        f"<p class='{'ok' if rep.ok else 'bad'}'><b>{e(rep.verdict)}</b></p>",
        "<table>" + "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rep.summary.items()
                            if not isinstance(v, (list, dict))) + "</table>",
    ]
    if rep.violation:
        parts.append(f"<h2>Violation on key {e(str(rep.violation_key))}: the minimal window</h2><pre>")
        parts += [e(str(o)) + "\n" for o in rep.violation]
        parts.append("</pre>")
        parts.append(_timeline(list(rep.violation), faults, rep.t0, None, "violation"))
    parts.append("<h2>Operations per client</h2><div class='legend'>"
                 + "".join(f"<span style='background:{c}'></span>{k}" for k, c in COLORS.items())
                 + "<span style='background:#ffcdd2'></span>fault window</div>")
    parts.append(_timeline(list(ops), faults, rep.t0, t_end, "timeline"))
    rows = buckets(ops, rep.t0)
    parts.append("<h2>Throughput (ok ops/s) and latency (mean and max, ms) over time</h2>")
    parts.append(_series(rows, faults, t_end))
    parts.append("<h2>Event log</h2><table><tr><th>t (s)</th><th>what</th><th>until</th></tr>")
    for ev in rep.events:
        until = f"{ev.end:.2f}" if ev.end is not None else ""
        parts.append(f"<tr><td>{ev.time:.2f}</td><td>{e(ev.kind)}: {e(ev.text)}</td><td>{until}</td></tr>")
    parts.append("</table>")
    for node, text in sorted(rep.node_logs.items()):
        tail = "\n".join(text.splitlines()[-80:])
        parts.append(f"<h2>Log of {e(node)} (last 80 lines)</h2><pre>{e(tail)}</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def _timeline(ops: list[Operation], faults: list[EventRecord], t0: float, t_end: float | None, name: str) -> str:
    if not ops:
        return "<p>no operations</p>"
    start = min(o.call for o in ops) - t0 if t_end is None else 0.0
    end = t_end if t_end is not None else max((o.ret or o.call) for o in ops) - t0 + 0.05
    procs = sorted({o.process for o in ops})
    row = {p: i for i, p in enumerate(procs)}
    width, lane = 1100, 14
    height = lane * len(procs) + 30
    span = max(end - start, 1e-6)

    def x(t: float) -> float:
        return 60 + (t - start) / span * (width - 70)

    svg = [f"<svg id='{name}' width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    for f in faults:
        a, b = f.time, f.end if f.end is not None else end
        if b < start or a > end:
            continue
        svg.append(f"<rect x='{x(max(a, start)):.1f}' y='0' width='{max(1, x(min(b, end)) - x(max(a, start))):.1f}' "
                   f"height='{height - 20}' fill='#ffcdd2' opacity='0.6'><title>{html.escape(f.text)}</title></rect>")
    for p in procs:
        y = row[p] * lane + 4
        svg.append(f"<text x='2' y='{y + 9}' font-size='10'>p{p}</text>")
    for o in ops:
        a = o.call - t0
        b = (o.ret - t0) if o.ret is not None else end
        y = row[o.process] * lane + 4
        svg.append(f"<rect x='{x(a):.1f}' y='{y}' width='{max(1.0, x(b) - x(a)):.1f}' height='{lane - 4}' "
                   f"fill='{COLORS.get(o.status, '#000')}'><title>{html.escape(str(o))}</title></rect>")
    ticks = max(1, int(span / 10))
    t = int(start)
    while t <= end:
        svg.append(f"<text x='{x(t):.1f}' y='{height - 6}' font-size='10'>{t}s</text>")
        t += ticks
    svg.append("</svg>")
    return "".join(svg)


def _series(rows: list[dict[str, float]], faults: list[EventRecord], t_end: float) -> str:
    if not rows:
        return "<p>no operations</p>"
    width, height = 1100, 220
    top = max(1.0, max(r["ops_per_s"] for r in rows))
    ltop = max(1.0, max(r["lat_max_ms"] for r in rows))

    def x(t: float) -> float:
        return 60 + t / max(t_end, 1e-6) * (width - 70)

    svg = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    for f in faults:
        b = f.end if f.end is not None else t_end
        svg.append(f"<rect x='{x(f.time):.1f}' y='0' width='{max(1, x(b) - x(f.time)):.1f}' height='{height - 20}' "
                   f"fill='#ffcdd2' opacity='0.6'><title>{html.escape(f.text)}</title></rect>")
    h = height - 30

    def poly(key: str, scale: float, color: str) -> str:
        pts = " ".join(f"{x(r['t'] + 0.5):.1f},{10 + h - r[key] / scale * h:.1f}" for r in rows)
        return f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{pts}'/>"

    svg.append(poly("ops_per_s", top, "#1565c0"))
    svg.append(poly("lat_mean_ms", ltop, "#ef6c00"))
    svg.append(poly("lat_max_ms", ltop, "#fbc02d"))
    svg.append(f"<text x='2' y='14' font-size='10' fill='#1565c0'>{top:.0f} ops/s</text>")
    svg.append(f"<text x='2' y='28' font-size='10' fill='#ef6c00'>{ltop:.0f} ms</text>")
    svg.append("</svg>")
    return "".join(svg)
