"""The peer transport in-process, against a tiny aiohttp peer on 127.0.0.1
(one with the stream endpoint, and an older one that only takes POSTs): the
stream's handshake, order, refusals and breaks, and what happens to an
InstallSnapshot that cannot be delivered or whose snapshot was superseded by
a newer compaction before it left."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import WSMsgType, web

import node.transport
from node.raft import (
    AppendEntries,
    Index,
    InstallSnapshot,
    Member,
    Membership,
    Message,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
)
from node.transport import ADMITTED, PeerTransport
from node.wire import decode
from tests.node.localcluster import free_port

MEMBERS = Membership.of([Member(NodeId("n1"), "x"), Member(NodeId("n2"), "y")])


def install(index: int) -> InstallSnapshot:
    return InstallSnapshot(Term(2), NodeId("n1"), NodeId("n2"), SnapshotMeta(Index(index), Term(1), MEMBERS))


def transport(address: str, stored: Snapshot, events: list[tuple[str, str]]) -> PeerTransport:
    return PeerTransport(
        "n1", "127.0.0.1:1", lambda: "cid", lambda peer: address, lambda: stored,
        lambda peer: events.append(("unreachable", peer)), None,
        on_snapshot_failed=lambda peer: events.append(("snapshot_failed", peer)),
    )


async def until(pred: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_an_undeliverable_snapshot_is_reported_to_the_core() -> None:
    async def main() -> list[tuple[str, str]]:
        events: list[tuple[str, str]] = []
        t = transport(f"127.0.0.1:{free_port()}", Snapshot(install(10).meta, b"image"), events)  # nobody listens
        await t.start()
        try:
            t.send_all([install(10)])
            await until(lambda: ("snapshot_failed", "n2") in events)
        finally:
            await t.close()
        return events

    events = asyncio.run(main())
    assert ("unreachable", "n2") in events and ("snapshot_failed", "n2") in events


class Peer:
    """A tiny peer on 127.0.0.1: with the stream endpoint (``streams``) or only the old POST."""

    def __init__(self, streams: bool = True, refuse: str | None = None) -> None:
        self.streams, self.refuse = streams, refuse
        self.got: list[Message] = []
        self.frames: list[int] = []  # messages per frame
        self.handshakes: list[dict[str, str]] = []
        self.posts = 0
        self.open: list[web.WebSocketResponse] = []
        self.address = ""

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        self.handshakes.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.refuse is not None:
            await ws.send_str(json.dumps({"error": "stale_incarnation", "message": self.refuse}))
            await ws.close()
            return ws
        await ws.send_str(ADMITTED)
        self.open.append(ws)
        async for frame in ws:
            if frame.type is WSMsgType.TEXT:
                batch = json.loads(frame.data)
                self.frames.append(len(batch))
                self.got.extend(decode(m) for m in batch)
        return ws

    async def post(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.json()
        self.got.extend(decode(m) for m in body["msgs"])
        return web.Response(status=204)

    async def __aenter__(self) -> Peer:
        app = web.Application()
        if self.streams:
            app.router.add_get("/raft/stream", self.stream)
        app.router.add_post("/raft/messages", self.post)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.address = f"127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in self.open:
            await ws.close()
        await self.runner.cleanup()


def heartbeat(seq: int) -> AppendEntries:
    return AppendEntries(Term(2), NodeId("n1"), NodeId("n2"), Index(0), Term(0), (), Index(0), seq)


@pytest.mark.parametrize("streams", [True, False], ids=["stream", "older-peer-post"])
def test_a_superseded_snapshot_leaves_as_the_newest_one(streams: bool) -> None:
    # the core asked for the snapshot at 10; the leader compacted again (20) before it left:
    # the follower gets the one at 20 at once, instead of nothing until a timeout
    async def main() -> tuple[list[Message], int]:
        async with Peer(streams) as peer:
            events: list[tuple[str, str]] = []
            t = transport(peer.address, Snapshot(install(20).meta, b"image-20"), events)
            await t.start()
            try:
                t.send_all([install(10)])
                await until(lambda: bool(peer.got))
            finally:
                await t.close()
            assert events == []
            return peer.got, peer.posts

    (m,), posts = asyncio.run(main())
    assert isinstance(m, InstallSnapshot) and m.meta.index == 20 and m.data == b"image-20"
    assert posts == (0 if streams else 1)


def test_batches_go_in_order_on_one_stream_that_says_who_we_are() -> None:
    async def main() -> tuple[list[Message], list[dict[str, str]]]:
        async with Peer() as peer:
            t = transport(peer.address, Snapshot(install(1).meta, b""), [])
            t.incarnation = "abc123"
            await t.start()
            try:
                for seq in range(1, 301):
                    t.send_all([heartbeat(seq)])
                    if seq % 50 == 0:
                        await asyncio.sleep(0)
                await until(lambda: len(peer.got) == 300)
                assert t.sent == 300 and t.dropped == 0
            finally:
                await t.close()
            return peer.got, peer.handshakes

    got, handshakes = asyncio.run(main())
    assert [m.seq for m in got if isinstance(m, AppendEntries)] == list(range(1, 301))
    assert len(handshakes) == 1
    h = handshakes[0]
    assert (h["X-Raftnet-Cluster"], h["X-Raftnet-From"], h["X-Raftnet-Addr"], h["X-Raftnet-Incarnation"]) == (
        "cid", "n1", "127.0.0.1:1", "abc123")


def test_a_refusal_on_the_stream_is_recorded_and_a_later_admission_clears_it() -> None:
    async def main() -> tuple[dict[str, str], dict[str, str], list[tuple[str, str]]]:
        async with Peer(refuse="n1 was wiped") as peer:
            events: list[tuple[str, str]] = []
            t = transport(peer.address, Snapshot(install(1).meta, b""), events)
            await t.start()
            try:
                t.send_all([heartbeat(1)])
                await until(lambda: "n2" in t.refused_by)
                refused = dict(t.refused_by)
                peer.refuse = None  # the peer learns our new incarnation (we were re-added)
                while not peer.got:  # the next heartbeats open a new stream
                    t.send_all([heartbeat(2)])
                    await asyncio.sleep(0.02)
                await until(lambda: not t.refused_by)
                return refused, dict(t.refused_by), events
            finally:
                await t.close()

    refused, after, _ = asyncio.run(main())
    assert refused == {"n2": "n1 was wiped"} and after == {}


def test_a_broken_stream_is_reported_and_the_next_batch_opens_a_new_one() -> None:
    async def main() -> tuple[list[tuple[str, str]], int, int]:
        async with Peer() as peer:
            events: list[tuple[str, str]] = []
            t = transport(peer.address, Snapshot(install(1).meta, b""), events)
            await t.start()
            try:
                t.send_all([heartbeat(1)])
                await until(lambda: len(peer.got) == 1)
                await peer.open[0].close()  # the peer restarts, or a middlebox resets us
                await until(lambda: ("unreachable", "n2") in events)
                t.send_all([heartbeat(2)])
                await until(lambda: len(peer.got) == 2)
            finally:
                await t.close()
            return events, len(peer.handshakes), peer.posts

    events, handshakes, posts = asyncio.run(main())
    assert events == [("unreachable", "n2")]
    assert handshakes == 2 and posts == 0


def test_snapshots_to_a_dead_peer_are_paced(monkeypatch: pytest.MonkeyPatch) -> None:
    # the core resends after every reported failure at its next heartbeat (50 ms); a dead peer
    # refuses at once, so without a pause the leader would encode and send a whole snapshot
    # twenty times a second
    monkeypatch.setattr(node.transport, "SNAPSHOT_RETRY_S", 0.3)

    async def main() -> list[tuple[str, str]]:
        events: list[tuple[str, str]] = []
        t = transport(f"127.0.0.1:{free_port()}", Snapshot(install(10).meta, b"image"), events)
        await t.start()
        try:
            for _ in range(20):  # one second of heartbeats, each asking for the snapshot again
                t.send_all([install(10)])
                await asyncio.sleep(0.05)
        finally:
            await t.close()
        return events

    failed = [e for e in asyncio.run(main()) if e[0] == "snapshot_failed"]
    assert 1 <= len(failed) <= 5, failed


def test_a_lazy_message_leaves_with_the_next_one_or_alone_after_the_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node.transport, "LINGER_S", 0.5)

    async def main() -> tuple[list[int], list[int]]:
        async with Peer() as peer:
            t = transport(peer.address, Snapshot(install(1).meta, b""), [])
            await t.start()
            try:
                t.send_all([heartbeat(1)])  # opens the stream
                await until(lambda: len(peer.got) == 1)
                t.send_all([heartbeat(2)], lazy=True)  # a commit notice ...
                await asyncio.sleep(0.05)
                t.send_all([heartbeat(3)])  # ... and the next append, a moment later: one frame
                await until(lambda: len(peer.got) == 3)
                together = list(peer.frames)
                t.send_all([heartbeat(4)], lazy=True)  # nothing follows: it leaves on its own
                await until(lambda: len(peer.got) == 4)
            finally:
                await t.close()
            return together, peer.frames

    together, frames = asyncio.run(main())
    assert together == [1, 2]
    assert frames == [1, 2, 1]
