"""Pure tests of harness.orchestration.report: throughput buckets and the run directory
(history, events, summary, node logs, a self-contained HTML report)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.model.history import History, Operation, OpType
from harness.orchestration.report import EventRecord, RunReport, buckets, render_html, write_run

T0 = 100.0


def op(status: str, call: float, ret: float | None, f: str = "write", process: int = 0) -> Operation:
    return Operation(process, f, "k", "v", None, T0 + call, None if ret is None else T0 + ret, status)


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


# -- the run directory ------------------------------------------------------------------


def small_history() -> History:
    h = History()
    h.invoke(0, "write", "k1", "a", T0 + 0.1, node="n1")
    h.complete(0, OpType.OK, None, T0 + 0.2, index=5)
    h.invoke(1, "read", "k1", None, T0 + 0.3, node="n2")
    h.complete(1, OpType.OK, "a", T0 + 0.4)
    h.invoke(0, "cas", "k1", ["a", "b"], T0 + 1.5)
    h.complete(0, OpType.INFO, None, T0 + 6.5, error="timeout")
    h.invoke(1, "delete", "k2", None, T0 + 2.0)
    h.complete(1, OpType.FAIL, None, T0 + 2.1, error="unavailable")
    return h


def run_report(**kw: Any) -> RunReport:
    args: dict[str, Any] = dict(
        title="raftnet check, seed 7",
        verdict="VERDICT: linearizable, 0 acknowledged writes lost, 4 ops, 1 faults",
        ok=True,
        history=small_history(),
        events=[
            EventRecord(0.0, "node", "cluster up: 3 nodes"),
            EventRecord(1.0, "fault", "partition n1 | n2,n3", 2.5),
            EventRecord(2.5, "heal", "heal: every network fault removed"),
            EventRecord(3.0, "fault", "kill <n2>"),  # never ended: shaded to the end
        ],
        t0=T0,
        summary={"nodes": 3, "seed": 7, "problems": [], "operations": 4},
        node_logs={"n1": "line one\nline two <b>\n", "n2": "started\n"},
    )
    args.update(kw)
    return RunReport(**args)


def test_write_run_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    rep = run_report()
    path = write_run(out, rep)
    assert path == out / "report.html"
    assert History.read_jsonl(out / "history.jsonl") == rep.history
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events == [e.to_json() for e in rep.events]
    assert events[1] == {"time": 1.0, "kind": "fault", "text": "partition n1 | n2,n3", "end": 2.5}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == rep.verdict and summary["ok"] is True
    assert summary["seed"] == 7 and summary["nodes"] == 3
    assert summary["throughput"] == buckets(rep.history.operations(), T0)
    assert (out / "logs" / "n1.log").read_text() == rep.node_logs["n1"]
    assert (out / "logs" / "n2.log").read_text() == "started\n"
    write_run(out, rep)  # again into the same folder: fine


def test_html_shows_verdict_timeline_and_fault_windows(tmp_path: Path) -> None:
    text = write_run(tmp_path, run_report()).read_text()
    assert text.startswith("<!doctype html>")
    assert "VERDICT: linearizable, 0 acknowledged writes lost" in text
    assert "class='ok'" in text
    assert "<svg id='timeline'" in text
    assert text.count("<svg") >= 2  # the timeline and the throughput/latency series
    # fault windows: shaded rectangles titled with the fault
    shaded = re.findall(r"<rect [^>]*fill='#ffcdd2'[^>]*><title>([^<]*)</title>", text)
    assert "partition n1 | n2,n3" in shaded
    assert "kill &lt;n2&gt;" in shaded  # escaped, and still shown although never healed
    # one lane per client process, every operation drawn with its status colour
    assert ">p0</text>" in text and ">p1</text>" in text
    for colour in ("#2e7d32", "#9e9e9e", "#ef6c00"):
        assert f"fill='{colour}'" in text
    # the event log and the node logs, escaped
    assert "fault: partition n1 | n2,n3</td><td>2.50" in text
    assert "line two &lt;b&gt;" in text and "<b>\n" not in text
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_html_of_a_violation_shows_the_window(tmp_path: Path) -> None:
    h = small_history()
    ops = h.operations()[:2]
    rep = run_report(ok=False, verdict="VERDICT: FAILED: NOT linearizable on key 'k1'", violation=ops,
                     violation_key="k1")
    text = write_run(tmp_path, rep).read_text()
    assert "class='bad'" in text and "VERDICT: FAILED: NOT linearizable on key &#x27;k1&#x27;" in text
    assert "Violation on key k1" in text
    assert "<svg id='violation'" in text
    for o in ops:
        assert html.escape(str(o)) in text


def test_html_without_operations(tmp_path: Path) -> None:
    text = render_html(run_report(history=History(), events=[]), [])
    assert "no operations" in text
    assert "VERDICT" in text
