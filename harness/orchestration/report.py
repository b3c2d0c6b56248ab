"""A run's artefacts: history, event log, status samples, verdict, and one self-contained HTML
report (inline SVG and a small inline script; nothing fetched from anywhere).

The report, top to bottom: the verdict and the run's numbers; for a
linearizability violation, a Porcupine-style view of the key (the longest
linearizable prefix, the value it ends in, the op that cannot follow,
marked); then, on one shared time axis, the faults (one colour per kind),
one lane per node (role and term over time, commit index), one lane per
client (each op from invoke to completion, coloured by outcome, described
on hover), per-op latency on a log scale with p50/p95/p99, and throughput
by outcome, with the fault windows shaded across all of them and the event
log beside them. Dragging across any chart zooms all of them
(double-click: the whole run); ``report.html#t=12,20`` opens zoomed on
12–20 s, and the address follows the zoom. The drawing is in `harness.orchestration.charts`.

Times: the history's are the recording clock's (``time.monotonic()``);
``t0`` is the run's start on that clock, and events and status samples
are in seconds since ``t0``. A history from elsewhere may have no clock at
all (a Jepsen log): ``timed=False`` draws it by position, without the
latency and throughput charts.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.model.checker import CheckResult
from harness.model.history import History, Operation
from harness.model.invariants import StatusSample
from harness.orchestration import charts
from harness.orchestration.charts import Band, Mark, TimeAxis, Violation

COLORS = charts.OUTCOME


@dataclass(frozen=True)
class EventRecord:
    time: float  # seconds since the start of the run (monotonic)
    kind: str  # "fault", "heal", "node", "member", "note"
    text: str
    end: float | None = None  # for a fault: when it was healed

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "text": self.text, "end": self.end}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventRecord:
        """Inverse of `to_json`; raises `ValueError` on a malformed record."""
        try:
            end = data.get("end")
            return cls(float(data["time"]), str(data["kind"]), str(data["text"]), None if end is None else float(end))
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad event {data!r}: {e}") from None


@dataclass
class RunReport:
    title: str
    verdict: str
    ok: bool
    history: History
    events: list[EventRecord]
    t0: float  # the run's start on the history's clock
    summary: dict[str, Any] = field(default_factory=dict)
    violation: Sequence[Operation] = ()  # the checker's window (when ``check`` is not given)
    violation_key: str | None = None
    node_logs: dict[str, str] = field(default_factory=dict)
    status: Sequence[StatusSample] = ()  # times in seconds since t0
    check: CheckResult | None = None  # the checker's verdict: its window, culprit and prefix
    timed: bool = True  # False: times are positions in a log, not seconds


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
    """Write history.jsonl, events.jsonl, status.jsonl, summary.json, node logs and report.html into ``out``.

    ``raftnet analyze out/history.jsonl`` reads them back (summary.json's ``t0`` aligns the history
    with the events and samples)."""
    out.mkdir(parents=True, exist_ok=True)
    rep.history.write_jsonl(out / "history.jsonl")
    with open(out / "events.jsonl", "w") as f:
        for e in rep.events:
            f.write(json.dumps(e.to_json()) + "\n")
    with open(out / "status.jsonl", "w") as f:
        for s in rep.status:
            f.write(json.dumps(s.to_json()) + "\n")
    ops = rep.history.operations()
    summary = {**rep.summary, "verdict": rep.verdict, "ok": rep.ok, "t0": rep.t0,
               "throughput": buckets(ops, rep.t0)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for node, text in rep.node_logs.items():
        (logs / f"{node}.log").write_text(text)
    path = out / "report.html"
    path.write_text(render_html(rep, ops))
    return path


def _axis(rep: RunReport, ops: Sequence[Operation]) -> TimeAxis:
    if not rep.timed:
        times = [o.call for o in ops] + [o.finish for o in ops if o.finish is not None]
        return TimeAxis(min(times, default=0.0), max(times, default=1.0) + 1, "event")
    ends = [o.finish - rep.t0 for o in ops if o.finish is not None] + [o.call - rep.t0 for o in ops]
    ends += [ev.end if ev.end is not None else ev.time for ev in rep.events] + [s.time for s in rep.status]
    start = min([0.0] + [o.call - rep.t0 for o in ops])
    return TimeAxis(start, max(ends + [start + 1.0]), "s")


def _bands(rep: RunReport, axis: TimeAxis) -> list[Band]:
    return [Band(e.time, e.end if e.end is not None else axis.end, charts.fault_kind(e.text), e.text)
            for e in rep.events if e.kind == "fault"]


def _violation(rep: RunReport) -> Violation | None:
    c = rep.check
    if c is not None and not c.ok and c.key is not None and c.window:
        return Violation(c.key, c.window, c.culprit, c.prefix, c.prefix_state)
    if rep.violation:
        return Violation(str(rep.violation_key), rep.violation, None)
    return None


def render_html(rep: RunReport, ops: Sequence[Operation]) -> str:
    """The whole report page (see the module docstring)."""
    e = html.escape
    axis = _axis(rep, ops)
    bands = _bands(rep, axis)
    marks = [Mark(ev.time, ev.kind, ev.text) for ev in rep.events if ev.kind != "fault"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(rep.title)}</title><style>{CSS}</style></head>",
        f"<body data-t0='{axis.start:.4f}' data-t1='{axis.end:.4f}' data-unit='{axis.unit}'>",
        charts.DEFS,
        f"<h1>{e(rep.title)}</h1>",
        f"<p class='verdict {'ok' if rep.ok else 'bad'}'>{e(rep.verdict)}</p>",
        "<dl class='summary'>" + "".join(
            f"<div><dt>{e(str(k))}</dt><dd>{e(_summary_value(v))}</dd></div>" for k, v in rep.summary.items()
            if not isinstance(v, list | dict) or v) + "</dl>",
    ]
    v = _violation(rep)
    if v is not None:
        parts.append(_violation_section(v, rep.t0 if rep.timed else 0.0, axis.unit))
    parts.append("<div class='run'><main>")
    parts.append("<div class='zoombar'>Drag across any chart to zoom into that time; double-click or "
                 "<button id='reset' type='button'>whole run</button> to see all of it. "
                 "Showing <span id='range'></span>.</div>")
    if rep.timed:
        parts.append("<h2 id='h-faults'>Faults</h2>")
        parts.append(charts.faults_legend(b.kind for b in bands))
        parts.append(charts.faults_chart(bands, marks, axis))
        parts.append("<h2 id='h-nodes'>Nodes: role and term over time, commit index</h2>")
        if any(s.role is not None for s in rep.status):
            parts.append(charts.nodes_legend())
            parts.append(charts.nodes_chart(rep.status, axis, bands))
        else:
            parts.append("<p class='note'>No status samples: the system reports no role or term "
                         "(or the run recorded none).</p>")
    parts.append("<h2 id='h-clients'>Operations per client</h2>")
    if ops:
        parts.append(charts.timeline_legend())
        parts.append(charts.timeline_chart(ops, axis, rep.t0 if rep.timed else 0.0, bands))
    else:
        parts.append("<p>no operations</p>")
    if rep.timed and ops:
        parts.append("<h2 id='h-latency'>Latency of each operation</h2>")
        parts.append(charts.latency_legend(axis))
        parts.append(charts.latency_chart(ops, axis, rep.t0, bands))
        parts.append("<h2 id='h-throughput'>Throughput by outcome</h2>")
        parts.append(charts.throughput_legend(axis))
        parts.append(charts.throughput_chart(ops, axis, rep.t0, bands))
    elif ops:
        parts.append("<p class='note'>This history has no clock (a Jepsen log: times are positions in the "
                     "file), so there is no latency or throughput to draw.</p>")
    parts.append("</main>")
    parts.append(_event_log(rep.events, axis))
    parts.append("</div>")
    for node, text in sorted(rep.node_logs.items()):
        tail = "\n".join(text.splitlines()[-80:])
        parts.append(f"<details><summary>Log of {e(node)} (last 80 lines)</summary><pre>{e(tail)}</pre></details>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "".join(parts)


def _summary_value(v: Any) -> str:
    if isinstance(v, list):
        return "; ".join(map(str, v[:5])) + (f"; … ({len(v)} in all)" if len(v) > 5 else "")
    return str(v)


def _violation_section(v: Violation, t0: float, unit: str) -> str:
    e = html.escape
    out = [f"<section class='violation'><h2>Violation on key {e(v.key)}</h2>"]
    if v.prefix:
        out.append(f"<p>No order of the operations on <b>{e(v.key)}</b> explains what the clients saw. "
                   f"The longest linearizable prefix the checker found has {len(v.prefix)} operations and "
                   f"leaves the value <b>{e(charts.fmt_value(v.prefix_state))}</b>; the operation marked ✗ "
                   "cannot follow it. Below: the last operations of that prefix in their linearization order "
                   "(the blue path), and the others around it.</p>")
    else:
        out.append(f"<p>No order of the operations on <b>{e(v.key)}</b> explains what the clients saw; "
                   "these are the operations that show it.</p>")
    out.append(charts.violation_legend())
    out.append(f"<div class='scroll'>{charts.violation_view(v, t0, unit)}</div>")
    shown = [*v.window, *([v.culprit] if v.culprit is not None else [])]
    if unit == "s" and shown:
        a = min(o.call for o in shown) - t0
        b = max((o.finish if o.finish is not None else o.call) for o in shown) - t0
        pad = max((b - a) * 0.5, 0.5)
        out.append(f"<p class='note'><a href='#t={a - pad:.3f},{b + pad:.3f}'>See these operations on the charts "
                   f"below</a> ({a:.2f}–{b:.2f} s).</p>")
    if v.prefix:
        from harness.model.checker import step

        chain = []
        st: Any = None
        for i, o in enumerate(v.prefix):
            st = step(st, o)
            if i >= len(v.prefix) - 8:
                chain.append(f"#{i + 1} {e(charts.short_words(o))} → {e(charts.fmt_value(st))}")
        more = "… " if len(v.prefix) > 8 else ""
        culprit = f" <b class='culprit'>✗ {e(charts.short_words(v.culprit))}</b>" if v.culprit is not None else ""
        out.append(f"<p class='chain'>{more}{' · '.join(chain)}{culprit}</p>")
    lines = []
    for o in v.window:
        text = e(str(o))
        lines.append(f"<mark>&gt; {text}</mark>" if v.culprit is not None and o is v.culprit else f"  {text}")
    out.append("<details open><summary>The checker's window</summary><pre class='window'>"
               + "\n".join(lines) + "</pre></details></section>")
    return "".join(out)


def _event_log(events: Sequence[EventRecord], axis: TimeAxis) -> str:
    e = html.escape
    rows = []
    for ev in events:
        if ev.kind == "fault":
            kind = charts.fault_kind(ev.text)
            color = charts.FAULT_COLORS[kind]
            end = ev.end if ev.end is not None else axis.end
            until = f"–{ev.end:.2f}" if ev.end is not None else "–end"
            what = f"{e(ev.text)} <span class='kind'>{e(kind)}</span>"
        else:
            kind, color, end, until = ev.kind, "#dee2e6", ev.time, ""
            what = e(ev.text) if ev.text.startswith(f"{ev.kind}:") else f"{e(ev.kind)}: {e(ev.text)}"
        rows.append(f"<tr data-a='{ev.time:.4f}' data-b='{end:.4f}'><td class='t'>{ev.time:.2f}{until}</td>"
                    f"<td><span class='sw' style='background:{color}' title='{e(kind)}'></span>{what}</td></tr>")
    body = "".join(rows) or "<tr><td colspan='2'>no events</td></tr>"
    return ("<aside><h2>Event log</h2><p class='note'>Seconds since the start; click a row to zoom to it.</p>"
            f"<table class='events'><tr><th>t (s)</th><th>what</th></tr>{body}</table></aside>")


CSS = """
body{font:13px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:12px 16px;color:#212529}
h1{font-size:19px;margin:4px 0 8px}h2{font-size:15px;margin:18px 0 2px}
.verdict{padding:8px 12px;border-radius:4px;font-weight:600;font-size:14px;margin:6px 0}
.verdict.ok{background:#d3f9d8;color:#2b8a3e}.verdict.bad{background:#ffe3e3;color:#c92a2a}
table{border-collapse:collapse}td,th{border:1px solid #e9ecef;padding:2px 8px;text-align:left;
font-size:12px;vertical-align:top}
dl.summary{display:flex;flex-wrap:wrap;gap:4px 6px;margin:6px 0;max-width:1400px}
dl.summary div{border:1px solid #e9ecef;border-radius:3px;padding:1px 8px;font-size:12px}
dl.summary dt{display:inline;color:#495057}dl.summary dt:after{content:": "}dl.summary dd{display:inline;margin:0}
.run{display:grid;grid-template-columns:1084px minmax(250px,1fr);gap:14px;align-items:start}
aside{position:sticky;top:6px;max-height:96vh;overflow:auto}
table.events tr[data-a]{cursor:pointer}table.events tr[data-a]:hover{background:#fff3bf}
table.events{width:100%}table.events td.t{white-space:nowrap;font-variant-numeric:tabular-nums}
table.events .kind{color:#868e96;font-size:11px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:2px 0;font-size:12px}
.legend .sw,.events .sw{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-2px;
border-radius:2px}
.legend .sw.line{height:3px;width:24px;vertical-align:3px}
.note{color:#495057;font-size:12px;margin:2px 0 4px}
.zoombar{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #dee2e6;padding:4px 0;
font-size:12px;color:#495057}
svg{font-size:11px;display:block;overflow:visible}svg.plot{overflow:hidden}svg .small{font-size:10px}
svg.tchart{cursor:crosshair;user-select:none}
svg.plot path,svg.plot polyline,svg.plot line{vector-effect:non-scaling-stroke}
svg.plot path.open{stroke-opacity:.45}
svg .xunit,svg .yunit{fill:#495057;font-size:10px}
.sel{fill:#339af0;fill-opacity:.15;stroke:#1c7ed6}
.violation{border:2px solid #ffa8a8;border-radius:6px;padding:4px 12px 8px;margin:10px 0;max-width:1400px}
.scroll{overflow-x:auto}
.chain{font-family:ui-monospace,monospace;font-size:12px}.chain .culprit,mark{color:#c92a2a;background:#ffe3e3}
pre{background:#f8f9fa;padding:8px;overflow:auto;font-size:12px}
pre.window{max-height:none}
details{margin:6px 0}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var body = document.body;
  var T0 = parseFloat(body.dataset.t0), T1 = parseFloat(body.dataset.t1);
  var charts = Array.prototype.slice.call(document.querySelectorAll("svg.tchart"));
  var v0 = T0, v1 = T1;
  function niceStep(span, target) {
    var raw = Math.max(span, 1e-9) / target, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var ms = [1, 2, 5, 10];
    for (var i = 0; i < ms.length; i++) { if (ms[i] * mag >= raw * 0.999) { return ms[i] * mag; } }
    return 10 * mag;
  }
  function fmt(t) { return String(parseFloat(t.toPrecision(6))); }
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function render() {
    var span = v1 - v0, step = niceStep(span, 10);
    charts.forEach(function (c) {
      var W = +c.dataset.w, L = +c.dataset.l, ph = +c.dataset.ph;
      var plot = c.querySelector("svg.plot");
      plot.setAttribute("viewBox", ((v0 - T0) / (T1 - T0) * W) + " 0 " + (span / (T1 - T0) * W) + " " + ph);
      var ax = c.querySelector("g.xaxis");
      while (ax.firstChild) { ax.removeChild(ax.firstChild); }
      for (var t = Math.ceil(v0 / step - 1e-9) * step; t <= v1 + 1e-9; t += step) {
        var x = (t - v0) / span * W;
        ax.appendChild(el("line", {x1: x, x2: x, y2: 5, stroke: "#495057"}));
        ax.appendChild(el("text", {x: x, y: 16, "text-anchor": "middle"}, fmt(t)));
      }
      c.querySelectorAll("text[data-a]").forEach(function (lb) {
        var xa = Math.max((+lb.dataset.a - v0) / span * W, 0), xb = Math.min((+lb.dataset.b - v0) / span * W, W);
        if (xb - xa < +lb.dataset.m || xb <= 0 || xa >= W) { lb.setAttribute("display", "none"); }
        else { lb.removeAttribute("display"); lb.setAttribute("x", L + (xa + xb) / 2); }
      });
    });
    var unit = body.dataset.unit === "s" ? " s" : "";
    document.getElementById("range").textContent = fmt(v0) + unit + " to " + fmt(v1) + unit +
      (v0 <= T0 && v1 >= T1 ? " (the whole run)" : "");
  }
  function zoom(a, b) {
    a = Math.max(T0, a); b = Math.min(T1, b);
    if (!(b - a >= (T1 - T0) / 20000)) { return; }
    v0 = a; v1 = b; render();
    var whole = v0 <= T0 && v1 >= T1;
    try { history.replaceState(null, "", whole ? location.pathname : "#t=" + fmt(v0) + "," + fmt(v1)); }
    catch (e) { /* a file: URL may refuse; the zoom stands */ }
  }
  var drag = null;
  charts.forEach(function (c) {
    var L = +c.dataset.l, W = +c.dataset.w;
    var sel = el("rect", {"class": "sel", y: c.dataset.top, height: c.dataset.ph, display: "none"});
    c.appendChild(sel);
    function px(ev) { var r = c.getBoundingClientRect(); return Math.min(Math.max(ev.clientX - r.left - L, 0), W); }
    c.addEventListener("mousedown", function (ev) {
      if (ev.button !== 0) { return; }
      drag = {c: c, sel: sel, from: px(ev), px: px, W: W, L: L};
      ev.preventDefault();
    });
    c.addEventListener("dblclick", function () { zoom(T0, T1); });
  });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) { return; }
    var to = drag.px(ev), a = Math.min(drag.from, to), b = Math.max(drag.from, to);
    drag.sel.setAttribute("x", drag.L + a); drag.sel.setAttribute("width", b - a);
    drag.sel.removeAttribute("display");
  });
  window.addEventListener("mouseup", function (ev) {
    if (!drag) { return; }
    var to = drag.px(ev), a = Math.min(drag.from, to), b = Math.max(drag.from, to), d = drag;
    drag = null;
    d.sel.setAttribute("display", "none");
    if (b - a > 4) { zoom(v0 + a / d.W * (v1 - v0), v0 + b / d.W * (v1 - v0)); }
  });
  document.getElementById("reset").addEventListener("click", function () { zoom(T0, T1); });
  document.querySelectorAll("table.events tr[data-a]").forEach(function (tr) {
    tr.addEventListener("click", function () {
      var a = +tr.dataset.a, b = +tr.dataset.b, pad = Math.max((b - a) * 0.3, (T1 - T0) / 100);
      zoom(a - pad, b + pad);
    });
  });
  function fromHash() {  // report.html#t=12,20 opens zoomed on 12-20 s
    var m = /^#t=([-0-9.e]+),([-0-9.e]+)$/.exec(location.hash);
    if (m) { zoom(parseFloat(m[1]), parseFloat(m[2])); }
  }
  window.addEventListener("hashchange", fromHash);
  render();
  fromHash();
  var culprit = document.querySelector("#violation g.culprit rect");
  if (culprit) {  // the operation that cannot follow, in view
    var sc = culprit.closest(".scroll");
    sc.scrollLeft = Math.max(0, +culprit.getAttribute("x") - sc.clientWidth * 0.6);
  }
  body.dataset.ready = "1";
})();
"""
