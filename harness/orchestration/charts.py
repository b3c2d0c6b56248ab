"""Inline SVG charts for report.html: pure functions from a run's data to SVG text.

Every chart over run time shares one x scale (`TimeAxis`): a gutter of
`GUTTER` px on the left for lane names and y ticks, then `PLOT_W` px of
plot. The plot is a nested ``<svg class='plot'>`` drawn for the whole run;
the page's script zooms every chart at once by narrowing the plots'
viewBox (``preserveAspectRatio='none'``: only x stretches). Dots and lines
keep their width through the stylesheet's ``vector-effect:
non-scaling-stroke`` (a dot is a zero-length line with round caps), and
labels live outside the plot, placed from their times (``data-a``,
``data-b``) by the script, and here for the unzoomed page.

Charts: the faults (one colour per kind, `fault_kind`) and the other
events; one lane per node (role and term over time, commit lag); one
lane per client (each op from invoke to completion, coloured by outcome);
per-op latency on a log scale with p50/p95/p99; throughput by outcome.
The fault windows are shaded across every one of them. `violation_view`
draws the key of a linearizability violation Porcupine-style.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.model.history import Operation
from harness.model.invariants import StatusSample

WIDTH = 1080
GUTTER = 92
PLOT_W = WIDTH - GUTTER - 14
AXIS_H = 30  # below a plot: ticks and their labels

OUTCOME = {"ok": "#4a90d9", "info": "#f5a623", "fail": "#d0315e"}
FAULT_COLORS = {
    "partition": "#8e44ad", "loss": "#17a2b8", "link": "#20c997", "kill": "#e03131",
    "pause": "#a0522d", "power": "#343a40", "membership": "#2f9e44", "slow": "#74b816", "clock": "#1864ab",
    "other": "#868e96",
}
ROLE_COLORS = {  # two shades per role: terms alternate, so a new term shows as a new shade
    "leader": ("#1d3557", "#3c6e9f"), "follower": ("#a8dadc", "#cfeced"),
    "candidate": ("#ffb703", "#ffd166"), "pre-candidate": ("#ffe08a", "#fff0b8"),
    "learner": ("#d8e2dc", "#e9efeb"),
}
OTHER_ROLE = ("#ced4da", "#dee2e6")
NODE_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948", "#9c755f",
               "#ff9da7", "#bab0ac")
NO_ANSWER = "url(#no-answer)"
LAG_COLOR = "#e8590c"
DEFS = ("<svg width='0' height='0' style='position:absolute'><defs>"
        "<pattern id='no-answer' width='6' height='6' patternUnits='userSpaceOnUse' patternTransform='rotate(45)'>"
        "<rect width='6' height='6' fill='#f1f3f5'/><rect width='2' height='6' fill='#adb5bd'/></pattern>"
        "</defs></svg>")


def esc(text: Any) -> str:
    """Escaped for an attribute or text."""
    return html.escape(str(text), quote=True)


def esc_text(text: Any) -> str:
    """Escaped for text content (quotes may stay)."""
    return html.escape(str(text), quote=False)


def fault_kind(text: str) -> str:
    """The nemesis kind of a fault from its event text: partition, loss, link, kill, pause, power,
    membership, slow (delay, duplication, reordering), clock, or other."""
    t = text.strip().lower()
    for prefix, kind in (("partition", "partition"), ("isolate", "partition"), ("bridge", "partition"),
                         ("cut ", "partition"), ("majority ring", "partition"), ("ring", "partition"),
                         ("loss", "loss"), ("link down", "link"), ("kill", "kill"), ("pause", "pause"),
                         ("stop", "pause"), ("power", "power"), ("remove", "membership"), ("slow ", "slow"),
                         ("duplicate ", "slow"), ("reorder ", "slow"), ("clock ", "clock")):
        if t.startswith(prefix):
            return kind
    return "other"


def fmt_value(v: Any) -> str:
    """A value as Jepsen users read it: strings quoted, None as nil, lists in brackets."""
    if v is None:
        return "nil"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple | list):
        return "[" + " ".join(fmt_value(x) for x in v) + "]"
    if v is True or v is False:
        return str(v).lower()
    return str(v)


def op_words(op: Operation) -> str:
    """``read k1 -> "3.17"``, ``write k1 "3.17"``, ``cas k1 "a" -> "b"`` (+ applied or not)."""
    if op.f == "read":
        return f"read {op.key} -> " + (fmt_value(op.output) if op.status == "ok" else "?")
    if op.f == "write":
        return f"write {op.key} {fmt_value(op.value)}"
    if op.f == "cas":
        expect, new = op.value
        what = f"cas {op.key} {fmt_value(expect)} -> {fmt_value(new)}"
        if op.status == "ok":
            what += " (applied)" if op.output is not False else " (not applied: value differed)"
        return what
    return f"delete {op.key}"


def short_words(op: Operation) -> str:
    """A few characters for a box: ``w 3``, ``r 3``, ``cas 1→2`` (``(no)``: not applied), ``del``."""
    if op.f == "read":
        return "r " + (fmt_value(op.output) if op.status == "ok" else "?")
    if op.f == "write":
        return f"w {fmt_value(op.value)}"
    if op.f == "cas":
        expect, new = op.value
        refused = op.status == "ok" and op.output is False
        return f"cas {fmt_value(expect)}→{fmt_value(new)}" + (" (no)" if refused else "")
    return "del"


def describe(op: Operation, t0: float, unit: str = "s") -> str:
    """The hover text of an op."""
    when = _when(op.call - t0, unit)
    head = f"p{op.process} {op_words(op)}"
    at = f" @{op.node}" if op.node else ""
    if op.status == "ok":
        return f"{head} · ok {_span(op.finish, op.call, unit)} · at {when}{at}"
    why = f" ({op.error})" if op.error else ""
    if op.status == "fail":
        return f"{head} · fail{why}: did not happen · {_span(op.finish, op.call, unit)} · at {when}{at}"
    if op.finish is None:
        return f"{head} · info: never completed, may have taken effect · at {when}{at}"
    return (f"{head} · info{why}: gave up after {_span(op.finish, op.call, unit)}, "
            f"may have taken effect · at {when}{at}")


def _when(t: float, unit: str) -> str:
    return f"{t:.3f} s" if unit == "s" else f"event {t:g}"


def _span(end: float | None, start: float, unit: str) -> str:
    if end is None:
        return "?"
    if unit != "s":
        return f"{end - start:g} events"
    ms = (end - start) * 1000
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def nice_step(span: float, target: int = 10) -> float:
    """A step of 1, 2 or 5 times a power of ten giving about ``target`` steps over ``span``."""
    raw = max(span, 1e-9) / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw * 0.999:
            return float(m * mag)
    return float(10 * mag)


@dataclass(frozen=True)
class TimeAxis:
    """Run time [start, end] onto plot x [0, PLOT_W]; ``unit`` "s" or "event" (a position in a log)."""

    start: float
    end: float
    unit: str = "s"

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-9)

    def x(self, t: float) -> float:
        return (t - self.start) / self.span * PLOT_W

    def ticks(self) -> list[float]:
        step = nice_step(self.span)
        first = math.ceil(self.start / step - 1e-9) * step
        n = int((self.end - first) / step + 1e-9) + 1
        return [round(first + i * step, 9) for i in range(max(n, 0))]

    def label(self) -> str:
        return "time since the start (s)" if self.unit == "s" else "position in the history (event #)"


@dataclass(frozen=True)
class Band:
    """A fault window, shaded across every chart."""

    start: float
    end: float
    kind: str
    text: str


def _n(v: float) -> str:
    """Compact coordinates: one decimal, no trailing zeros."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def frame(name: str, axis: TimeAxis, plot_h: float, body: str, *, bands: Sequence[Band] = (),
          gutter: str = "", overlay: str = "", grid: str = "") -> str:
    """One time chart: gutter, zoomable plot with the fault bands under ``body``, time axis below."""
    top = 6
    height = top + plot_h + AXIS_H
    out = [f"<svg class='tchart' id='{name}' width='{WIDTH}' height='{_n(height)}' data-l='{GUTTER}' "
           f"data-w='{PLOT_W}' data-top='{top}' data-ph='{_n(plot_h)}' xmlns='http://www.w3.org/2000/svg'>",
           f"<g class='gutter'>{gutter}</g>",
           f"<svg class='plot' x='{GUTTER}' y='{top}' width='{PLOT_W}' height='{_n(plot_h)}' "
           f"viewBox='0 0 {PLOT_W} {_n(plot_h)}' preserveAspectRatio='none'>",
           f"<rect class='bg' width='{PLOT_W}' height='{_n(plot_h)}' fill='#fff'/>",
           grid, band_rects(bands, axis, plot_h), body, "</svg>",
           f"<rect x='{GUTTER}' y='{top}' width='{PLOT_W}' height='{_n(plot_h)}' fill='none' stroke='#adb5bd'/>",
           f"<g class='overlay' data-top='{top}'>{overlay}</g>",
           x_axis(axis, top + plot_h), "</svg>"]
    return "".join(out)


