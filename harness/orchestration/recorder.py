"""A recording client process: every operation goes into a History as an
invoke before it is sent and an ok / fail / info completion after, whatever
the system (the classification is the system client's, see systems/base.py).

As in Jepsen, a client whose operation ended ``info`` goes on as a new
process: its id grows by ``stride`` (the number of clients), because the
old process may still be acting in the cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from harness.model.history import History, OpType
from harness.systems.base import Endpoint, KVClient, Op, Outcome


class Recorder:
    """One Jepsen-style client: bound to ``node`` (which the caller may change between operations).

    ``process`` is its current process id; after an ``info`` completion it
    becomes ``process + stride`` (``stride`` 0: it stays, for a lone client).
    """

    def __init__(self, kv: KVClient, history: History, process: int,
                 endpoints: Callable[[], Mapping[str, Endpoint]], node: str | None = None,
                 clock: Callable[[], float] = time.monotonic, stride: int = 0) -> None:
        self.kv = kv
        self.history = history
        self.process = process
        self.endpoints = endpoints
        self.node = node
        self.clock = clock
        self.stride = stride

    async def read(self, key: str) -> Outcome:
        return await self.op(Op("read", key))

    async def write(self, key: str, value: str) -> Outcome:
        return await self.op(Op("write", key, value))

    async def cas(self, key: str, expect: str | None, new: str) -> Outcome:
        return await self.op(Op("cas", key, [expect, new]))

    async def delete(self, key: str) -> Outcome:
        return await self.op(Op("delete", key))

    async def op(self, op: Op) -> Outcome:
        eps = self.endpoints()
        node = self.node or next(iter(eps))
        value: Any = op.value
        self.history.invoke(self.process, op.f, op.key, value, self.clock(), node=node)
        out = await self.kv.call(node, op, eps)
        self.history.complete(self.process, out.type, out.value, self.clock(), node=out.node or node,
                              index=out.index, error=out.error)
        if out.type is OpType.INFO:
            self.process += self.stride
        return out

    async def close(self) -> None:
        await self.kv.close()
