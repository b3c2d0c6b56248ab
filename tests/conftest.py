"""Suite-wide rules: the ``netns`` marker is skipped, with one line saying why,
where network namespaces cannot be had."""

from __future__ import annotations

import os

import pytest

NETNS_SKIP = "needs root for network namespaces: run `sudo make test-partitions` or use the Vagrant VM"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=NETNS_SKIP)
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def local_cluster(tmp_path):  # type: ignore[no-untyped-def]
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
