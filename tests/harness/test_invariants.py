"""The acknowledged-write check reports, never crashes, whatever entry took an acknowledged index."""

from __future__ import annotations

import json

import pytest

from harness.model.history import History, OpType
from harness.model.invariants import NodeLog, check_acknowledged


def _acked_write(index: int) -> History:
    h = History()
    h.invoke(0, "write", "k", "v1", 0.0, node="n1")
    h.complete(0, OpType.OK, "v1", 1.0, node="n1", index=index)
    return h


PUT = json.dumps({"op": "put", "key": "k", "value": "v1"})
CONFIG = json.dumps([{"id": "n1", "address": "10.0.0.1:7000", "voter": True}])


@pytest.mark.parametrize(
    ("entry", "lost"),
    [
        pytest.param((1, "normal", PUT), False, id="the-write-itself"),
        pytest.param((2, "config", CONFIG), True, id="a-configuration-took-its-index"),
        pytest.param((2, "noop", ""), True, id="a-no-op-took-its-index"),
        pytest.param((2, "normal", json.dumps({"op": "put", "key": "k", "value": "other"})), True, id="another-write"),
    ],
)
def test_acknowledged_write_checked_against_whatever_holds_its_index(entry: tuple[int, str, str], lost: bool) -> None:
    logs = {"n1": NodeLog("n1", snapshot_index=0, commit_index=3, entries={2: entry})}
    out, checked = check_acknowledged(_acked_write(2), logs)
    assert checked == 1
    assert bool(out) is lost