def x_axis(axis: TimeAxis, y: float) -> str:
    """Ticks and labels under a plot (the script redraws them when zoomed)."""
    parts = [f"<g class='xaxis' transform='translate({GUTTER},{_n(y)})' data-unit='{axis.unit}'>"]
    for t in axis.ticks():
        x = axis.x(t)
        parts.append(f"<line x1='{_n(x)}' x2='{_n(x)}' y2='5' stroke='#495057'/>"
                     f"<text x='{_n(x)}' y='16' text-anchor='middle'>{t:g}</text>")
    parts.append(f"</g><text class='xunit' x='{WIDTH - 14}' y='{_n(y + 28)}' text-anchor='end'>{esc(axis.label())}"
                 "</text>")
    return "".join(parts)


def band_rects(bands: Sequence[Band], axis: TimeAxis, h: float) -> str:
    out = []
    for b in bands:
        a, e = axis.x(max(b.start, axis.start)), axis.x(min(b.end, axis.end))
        if e < 0 or a > PLOT_W:
            continue
        out.append(f"<rect class='band' x='{_n(a)}' width='{_n(max(e - a, 1.0))}' height='{_n(h)}' "
                   f"fill='{FAULT_COLORS.get(b.kind, FAULT_COLORS['other'])}' fill-opacity='0.14'>"
                   f"<title>{esc(b.kind)}: {esc(b.text)}</title></rect>")
    return "".join(out)


