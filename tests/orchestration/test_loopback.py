"""The no-root tier: the one cluster protocol on 127.0.0.1 (LoopbackCluster) records histories and runs
the checker, for raftnet's node and for any other system, with process faults (no namespaces)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.lab.process import node_processes
from harness.model.nemesis import Kind
from harness.orchestration.check import CheckConfig, run_check
from harness.orchestration.cluster import ClusterError
from harness.orchestration.loopback import LoopbackCluster
from harness.orchestration.workload import Workload, verify
from harness.systems import by_name

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_workload_kill_and_pause_then_verify(tmp_path: Path) -> None:
    with LoopbackCluster(3, workdir=tmp_path / "c") as c:
        ld = c.leader(timeout=20)
        with Workload(c, clients=4, keys=2, seed=5) as w:
            w.wait_ops(50)
            c.kill(ld)
            w.wait_ops(50, timeout=60)  # the others elect a leader and go on
            follower = next(n for n in c.nodes if n != ld)
            c.pause(follower)
            c.restart(ld)
            w.wait_ops(30, timeout=60)
        v = verify(c, w.history, w.keys, timeout=60)
        assert v.ok, v.explain()
        assert v.acknowledged > 0
        assert [e.text for e in c.events if e.kind == "fault"] == [f"kill {ld}", f"pause {follower}"]
        assert all(e.end is not None for e in c.events if e.kind == "fault")  # verify ended every fault
    assert node_processes(tmp_path / "c") == []


def test_network_faults_say_they_need_namespaces(tmp_path: Path) -> None:
    with LoopbackCluster(3, workdir=tmp_path / "c") as c:
        with pytest.raises(ClusterError, match="network namespaces"):
            c.partition(["n1"], ["n2", "n3"])
        with pytest.raises(ClusterError, match="unknown node"):
            c.kill("n9")


def test_check_on_loopback_for_another_system(tmp_path: Path) -> None:
    """The http-kv description of raftnet's node, on 127.0.0.1, through the whole check."""
    from harness import config

    system = config.load(ROOT / "examples/http-kv/raftnet.toml").system
    out = io.StringIO()
    r = run_check(CheckConfig(nodes=3, time=8, clients=4, keys=3, kinds=(Kind.KILL, Kind.PAUSE, Kind.PARTITION),
                              seed=2, out=tmp_path / "run", system=system, loopback=True), out)
    text = out.getvalue()
    assert r.ok, text[-3000:]
    assert "nemesis: partition left out: needs network namespaces" in text
    assert r.verdict.startswith("VERDICT: linearizable")
    assert node_processes(tmp_path / "run") == []


def test_etcd_on_loopback(tmp_path: Path) -> None:
    from harness.systems.etcd import unavailable_reason

    if reason := unavailable_reason():
        pytest.skip(reason)
    with LoopbackCluster(3, workdir=tmp_path / "c", system=by_name("etcd")) as c:
        c.leader(timeout=20)
        with Workload(c, clients=3, keys=2, seed=1) as w:
            w.wait_ops(50)
            c.kill(c.leader())
            w.wait_ops(50, timeout=60)
        v = verify(c, w.history, w.keys, timeout=60)
        assert v.ok, v.explain()


def test_cli_check_loopback_needs_no_root(tmp_path: Path) -> None:
    env = {**os.environ, "RAFTNET_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "harness", "check", "--loopback", "--nodes", "3", "--time", "6",
                        "--clients", "3", "--nemesis", "kill", "--seed", "4", "--out", str(tmp_path / "out")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith("VERDICT: linearizable")
    assert "cluster up in 127.0.0.1" in r.stdout
