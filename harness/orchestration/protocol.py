"""The one cluster protocol: what the workload, ``verify``, the nemesis and
``raftnet check`` need from a cluster, served by the namespace ``Cluster``
(every fault) and by the 127.0.0.1 ``LoopbackCluster`` (process faults only:
no root, no namespaces; network faults raise ClusterError).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from harness.orchestration.nemesis import Target
from harness.orchestration.report import EventRecord
from harness.systems.base import Endpoint, NodeStatus, System


class LabCluster(Target, Protocol):
    """The nemesis's Target (every fault), plus what the workload, verify and check read."""

    system: System
    t0: float  # monotonic start: event times are relative to it
    events: list[EventRecord]
    removed: set[str]

    @property
    def nodes(self) -> tuple[str, ...]: ...
    @property
    def knows_leader(self) -> bool: ...
    def placement(self) -> str: ...
    def endpoint(self, node: str) -> Endpoint: ...
    def endpoints(self) -> dict[str, Endpoint]: ...
    def node_status(self, node: str, timeout: float = ...) -> NodeStatus | None: ...
    def leader(self, timeout: float = ..., among: Iterable[str] | None = ...) -> str: ...
    def members(self) -> list[str]: ...
    def tail(self, node: str, lines: int = ...) -> str: ...
    def recover(self) -> None: ...
