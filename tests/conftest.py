"""Suite-wide rules.

raftnet's pytest plugin (harness/pytest_plugin.py) does the generic part:
the ``netns`` and ``fuse`` markers, rootless mode (an ordinary user's
pytest re-executes itself inside a private user + network + mount
namespace before collecting anything; where neither root nor that is
possible, namespace tests are skipped with one line saying which setting
blocks them), the clean-up of crashed runs and the ``cluster`` fixture.
Installed, it is loaded through its entry point; from a bare checkout
(PYTHONPATH) this conftest registers it, once, under the same name.
What is left here is raftnet's own: ``local_cluster`` and the summary table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import pytest_plugin

if TYPE_CHECKING:
    from tests.node.localcluster import MakeCluster


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin unless its entry point did (or ``-p no:raftnet`` blocks it)."""
    pm = config.pluginmanager
    if not pm.has_plugin("raftnet") and not pm.is_blocked("raftnet") and not pm.is_registered(pytest_plugin):
        pm.register(pytest_plugin, "raftnet")


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
