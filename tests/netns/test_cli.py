"""The ``raftnet`` CLI end to end (CONTRACT.md section 3), as root, in a
private RAFTNET_HOME and under a unique --name: each step is a separate
process, as from different shells, and reads the cluster back through
``status --json``. The cluster is always taken ``down`` at the end, and
``down`` must leave nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.lab import alloc, netns
from harness.lab.process import node_processes
from harness.model import topology
from harness.orchestration.local import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "raftnet"  # the installed console command
RAFTNET = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "harness"]


@dataclass
class Cli:
    home: Path
    name: str

    def __call__(self, *args: str, timeout: float = 180.0, name: str | None = None,
                 name_last: bool = False) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RAFTNET_HOME": str(self.home)}
        env.pop("RAFTNET_DEBUG", None)
        named = [*args, "--name", name or self.name] if name_last else ["--name", name or self.name, *args]
        return subprocess.run([*RAFTNET, *named], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(self, *args: str, timeout: float = 180.0) -> str:
        r = self(*args, timeout=timeout)
        assert r.returncode == 0, f"raftnet {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def status(self) -> dict[str, Any]:
        out = self.ok("status", "--json")
        doc = json.loads(out)  # one JSON object, nothing else on stdout
        assert isinstance(doc, dict) and isinstance(doc["nodes"], list) and isinstance(doc["faults"], list)
        return doc

    def faults(self) -> set[str]:
        return set(self.status()["faults"])

    def node(self, node: str) -> dict[str, Any]:
        return next(n for n in self.status()["nodes"] if n["id"] == node)

    @property
    def workdir(self) -> Path:
        return self.home / self.name


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0
    lines = r.stderr.strip("\n").splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("raftnet: ") and "Traceback" not in r.stderr
    return lines[0]


def slot_of(doc: dict[str, Any]) -> int:
    m = re.fullmatch(r"10\.213\.(\d+)\.\d+:\d+", doc["nodes"][0]["address"])
    assert m, doc
    return int(m.group(1))


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def cli(tmp_path: Path, worker_id: str) -> Iterator[Cli]:
    c = Cli(tmp_path / "home", f"clitest-{worker_id}-{os.getpid()}")
    holder: int | None = None
    slot: int | None = None
    try:
        yield c
    finally:
        try:
            holder = int((c.workdir / "holder.pid").read_text())
        except (OSError, ValueError):
            holder = None
        try:
            slot = int(json.loads((c.workdir / "state.json").read_text())["slot"])
        except (OSError, ValueError, KeyError, TypeError):
            slot = None
        if c.workdir.exists():
            c("down", timeout=120)  # always down, even after a failure
        # belt and braces, so that a failed test leaks nothing
        if holder is not None and not gone(holder):
            os.kill(holder, signal.SIGKILL)
        if slot is not None:
            with alloc.lock():
                a = alloc.allocation(slot)
            if a is not None and a.name == c.name:
                netns.destroy_cluster_net(topology.Topology(slot, ()))
                alloc.release(slot)


def up(cli: Cli) -> tuple[int, int]:
    """``up --nodes 3``: the node table, exit 0. Returns (slot, holder pid)."""
    out = cli.ok("up", "--nodes", "3", timeout=240)
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "ADDRESS", "PID", "ROLE", "TERM", "LEADER_ID"]
    assert [ln.split()[0] for ln in lines[1:4]] == ["n1", "n2", "n3"]
    assert "is up" in lines[-1]
    doc = cli.status()
    holder = int((cli.workdir / "holder.pid").read_text())
    assert not gone(holder)
    return slot_of(doc), holder


def down_leaves_nothing(cli: Cli, slot: int, holder: int) -> None:
    pids = [n["pid"] for n in cli.status()["nodes"]]
    assert "is down" in cli.ok("down", timeout=120)
    assert not cli.workdir.exists()
    wait_for(lambda: gone(holder), 10, what="the holder to exit")
    assert all(gone(p) for p in pids)
    assert node_processes(cli.home) == []
    with alloc.lock():
        a = alloc.allocation(slot)
        if a is None:  # else the slot went to another cluster meanwhile: its names are not ours
            assert netns.slot_netns(slot) == []
            assert not netns.link_exists(topology.root_link(slot))
        else:
            assert a.name != cli.name
    assert "no such cluster" in one_line_error(cli("status"))


def test_cli_up_status_network_faults_down(cli: Cli) -> None:
    slot, holder = up(cli)
    assert "already up" in one_line_error(cli("up", "--nodes", "3"))
    doc = cli.status()
    assert doc["faults"] == []
    assert [n["id"] for n in doc["nodes"]] == ["n1", "n2", "n3"]
    for n in doc["nodes"]:
        assert set(n) >= {"id", "address", "pid", "alive", "paused", "role", "term", "leader_id", "commit_index",
                          "last_applied", "link"}
        assert n["alive"] is True and n["paused"] is False and n["link"] == "up"
    wait_for(lambda: sum(n["role"] == "leader" for n in cli.status()["nodes"]) == 1, 30, interval=0.5,
             what="one leader in status")
    table = cli.ok("status")
    assert table.splitlines()[0].split()[:4] == ["ID", "ADDRESS", "PID", "ALIVE"]
    r = cli("status", "--json", name_last=True)  # `--name` after the command, as CONTRACT.md writes it
    assert r.returncode == 0 and [n["id"] for n in json.loads(r.stdout)["nodes"]] == ["n1", "n2", "n3"]
    assert table.strip().splitlines()[-1] == "faults: none"

    # network faults show in `faults`; they compose; heal removes them all
    cli.ok("partition", "n1", "n2,n3")
    assert cli.faults() == {"drop n2 -> n1", "drop n3 -> n1", "drop n1 -> n2", "drop n1 -> n3"}
    cli.ok("heal")
    assert cli.faults() == set()
    cli.ok("isolate", "n2")
    assert cli.faults() == {"drop n1 -> n2", "drop n3 -> n2", "drop n2 -> n1", "drop n2 -> n3"}
    cli.ok("heal")
    cli.ok("bridge", "n2")  # the halves are n1 and n3
    assert cli.faults() == {"drop n1 -> n3", "drop n3 -> n1"}
    cli.ok("heal")
    cli.ok("cut", "n1", "n2")
    assert cli.faults() == {"drop n1 -> n2"}
    assert "loss n2 30%" in cli.ok("loss", "n2", "30")
    assert cli.faults() == {"drop n1 -> n2", "loss n2 30%"}
    cli.ok("heal")
    assert cli.faults() == set()
    cli.ok("link-down", "n3")
    n3 = cli.node("n3")
    assert n3["link"] == "down" and n3["role"] is None and cli.faults() == {"link down n3"}
    cli.ok("link-up", "n3")
    assert cli.node("n3")["link"] == "up" and cli.faults() == set()
    down_leaves_nothing(cli, slot, holder)


def test_cli_process_faults_membership_errors_down(cli: Cli) -> None:
    slot, holder = up(cli)
    pid = cli.node("n3")["pid"]
    cli.ok("kill", "n3")
    n3 = cli.node("n3")
    assert n3["alive"] is False and n3["role"] is None and gone(pid)
    cli.ok("restart", "n3")
    n3 = cli.node("n3")
    assert n3["alive"] is True and n3["pid"] != pid
    wait_for(lambda: cli.node("n3")["role"] in ("follower", "leader"), 30, interval=0.5, what="n3 back")
    cli.ok("pause", "n3")
    n3 = cli.node("n3")
    assert n3["paused"] is True and n3["alive"] is True and n3["role"] is None
    assert psutil.Process(n3["pid"]).status() == psutil.STATUS_STOPPED
    cli.ok("resume", "n3")
    assert cli.node("n3")["paused"] is False
    wait_for(lambda: cli.node("n3")["role"] is not None, 30, interval=0.5, what="n3 answering")

    assert cli.ok("add", timeout=240).strip().splitlines()[0] == "added n4"
    assert [n["id"] for n in cli.status()["nodes"]] == ["n1", "n2", "n3", "n4"]
    assert netns.netns_exists(topology.node_netns(slot, "n4"))
    cli.ok("remove", "n4", timeout=240)
    assert [n["id"] for n in cli.status()["nodes"]] == ["n1", "n2", "n3"]
    assert not netns.netns_exists(topology.node_netns(slot, "n4"))

    # errors: non-zero, one line on stderr, nothing changed
    assert "unknown node 'n9'" in one_line_error(cli("kill", "n9"))
    assert "unknown node 'n9'" in one_line_error(cli("partition", "n1", "n9"))
    assert "loss percent" in one_line_error(cli("loss", "n2", "300"))
    r = cli("frobnicate")
    assert r.returncode == 2 and "invalid choice" in one_line_error(r)
    assert cli.faults() == set() and all(n["alive"] for n in cli.status()["nodes"])
    down_leaves_nothing(cli, slot, holder)


def test_cli_errors_without_a_cluster(cli: Cli) -> None:
    for args in (["status"], ["status", "--json"], ["kill", "n1"], ["heal"], ["down"]):
        assert "no such cluster" in one_line_error(cli(*args, name=cli.name + "-nosuch"))
    r = cli("frobnicate")
    assert r.returncode == 2 and "invalid choice" in one_line_error(r)
    r = cli("loss", "n1")
    assert r.returncode == 2 and "required: percent" in one_line_error(r)


def test_cli_check_run(tmp_path: Path) -> None:
    out = tmp_path / "check"
    env = {**os.environ, "RAFTNET_HOME": str(tmp_path / "home")}
    r = subprocess.run([*RAFTNET, "check", "--nodes", "3", "--time", "15", "--nemesis", "kill,partition", "--seed",
                        "7", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
                       stdin=subprocess.DEVNULL)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-2000:]}"
    assert last.startswith("VERDICT: linearizable"), last
    assert (out / "report.html").exists() and (out / "history.jsonl").exists()
    assert "VERDICT: linearizable" in (out / "report.html").read_text()
    assert node_processes(out) == []


def powerfs_processes(home: Path) -> list[int]:
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        alive = p.info["status"] != psutil.STATUS_ZOMBIE
        if alive and "harness.lab.powerfs" in cmd and any(str(home) in a for a in cmd):
            out.append(p.pid)
    return out


@pytest.mark.fuse
def test_cli_power_cut_one_node_and_all(cli: Cli) -> None:
    from harness.orchestration.local import request

    out = cli.ok("up", "--nodes", "3", "--power", timeout=240)
    assert "is up" in out
    slot, holder = slot_of(cli.status()), int((cli.workdir / "holder.pid").read_text())
    assert len(powerfs_processes(cli.home)) == 3
    assert "powerfs" not in Path("/proc/self/mountinfo").read_text()  # the disks are in the cluster's namespace

    def leader() -> dict[str, Any] | None:
        return next((n for n in cli.status()["nodes"] if n["role"] == "leader"), None)

    ld = wait_for(leader, 30, interval=0.3, what="a leader")
    assert request(ld["address"], "PUT", "/v1/kv/k", {"value": "before the cuts"}, timeout=10).status == 200
    cli.ok("power-cut", "n2")
    assert cli.node("n2")["alive"] is False and len(powerfs_processes(cli.home)) == 2
    cli.ok("restart", "n2")
    assert cli.node("n2")["alive"] is True and len(powerfs_processes(cli.home)) == 3
    pids = {n["pid"] for n in cli.status()["nodes"]}
    cli.ok("power-cut", "all")  # and the power comes back
    doc = cli.status()
    assert all(n["alive"] for n in doc["nodes"]) and not pids & {n["pid"] for n in doc["nodes"]}
    ld = wait_for(leader, 30, interval=0.3, what="a leader after the cut")
    r = request(ld["address"], "GET", "/v1/kv/k", timeout=10)
    assert r.status == 200 and r.body["value"] == "before the cuts"
    assert "unknown node" in one_line_error(cli("power-cut", "n9"))
    down_leaves_nothing(cli, slot, holder)
    assert powerfs_processes(cli.home) == []


def test_cli_clock_rate_offset_reset(cli: Cli) -> None:
    from harness.lab import clock as lab_clock

    if reason := lab_clock.unavailable_reason():
        pytest.skip(reason)
    r = cli("clock", "n2", "--rate", "2")  # no cluster yet
    assert "no such cluster" in one_line_error(r)
    assert "is up" in cli.ok("up", "--nodes", "3", "--clock", timeout=240)
    slot, holder = slot_of(cli.status()), int((cli.workdir / "holder.pid").read_text())
    out = cli.ok("clock", "n2", "--rate", "3")
    assert "clock: done" in out and any(f.startswith("clock n2: rate 3x") for f in cli.faults())
    assert (cli.workdir / "n2.clock").read_text().strip().endswith("x3.000000")
    cli.ok("clock", "n3", "--offset", "-200ms")  # a negative value after --offset, as people type it
    assert any(f.startswith("clock n3: real rate, -0.200 s") for f in cli.faults()), cli.faults()
    assert cli.ok("clock", "n2").startswith("n2: rate 3x, +")
    r = cli("clock", "n2", "--rate", "0")
    assert r.returncode == 2 and "between" in one_line_error(r)
    assert "unknown node" in one_line_error(cli("clock", "n9", "--rate", "2"))
    cli.ok("clock", "n2", "reset")
    cli.ok("clock", "n3", "reset")
    assert not any(f.startswith("clock") for f in cli.faults())
    assert cli.ok("clock", "n2").startswith("n2: real rate, +")  # it kept what it gained at 3x
    assert all(n["alive"] for n in cli.status()["nodes"])
    down_leaves_nothing(cli, slot, holder)


def test_cli_clock_needs_an_up_clock_cluster(cli: Cli) -> None:
    slot, holder = up(cli)
    assert "up --clock" in one_line_error(cli("clock", "n2", "--rate", "2"))
    down_leaves_nothing(cli, slot, holder)
