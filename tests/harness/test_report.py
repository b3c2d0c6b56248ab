"""Pure tests of the run folder and report.html (harness.orchestration.report and .charts): throughput
buckets, the files of a run, and the page: axes, units and legends on every chart, one colour per
fault kind shaded across all of them, a lane per node (role, term, commit lag), a lane per client
with info ops ending where their client gave up, latency quantiles, and the violation view."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.model.checker import check
from harness.model.history import History, Operation, OpType
from harness.model.invariants import StatusSample
from harness.orchestration import charts
from harness.orchestration.charts import TimeAxis
from harness.orchestration.report import EventRecord, RunReport, buckets, render_html, write_run

T0 = 100.0


def op(status: str, call: float, ret: float | None, f: str = "write", process: int = 0,
       end: float | None = None) -> Operation:
    return Operation(process, f, "k", "v", None, T0 + call, None if ret is None else T0 + ret, status,
                     end=None if end is None else T0 + end)


# -- buckets ------------------------------------------------------------------------------


def test_buckets_of_nothing() -> None:
    assert buckets([], T0) == []


def test_buckets_count_completions_and_latency_per_second() -> None:
    ops = [
        op("ok", 0.1, 0.3),  # latency 200 ms, bucket 0
        op("ok", 0.5, 0.6),  # latency 100 ms, bucket 0
        op("fail", 0.9, 1.2),  # bucket 1
        op("info", 1.5, None),  # no completion: counted at its call, bucket 1
        op("ok", 2.0, 2.9),  # latency 900 ms, bucket 2
    ]
    rows = buckets(ops, T0)
    assert [r["t"] for r in rows] == [0.0, 1.0, 2.0]
    assert [(r["ok"], r["fail"], r["info"]) for r in rows] == [(2, 0, 0), (0, 1, 1), (1, 0, 0)]
    assert [r["ops_per_s"] for r in rows] == [2.0, 0.0, 1.0]
    assert rows[0]["lat_mean_ms"] == pytest.approx(150.0)
    assert rows[0]["lat_max_ms"] == pytest.approx(200.0)
    assert rows[1]["lat_mean_ms"] == 0.0 and rows[1]["lat_max_ms"] == 0.0  # no ok op: no latency
    assert rows[2]["lat_mean_ms"] == pytest.approx(900.0)
    assert set(rows[0]) == {"t", "ok", "fail", "info", "ops_per_s", "lat_mean_ms", "lat_max_ms"}


def test_bucket_width_scales_rates() -> None:
    ops = [op("ok", 0.1, 0.2), op("ok", 0.3, 0.4), op("ok", 0.6, 0.7), op("ok", 1.7, 1.8)]
    rows = buckets(ops, T0, width=0.5)
    assert [r["t"] for r in rows] == [0.0, 0.5, 1.0, 1.5]
    assert [r["ok"] for r in rows] == [2, 1, 0, 1]
    assert [r["ops_per_s"] for r in rows] == [4.0, 2.0, 0.0, 2.0]
    wide = buckets(ops, T0, width=10.0)
    assert len(wide) == 1 and wide[0]["ok"] == 4 and wide[0]["ops_per_s"] == pytest.approx(0.4)


def test_buckets_clamp_and_cover_gaps() -> None:
    ops = [op("ok", -0.5, -0.2), op("ok", 4.0, 4.5)]  # one before t0 lands in the first bucket
    rows = buckets(ops, T0)
    assert len(rows) == 5
    assert [r["ok"] for r in rows] == [1, 0, 0, 0, 1]
    assert sum(r["ok"] + r["fail"] + r["info"] for r in rows) == len(ops)


def test_buckets_conserve_operations() -> None:
    ops = [op(("ok", "fail", "info")[i % 3], i * 0.037, None if i % 3 == 2 else i * 0.037 + 0.01)
           for i in range(500)]
    rows = buckets(ops, T0, width=0.25)
    assert sum(r["ok"] for r in rows) == sum(o.status == "ok" for o in ops)
    assert sum(r["fail"] for r in rows) == sum(o.status == "fail" for o in ops)
    assert sum(r["info"] for r in rows) == sum(o.status == "info" for o in ops)
    assert all(r["t"] == pytest.approx(i * 0.25) for i, r in enumerate(rows))


# -- a small run --------------------------------------------------------------------------


def small_history() -> History:
    h = History()
    h.invoke(0, "write", "k1", "a", T0 + 0.1, node="n1")
    h.complete(0, OpType.OK, None, T0 + 0.2, index=5)
    h.invoke(1, "read", "k1", None, T0 + 0.3, node="n2")
    h.complete(1, OpType.OK, "a", T0 + 0.4)
    h.invoke(0, "cas", "k1", ["a", "b"], T0 + 1.5)
    h.complete(0, OpType.INFO, None, T0 + 6.5, error="timeout")
    h.invoke(2, "write", "k1", "c", T0 + 6.6)  # client 0 goes on as process 2
    h.complete(2, OpType.OK, None, T0 + 6.7)
    h.invoke(1, "delete", "k2", None, T0 + 2.0)
    h.complete(1, OpType.FAIL, None, T0 + 2.1, error="unavailable")
    return h


def samples() -> list[StatusSample]:
    out = []
    for i in range(80):  # 8 s at 0.1 s
        t = round(i * 0.1, 1)
        leader, term = ("n1", 1) if t < 3 else ("n2", 2)
        for n in ("n1", "n2", "n3"):
            if n == "n3" and 1 <= t < 2.5:
                out.append(StatusSample(t, n, None))  # cut off / paused
                continue
            commit = int(t * 100) if not (n == "n3" and t < 4) else min(int(t * 100), 50)  # n3 stalls at 50
            out.append(StatusSample(t, n, "leader" if n == leader else "follower", term, leader, commit))
    return out


FAULTS = [
    EventRecord(0.0, "node", "cluster up: 3 nodes"),
    EventRecord(1.0, "fault", "partition n1 | n2,n3", 2.5),
    EventRecord(2.5, "heal", "heal: every network fault removed"),
    EventRecord(3.0, "fault", "kill <n2>"),  # never ended: shaded to the end
    EventRecord(4.0, "fault", "pause n3", 4.5),
    EventRecord(5.0, "fault", "loss n1 20%", 5.5),
]


def run_report(**kw: Any) -> RunReport:
    args: dict[str, Any] = dict(
        title="raftnet check, seed 7",
        verdict="VERDICT: linearizable, 0 acknowledged writes lost, 5 ops, 3 faults",
        ok=True,
        history=small_history(),
        events=list(FAULTS),
        t0=T0,
        summary={"nodes": 3, "seed": 7, "problems": [], "operations": 5},
        node_logs={"n1": "line one\nline two <b>\n", "n2": "started\n"},
        status=samples(),
    )
    args.update(kw)
    return RunReport(**args)


def page(**kw: Any) -> str:
    rep = run_report(**kw)
    return render_html(rep, rep.history.operations())


def chart(text: str, name: str) -> str:
    """The SVG of one time chart."""
    m = re.search(rf"<svg class='tchart' id='{name}'.*?<text class='xunit'[^>]*>[^<]*</text></svg>", text, re.S)
    assert m is not None, f"no chart {name}"
    return m.group(0)


def test_write_run_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    rep = run_report()
    path = write_run(out, rep)
    assert path == out / "report.html"
    assert History.read_jsonl(out / "history.jsonl") == rep.history
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events == [e.to_json() for e in rep.events]
    assert [EventRecord.from_json(e) for e in events] == rep.events
    assert events[1] == {"time": 1.0, "kind": "fault", "text": "partition n1 | n2,n3", "end": 2.5}
    status = [StatusSample.from_json(json.loads(line)) for line in (out / "status.jsonl").read_text().splitlines()]
    assert status == list(rep.status)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == rep.verdict and summary["ok"] is True and summary["t0"] == T0
    assert summary["seed"] == 7 and summary["nodes"] == 3
    assert summary["throughput"] == buckets(rep.history.operations(), T0)
    assert (out / "logs" / "n1.log").read_text() == rep.node_logs["n1"]
    assert (out / "logs" / "n2.log").read_text() == "started\n"
    write_run(out, rep)  # again into the same folder: fine


def test_page_is_self_contained() -> None:
    text = page()
    assert text.startswith("<!doctype html>")
    outside = re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s'\"<]*", text)
    assert set(outside) <= {"http://www.w3.org/2000/svg"}, outside  # the SVG namespace is a name, not a fetch
    assert not re.search(r"<(?:script|img|link|iframe)[^>]*\s(?:src|href)=", text)
    assert text.count("<script>") == 1 and "data.ready" not in text and 'dataset.ready = "1"' in text


def test_verdict_summary_event_log_and_node_logs() -> None:
    text = page()
    assert "class='verdict ok'" in text and "VERDICT: linearizable, 0 acknowledged writes lost" in text
    assert "<dt>seed</dt><dd>7</dd>" in text
    assert "<td class='t'>1.00–2.50</td>" in text and "partition n1 | n2,n3 <span class='kind'>partition</span>" in text
    assert "<td class='t'>3.00–end</td>" in text  # never healed
    assert "heal: every network fault removed</td>" in text
    assert "line two &lt;b&gt;" in text and "<b>\n" not in text
    bad = page(ok=False, verdict="VERDICT: FAILED: <x>")
    assert "class='verdict bad'" in bad and "VERDICT: FAILED: &lt;x&gt;" in bad


@pytest.mark.parametrize(
    ("name", "y_unit"),
    [("faults", None), ("nodes", None), ("timeline", None), ("latency", "latency (log)"), ("throughput", "ops/s")],
)
def test_every_time_chart_has_an_axis_units_and_a_legend(name: str, y_unit: str | None) -> None:
    text = page()
    svg = chart(text, name)
    axis = re.search(r"<g class='xaxis'.*?</g>", svg, re.S)
    assert axis is not None
    assert re.findall(r"<text[^>]*>([\d.]+)</text>", axis.group(0))[:3] == ["0", "1", "2"]
    assert "time since the start (s)" in svg
    if y_unit is not None:
        assert y_unit in svg
    heading = {"faults": "h-faults", "nodes": "h-nodes", "timeline": "h-clients", "latency": "h-latency",
               "throughput": "h-throughput"}[name]
    between = text[text.index(f"id='{heading}'"):text.index(f"id='{name}'")]
    assert "<div class='legend'>" in between


def test_latency_axis_is_logarithmic_with_quantiles() -> None:
    svg = chart(page(), "latency")
    ticks = re.findall(r"text-anchor='end'>([\d.]+ m?s)</text>", svg)
    decades = ["0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s"]
    i = decades.index(ticks[0])
    assert ticks == decades[i:i + len(ticks)] and len(ticks) >= 3  # one tick per power of ten
    titles = re.findall(r"<title>(p\d+) latency of ok ops", svg)
    assert sorted(set(titles)) == ["p50", "p95", "p99"]  # a line per quantile (split where a bucket is empty)


def test_throughput_is_split_by_outcome() -> None:
    svg = chart(page(), "throughput")
    colours = re.findall(r"<polyline class='rate' [^>]*stroke='(#\w+)'", svg)
    assert colours == [charts.OUTCOME["ok"], charts.OUTCOME["info"], charts.OUTCOME["fail"]]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("partition n1,n2|n3,n4,n5", "partition"), ("isolate leader n3", "partition"), ("isolate n2", "partition"),
        ("bridge n3", "partition"), ("cut n1 -> n2", "partition"), ("majority ring", "partition"),
        ("loss n2 20%", "loss"), ("link down n4", "link"), ("kill n1", "kill"), ("pause n2", "pause"),
        ("stop n2", "pause"), ("power cut n3", "power"), ("power cut all", "power"), ("remove n5", "membership"),
        ("slow n2 100ms jitter 20ms (nfqueue)", "slow"), ("duplicate n2 5% (netem)", "slow"),
        ("reorder n3 10% (nfqueue)", "slow"), ("clock n1 rate 0.2x", "clock"), ("clock n4 jump +2s", "clock"),
        ("something new", "other"),
    ],
)
def test_fault_kind(text: str, kind: str) -> None:
    assert charts.fault_kind(text) == kind


def test_one_colour_per_fault_kind_shaded_across_every_chart() -> None:
    assert len(set(charts.FAULT_COLORS.values())) == len(charts.FAULT_COLORS)
    assert not set(charts.FAULT_COLORS.values()) & set(charts.OUTCOME.values())
    text = page()
    for name in ("nodes", "timeline", "latency", "throughput"):
        bands = re.findall(r"<rect class='band' [^>]*fill='(#\w+)'[^>]*><title>([^<]*)</title>", chart(text, name))
        assert bands == [(charts.FAULT_COLORS["partition"], "partition: partition n1 | n2,n3"),
                         (charts.FAULT_COLORS["kill"], "kill: kill &lt;n2&gt;"),
                         (charts.FAULT_COLORS["pause"], "pause: pause n3"),
                         (charts.FAULT_COLORS["loss"], "loss: loss n1 20%")], name
    faults = chart(text, "faults")
    bars = re.findall(r"<rect x='[^']*' y='\d+' width='([^']*)' height='14' fill='(#\w+)'>", faults)
    assert [c for _, c in bars] == [charts.FAULT_COLORS[k] for k in ("partition", "kill", "pause", "loss")]
    kill_width = float(bars[1][0])
    axis = TimeAxis(0.0, 8.0)  # the run: 0 to the last sample or op
    assert kill_width >= axis.x(7.8) - axis.x(3.0)  # the unhealed kill reaches the end
    legend = text[text.index("id='h-faults'"):text.index("id='faults'")]
    assert all(charts.FAULT_COLORS[k] in legend for k in ("partition", "kill", "pause", "loss"))
    assert charts.FAULT_COLORS["power"] not in legend  # only the kinds of this run
    assert len(re.findall(r"<path class='mark'", faults)) == 2  # cluster up, heal


def test_node_lanes_show_role_term_leader_and_commit_lag() -> None:
    svg = chart(page(), "nodes")
    for node in ("n1", "n2", "n3"):
        assert f"text-anchor='end'>{node}</text>" in svg
    assert "n1 leads in term 1" in svg and "n2 leads in term 2" in svg
    labels = re.findall(r"<text class='lbl'[^>]*>([^<]+)</text>", svg)
    assert {"n1 t1", "n2 t2", "t1", "t2"} <= set(labels)
    assert "fill='url(#no-answer)'><title>n3: no answer" in svg
    assert f"fill='{charts.ROLE_COLORS['leader'][1]}'><title>n1: leader, term 1" in svg  # odd term: 2nd shade
    assert f"fill='{charts.ROLE_COLORS['leader'][0]}'><title>n2: leader, term 2" in svg
    assert "n2: follower, term 1, leader n1" in svg
    lag = re.findall(r"<path class='lag' [^>]*><title>(n\d)'s commit index behind the most advanced node: "
                     r"at most (\d+) entries", svg)
    worst = dict(lag)
    assert worst["n3"] == "340" and int(worst["n1"]) <= 10  # n3 stuck at 50 while the others reached 399


def test_page_without_status_samples_says_so() -> None:
    text = page(status=[])
    assert "id='nodes'" not in text and "No status samples" in text


def test_client_lanes_show_each_op_until_its_client_gave_up() -> None:
    text = page()
    svg = chart(text, "timeline")
    axis = TimeAxis(0.0, 7.9)
    info = re.search(r"<path d='M([\d.]+) ([\d.]+)h([\d.]+)'><title>(p0 cas k1 [^<]*)</title>", svg)
    assert info is not None
    x, _, w, words = info.groups()
    assert float(x) == pytest.approx(axis.x(1.5), abs=0.1)
    assert float(w) == pytest.approx(axis.x(6.5) - axis.x(1.5), abs=0.1)  # to 6.5 s, not the end of the run
    assert words.startswith('p0 cas k1 "a" -&gt; "b" · info (timeout): gave up after 5.00 s')
    assert 'p1 read k1 -&gt; "a" · ok 100.0 ms · at 0.300 s @n2' in svg
    assert "p1 delete k2 · fail (unavailable): did not happen" in svg
    groups = re.findall(r"<g class='ops' stroke='(#\w+)'", svg)
    assert groups == [charts.OUTCOME["ok"], charts.OUTCOME["info"], charts.OUTCOME["fail"]]
    assert "process p2 begins" in svg  # client 0 goes on as p2 in its lane
    assert re.findall(r"<title>processes ([^<]*)</title>", svg) == ["p0, p2", "p1"]


@pytest.mark.parametrize(
    ("spans", "lanes"),
    [
        pytest.param([(0, 0, 5), (1, 0, 5)], {0: 0, 1: 1}, id="concurrent"),
        pytest.param([(0, 0, 1), (1, 0, 5), (10, 2, 5)], {0: 0, 1: 1, 10: 0}, id="info-then-new-process"),
        # clients 0..2; p3 = p0 + 3 goes back to p0's lane although p1's lane is free and lower
        pytest.param([(0, 0, 1), (1, 0, 1.5), (2, 0, 9), (4, 1.7, 9), (3, 1.8, 9)], {0: 0, 1: 1, 2: 2, 4: 1, 3: 0},
                     id="jepsen-rule"),
        pytest.param([(0, 0, None), (1, 1, 2)], {0: 0, 1: 1}, id="never-completed-holds-its-lane"),
    ],
)
def test_client_lanes(spans: list[tuple[int, float, float | None]], lanes: dict[int, int]) -> None:
    ops = []
    for p, a, b in spans:
        status = "ok" if b is None or p in (1, 2, 4) or p >= 10 else "info"
        if b is None:
            ops.append(Operation(p, "read", "k", None, None, a, None, "info"))
        elif status == "info":
            ops.append(Operation(p, "write", "k", "v", None, a, None, "info", end=b))
        else:
            ops.append(Operation(p, "write", "k", "v", None, a, b, "ok", end=b))
    got, _ = charts.client_lanes(ops)
    assert got == lanes


@pytest.mark.parametrize(
    ("rows", "segs"),
    [
        pytest.param([(0.0, "leader", 1), (0.1, "leader", 1), (0.2, "follower", 2), (0.3, "follower", 2)],
                     [(0.0, 0.2, "leader", 1), (0.2, 0.4, "follower", 2)], id="merge-and-extend-last"),
        pytest.param([(0.0, "follower", 1), (0.1, None, None), (0.5, "follower", 1)],
                     [(0.0, 0.1, "follower", 1), (0.1, 0.5, None, None), (0.5, 0.6, "follower", 1)],
                     id="no-answer-between"),
        pytest.param([(0.0, "follower", 1)], [(0.0, 0.1, "follower", 1)], id="one-sample"),
    ],
)
def test_segments(rows: list[tuple[float, str | None, int | None]], segs: list[tuple[Any, ...]]) -> None:
    got = charts.segments([StatusSample(t, "n1", r, term) for t, r, term in rows], end=10.0)
    assert [(s.start, s.end, s.role, s.term) for s in got["n1"]] == [pytest.approx(s) for s in segs]


def test_commit_lag_is_behind_the_most_advanced_node_so_far() -> None:
    ss = [StatusSample(0.0, "n1", "leader", 1, "n1", 10), StatusSample(0.1, "n2", "follower", 1, "n1", 4),
          StatusSample(0.2, "n3", None), StatusSample(0.3, "n1", "leader", 1, "n1", 20),
          StatusSample(0.4, "n2", "follower", 1, "n1", 20)]
    assert [(s.node, lag) for s, lag in charts.commit_lag(ss)] == [("n1", 0), ("n2", 6), ("n1", 0), ("n2", 0)]


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "nil"), ("3-17", '"3-17"'), ('a"b', '"a\\"b"'), (3, "3"), ((1, None), "[1 nil]"), (True, "true")],
)
def test_values_read_as_jepsen_writes_them(value: Any, text: str) -> None:
    assert charts.fmt_value(value) == text


# -- the violation ------------------------------------------------------------------------


def stale_read() -> History:
    h = History()
    h.invoke(0, "write", "x", "a", T0 + 0.0)
    h.complete(0, OpType.OK, None, T0 + 1.0)
    h.invoke(1, "write", "x", "b", T0 + 2.0)
    h.complete(1, OpType.OK, None, T0 + 3.0)
    h.invoke(2, "read", "x", None, T0 + 4.0)
    h.complete(2, OpType.OK, "a", T0 + 5.0)
    h.invoke(3, "cas", "x", ["b", "c"], T0 + 4.5)
    h.complete(3, OpType.INFO, None, T0 + 9.0)
    return h


def test_violation_view_marks_the_culprit_after_the_longest_prefix() -> None:
    h = stale_read()
    res = check(h)
    assert not res.ok
    text = render_html(run_report(ok=False, verdict="VERDICT: FAILED", history=h, check=res), h.operations())
    section = text[text.index("<section class='violation'>"):text.index("</section>")]
    assert "Violation on key x" in section
    assert "has 2 operations and leaves the value <b>&quot;b&quot;</b>" in section
    svg = section[section.index("<svg id='violation'"):section.index("</svg>")]
    culprit = re.findall(r"<g class='culprit'><title>([^<]*)</title>.*?<text[^>]*>([^<]*)</text>", svg)
    assert len(culprit) == 1
    assert culprit[0][1] == '✗ r "a"' and "CANNOT FOLLOW the prefix: the value is \"b\"" in culprit[0][0]
    assert 'cannot follow: value is "b"' in svg
    lin = re.findall(r"<g class='lin'><title>[^<]*linearized #(\d), value after: ([^<]*)</title>", svg)
    assert lin == [("1", '"a"'), ("2", '"b"')]
    assert re.search(r"<g class='unplaced'><title>p3 cas x \"b\" -&gt; \"c\" · info", svg)  # dashed: unknown
    assert svg.count("<circle ") == 2  # the linearization points
    assert "#1 w &quot;a&quot; → &quot;a&quot; · #2 w &quot;b&quot; → &quot;b&quot;" in section
    assert "<mark>&gt; " + html.escape(str(res.culprit)) + "</mark>" in section  # the window, culprit marked
    assert "max-height:none" in text  # the window is not clipped


def test_violation_without_a_prefix_shows_the_window() -> None:
    ops = small_history().operations()[:2]
    text = page(ok=False, violation=ops, violation_key="k1")
    assert "Violation on key k1" in text and "<svg id='violation'" in text
    for o in ops:
        assert html.escape(str(o)) in text


def test_page_without_operations() -> None:
    text = render_html(run_report(history=History(), events=[], status=[]), [])
    assert "no operations" in text and "VERDICT" in text


def test_a_history_without_a_clock_is_drawn_by_position() -> None:
    h = History()
    for i, (f, v, out) in enumerate([("write", 1, None), ("read", None, 1), ("write", 2, None)]):
        h.invoke(i, f, "x", v, float(2 * i))
        h.complete(i, OpType.OK, out, float(2 * i + 1))
    text = render_html(run_report(history=h, events=[], status=[], timed=False, t0=0.0), h.operations())
    assert "position in the history (event #)" in text and "id='timeline'" in text
    assert "id='latency'" not in text and "id='throughput'" not in text and "no clock" in text
    assert "p1 read x -&gt; 1 · ok 1 events · at event 2" in text


def test_report_of_a_long_run_stays_small() -> None:
    """10 clients for 60 s at ~170 ops/s, 5 nodes sampled every 0.1 s: under 2 MB."""
    h = History()
    t = {p: T0 + p * 0.001 for p in range(10)}
    n = 0
    while min(t.values()) < T0 + 60:
        for p in range(10):
            n += 1
            h.invoke(p, "write" if n % 2 else "read", f"k{n % 5}", f"{p}-{n}" if n % 2 else None, t[p], node="n1")
            kind = OpType.OK if n % 50 else OpType.FAIL
            h.complete(p, kind, None if n % 2 else f"{p}-{n - 2}", t[p] + 0.02 + (n % 7) * 0.005)
            t[p] += 0.06
    status = [StatusSample(i / 10, f"n{k}", "leader" if k == 1 else "follower", 1, "n1", i * 3)
              for i in range(600) for k in range(1, 6)]
    text = render_html(run_report(history=h, status=status), h.operations())
    assert len(h.operations()) > 9_000
    assert len(text.encode()) < 2_000_000, len(text.encode())
