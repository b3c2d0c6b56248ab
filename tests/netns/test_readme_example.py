"""The partition test the README shows, verbatim: the example must work."""

import pytest

from harness.orchestration.workload import verify
from tests.netns.conftest import Lab

pytestmark = pytest.mark.netns


def test_minority_leader_cannot_commit(cluster: Lab) -> None:
    c = cluster(5)                                     # 5 nodes in namespaces, a leader elected
    old = c.leader()
    rest = [n for n in c.nodes if n != old]
    with cluster.workload(c, clients=4, keys=3) as w:  # clients record a history
        c.partition([old, rest[0]], rest[1:])          # the old leader in a minority of 2
        c.leader(among=rest[1:], timeout=15)           # the majority elects a new one
        w.wait_ops(50)                                 # and keeps committing
    v = verify(c, w.history, w.keys)                   # heal, converge, check everything
    assert v.ok, v.explain()
