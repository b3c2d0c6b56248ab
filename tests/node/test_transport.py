"""The peer transport in-process, against a tiny aiohttp peer on 127.0.0.1:
what happens to an InstallSnapshot that cannot be delivered or whose snapshot
was superseded by a newer compaction before it left."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

import node.transport
from node.raft import (
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
from node.transport import HttpTransport
from node.wire import decode
from tests.node.localcluster import free_port

MEMBERS = Membership.of([Member(NodeId("n1"), "x"), Member(NodeId("n2"), "y")])


def install(index: int) -> InstallSnapshot:
    return InstallSnapshot(Term(2), NodeId("n1"), NodeId("n2"), SnapshotMeta(Index(index), Term(1), MEMBERS))


def transport(address: str, stored: Snapshot, events: list[tuple[str, str]]) -> HttpTransport:
    return HttpTransport(
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


def test_a_superseded_snapshot_leaves_as_the_newest_one() -> None:
    # the core asked for the snapshot at 10; the leader compacted again (20) before it left:
    # the follower gets the one at 20 at once, instead of nothing until a timeout
    async def main() -> list[Message]:
        got: list[Message] = []

        async def raft(request: web.Request) -> web.Response:
            body = await request.json()
            got.extend(decode(m) for m in body["msgs"])
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/raft/messages", raft)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        events: list[tuple[str, str]] = []
        t = transport(f"127.0.0.1:{port}", Snapshot(install(20).meta, b"image-20"), events)
        await t.start()
        try:
            t.send_all([install(10)])
            await until(lambda: bool(got))
        finally:
            await t.close()
            await runner.cleanup()
        assert events == []
        return got

    (m,) = asyncio.run(main())
    assert isinstance(m, InstallSnapshot) and m.meta.index == 20 and m.data == b"image-20"


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