def label(a: float, b: float, y: float, text: str, *, fill: str = "#212529", min_px: float = 0,
          axis: TimeAxis, cls: str = "lbl") -> str:
    """A text centred in [a, b] (run times) at height ``y``; hidden when narrower than ``min_px``."""
    xa, xb = max(axis.x(a), 0.0), min(axis.x(b), PLOT_W)
    hidden = " display='none'" if xb - xa < min_px else ""
    return (f"<text class='{cls}' data-a='{a:.4f}' data-b='{b:.4f}' data-m='{min_px:g}' "
            f"x='{_n(GUTTER + (xa + xb) / 2)}' y='{_n(y)}' text-anchor='middle' fill='{fill}'{hidden}>"
            f"{esc(text)}</text>")


# -- faults and events ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """A point event (heal, restart, add): a tick on the events row."""

    time: float
    kind: str
    text: str


def faults_chart(bands: Sequence[Band], marks: Sequence[Mark], axis: TimeAxis) -> str:
    """One row per overlapping fault, each fault a bar in its kind's colour; the events row below."""
    rows: list[float] = []  # end of the last fault in each row
    placed: list[tuple[int, Band]] = []
    for b in sorted(bands, key=lambda b: (b.start, b.end)):
        row = next((i for i, end in enumerate(rows) if end <= b.start), len(rows))
        if row == len(rows):
            rows.append(b.end)
        else:
            rows[row] = b.end
        placed.append((row, b))
    lane = 18
    n_rows = max(len(rows), 1)
    h = n_rows * lane + 18
    body, overlay = [], []
    for row, b in placed:
        a, e = axis.x(max(b.start, axis.start)), axis.x(min(b.end, axis.end))
        y = row * lane + 2
        color = FAULT_COLORS.get(b.kind, FAULT_COLORS["other"])
        body.append(f"<rect x='{_n(a)}' y='{y}' width='{_n(max(e - a, 2.0))}' height='{lane - 4}' fill='{color}'>"
                    f"<title>{esc(b.text)}: {b.start:.2f}–{b.end:.2f} s ({esc(b.kind)})</title></rect>")
        overlay.append(label(b.start, b.end, 6 + y + lane - 8, b.text, fill="#fff", min_px=7 * len(b.text) + 6,
                             axis=axis))
    y_ev = n_rows * lane + 2
    for m in marks:
        x = axis.x(m.time)
        color = {"heal": "#495057", "member": FAULT_COLORS["membership"]}.get(m.kind, "#212529")
        body.append(f"<path class='mark' d='M{_n(x)} {y_ev + 2}v10' stroke='{color}' stroke-width='2'>"
                    f"<title>{m.time:.2f} s {esc(m.kind)}: {esc(m.text)}</title></path>")
    gutter = [f"<text x='{GUTTER - 6}' y='{6 + 13}' text-anchor='end'>faults</text>",
              f"<text x='{GUTTER - 6}' y='{6 + y_ev + 11}' text-anchor='end'>events</text>"]
    return frame("faults", axis, h, "".join(body), bands=(), gutter="".join(gutter), overlay="".join(overlay))


def legend(items: Iterable[tuple[str, str]], *, line: bool = False) -> str:
    """An HTML legend: (colour or CSS background, words)."""
    cls = "sw line" if line else "sw"
    return "<div class='legend'>" + "".join(
        f"<span class='item'><span class='{cls}' style='background:{c}'></span>{esc(w)}</span>" for c, w in items
    ) + "</div>"


# -- nodes ---------------------------------------------------------------------------------


def _node_order(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 1 << 30, name)


@dataclass(frozen=True)
class Segment:
    """A stretch of time during which one node answered the same (role, term, leader)."""

    node: str
    start: float
    end: float
    role: str | None
    term: int | None
    leader: str | None
    commit: tuple[int | None, int | None]  # first and last commit index seen


