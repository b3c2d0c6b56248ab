"""Suite-wide rules.

Namespace tests (marker ``netns``) run as root, or, for an ordinary user,
inside a private user + network + mount namespace: pytest re-executes itself
there (harness/lab/userns.py) before collecting anything. Where neither is
possible they are skipped with one line saying which setting blocks them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.lab import userns

if TYPE_CHECKING:
    from tests.node.localcluster import MakeCluster

NETNS_SKIP = "needs root for network namespaces: run `sudo make test-partitions` or use the Vagrant VM"
_skip_reason: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _skip_reason
    if os.geteuid() == 0 or userns.inside():
        return
    st = userns.status()  # in xdist workers too: they collect, so they need the reason
    if not st.available:
        _skip_reason = userns.skip_reason(st)
        return
    if hasattr(config, "workerinput"):
        return
    # Enter a private world and run the very same pytest command there.
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", f"/tmp/raftnet-userns-{os.getuid()}")
    os.makedirs(os.environ["PYTEST_DEBUG_TEMPROOT"], exist_ok=True)
    os.chdir(config.invocation_params.dir)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = userns.wrap([sys.executable, "-m", "pytest", *config.invocation_params.args])
    os.execvp(argv[0], argv)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The next run removes what crashed runs left (dead owners only): once, before any worker starts."""
    if hasattr(session.config, "workerinput") or os.geteuid() != 0:
        return
    from harness.lab import cleanup

    try:
        cleanup.clean(sweep_orphans=False)
    except OSError:
        pass  # e.g. no /run/raftnet yet


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fuse = [item for item in items if "fuse" in item.keywords]
    if fuse:
        from harness.lab import powerfs

        reason = powerfs.unavailable_reason()  # e.g. /dev/fuse is 0600 root: not for a rootless user
        if reason:
            for item in fuse:
                item.add_marker(pytest.mark.skip(reason=reason))
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=_skip_reason or NETNS_SKIP)
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """Factory: ``local_cluster(n=3, extra_args=[...])`` starts n real nodes on 127.0.0.1."""
    from tests.node.localcluster import LocalCluster

    made: list[LocalCluster] = []

    def make(n: int = 3, extra_args: list[str] | None = None, start: bool = True) -> LocalCluster:
        c = LocalCluster(tmp_path / f"cluster{len(made)}", n, list(extra_args or []))
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    for c in made:
        c.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """After namespace tests: one row per scenario (result, seconds, faults, operations checked)."""
    rows: dict[str, dict[str, Any]] = {}
    for key in ("passed", "failed", "error", "skipped", "xfailed", "xpassed", ""):  # "": setup/teardown
        for rep in terminalreporter.stats.get(key, []):
            if not hasattr(rep, "nodeid") or "tests/netns/" not in rep.nodeid or "test_net_layer" in rep.nodeid:
                continue
            row = rows.setdefault(rep.nodeid, {"result": "passed", "seconds": 0.0, "faults": "", "operations": ""})
            row["seconds"] = float(row["seconds"]) + getattr(rep, "duration", 0.0)
            if key in ("xfailed", "xpassed"):
                row["result"] = key
            elif rep.outcome != "passed" and row["result"] == "passed" and (rep.when == "call" or rep.failed):
                row["result"] = rep.outcome
            for k, v in getattr(rep, "user_properties", []):
                row[k] = v
    if not rows or all(r["result"] == "skipped" for r in rows.values()):
        return
    tr = terminalreporter
    tr.section("namespace scenarios")
    tr.write_line(f"{'scenario':<72} {'result':<8} {'seconds':>8} {'faults':>7} {'ops':>7}")
    for nodeid, r in sorted(rows.items()):
        name = nodeid.split("tests/netns/", 1)[1]
        tr.write_line(f"{name[:72]:<72} {r['result']:<8} {float(r['seconds']):8.1f} {r['faults']!s:>7} "
                      f"{r['operations']!s:>7}")
    arts = [str(r["artifacts"]) for r in rows.values() if r.get("artifacts")]
    tr.write_line("artefacts of failed scenarios: " + (", ".join(arts) if arts else "none"))
    tr.write_line("performance figures: runs/performance/ (JSON and SVG per scenario)")
