"""Fixtures of the namespace tests: real node processes, each in its own
network namespace, faults through the kernel.

``cluster(n=3)`` (raftnet's pytest plugin, harness/pytest_plugin.py) builds
a cluster for the test and tears it down afterwards (nothing left:
processes, namespaces, links, rules, allocation). When the test fails, its
node logs, event log and recorded histories are copied to
``runs/failed/<test>/`` and the path is added to the failure report.
``Lab`` is the type of that fixture, for annotations.
"""

from __future__ import annotations

from harness.pytest_plugin import ClusterFactory as Lab

__all__ = ["Lab"]