def segments(samples: Sequence[StatusSample], end: float) -> dict[str, list[Segment]]:
    """Merge each node's samples (times relative to the run's start) into segments; a sample
    holds until the node's next one (its last one: for one typical interval more, at most to ``end``)."""
    by_node: dict[str, list[StatusSample]] = {}
    for s in samples:
        by_node.setdefault(s.node, []).append(s)
    out: dict[str, list[Segment]] = {}
    for node in sorted(by_node, key=_node_order):
        ss = sorted(by_node[node], key=lambda s: s.time)
        gaps = sorted(b.time - a.time for a, b in zip(ss, ss[1:], strict=False))
        typical = gaps[(len(gaps) - 1) // 2] if gaps else 0.1
        segs: list[Segment] = []
        for i, s in enumerate(ss):
            stop = ss[i + 1].time if i + 1 < len(ss) else min(s.time + typical, max(end, s.time))
            if segs and (segs[-1].role, segs[-1].term, segs[-1].leader) == (s.role, s.term, s.leader):
                last = segs[-1]
                segs[-1] = Segment(node, last.start, stop, s.role, s.term, s.leader,
                                   (last.commit[0] if last.commit[0] is not None else s.commit_index,
                                    s.commit_index if s.commit_index is not None else last.commit[1]))
            else:
                segs.append(Segment(node, s.time, stop, s.role, s.term, s.leader, (s.commit_index, s.commit_index)))
        out[node] = segs
    return out


def _role_fill(role: str | None, term: int | None) -> str:
    if role is None:
        return NO_ANSWER
    shades = ROLE_COLORS.get(role, OTHER_ROLE)
    return shades[(term or 0) % 2]


def commit_lag(samples: Sequence[StatusSample]) -> list[tuple[StatusSample, int]]:
    """Each sample with a commit index, and how far it is behind the highest commit index any node
    had reported by then (0: up to date)."""
    latest: dict[str, int] = {}
    out = []
    for s in sorted(samples, key=lambda s: s.time):
        if s.commit_index is None:
            continue
        latest[s.node] = s.commit_index
        out.append((s, max(latest.values()) - s.commit_index))
    return out


LAG_FLOOR = 100  # entries: the commit-lag scale never goes below this
LAG_NOISE = 16  # entries: a follower this close is just a heartbeat behind (or sampled a little earlier)


def lag_noise(lags: Sequence[int]) -> int:
    """The lag not worth drawing: `LAG_NOISE`, or more when most samples trail by more (a busy cluster)."""
    ordered = sorted(lags)
    return max(LAG_NOISE, ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0)


def lag_height(lag: int, top: int, noise: int = 0) -> float:
    """0..1 on a log scale above ``noise``, so that a partition's lag shows next to a new member's
    first catch-up while a heartbeat's worth stays flat."""
    return math.log1p(max(lag - noise, 0)) / math.log1p(max(top - noise, 1))


def nodes_chart(samples: Sequence[StatusSample], axis: TimeAxis, bands: Sequence[Band]) -> str:
    """The leader row (who led, in which term), then per node its role band (terms alternate
    shades; no answer hatched) and underneath how far its commit index was behind the most
    advanced node's (a catch-up shows as a wedge that grows, then drops)."""
    segs = segments(samples, axis.end)
    nodes = list(segs)
    color = {n: NODE_COLORS[i % len(NODE_COLORS)] for i, n in enumerate(nodes)}
    lags = commit_lag(samples)
    top_lag = max([lag for _, lag in lags] + [LAG_FLOOR])
    noise = lag_noise([lag for _, lag in lags])
    lead_h, band_h, commit_h, gap = 18, 18, 16, 6
    lane = band_h + commit_h + gap
    top = lead_h + gap + 4
    h = top + lane * len(nodes)
    body: list[str] = []
    overlay: list[str] = []
    gutter = [f"<text x='{GUTTER - 6}' y='{6 + 13}' text-anchor='end' font-weight='bold'>leader</text>"]
    for i, node in enumerate(nodes):
        y = top + i * lane
        gutter.append(f"<rect x='6' y='{6 + y + 4}' width='10' height='10' fill='{color[node]}'/>"
                      f"<text x='{GUTTER - 6}' y='{6 + y + 13}' text-anchor='end'>{esc(node)}</text>"
                      f"<text x='{GUTTER - 6}' y='{6 + y + band_h + 11}' text-anchor='end' class='small'>"
                      f"<title>commit index behind the most advanced node (log scale from {noise} to {top_lag} "
                      "entries)</title>"
                      "behind</text>")
        for s in segs[node]:
            a, e = axis.x(s.start), axis.x(s.end)
            what = "no answer" if s.role is None else f"{s.role}, term {s.term}" + (
                f", leader {s.leader}" if s.leader and s.role != "leader" else "")
            commit = "" if s.commit[0] is None else f", commit index {s.commit[0]}–{s.commit[1]}"
            body.append(f"<rect x='{_n(a)}' y='{y}' width='{_n(max(e - a, 0.5))}' height='{band_h}' "
                        f"fill='{_role_fill(s.role, s.term)}'><title>{esc(node)}: {esc(what)}{commit}, "
                        f"{s.start:.2f}–{s.end:.2f} s</title></rect>")
            if s.role == "leader":
                body.append(f"<rect x='{_n(a)}' y='2' width='{_n(max(e - a, 0.5))}' height='{lead_h - 4}' "
                            f"fill='{color[node]}'><title>{esc(node)} leads in term {s.term}, "
                            f"{s.start:.2f}–{s.end:.2f} s</title></rect>")
                overlay.append(label(s.start, s.end, 6 + y + 13, f"t{s.term}", fill="#fff", min_px=26, axis=axis))
                overlay.append(label(s.start, s.end, 6 + 13, f"{node} t{s.term}", fill="#fff", min_px=48,
                                     axis=axis))
        yb = y + band_h + commit_h
        body.append(f"<rect x='0' y='{y + band_h}' width='{PLOT_W}' height='{commit_h}' fill='#f8f9fa'/>")
        mine = [(s.time, lag) for s, lag in lags if s.node == node]
        if mine:
            d = [f"M{_n(axis.x(mine[0][0]))} {yb}"]
            d += [f"L{_n(axis.x(t))} {_n(yb - lag_height(lag, top_lag, noise) * (commit_h - 2))}" for t, lag in mine]
            d.append(f"L{_n(axis.x(mine[-1][0]))} {yb}Z")
            worst = max(mine, key=lambda p: p[1])
            body.append(f"<path class='lag' d='{''.join(d)}' fill='{LAG_COLOR}'><title>{esc(node)}'s commit index "
                        f"behind the most advanced node: at most {worst[1]} entries, at {worst[0]:.2f} s"
                        "</title></path>")
    return frame("nodes", axis, h, "".join(body), bands=bands, gutter="".join(gutter), overlay="".join(overlay))


def nodes_legend() -> str:
    return legend([
        (ROLE_COLORS["leader"][0], "leader"), (ROLE_COLORS["follower"][0], "follower"),
        (ROLE_COLORS["candidate"][0], "candidate"), (ROLE_COLORS["pre-candidate"][0], "pre-candidate"),
        ("repeating-linear-gradient(45deg,#adb5bd 0 2px,#f1f3f5 2px 5px)", "no answer (down, paused, cut off)"),
        (LAG_COLOR, "commit index behind the most advanced node (log scale)"),
    ]) + ("<p class='note'>Each term alternates the shade of its role, so a new term shows as a new shade; "
          "labels name the leader and its term (t7). The top row shows which node led, in the node's colour. "
          "Under each node: how many entries its commit index trailed (a node cut off falls behind, then "
          "catches up); hover a band for the commit indexes.</p>")


# -- clients -------------------------------------------------------------------------------


def client_lanes(ops: Sequence[Operation]) -> tuple[dict[int, int], list[list[int]]]:
    """Lanes for processes: a process keeps one lane from its first invoke to its last completion.
    A process that starts after another ended (a client going on after an info) takes, as in
    Jepsen, the lane of process ``p - n`` when free (``n``: the processes that began before the
    first info, the number of clients), else the lowest free lane. Returns process -> lane and the
    processes of each lane, in order."""
    span: dict[int, list[float]] = {}
    for o in ops:
        end = o.finish if o.finish is not None else math.inf
        s = span.setdefault(o.process, [o.call, end])
        s[0], s[1] = min(s[0], o.call), max(s[1], end)
    first_info = min((o.finish for o in ops if o.status == "info" and o.finish is not None), default=math.inf)
    clients = sum(1 for s in span.values() if s[0] < first_info) or 1
    lane_of: dict[int, int] = {}
    free_at: list[float] = []
    members: list[list[int]] = []
    for p in sorted(span, key=lambda p: (span[p][0], p)):
        start, end = span[p]
        lane = lane_of.get(p - clients, -1)
        if lane < 0 or free_at[lane] >= start:
            lane = next((i for i, t in enumerate(free_at) if t < start), len(free_at))
        if lane == len(free_at):
            free_at.append(end)
            members.append([])
        else:
            free_at[lane] = end
        lane_of[p] = lane
        members[lane].append(p)
    return lane_of, members


def timeline_chart(ops: Sequence[Operation], axis: TimeAxis, t0: float, bands: Sequence[Band]) -> str:
    """One lane per client: each op a bar from invoke to completion (an info op: to when the client
    gave up), coloured by outcome, described on hover; a tick where a lane's next process begins."""
    lane_of, members = client_lanes(ops)
    lane = 13
    h = max(len(members), 1) * lane + 2
    groups: dict[str, list[str]] = {"ok": [], "info": [], "fail": []}
    starts = {p: math.inf for p in lane_of}
    for o in ops:
        starts[o.process] = min(starts[o.process], o.call)
    for o in ops:  # a bar is a line as thick as the lane (smaller than a rect)
        y = lane_of[o.process] * lane + 2 + (lane - 3) / 2
        a = axis.x(o.call - t0)
        end = o.finish if o.finish is not None else axis.end + t0
        w = max(axis.x(end - t0) - a, 0.8)
        dashed = " class='open'" if o.finish is None else ""
        groups.setdefault(o.status, []).append(
            f"<path{dashed} d='M{_n(a)} {_n(y)}h{_n(w)}'><title>{esc_text(describe(o, t0, axis.unit))}</title></path>")
    body = [f"<g class='ops' stroke='{OUTCOME.get(k, '#000')}' stroke-width='{lane - 3}'>{''.join(v)}</g>"
            for k, v in groups.items() if v]
    ticks = []
    for i, ps in enumerate(members):
        for p in ps[1:]:
            ticks.append(f"<path d='M{_n(axis.x(starts[p] - t0))} {i * lane + 1}v{lane - 1}' stroke='#000' "
                         f"stroke-width='1.5'><title>process p{p} begins (the client's previous op ended info)"
                         f"</title></path>")
    body.append("".join(ticks))
    gutter = []
    for i, ps in enumerate(members):
        name = f"p{ps[0]}" + (f" +{len(ps) - 1}" if len(ps) > 1 else "")
        gutter.append(f"<text x='{GUTTER - 6}' y='{6 + i * lane + 11}' text-anchor='end' class='small'>"
                      f"<title>processes {', '.join(f'p{p}' for p in ps)}</title>{esc(name)}</text>")
    return frame("timeline", axis, h, "".join(body), bands=bands, gutter="".join(gutter))


def timeline_legend() -> str:
    return legend([(OUTCOME["ok"], "ok"), (OUTCOME["fail"], "fail: definitely did not happen"),
                   (OUTCOME["info"], "info: outcome unknown (drawn until the client gave up)"),
                   ("#000", "a new process (Jepsen: a client goes on as a new process after an info)")]) + (
        "<p class='note'>One lane per client; each bar is one operation from invoke to completion. "
        "Hover a bar for the operation (read k1 -&gt; \"3-17\"), its outcome and latency.</p>")


# -- latency and throughput -----------------------------------------------------------------


def bucket_width(axis: TimeAxis) -> float:
    return max(nice_step(axis.span, 80), 0.1)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty sequence."""
    i = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def latency_chart(ops: Sequence[Operation], axis: TimeAxis, t0: float, bands: Sequence[Band]) -> str:
    """Each op's latency at its invoke time, on a log scale, coloured by outcome (an info op: until
    the client gave up); p50, p95 and p99 of the ok ops per time bucket as lines."""
    pts = [(o, (o.finish - o.call) * 1000) for o in ops if o.finish is not None]
    h = 220.0
    if not pts:
        return "<p>no completed operations</p>"
    lo_ms = max(min(ms for _, ms in pts), 0.05)
    hi_ms = max(max(ms for _, ms in pts), lo_ms * 10)
    lo, hi = math.floor(math.log10(lo_ms)), math.ceil(math.log10(hi_ms))
    if hi - lo < 2:
        hi = lo + 2

    def y(ms: float) -> float:
        return h - 4 - (math.log10(max(ms, 10.0 ** lo)) - lo) / (hi - lo) * (h - 8)

    oks = sorted(ms for o, ms in pts if o.status == "ok")
    slow = quantile(oks, 0.99) if oks else math.inf
    merged: dict[str, list[str]] = {"ok": [], "fail": [], "info": []}
    single: list[str] = []
    for o, ms in pts:
        d = f"M{_n(axis.x(o.call - t0))} {_n(y(ms))}h0"
        if o.status == "fail" or o.status == "ok" and ms < slow:
            merged[o.status].append(d)
        else:  # the ones worth a hover: slow, unknown
            single.append(f"<path d='{d}' stroke='{OUTCOME.get(o.status, '#000')}'><title>"
                          f"{esc_text(describe(o, t0, axis.unit))}</title></path>")
    body = ["<g class='dots' stroke-width='4' stroke-linecap='round'>"]
    body += [f"<path d='{''.join(v)}' stroke='{OUTCOME[k]}'/>" for k, v in merged.items() if v]
    body += single
    body.append("</g>")
    dt = bucket_width(axis)
    per: dict[int, list[float]] = {}
    for o, ms in pts:
        if o.status == "ok":
            per.setdefault(int((o.call - t0 - axis.start) // dt), []).append(ms)
    for q, dash, width in ((0.5, "", 1.8), (0.95, "6 3", 1.5), (0.99, "2 2", 1.5)):
        runs: list[list[str]] = [[]]
        last = None
        for b in sorted(per):
            if last is not None and b != last + 1:
                runs.append([])
            v = quantile(sorted(per[b]), q)
            runs[-1].append(f"{_n(axis.x(axis.start + (b + 0.5) * dt))},{_n(y(v))}")
            last = b
        for r in runs:
            if len(r) == 1:
                r.append(r[0])
            if r:
                body.append(f"<polyline class='q' points='{' '.join(r)}' fill='none' stroke='#111' "
                            f"stroke-width='{width}'" + (f" stroke-dasharray='{dash}'" if dash else "")
                            + f"><title>p{round(q * 100)} latency of ok ops per {dt:g} s</title></polyline>")
    grid, gutter = [], []
    for k in range(lo, hi + 1):
        ms = 10.0 ** k
        yy = y(ms)
        grid.append(f"<line x2='{PLOT_W}' y1='{_n(yy)}' y2='{_n(yy)}' stroke='#e9ecef'/>")
        word = f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s"
        gutter.append(f"<text x='{GUTTER - 6}' y='{_n(6 + yy + 4)}' text-anchor='end'>{word}</text>")
    gutter.append(f"<text class='yunit' transform='translate(12,{_n(6 + h / 2)}) rotate(-90)' "
                  "text-anchor='middle'>latency (log)</text>")
    return frame("latency", axis, h, "".join(body), bands=bands, gutter="".join(gutter), grid="".join(grid))


def latency_legend(axis: TimeAxis) -> str:
    return legend([(OUTCOME["ok"], "ok"), (OUTCOME["fail"], "fail"),
                   (OUTCOME["info"], "info (until the client gave up)")]) + legend(
        [("#111", "p50"), ("repeating-linear-gradient(90deg,#111 0 6px,transparent 6px 9px)", "p95"),
         ("repeating-linear-gradient(90deg,#111 0 2px,transparent 2px 4px)", "p99")], line=True) + (
        f"<p class='note'>One dot per operation at its invoke time; the lines are quantiles of the ok "
        f"operations' latency per {bucket_width(axis):g} s. Hover a slow or unknown one.</p>")


def throughput_chart(ops: Sequence[Operation], axis: TimeAxis, t0: float, bands: Sequence[Band]) -> str:
    """Completions per second by outcome (an info op counts when its client gave up)."""
    dt = bucket_width(axis)
    n = max(int(axis.span / dt + 0.999), 1)
    counts = {k: [0] * n for k in ("ok", "fail", "info")}
    for o in ops:
        if o.finish is None:
            continue
        b = int((o.finish - t0 - axis.start) / dt)
        if 0 <= b < n and o.status in counts:
            counts[o.status][b] += 1
    top = max([c / dt for v in counts.values() for c in v] + [1.0])
    step = nice_step(top, 4)
    top = math.ceil(top / step) * step
    h = 150.0

    def y(rate: float) -> float:
        return h - 2 - rate / top * (h - 6)

    body = []
    for k in ("ok", "info", "fail"):
        pts = []
        for i, c in enumerate(counts[k]):
            xa, xb = axis.x(axis.start + i * dt), axis.x(axis.start + (i + 1) * dt)
            yc = _n(y(c / dt))
            pts.append(f"{_n(xa)},{yc} {_n(xb)},{yc}")
        body.append(f"<polyline class='rate' points='{' '.join(pts)}' fill='none' stroke='{OUTCOME[k]}' "
                    f"stroke-width='{1.8 if k == 'ok' else 1.5}'><title>{k} completions per second</title></polyline>")
    grid, gutter = [], []
    v = 0.0
    while v <= top + 1e-9:
        yy = y(v)
        grid.append(f"<line x2='{PLOT_W}' y1='{_n(yy)}' y2='{_n(yy)}' stroke='#e9ecef'/>")
        gutter.append(f"<text x='{GUTTER - 6}' y='{_n(6 + yy + 4)}' text-anchor='end'>{v:g}</text>")
        v += step
    gutter.append(f"<text class='yunit' transform='translate(12,{_n(6 + h / 2)}) rotate(-90)' "
                  "text-anchor='middle'>ops/s</text>")
    return frame("throughput", axis, h, "".join(body), bands=bands, gutter="".join(gutter), grid="".join(grid))


def throughput_legend(axis: TimeAxis) -> str:
    return legend([(OUTCOME["ok"], "ok"), (OUTCOME["fail"], "fail"), (OUTCOME["info"], "info")], line=True) + (
        f"<p class='note'>Completions per second by outcome, in {bucket_width(axis):g} s buckets.</p>")


def faults_legend(kinds: Iterable[str]) -> str:
    present = set(kinds)
    return legend([(FAULT_COLORS[k], k) for k in FAULT_COLORS if k in present]) + (
        "<p class='note'>Each fault is a bar in its kind's colour and a shaded band across every chart; "
        "the events row marks heals, restarts and new members.</p>")


# -- the violation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """What the checker found on one key: the ops to show (its window), the culprit, and the
    longest linearizable prefix it reached with the value it ends in."""

    key: str
    window: Sequence[Operation]
    culprit: Operation | None
    prefix: Sequence[Operation] = ()
    prefix_state: Any = None


def _text_px(text: str, size: float = 11) -> float:
    """About how wide ``text`` is in the page's sans-serif at ``size`` px."""
    return len(text) * size * 0.6 + 2


