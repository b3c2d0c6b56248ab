"""The recording client: every operation an invoke and a completion; a client whose operation ended
``info`` goes on as a new process (Jepsen's rule), so the history stays well-formed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from harness.model.checker import check
from harness.model.history import History, OpType
from harness.orchestration.recorder import Recorder
from harness.systems.base import Endpoint, Op, Outcome


class ScriptedKV:
    """A KVClient that answers from a script of outcome types."""

    def __init__(self, script: list[OpType]) -> None:
        self.script = list(script)

    async def call(self, node: str, op: Op, endpoints: Mapping[str, Endpoint]) -> Outcome:
        kind = self.script.pop(0)
        return Outcome(kind, value=None if op.f != "cas" else kind is OpType.OK, error=kind.value, node=node)

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.mark.parametrize(
    ("stride", "script", "processes"),
    [
        pytest.param(10, [OpType.OK, OpType.OK], [3, 3], id="no-info-same-process"),
        pytest.param(10, [OpType.INFO, OpType.OK, OpType.INFO, OpType.FAIL],
                     [3, 13, 13, 23], id="each-info-moves-on-by-the-stride"),
        pytest.param(10, [OpType.FAIL, OpType.OK], [3, 3], id="a-fail-is-definite-same-process"),
        pytest.param(0, [OpType.INFO, OpType.OK], [3, 3], id="stride-0-stays"),
    ],
)
def test_info_starts_a_new_process(stride: int, script: list[OpType], processes: list[int]) -> None:
    h = History()
    rec = Recorder(ScriptedKV(script), h, 3, lambda: {}, node="n1", clock=Clock(), stride=stride)

    async def run() -> None:
        for i in range(len(script)):
            await rec.write("k", f"v{i}")
        await rec.close()

    asyncio.run(run())
    ops = h.operations()
    assert [o.process for o in ops] == processes
    assert [o.status for o in ops] == [t.value for t in script]
    info = [o for o in ops if o.status == "info"]
    assert all(o.end == o.call + 1.0 for o in info)  # when the client gave up, from the same clock
    assert check(h).ok
