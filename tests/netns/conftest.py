"""Fixtures of the namespace tests: real node processes, each in its own
network namespace, faults through the kernel.

``cluster(n=3)`` builds a cluster for the test and tears it down afterwards
(nothing left: processes, namespaces, links, rules, allocation). When the
test fails, its node logs, event log and recorded histories are copied to
``runs/failed/<test>/`` and the path is added to the failure report.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

from harness.model.history import History
from harness.orchestration.cluster import Cluster
from harness.orchestration.workload import Workload

ROOT = Path(__file__).resolve().parents[2]
FAILED_DIR = Path(os.environ.get("RAFTNET_FAILED_DIR", ROOT / "runs" / "failed"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


class Lab:
    """What a namespace test gets: clusters it creates and histories it records."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp = tmp_path
        self.clusters: list[Cluster] = []
        self.histories: dict[str, History] = {}

    def __call__(self, n: int = 3, node_args: tuple[str, ...] = (), **kw: Any) -> Cluster:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.request.node.name)[:60]
        c = Cluster(n, workdir=self.tmp / f"cluster{len(self.clusters)}", name=name, node_args=node_args, **kw)
        self.clusters.append(c)
        c.start()
        c.leader(timeout=30)
        return c

    def workload(self, c: Cluster, **kw: Any) -> Workload:
        w = Workload(c, **kw)
        self.histories[f"history{len(self.histories)}"] = w.history
        return w

    def save_artifacts(self) -> Path:
        dest = FAILED_DIR / re.sub(r"[^A-Za-z0-9_.-]+", "_", self.request.node.nodeid)[-120:]
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(self.clusters):
            c.save_events()
            for f in c.workdir.glob("*.log"):
                shutil.copy(f, dest / f"cluster{i}-{f.name}")
            for f in c.workdir.glob("events*.jsonl"):
                shutil.copy(f, dest / f"cluster{i}-{f.name}")
        for name, h in self.histories.items():
            h.write_jsonl(dest / f"{name}.jsonl")
        return dest


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """Factory: ``c = cluster(5)`` -> a started Cluster with a leader."""
    lab = Lab(request, tmp_path)
    request.node.lab = lab
    try:
        yield lab
    finally:
        faults = sum(1 for c in lab.clusters for e in c.events if e.kind == "fault")
        ops = sum(len(h.operations()) for h in lab.histories.values())
        request.node.user_properties += [("faults", faults), ("operations", ops)]
        rep = getattr(request.node, "rep_call", None)
        failed = rep is not None and rep.failed
        if failed:
            dest = lab.save_artifacts()
            request.node.add_report_section("teardown", "artifacts", f"node logs, events and histories: {dest}")
            request.node.user_properties.append(("artifacts", str(dest)))
            print(f"\nartifacts of the failed test: {dest}")
        for c in lab.clusters:
            c.destroy()
