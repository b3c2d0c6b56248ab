"""Peer transport: Raft messages over HTTP on pooled keep-alive connections.

One sender task per peer posts batches to ``/raft/messages`` one request at a
time, so a peer receives our messages in the order we sent them; whatever
queued while a request was in flight goes in the next batch (batching under
load for free). Delivery is fire-and-forget: on an error or a timeout the
batch is dropped, the core is told the peer is unreachable, and Raft's own
retries take over. The queue per peer is bounded; past the bound the oldest
messages are dropped, as a lossy network would.

Every batch carries our data dir's incarnation (node/incarnation.py). A peer
that refuses it (409 ``stale_incarnation``: we are a wiped member's new data
dir) is logged at ERROR, at most every ``REFUSAL_LOG_S`` per peer, and listed
in ``refused_by`` for /v1/status until it accepts a batch again.

An InstallSnapshot carries the newest stored snapshot when it is sent (the
leader may have compacted again since the core asked: the newer image
supersedes the older one at once). When one cannot be delivered (an error, a
timeout, a refusal, a full queue) the core hears of it
(``on_snapshot_failed``) and probes again at its next heartbeat instead of
waiting for its last-resort timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

import aiohttp

from . import incarnation as inc
from . import metrics
from .raft import InstallSnapshot, Message, NodeId, Snapshot
from .wire import encode

log = logging.getLogger("raftnet.transport")

MAX_QUEUE = 20_000
MAX_BATCH_BYTES = 8 << 20
RPC_TIMEOUT_S = 2.0
SNAPSHOT_TIMEOUT_S = 60.0
REFUSAL_LOG_S = 10.0
SNAPSHOT_RETRY_S = 0.5  # pause after a failed InstallSnapshot: the core resends at its next heartbeat


class HttpTransport:
    def __init__(
        self,
        node_id: str,
        address: str,
        cluster_id: Callable[[], str | None],
        address_of: Callable[[NodeId], str | None],
        snapshot: Callable[[], Snapshot],
        on_unreachable: Callable[[NodeId], None],
        secret: str | None = None,
        on_snapshot_failed: Callable[[NodeId], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.address = address
        self._cluster_id = cluster_id
        self._address_of = address_of
        self._snapshot = snapshot
        self._on_unreachable = on_unreachable
        self._on_snapshot_failed = on_snapshot_failed or (lambda peer: None)
        self._headers = {"Content-Type": "application/json"}
        if secret:
            self._headers["Authorization"] = f"Bearer {secret}"
        self._queues: dict[NodeId, deque[Message]] = {}
        self._events: dict[NodeId, asyncio.Event] = {}
        self._tasks: dict[NodeId, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.dropped = 0
        # our data dir's incarnation, sent with every batch; set by the owner once known
        self.incarnation: str | None = None
        self.refused_by: dict[str, str] = {}  # peer -> why it refuses our batches
        self._refusal_logged: dict[str, float] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=4, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=RPC_TIMEOUT_S, connect=1.0),
        )

    async def close(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        for t in list(self._tasks.values()):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def send_all(self, msgs: Sequence[Message]) -> None:
        for m in msgs:
            q = self._queues.get(m.dst)
            if q is None:
                q = self._queues[m.dst] = deque()
                self._events[m.dst] = asyncio.Event()
            if len(q) >= MAX_QUEUE:
                if isinstance(q.popleft(), InstallSnapshot):
                    self._on_snapshot_failed(m.dst)
                self.dropped += 1
            q.append(m)
            self._events[m.dst].set()
            if m.dst not in self._tasks and self._session is not None:
                self._tasks[m.dst] = asyncio.create_task(self._sender(m.dst), name=f"send-{m.dst}")

    async def _sender(self, peer: NodeId) -> None:
        q, ev = self._queues[peer], self._events[peer]
        while True:
            await ev.wait()
            ev.clear()
            while q:
                batch, size, snapshots = [], 0, 0
                while q and size < MAX_BATCH_BYTES:
                    m = q.popleft()
                    if isinstance(m, InstallSnapshot):
                        snap = self._snapshot()
                        if snap.meta.index < m.meta.index:  # cannot happen: our snapshots only move on
                            self.dropped += 1
                            self._on_snapshot_failed(peer)
                            continue
                        # compacted again since the core asked: the newer image supersedes it
                        m = replace(m, meta=snap.meta, data=snap.data)
                        size += len(snap.data)
                        snapshots += 1
                    d = encode(m)
                    batch.append(d)
                    size += 64 + sum(len(e[3]) for e in d.get("e", ()))
                if batch:
                    delivered = await self._post(peer, batch, big=size > MAX_BATCH_BYTES // 4)
                    if snapshots and delivered:
                        metrics.SNAPSHOTS_SENT.inc(snapshots)
                    elif snapshots:
                        self._on_snapshot_failed(peer)
                        # a dead peer refuses at once: do not encode and send a whole snapshot
                        # every heartbeat; at most one every SNAPSHOT_RETRY_S
                        await asyncio.sleep(SNAPSHOT_RETRY_S)

    async def _post(self, peer: NodeId, batch: list[dict[str, object]], big: bool) -> bool:
        """Post one batch; True when the peer accepted it."""
        addr = self._address_of(peer)
        if addr is None or self._session is None:
            self.dropped += len(batch)
            return False
        body = json.dumps({"cluster": self._cluster_id(), "from": self.node_id, "addr": self.address, "msgs": batch},
                          separators=(",", ":"))
        timeout = aiohttp.ClientTimeout(total=SNAPSHOT_TIMEOUT_S if big else RPC_TIMEOUT_S, connect=1.0)
        headers = self._headers if self.incarnation is None else {**self._headers, inc.HEADER: self.incarnation}
        try:
            async with self._session.post(f"http://{addr}/raft/messages", data=body, headers=headers,
                                          timeout=timeout) as resp:
                payload = await resp.read()
                if resp.status >= 300:
                    if not (resp.status == 409 and self._refused(peer, payload)):
                        log.warning("peer %s refused %d messages: HTTP %d", peer, len(batch), resp.status)
                    self.dropped += len(batch)
                    self._on_unreachable(peer)
                    return False
            self.sent += len(batch)
            self.refused_by.pop(peer, None)
            return True
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            log.debug("peer %s unreachable: %r", peer, e)
            self.dropped += len(batch)
            self._on_unreachable(peer)
            # a dead peer: do not spin; Raft retries on its heartbeat anyway
            await asyncio.sleep(0.02)
            return False

    def _refused(self, peer: NodeId, payload: bytes) -> bool:
        """A 409 from ``peer``: if it refuses our incarnation, remember and log why."""
        try:
            reply = json.loads(payload)
        except ValueError:
            return False
        if not isinstance(reply, dict) or reply.get("error") != "stale_incarnation":
            return False
        reason = str(reply.get("message", "stale_incarnation"))[:500]
        self.refused_by[peer] = reason
        now = time.monotonic()
        if now - self._refusal_logged.get(peer, -REFUSAL_LOG_S) >= REFUSAL_LOG_S:
            self._refusal_logged[peer] = now
            log.error("peer %s refuses us: %s", peer, reason)
        return True
