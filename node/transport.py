"""Peer transport: Raft messages on one long-lived WebSocket per peer.

One sender task per peer keeps a WebSocket open to the peer's
``GET /raft/stream`` and writes each batch as one text frame (a JSON list of
messages), without waiting for anything back: a peer's replies come on its
own stream to us. TCP keeps the order of our messages to a peer; whatever
queued while a frame was being written goes in the next one (batching under
load for free). A frame costs a few microseconds where an HTTP request and
its response cost a few hundred on both sides, which is most of what a write
used to spend (issue 11).

Delivery is fire-and-forget, as a lossy network: when the stream cannot be
opened or breaks, the batch is dropped, the core is told the peer is
unreachable, and Raft's own retries take over. A stream that goes silent
(a partition that drops packets) is found by WebSocket pings every
``PING_S``: no pong in time closes it, and the next batch opens a new one.
The queue per peer is bounded; past the bound the oldest messages are
dropped.

Who we are travels in the handshake (cluster id, node id, address, our data
dir's incarnation: node/incarnation.py); the receiver judges the incarnation
when the stream opens and again for every frame. It says ``ADMITTED`` once,
first; a peer that refuses us (``stale_incarnation``: we are a wiped
member's new data dir) sends one text frame with the reason and closes the
stream. A refusal is logged at ERROR, at most every ``REFUSAL_LOG_S`` per
peer, and listed in ``refused_by`` for /v1/status until the peer admits a
stream again.

A peer without ``/raft/stream`` (a node of an older version, during a rolling
upgrade) gets batches as ``POST /raft/messages``, the old way.

An InstallSnapshot carries the newest stored snapshot when it is sent (the
leader may have compacted again since the core asked: the newer image
supersedes the older one at once). When one cannot be delivered (an error, a
refusal, a full queue) the core hears of it (``on_snapshot_failed``) and
probes again at its next heartbeat instead of waiting for its last-resort
timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from . import incarnation as inc
from . import metrics
from .raft import InstallSnapshot, Message, NodeId, Snapshot
from .wire import encode

log = logging.getLogger("raftnet.transport")

STREAM_PATH = "/raft/stream"
POST_PATH = "/raft/messages"
CLUSTER_HEADER = "X-Raftnet-Cluster"
FROM_HEADER = "X-Raftnet-From"
ADDR_HEADER = "X-Raftnet-Addr"
ADMITTED = '{"admitted":true}'  # the receiver's first frame on a stream it accepts
MAX_QUEUE = 20_000
MAX_BATCH_BYTES = 8 << 20
MAX_FRAME = 512 << 20  # a snapshot travels in one frame
CONNECT_TIMEOUT_S = 1.0
RPC_TIMEOUT_S = 2.0  # the handshake, and a POST to an older peer
SNAPSHOT_TIMEOUT_S = 60.0
PING_S = 1.0  # a stream with no pong within PING_S / 2 of a ping is closed
REFUSAL_LOG_S = 10.0
SNAPSHOT_RETRY_S = 0.5  # pause after a failed InstallSnapshot: the core resends at its next heartbeat
RETRY_S = 0.02  # pause after a failed attempt to reach a peer: Raft retries on its heartbeat anyway
LINGER_S = 0.005  # a lazy message (a commit notice) waits this long at most for company
OLD_PEER_RECHECK_S = 30.0  # a peer without /raft/stream is asked again after this long (it may be upgraded)


class PeerTransport:
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
        self._auth = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._queues: dict[NodeId, deque[Message]] = {}
        self._events: dict[NodeId, asyncio.Event] = {}
        self._tasks: dict[NodeId, asyncio.Task[None]] = {}
        self._urgent: set[NodeId] = set()  # peers whose queue holds a message that may not linger
        self._streams: dict[NodeId, tuple[str, aiohttp.ClientWebSocketResponse]] = {}  # peer -> (address, ws)
        self._readers: set[asyncio.Task[Any]] = set()
        self._old_peers: dict[str, float] = {}  # address -> when it answered that it has no stream endpoint
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
            timeout=aiohttp.ClientTimeout(total=RPC_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        )

    async def close(self) -> None:
        for t in [*self._tasks.values(), *self._readers]:
            t.cancel()
        for t in [*self._tasks.values(), *self._readers]:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        for _, ws in self._streams.values():
            await ws.close()
        self._streams.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def send_all(self, msgs: Sequence[Message], lazy: bool = False) -> None:
        """Queue ``msgs``. ``lazy`` ones (a leader's commit notices) may wait up to ``LINGER_S``
        for the next message to the same peer and leave in one frame with it: at one client,
        the next write's append follows within a millisecond, and a frame and a Ready fewer on
        both sides is a fifth of a write's CPU."""
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
            if not lazy:
                self._urgent.add(m.dst)
            self._events[m.dst].set()
            if m.dst not in self._tasks and self._session is not None:
                self._tasks[m.dst] = asyncio.create_task(self._sender(m.dst), name=f"send-{m.dst}")

    # ------------------------------------------------------------------ one sender per peer
    async def _sender(self, peer: NodeId) -> None:
        q, ev = self._queues[peer], self._events[peer]
        loop = asyncio.get_running_loop()
        while True:
            await ev.wait()
            ev.clear()
            if q and peer not in self._urgent:  # only lazy messages: give them company, briefly
                timer = loop.call_later(LINGER_S, ev.set)
                await ev.wait()
                timer.cancel()
                ev.clear()
            self._urgent.discard(peer)
            while q:
                batch, size, snapshots = self._take(peer, q)
                if batch:
                    delivered = await self._deliver(peer, batch, big=size > MAX_BATCH_BYTES // 4)
                    if snapshots and delivered:
                        metrics.SNAPSHOTS_SENT.inc(snapshots)
                    elif snapshots:
                        self._on_snapshot_failed(peer)
                        # a dead peer refuses at once: do not encode and send a whole snapshot
                        # every heartbeat; at most one every SNAPSHOT_RETRY_S
                        await asyncio.sleep(SNAPSHOT_RETRY_S)

    def _take(self, peer: NodeId, q: deque[Message]) -> tuple[list[dict[str, Any]], int, int]:
        """The next batch off ``q``: encoded messages, their size, how many are snapshots."""
        batch: list[dict[str, Any]] = []
        size = snapshots = 0
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
        return batch, size, snapshots

    async def _deliver(self, peer: NodeId, batch: list[dict[str, Any]], big: bool) -> bool:
        """Send one batch; True when it left on an open stream (or an older peer accepted it)."""
        addr = self._address_of(peer)
        if addr is None or self._session is None:
            self.dropped += len(batch)
            return False
        if addr in self._old_peers:
            if time.monotonic() - self._old_peers[addr] < OLD_PEER_RECHECK_S:
                return await self._post(peer, addr, batch, big)
            del self._old_peers[addr]
        try:
            ws = await self._stream(peer, addr)
            if ws is None:  # no stream endpoint: an older node
                return await self._post(peer, addr, batch, big)
            await ws.send_str(json.dumps(batch, separators=(",", ":")))
        except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError) as e:
            log.debug("peer %s unreachable: %r", peer, e)
            self._drop_stream(peer)
            return self._failed(peer, batch)
        self.sent += len(batch)
        return True

    def _failed(self, peer: NodeId, batch: list[dict[str, Any]]) -> bool:
        self.dropped += len(batch)
        self._on_unreachable(peer)
        return False

    async def _stream(self, peer: NodeId, addr: str) -> aiohttp.ClientWebSocketResponse | None:
        """The open stream to ``peer`` at ``addr``, opened now if need be; None when the peer has
        no stream endpoint. Raises on a failure to connect (after a short pause: no spinning)."""
        cur = self._streams.get(peer)
        if cur is not None:
            if cur[0] == addr and not cur[1].closed:
                return cur[1]
            self._drop_stream(peer)  # closed, or the member moved to another address
        assert self._session is not None
        headers = {**self._auth, CLUSTER_HEADER: self._cluster_id() or "", FROM_HEADER: self.node_id,
                   ADDR_HEADER: self.address}
        if self.incarnation is not None:
            headers[inc.HEADER] = self.incarnation
        try:
            ws = await self._session.ws_connect(
                f"http://{addr}{STREAM_PATH}", headers=headers, heartbeat=PING_S, max_msg_size=MAX_FRAME,
                autoclose=True, autoping=True, compress=0,
            )
        except aiohttp.WSServerHandshakeError as e:
            if e.status in (404, 405):
                self._old_peers[addr] = time.monotonic()
                return None
            log.warning("peer %s refused our stream: HTTP %d", peer, e.status)
            await asyncio.sleep(RETRY_S)
            raise
        except (TimeoutError, aiohttp.ClientError, OSError):
            await asyncio.sleep(RETRY_S)
            raise
        self._streams[peer] = (addr, ws)
        reader = asyncio.create_task(self._read(peer, ws), name=f"stream-{peer}")
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        return ws

    async def _read(self, peer: NodeId, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read what the peer says on our stream until it ends: that it admits us (once, first),
        or why it refuses us (then it closes); pongs are handled by aiohttp."""
        refused = False
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            if msg.data == ADMITTED:
                self.refused_by.pop(peer, None)
            else:
                refused = self._refused(peer, msg.data) or refused
        cur = self._streams.get(peer)
        if cur is not None and cur[1] is ws:
            del self._streams[peer]
            if not refused:
                self._on_unreachable(peer)  # the stream broke: the core stops pipelining to it

    def _drop_stream(self, peer: NodeId) -> None:
        cur = self._streams.pop(peer, None)
        if cur is not None and not cur[1].closed:
            task = asyncio.create_task(cur[1].close())
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

    # ------------------------------------------------------------------ an older peer: POST
    async def _post(self, peer: NodeId, addr: str, batch: list[dict[str, Any]], big: bool) -> bool:
        """Post one batch to a peer without a stream endpoint; True when it accepted it."""
        assert self._session is not None
        body = json.dumps({"cluster": self._cluster_id(), "from": self.node_id, "addr": self.address, "msgs": batch},
                          separators=(",", ":"))
        timeout = aiohttp.ClientTimeout(total=SNAPSHOT_TIMEOUT_S if big else RPC_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        headers = {**self._auth, "Content-Type": "application/json"}
        if self.incarnation is not None:
            headers[inc.HEADER] = self.incarnation
        try:
            async with self._session.post(f"http://{addr}{POST_PATH}", data=body, headers=headers,
                                          timeout=timeout) as resp:
                payload = await resp.read()
                if resp.status >= 300:
                    if not (resp.status == 409 and self._refused(peer, payload)):
                        log.warning("peer %s refused %d messages: HTTP %d", peer, len(batch), resp.status)
                    return self._failed(peer, batch)
            self.sent += len(batch)
            self.refused_by.pop(peer, None)
            return True
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            log.debug("peer %s unreachable: %r", peer, e)
            await asyncio.sleep(RETRY_S)
            return self._failed(peer, batch)

    # ------------------------------------------------------------------ refusals
    def _refused(self, peer: NodeId, payload: bytes | str) -> bool:
        """A refusal from ``peer``: if it refuses our incarnation, remember and log why."""
        try:
            reply = json.loads(payload)
        except ValueError:
            return False
        if not isinstance(reply, dict) or reply.get("error") != "stale_incarnation":
            return False
        self._note_refusal(peer, str(reply.get("message", "stale_incarnation"))[:500])
        return True

    def _note_refusal(self, peer: NodeId, reason: str) -> None:
        self.refused_by[peer] = reason
        now = time.monotonic()
        if now - self._refusal_logged.get(peer, -REFUSAL_LOG_S) >= REFUSAL_LOG_S:
            self._refusal_logged[peer] = now
            log.error("peer %s refuses us: %s", peer, reason)
