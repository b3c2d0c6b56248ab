"""An asyncio client of raftnet's HTTP API that classifies every completion.

- ok: 200; a 404 read (value None); a 409 cas (output False).
- fail: the operation definitely did not happen: 307 (when bound to one
  node), 503, any other 4xx, a connection that could not be opened; and a
  read that did not complete (reads change nothing, so dropping them is exact).
- info: 504, a timeout or a broken connection after the request was sent:
  the write may or may not have happened.

A client is either bound to one node (Jepsen-style: each client talks to its
own node and records a 307 as a failure) or follows 307 redirects to the
leader. Writes carry X-Client-Id / X-Request-Seq (exactly-once sessions).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from harness.model.history import OpType
from harness.systems.base import Endpoint, Op, Outcome


def session(limit: int = 0) -> aiohttp.ClientSession:
    """A session that never re-sends a request on its own.

    aiohttp silently re-sends a PUT or DELETE on a new connection when a pooled one breaks after the
    request went out (RFC 9112 §9.3.1.1); if the node died, the re-send's connect error would be
    recorded as a definite `fail` although the first copy may commit. There is no public switch, so
    turn the private one off: a broken connection must surface as `info`."""
    s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
    if hasattr(s, "_retry_connection"):
        s._retry_connection = False
    return s


_ROUTES = {"read": ("GET", ""), "write": ("PUT", ""), "cas": ("POST", "/cas"), "delete": ("DELETE", "")}


class RaftnetClient:
    def __init__(self, *, client_id: str, timeout: float = 5.0, follow_redirects: bool = False,
                 headers: Mapping[str, str] | None = None, clock: Any = time.monotonic) -> None:
        self.client_id = client_id
        self.seq = 0
        self.timeout = timeout
        self.follow = follow_redirects
        self.headers = dict(headers or {})
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, node: str, op: Op, endpoints: Mapping[str, Endpoint]) -> Outcome:
        if self._session is None:
            self._session = session()
        method, suffix = _ROUTES[op.f]
        body: Any = None
        if op.f == "write":
            body = {"value": op.value}
        elif op.f == "cas":
            body = {"expect": op.value[0], "value": op.value[1]}
        return await self._send(op.f, method, f"/v1/kv/{quote(op.key, safe='')}{suffix}", body, node, endpoints)

    async def _send(self, f: str, method: str, path: str, body: Any, node: str,
                    endpoints: Mapping[str, Endpoint]) -> Outcome:
        assert self._session is not None
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
            ep = endpoints.get(node)
            if ep is None:
                return Outcome(OpType.FAIL, error=f"unknown node {node}")
            remaining = deadline - self.clock()
            if remaining <= 0:
                return Outcome(indeterminate, error="timeout", node=node)
            sent = False
            try:
                async with self._session.request(
                    method, f"http://{ep.address}{path}", data=data, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=remaining, connect=min(1.0, remaining)),
                ) as resp:
                    sent = True
                    payload = await resp.json(content_type=None)
                    status = resp.status
            except aiohttp.ClientConnectorError as e:
                return Outcome(OpType.FAIL, error=f"connect: {e.os_error!r}"[:200], node=node)
            except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as e:
                # the request may have reached the node: a write may have happened
                return Outcome(indeterminate, error=f"{type(e).__name__}{' after send' if sent else ''}", node=node)
            out = interpret(f, status, payload if isinstance(payload, dict) else {}, node, self.follow)
            if out is not None:
                return out
            leader = payload.get("leader") if isinstance(payload, dict) else None
            target = leader.get("id") if isinstance(leader, dict) else None
            if target is None or target == node:
                return Outcome(OpType.FAIL, error="not_leader", node=node)
            node = target
        return Outcome(OpType.FAIL, error="too many redirects", node=node)


def interpret(f: str, status: int, p: dict[str, Any], node: str, follow: bool) -> Outcome | None:
    """raftnet's status-to-outcome mapping (pure); None: follow the 307."""
    index = p.get("index") if isinstance(p.get("index"), int) else None
    if status == 200:
        value = p.get("value") if f == "read" else (True if f == "cas" else None)
        return Outcome(OpType.OK, value, index, node=node)
    if status == 404 and f == "read" and p.get("error") == "not_found":
        return Outcome(OpType.OK, None, node=node)
    if status == 409 and f == "cas" and p.get("error") == "cas_failed":
        return Outcome(OpType.OK, False, error="cas_failed", node=node)
    if status == 307:
        if follow:
            return None
        return Outcome(OpType.FAIL, error="not_leader", node=node)
    if status == 504:
        return Outcome(OpType.FAIL if f == "read" else OpType.INFO, error="timeout", node=node)
    if status == 503 or 400 <= status < 500:  # 503 and 4xx: definitely not applied
        return Outcome(OpType.FAIL, error=str(p.get("error") or status), node=node)
    return Outcome(OpType.FAIL if f == "read" else OpType.INFO, error=f"HTTP {status}", node=node)