def violation_view(v: Violation, t0: float, unit: str = "s", tail: int = 12) -> str:
    """Porcupine-style: the key's ops in lanes on a compressed time axis (the distinct invoke and
    completion times in order, spaced so every box fits its words), the last ``tail`` ops of the
    linearizable prefix numbered in their linearization order with the value after each and joined
    by the path of their linearization points, and the op that cannot follow marked."""
    from harness.model.checker import step

    order = {id(o): i for i, o in enumerate(v.prefix)}
    states: dict[int, Any] = {}
    st: Any = None
    for o in v.prefix:
        st = step(st, o)
        states[id(o)] = st
    shown_prefix = list(v.prefix[-tail:])
    chosen: dict[int, Operation] = {id(o): o for o in shown_prefix}
    for o in v.window:
        chosen.setdefault(id(o), o)
    if v.culprit is not None:
        chosen.setdefault(id(v.culprit), v.culprit)
    ops = sorted(chosen.values(), key=lambda o: (o.call, o.process))
    if not ops:
        return "<p>no operations to show</p>"
    culprit_id = id(v.culprit) if v.culprit is not None else None

    def words(o: Operation) -> tuple[str, str]:
        """The box's two lines."""
        if id(o) == culprit_id:
            return f"✗ {short_words(o)}", f"cannot follow: value is {fmt_value(v.prefix_state)}"
        if id(o) in order:
            return short_words(o), f"#{order[id(o)] + 1} → {fmt_value(states[id(o)])}"
        return short_words(o), ""

    need = {id(o): max(_text_px(words(o)[0]), _text_px(words(o)[1], 10)) + 8 for o in ops}
    times = sorted({o.call for o in ops} | {o.finish for o in ops if o.finish is not None})
    index = {t: i for i, t in enumerate(times)}
    ending: dict[int, list[Operation]] = {}
    for o in ops:
        if o.finish is not None:
            ending.setdefault(index[o.finish], []).append(o)
    xs: list[float] = []
    for i in range(len(times)):  # each time as far left as the boxes ending there allow
        x = xs[-1] + 14 if xs else 0.0
        for o in ending.get(i, []):
            x = max(x, xs[index[o.call]] + need[id(o)] if index[o.call] < i else x)
        xs.append(x)
    left = GUTTER + 10

    def box(o: Operation) -> tuple[float, float]:
        a = left + xs[index[o.call]]
        b = left + xs[index[o.finish]] if o.finish is not None else max(left + xs[-1] + 30, a + need[id(o)] + 20)
        return a, max(b, a + need[id(o)])

    rows: list[float] = []
    row_of: dict[int, int] = {}
    for o in sorted(ops, key=lambda o: box(o)):
        a, b = box(o)
        r = next((i for i, end in enumerate(rows) if end + 6 <= a), len(rows))
        if r == len(rows):
            rows.append(b)
        else:
            rows[r] = b
        row_of[id(o)] = r
    lane = 40
    width = max(box(o)[1] for o in ops) + 20
    height = lane * len(rows) + 44
    out = [f"<svg id='violation' width='{_n(width)}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    last_label = -1e9
    for i, t in enumerate(times):
        x = left + xs[i]
        out.append(f"<line x1='{_n(x)}' x2='{_n(x)}' y1='0' y2='{height - 34}' stroke='#f1f3f5'/>")
        if x - last_label >= 70 or i == len(times) - 1 and x - last_label >= 40:
            out.append(f"<text x='{_n(x)}' y='{height - 22}' class='small' fill='#868e96'>"
                       f"{esc_text(_when(t - t0, unit))}</text>")
            last_label = x
    for o in ops:
        y = row_of[id(o)] * lane + 4
        a, b = box(o)
        top, sub = words(o)
        tip = describe(o, t0, unit)
        if id(o) == culprit_id:
            fill, stroke, sw, cls, ink = "#ffe3e3", "#c92a2a", 3.0, "culprit", "#c92a2a"
            tip += f" · CANNOT FOLLOW the prefix: the value is {fmt_value(v.prefix_state)} after it"
        elif id(o) in order:
            fill, stroke, sw, cls, ink = "#d0ebff", "#1c7ed6", 1.5, "lin", "#1864ab"
            tip += f" · linearized #{order[id(o)] + 1}, value after: {fmt_value(states[id(o)])}"
        else:
            fill, stroke, sw, cls, ink = "#f8f9fa", "#adb5bd", 1.0, "unplaced", "#495057"
            tip += " · not in the prefix"
        dash = " stroke-dasharray='4 3'" if o.status != "ok" else ""
        out.append(f"<g class='{cls}'><title>{esc_text(tip)}</title>"
                   f"<rect x='{_n(a)}' y='{y}' width='{_n(b - a)}' height='32' rx='3' fill='{fill}' "
                   f"stroke='{stroke}' stroke-width='{sw}'{dash}/>"
                   f"<text x='{_n(a + 4)}' y='{y + 13}' font-size='11'>{esc_text(top)}</text>")
        if sub:
            out.append(f"<text x='{_n(a + 4)}' y='{y + 27}' font-size='10' fill='{ink}'>{esc_text(sub)}</text>")
        out.append("</g>")
    points: list[tuple[float, float]] = []
    prev = -1e9
    for o in shown_prefix:  # linearization points, in order, each inside its op
        a, b = box(o)
        p = min(max(prev + 4, a + 3), b - 3)
        prev = p
        points.append((p, row_of[id(o)] * lane + 4 + 16))
    if points:
        out.append("<polyline points='" + " ".join(f"{_n(px)},{_n(py)}" for px, py in points)
                   + "' fill='none' stroke='#1c7ed6' stroke-width='1.5' opacity='0.7'/>")
        out += [f"<circle cx='{_n(px)}' cy='{_n(py)}' r='3' fill='#1c7ed6'/>" for px, py in points]
    if v.culprit is not None and points:
        cx = box(v.culprit)[0] + 3
        cy = row_of[id(v.culprit)] * lane + 4 + 16
        out.append(f"<line x1='{_n(points[-1][0])}' y1='{_n(points[-1][1])}' x2='{_n(cx)}' y2='{_n(cy)}' "
                   f"stroke='#c92a2a' stroke-width='2' stroke-dasharray='4 3'/>")
    out.append(f"<text x='{left}' y='{height - 6}' class='small'>the distinct invoke and completion times of "
               "these operations, in order, spaced to fit the words (not to scale)</text>")
    out.append("</svg>")
    return "".join(out)


def violation_legend() -> str:
    return legend([("#d0ebff", "in the longest linearizable prefix (#n: its place; → the value after it)"),
                   ("#ffe3e3", "the operation that cannot follow"),
                   ("#f8f9fa", "not linearized at that point"), ("#1c7ed6", "order of the linearization points")])
