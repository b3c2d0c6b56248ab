"""Fixtures of the real-process tests: one 3-node cluster shared by the tests
that leave it healthy (one per xdist worker), and small helpers."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.node.localcluster import LocalCluster


def kv(key: str) -> str:
    """The URL path of ``key`` (one percent-encoded path segment; "." and ".." encoded too,
    as a raw dot segment would be normalised away)."""
    return "/v1/kv/" + (quote(key, safe="") if key.strip(".") else key.replace(".", "%2E"))


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A healthy 3-node cluster for tests that neither kill nor pause nodes.

    Tests using it write their own keys and may move leadership around; each
    looks the leader up afresh."""
    c = LocalCluster(tmp_path_factory.mktemp("shared"), 3, [])
    try:
        c.start()
        c.leader(timeout=20)
        yield c
    finally:
        c.stop_all()
