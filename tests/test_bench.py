"""The benchmark's pure part (scripts/bench.py): wrk's output, the after-heal gap, targets, the table."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench  # noqa: E402

WRK_OUT = """Running 5s test @ http://10.213.4.11:7000
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.10ms    2.04ms  40.12ms   80.00%
    Req/Sec     2.25k   100.00     2.40k    70.00%
  Latency Distribution
     50%    6.85ms
     75%    7.90ms
     90%    9.10ms
     99%    1.20s
  11250 requests in 5.00s, 1.50MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   2250.00
Transfer/sec:    307.00KB
NON200 250
"""


def test_parse_wrk_counts_200s_only() -> None:
    r = bench.parse_wrk(WRK_OUT)
    assert r["requests"] == 11250 and r["non_200"] == 250 and r["socket_errors"] == 3
    assert r["ops_per_s"] == pytest.approx(11000 / 5.0)
    assert r["p50_ms"] == pytest.approx(6.85) and r["p99_ms"] == pytest.approx(1200.0)


def test_parse_wrk_without_a_count_raises() -> None:
    with pytest.raises(ValueError):
        bench.parse_wrk("unable to connect to 10.0.0.1:7000 Connection refused\n")


def test_longest_gap_starts_at_the_last_success_before_the_heal() -> None:
    assert bench.longest_gap([0.95, 1.25, 1.3, 1.5, 1.7, 1.9], start=1.0, end=2.0) == pytest.approx(0.30)
    assert bench.longest_gap([0.5], start=1.0, end=2.0) == pytest.approx(1.5)  # nothing after the heal
    assert bench.longest_gap([], start=1.0, end=2.0) == pytest.approx(1.0)
    assert bench.longest_gap([1.1, 1.9], start=1.0, end=2.0) == pytest.approx(0.8)


def test_targets() -> None:
    assert bench.Target("ratio>=", 0.7).passed(100.0, 0.71) is True
    assert bench.Target("ratio>=", 1.0).passed(100.0, 0.99) is False
    assert bench.Target("ratio<=", 1.0).passed(5.0, 1.0) is True
    assert bench.Target("<=", 0.06).passed(0.061, None) is False
    assert bench.Target("ratio>=", 1.0).passed(100.0, None) is None  # no etcd: no verdict
    assert bench.median([1.0, None, math.nan, 3.0]) == 2.0 and bench.median([None]) is None


def test_summary_and_table_have_a_row_per_metric() -> None:
    def run(scale: float) -> dict[str, object]:
        point = {"ops_per_s": 100 * scale, "p50_ms": 2.0, "p99_ms": 4.0}
        return {"writes": {str(c): point for c in bench.CONNS}, "reads": {"64": point},
                "cpu_1_client_pct": 50.0, "idle_cpu_pct": {"n1": 1.0, "n2": 3.0}, "rss_mb": {"n1": 40.0},
                "failover_s": [0.4, 0.5, 0.6], "restarts": [{"startup_s": 0.2, "caught_up_s": 0.25}],
                "heal_gap_s": [0.02]}

    summary = {"raftnet": bench.summarise([run(1.0), run(3.0)]), "etcd": bench.summarise([run(1.0)])}
    assert summary["raftnet"]["writes_16_per_s"] == 200.0 and summary["raftnet"]["idle_cpu_pct"] == 3.0
    assert summary["raftnet"]["failover_s"] == 0.5
    table = bench.render_table(summary, "raftnet", "etcd", None).splitlines()
    assert table[0] == "| metric | raftnet | etcd | raftnet/etcd | target |"
    assert len(table) == 2 + len(bench.METRICS)
    row = next(r for r in table if r.startswith("| writes/s, 16 clients |"))
    assert row == "| writes/s, 16 clients | 200 | 100 | 2.00 | >= 1x etcd pass |"
    assert "<= 2 % FAIL" in next(r for r in table if r.startswith("| idle CPU"))
    verdicts = bench.verdicts(summary, "raftnet", "etcd")
    assert verdicts["heal_gap_s"]["pass"] is True and verdicts["idle_cpu_pct"]["pass"] is False
