"""``scripts/bench.py --quick`` as root: raftnet (and etcd when installed) in namespace clusters,
one short point and one trial of each kind; the JSON has every metric as a number for every system,
the table is printed, and nothing is left behind (processes, allocations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.lab import alloc
from harness.lab.process import node_processes

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402


def test_quick_bench_reports_every_metric_and_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_NET_ADMIN) for network namespaces; run as root or in the vagrant/ VM")
    from harness.systems.etcd import unavailable_reason

    systems = ["raftnet"] if unavailable_reason() else ["raftnet", "etcd"]
    out = tmp_path / "results"
    work = tmp_path / "work"  # every cluster's workdir (TMPDIR): what "nothing left" looks under
    work.mkdir()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts/bench.py"), "--quick", "--no-install",
                             "--systems", ",".join(systems), "--out", str(out)],
                            cwd=ROOT, env={**os.environ, "TMPDIR": str(work)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        stdout, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stdout[-4000:]
    files = list(out.glob("bench-*.json"))
    assert len(files) == 1, stdout[-2000:]
    data = json.loads(files[0].read_text())
    assert set(data["summary"]) == set(systems)
    for s in systems:
        for m in bench.METRICS:
            v = data["summary"][s][m.key]
            assert isinstance(v, int | float) and not isinstance(v, bool), (s, m.key, v)
        assert [r["round"] for r in data["runs"] if r["system"] == s] == [1]
    if "etcd" in systems:
        assert all(isinstance(data["ratios"][m.key], float) for m in bench.METRICS)
    head = next((line for line in stdout.splitlines() if line.startswith("| metric |")), "")
    assert head.split(" | ")[1:1 + len(systems)] == systems and head.endswith(" | target |"), head
    for m in bench.METRICS:
        assert f"| {m.label} |" in stdout, m.label
    assert node_processes(work) == []
    assert [p.pid for p in _etcds(work)] == []
    assert not [a for a in alloc.list_allocations() if a.name.startswith(f"bench-{proc.pid}-")]
    assert list(work.iterdir()) == []  # the clusters' workdirs are gone too


def _etcds(where: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [""])[0].endswith("etcd") and any(str(where) in a for a in p.info["cmdline"])]
