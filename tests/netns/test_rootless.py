"""Rootless mode, proven from a root run: an unprivileged user runs the
namespace scenarios (not skipped) on a copy of the tree, and sees the one-line
skip reason when user namespaces are blocked."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.lab import userns

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
USER = "raftnet-ci"
SKIP_PARTS = (".venv", "runs", "bench-results", ".git", "__pycache__", ".pytest_cache")


def _as_user(home: Path, cwd: Path, argv: list[str], extra_env: dict[str, str] | None = None,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})  # the machine's package index
    env.update(extra_env or {})
    return subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def user_tree() -> Iterator[tuple[Path, Path]]:
    if os.geteuid() != 0 or userns.inside():
        pytest.skip("creates a user and runs the suite as that user: needs real root")
    if shutil.which("runuser") is None or shutil.which("useradd") is None:
        pytest.skip("runuser/useradd not available")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--create-home", "--home-dir", f"/var/tmp/{USER}-home",
                        "--shell", "/bin/sh", USER], check=True, capture_output=True)
    home = Path(pwd.getpwnam(USER).pw_dir)
    home.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="raftnet-rootless-", dir="/var/tmp"))
    try:
        tree = dest / "raftnet"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*SKIP_PARTS))
        subprocess.run(["chown", "-R", f"{USER}:", str(dest), str(home)], check=True)
        r = _as_user(home, tree, ["make", "setup"])
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        yield home, tree
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _summary(out: str) -> str:
    lines = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|skipped)", ln)]
    return lines[-1] if lines else ""


def test_namespace_scenarios_pass_as_an_unprivileged_user(user_tree: tuple[Path, Path]) -> None:
    home, tree = user_tree
    st = userns.status()
    if not st.available:
        pytest.skip(userns.skip_reason(st))
    from harness.systems.etcd import unavailable_reason

    # the seed scenarios against raftnet and, where etcd is installed (CI's set-up installs it), etcd too
    etcd = "" if unavailable_reason() is None else " and not etcd"
    selection = ("tests/netns/test_net_layer.py tests/netns/test_seed_scenarios.py "
                 f"-k '(net_layer or partition or split_brain or leader_failure_data){etcd}'")
    r = _as_user(home, tree, ["make", "test-partitions", f"PYTEST_ARGS={selection}"])
    summary = _summary(r.stdout)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"[1-9]\d* passed", summary) and "skipped" not in summary, summary
    assert "failed" not in summary, summary


def test_blocked_user_namespaces_skip_with_one_line_reason(user_tree: tuple[Path, Path]) -> None:
    home, tree = user_tree
    r = _as_user(home, tree, ["make", "test-partitions", "PYTEST_ARGS=tests/netns/test_net_layer.py -rs"],
                 {userns.ENV_DISABLE: "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    summary = _summary(r.stdout)
    assert "passed" not in summary and "skipped" in summary, summary
    reasons = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert reasons and all("RAFTNET_USERNS_DISABLE=1" in ln and "sudo make test-partitions" in ln
                           for ln in reasons), reasons[:3]


def test_power_tests_skip_rootless_with_one_line_naming_dev_fuse(user_tree: tuple[Path, Path]) -> None:
    """/dev/fuse is 0600 root here: a user (even the mapped root of a user namespace) cannot open it."""
    home, tree = user_tree
    st = userns.status()
    if not st.available:
        pytest.skip(userns.skip_reason(st))
    fuse = os.stat("/dev/fuse")
    if fuse.st_mode & 0o006:
        pytest.skip("/dev/fuse is open to every user here: the power tests would run")
    r = _as_user(home, tree, ["make", "test-partitions", "PYTEST_ARGS=tests/powerfs/test_powerfs.py -rs"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    summary = _summary(r.stdout)
    assert "passed" not in summary and "skipped" in summary, summary
    reasons = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert reasons and all("/dev/fuse (mode crw-------" in ln for ln in reasons), reasons[:3]


LEAK_SCRIPT = """
import os, signal, sys, tempfile
from pathlib import Path
from harness.orchestration.cluster import Cluster
c = Cluster(3, workdir=Path(tempfile.mkdtemp()), name="killed-run")
c.start()
print("nodes", *[p.pid for p in c.procs.values()], flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the harness dies without cleaning anything
"""


def test_a_killed_rootless_run_leaves_nothing(user_tree: tuple[Path, Path]) -> None:
    home, tree = user_tree
    st = userns.status()
    if not st.available:
        pytest.skip(userns.skip_reason(st))
    script = home / "killed_run.py"
    script.write_text(LEAK_SCRIPT)
    subprocess.run(["chown", USER, str(script)], check=True)
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    argv = userns.wrap([str(tree / ".venv/bin/python"), str(script)])
    argv[argv.index("-m") - 1] = str(tree / ".venv/bin/python")  # the user's interpreter runs harness.lab.userns
    r = _as_user(home, tree, argv, timeout=120)
    assert "nodes" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 137, (r.returncode, r.stderr[-1000:])
    left = subprocess.run(["ps", "-u", USER, "-o", "pid=,args="], capture_output=True, text=True).stdout
    assert left.strip() == "", left  # the PID namespace took every node with it
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert after <= before, after - before  # nothing outside the private world
