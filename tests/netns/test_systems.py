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
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "n1" in err[0], r.stderr
    assert node_processes(out) == []


def test_a_port_the_system_never_opens_is_one_line(tmp_path: Path) -> None:
    cf = tmp_path / "raftnet.toml"
    example = (ROOT / "examples/http-kv/raftnet.toml").read_text()
    cf.write_text(example.replace("client_port = 7000", "client_port = 7001"))
    r, out = check(tmp_path, "--config", str(cf), "--nodes", "3", "--time", "5", "--nemesis", "kill", timeout=180)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "7001" in err[0], r.stderr
    assert node_processes(out) == []
