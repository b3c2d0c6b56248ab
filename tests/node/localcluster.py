"""The node tests' local cluster: harness/local.py (re-exported for the tests' imports)."""

from harness.local import ROOT, LocalCluster, Node, Response, free_port, request, wait_for

__all__ = ["ROOT", "LocalCluster", "Node", "Response", "free_port", "request", "wait_for"]
