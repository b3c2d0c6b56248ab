"""``raftnet check`` against systems other than raftnet's own node, through the CLI in namespaces:
raftnet's node described only by a cluster file (http-kv), etcd, and etcd with serializable reads
(which must be caught serving a stale read). Bad cluster files: one line, exit 2, nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.lab.process import node_processes

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "raftnet"
RAFTNET = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "harness"]


def check(tmp_path: Path, *args: str, timeout: float = 400) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "check"
    env = {**os.environ, "RAFTNET_HOME": str(tmp_path / "home")}
    r = subprocess.run([*RAFTNET, "check", *args, "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r, out


def last_line(r: subprocess.CompletedProcess[str]) -> str:
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""


def test_http_kv_describes_raftnet_by_a_file_only(tmp_path: Path) -> None:
    r, out = check(tmp_path, "--config", str(ROOT / "examples/http-kv/raftnet.toml"), "--nodes", "3",
                   "--time", "15", "--nemesis", "partition,kill", "--seed", "3")
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-2000:]}"
    assert last_line(r).startswith("VERDICT: linearizable"), last_line(r)
    assert "http-kv" in r.stdout  # the run names the adapter, not raftnet's own system
    assert node_processes(out) == []


@pytest.mark.parametrize("text, error", [
    ('[system]\nname = "http-kv"\ncommand = "x"\nclient_port = 1\nbogus = 2\n', "bogus"),
    ('[system]\nname = "raftnet"\n[check]\nnodez = 3\n', "check.nodez: unknown field"),
    ('[system]\nname = "nosuch"\n', "unknown system 'nosuch'"),
])
def test_a_bad_cluster_file_is_one_line_and_exit_2(tmp_path: Path, text: str, error: str) -> None:
    cf = tmp_path / "raftnet.toml"
    cf.write_text(text)
    r, out = check(tmp_path, "--config", str(cf), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert error in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_a_command_that_does_not_start_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    cf = tmp_path / "raftnet.toml"
    example = (ROOT / "examples/http-kv/raftnet.toml").read_text()
    cf.write_text(example.replace("{python} -m node", "/nonexistent/kv", 1))
    r, out = check(tmp_path, "--config", str(cf), "--nodes", "3", "--time", "5", "--nemesis", "kill", timeout=120)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "n1" in err[0] and "/nonexistent/kv" in err[0], r.stderr
    assert node_processes(out) == []


def test_a_port_the_system_never_opens_is_one_line(tmp_path: Path) -> None:
    cf = tmp_path / "raftnet.toml"
    example = (ROOT / "examples/http-kv/raftnet.toml").read_text()  # nodes listen on 7000, the lab expects 7001
    cf.write_text(example.replace("client_port = 7000", "client_port = 7001")
                  .replace("{ip}:{client_port}", "{ip}:7000"))
    r, out = check(tmp_path, "--config", str(cf), "--nodes", "3", "--time", "5", "--nemesis", "kill", timeout=180)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "7001" in err[0], r.stderr
    assert node_processes(out) == []


def etcd_missing() -> str | None:
    from harness.systems.etcd import unavailable_reason

    return unavailable_reason()


def test_etcd_survives_the_nemesis(tmp_path: Path) -> None:
    if reason := etcd_missing():
        pytest.skip(reason)
    r, out = check(tmp_path, "--system", "etcd", "--nodes", "5", "--time", "25", "--nemesis", "all", "--seed", "1")
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-2000:]}"
    assert last_line(r).startswith("VERDICT: linearizable"), last_line(r)
    assert "nemesis: power left out: etcd" in r.stdout  # what etcd cannot undergo is said, in one line
    assert node_processes(out) == []


def test_etcd_serializable_reads_are_caught_stale(tmp_path: Path) -> None:
    """Serializable reads are served from a node's own state: under partitions some are stale, and the
    checker must say so (the proof that the checker sees stale reads in a real system)."""
    if reason := etcd_missing():
        pytest.skip(reason)
    r, out = check(tmp_path, "--system", "etcd-serializable", "--nodes", "5", "--time", "25", "--nemesis",
                   "partition", "--seed", "1")
    verdict = last_line(r)
    assert r.returncode == 1, f"{r.stdout[-3000:]}\n{r.stderr[-2000:]}"
    assert verdict.startswith("VERDICT: FAILED: NOT linearizable"), verdict
    assert "read" in verdict, verdict
    assert node_processes(out) == []


def test_cli_up_another_system_and_drive_it_from_other_commands(tmp_path: Path) -> None:
    """`raftnet up --system etcd`: later commands (other processes) re-attach with the same system, so the
    faults match etcd's peer port and status reads etcd's."""
    if reason := etcd_missing():
        pytest.skip(reason)
    env = {**os.environ, "RAFTNET_HOME": str(tmp_path / "home")}
    name = f"sys{os.getpid()}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RAFTNET, "--name", name, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)

    try:
        r = cli("up", "--system", "etcd", "--nodes", "3")
        assert r.returncode == 0, r.stdout + r.stderr
        assert ":2379" in r.stdout
        r = cli("isolate", "n1")
        assert r.returncode == 0 and "drop n1 -> n2" in r.stdout, r.stdout + r.stderr
        r = cli("status", "--json")
        assert r.returncode == 0, r.stderr
        assert '"leader_id"' in r.stdout
        assert cli("heal").returncode == 0
    finally:
        r = cli("down")
    assert r.returncode == 0, r.stderr
    assert node_processes(tmp_path / "home" / name) == []
