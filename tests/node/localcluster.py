"""The node tests' local cluster: harness/orchestration/local.py (re-exported for the tests' imports)."""

from typing import Protocol

from harness.orchestration.local import ROOT, LocalCluster, Node, Response, free_port, request, wait_for

__all__ = ["ROOT", "LocalCluster", "MakeCluster", "Node", "Response", "free_port", "request", "serves", "wait_for"]


class MakeCluster(Protocol):
    """The ``local_cluster`` fixture: ``local_cluster(n=3, extra_args=[...])`` starts n real nodes."""

    def __call__(self, n: int = 3, extra_args: list[str] | None = None, start: bool = True) -> LocalCluster: ...


def serves(node: Node, key: str) -> bool:
    """``node`` answers a stale read of ``key`` with 200: it has applied a write of it."""
    return node.stale(key).status == 200
