"""An asyncio client for the node's HTTP API that records every operation
into a History: invoke before sending, then ok / fail / info.

- ok: 200; a 404 read (value None); a 409 cas (output False).
- fail: the operation definitely did not happen: 307 (when bound to one
  node), 503, any other 4xx, a connection that could not be opened; and a
  read that did not complete (reads change nothing, so dropping them is exact).
- info: 504, a timeout or a broken connection after the request was sent:
  the write may or may not have happened.

A client is either bound to one node (Jepsen-style: each client talks to its
own node and records a 307 as a failure) or follows 307 redirects to the
leader. Writes carry X-Client-Id / X-Request-Seq.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from harness.model.history import History, OpType


@dataclass(frozen=True, slots=True)
class Outcome:
    type: OpType
    value: Any = None
    index: int | None = None
    error: str | None = None
    node: str | None = None


class Client:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        history: History,
        process: int,
        addresses: Mapping[str, str],
        node: str | None = None,
        *,
        client_id: str | None = None,
        timeout: float = 5.0,
        follow_redirects: bool = False,
        clock: Callable[[], float] = time.monotonic,
        secret: str | None = None,
    ) -> None:
        self.session = session
        # aiohttp silently re-sends a PUT or DELETE on a new connection when a pooled one breaks
        # after the request went out (RFC 9112 §9.3.1.1); if the node died, the re-send's connect
        # error would be recorded as a definite `fail` although the first copy may commit. There is
        # no public switch, so turn the private one off: a broken connection must surface as `info`.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self.history = history
        self.process = process
        self.addresses = addresses  # node id -> HOST:PORT (live view: nodes may be added)
        self.node = node
        self.client_id = client_id or f"c{process}-{id(self):x}"
        self.seq = 0
        self.timeout = timeout
        self.follow = follow_redirects
        self.clock = clock
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    # ------------------------------------------------------------------ operations
    async def read(self, key: str) -> Outcome:
        return await self._op("read", key, None, "GET", "", None)

    async def write(self, key: str, value: str) -> Outcome:
        return await self._op("write", key, value, "PUT", "", {"value": value})

    async def cas(self, key: str, expect: str | None, new: str) -> Outcome:
        return await self._op("cas", key, [expect, new], "POST", "/cas", {"expect": expect, "value": new})

    async def delete(self, key: str) -> Outcome:
        return await self._op("delete", key, None, "DELETE", "", None)

    # ------------------------------------------------------------------ plumbing
    async def _op(self, f: str, key: str, value: Any, method: str, suffix: str, body: Any) -> Outcome:
        node = self.node or next(iter(self.addresses))
        self.history.invoke(self.process, f, key, value, self.clock(), node=node)
        out = await self._send(f, method, f"/v1/kv/{_quote(key)}{suffix}", body, node)
        self.history.complete(self.process, out.type, out.value, self.clock(), node=out.node or node,
                              index=out.index, error=out.error)
        return out

    async def _send(self, f: str, method: str, path: str, body: Any, node: str) -> Outcome:
        headers = dict(self.headers)
        if f != "read":
            self.seq += 1
            headers.update({"X-Client-Id": self.client_id, "X-Request-Seq": str(self.seq)})
        data = json.dumps(body) if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        indeterminate = OpType.FAIL if f == "read" else OpType.INFO
        deadline = self.clock() + self.timeout
        for _hop in range(4):
            addr = self.addresses.get(node)
            if addr is None:
                return Outcome(OpType.FAIL, error=f"unknown node {node}")
            remaining = deadline - self.clock()
            if remaining <= 0:
                return Outcome(indeterminate, error="timeout", node=node)
            sent = False
            try:
                async with self.session.request(
                    method, f"http://{addr}{path}", data=data, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=remaining, connect=min(1.0, remaining)),
                ) as resp:
                    sent = True
                    payload = await resp.json(content_type=None)
                    status = resp.status
            except aiohttp.ClientConnectorError as e:
                return Outcome(OpType.FAIL, error=f"connect: {e.os_error!r}"[:200], node=node)
            except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as e:
                # the request may have reached the node: a write may have happened
                kind = OpType.FAIL if (f == "read") else OpType.INFO
                return Outcome(kind, error=f"{type(e).__name__}{' after send' if sent else ''}", node=node)
            out = self._interpret(f, status, payload if isinstance(payload, dict) else {}, node)
            if out is not None:
                return out
            leader = payload.get("leader") if isinstance(payload, dict) else None
            target = leader.get("id") if isinstance(leader, dict) else None
            if target is None or target == node:
                return Outcome(OpType.FAIL, error="not_leader", node=node)
            node = target
        return Outcome(OpType.FAIL, error="too many redirects", node=node)

    def _interpret(self, f: str, status: int, p: dict[str, Any], node: str) -> Outcome | None:
        index = p.get("index") if isinstance(p.get("index"), int) else None
        if status == 200:
            value = p.get("value") if f == "read" else (True if f == "cas" else None)
            return Outcome(OpType.OK, value, index, node=node)
        if status == 404 and f == "read" and p.get("error") == "not_found":
            return Outcome(OpType.OK, None, node=node)
        if status == 409 and f == "cas" and p.get("error") == "cas_failed":
            return Outcome(OpType.OK, False, error="cas_failed", node=node)
        if status == 307:
            if self.follow:
                return None
            return Outcome(OpType.FAIL, error="not_leader", node=node)
        if status == 504:
            return Outcome(OpType.FAIL if f == "read" else OpType.INFO, error="timeout", node=node)
        if status == 503 or 400 <= status < 500:  # 503 and 4xx: definitely not applied
            return Outcome(OpType.FAIL, error=str(p.get("error") or status), node=node)
        return Outcome(OpType.FAIL if f == "read" else OpType.INFO, error=f"HTTP {status}", node=node)


def _quote(key: str) -> str:
    from urllib.parse import quote

    return quote(key, safe="")
