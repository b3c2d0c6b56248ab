"""Bad input on the peer endpoints (``POST /raft/messages``, ``GET /raft/stream``) and
garbage on the raw socket: a clear 4xx or a closed stream, and the node stays healthy
and keeps its data."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from functools import partial
from typing import Any

import aiohttp
import pytest

from tests.node.conftest import kv
from tests.node.localcluster import LocalCluster, Node, serves, wait_for


def append_entries(src: str, dst: str, **over: Any) -> dict[str, Any]:
    m = {"t": "AppendEntries", "term": 1, "src": src, "dst": dst, "pi": 0, "pt": 0, "lc": 0, "seq": 0, "e": []}
    m.update(over)
    return m


def still_healthy(c: LocalCluster, key: str, value: str) -> None:
    """Every node is up, the leader still serves ``key`` linearizably, and a new write commits."""
    for n in c.nodes.values():
        assert n.alive(), c.tail(n.id)
        assert n.request("GET", "/v1/health").status == 200
    r = c.call("GET", kv(key))
    assert (r.status, r.body["value"]) == (200, value), r.body
    assert c.call("PUT", kv(key + "-after"), {"value": "ok"}).status == 200
    for n in c.live():
        wait_for(partial(serves, n, key + "-after"), 10, what=f"replication to {n.id}")


@pytest.fixture
def written(shared_cluster: LocalCluster) -> tuple[str, str]:
    key, value = f"peer-{uuid.uuid4().hex[:8]}", "precious"
    assert shared_cluster.call("PUT", kv(key), {"value": value}).status == 200
    return key, value


def test_bad_input_on_the_peer_endpoint_is_4xx_and_harmless(shared_cluster: LocalCluster,
                                                              written: tuple[str, str]) -> None:
    c = shared_cluster
    leader = c.leader()
    cluster = leader.status()["cluster_id"]
    for target in c.live():
        me = target.id
        other = next(i for i in c.nodes if i != me)

        def post(body: Any = None, raw: bytes | None = None, target: Node = target) -> tuple[int, Any]:
            r = target.request("POST", "/raft/messages", body, raw=raw)
            return r.status, r.body

        def batch(*msgs: Any, cluster: Any = cluster, src: str = other) -> dict[str, Any]:
            return {"cluster": cluster, "from": src, "msgs": list(msgs)}

        cases: list[tuple[str, int, Any, bytes | None]] = [
            ("garbage JSON", 400, None, b"\x00garbage{{"),
            ("empty body", 400, None, b""),
            ("not an object", 400, [1, 2, 3], None),
            ("wrong cluster id", 403, batch(cluster="0000000000000000"), None),
            ("missing cluster id", 403, {"from": other, "msgs": []}, None),
            ("cluster id of another type", 403, batch(cluster=12), None),
            ("msgs not a list", 400, {"cluster": cluster, "from": other, "msgs": {"t": "x"}}, None),
            ("message not an object", 400, batch("AppendEntries"), None),
            ("unknown message type", 400, batch({"t": "Bogus", "term": 1, "src": other, "dst": me}), None),
            ("missing fields", 400, batch({"t": "AppendEntries", "src": other, "dst": me}), None),
            ("negative term", 400, batch(append_entries(other, me, term=-1)), None),
            ("term of the wrong type", 400, batch(append_entries(other, me, term="7")), None),
            ("boolean as an integer", 400, batch(append_entries(other, me, pi=True)), None),
            ("entries not a list", 400, batch(append_entries(other, me, e="x")), None),
            ("malformed entry", 400, batch(append_entries(other, me, e=[[1, 1, "normal"]])), None),
            ("entry of an unknown kind", 400, batch(append_entries(other, me, e=[[1, 1, "evil", ""]])), None),
            ("entries out of sequence", 400, batch(append_entries(other, me, e=[[5, 1, "noop", ""]])), None),
            ("entry from a future term", 400, batch(append_entries(other, me, e=[[1, 9, "noop", ""]])), None),
            ("snapshot not base64", 400, batch({"t": "InstallSnapshot", "term": 1, "src": other, "dst": me, "si": 1,
                                                "st": 1, "members": [], "data": "!!!"}), None),
            ("snapshot members malformed", 400, batch({"t": "InstallSnapshot", "term": 1, "src": other, "dst": me,
                                                       "si": 1, "st": 1, "members": [{"id": 1}], "data": ""}), None),
            ("vote with a missing flag", 400, batch({"t": "RequestVote", "term": 1, "src": other, "dst": me,
                                                     "lli": 0, "llt": 0}), None),
            ("wrong dst", 400, batch({"t": "TimeoutNow", "term": 1, "src": other, "dst": "n99"}), None),
            ("dst of another member", 400, batch({"t": "TimeoutNow", "term": 1, "src": other, "dst": other}), None),
            ("src other than the sender", 400, batch({"t": "TimeoutNow", "term": 1, "src": other, "dst": me},
                                                     src="n99"), None),
        ]
        for what, status, body, raw in cases:
            got, reply = post(body, raw)
            assert got == status, f"{what} on {me}: {got} {reply}"
            assert isinstance(reply, dict) and isinstance(reply.get("error"), str), (what, reply)
    still_healthy(c, *written)


def test_garbage_on_a_raw_socket_leaves_the_node_healthy(shared_cluster: LocalCluster,
                                                         written: tuple[str, str]) -> None:
    c = shared_cluster
    payloads = [
        b"\x00\x01\x02garbage\r\n\r\n" * 50,
        b"GET / HTTP/9.9\r\n\r\n",
        b"PUT /v1/kv/x HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"PUT /v1/kv/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /v1/status HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
        b"POST /raft/messages HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"clu",  # then hang up mid-body
        bytes(range(256)) * 20,
    ]
    for n in c.live():
        host, port = n.address.rsplit(":", 1)
        for p in payloads:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                try:
                    s.sendall(p)
                    s.shutdown(socket.SHUT_WR)
                    s.settimeout(5)
                    reply = s.recv(100)
                except OSError:
                    reply = b""  # the node may reset the connection: fine
            assert reply == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", reply), (p[:40], reply)
        # a connection opened and dropped without a byte
        socket.create_connection((host, int(port)), timeout=5).close()
    still_healthy(c, *written)


def test_bad_input_on_the_peer_stream_is_refused_or_closes_it_and_is_harmless(
        shared_cluster: LocalCluster, written: tuple[str, str]) -> None:
    """``GET /raft/stream``: a bad handshake is a 4xx before any upgrade; a bad frame
    closes the stream (1007 malformed, 1003 binary); the node stays healthy."""
    c = shared_cluster
    target = c.leader()
    cluster = target.status()["cluster_id"]
    other = next(i for i in c.nodes if i != target.id)
    good = {"X-Raftnet-Cluster": cluster, "X-Raftnet-From": other, "X-Raftnet-Addr": "127.0.0.1:1"}

    async def handshake(headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(f"http://{target.address}/raft/stream", headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    async def frame(send: Any) -> tuple[str, int | None]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"http://{target.address}/raft/stream",
                                                             headers=good) as ws:
            first = await ws.receive(timeout=5)
            await send(ws)
            closed = await ws.receive(timeout=5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closed
            return first.data, ws.close_code

    assert asyncio.run(handshake({**good, "X-Raftnet-Cluster": "another"})) == 403
    assert asyncio.run(handshake({k: v for k, v in good.items() if k != "X-Raftnet-Cluster"})) == 403
    assert asyncio.run(handshake({**good, "X-Raftnet-From": "bad id!"})) == 400
    assert asyncio.run(handshake({**good, "X-Raftnet-Incarnation": "not valid!"})) == 400
    for send, code in [
        (lambda ws: ws.send_str("\x00garbage{{"), 1007),
        (lambda ws: ws.send_str('{"not": "a list"}'), 1007),
        (lambda ws: ws.send_str(json.dumps([append_entries(other, "someone-else")])), 1007),
        (lambda ws: ws.send_str(json.dumps([append_entries("impostor", target.id)])), 1007),
        (lambda ws: ws.send_str(json.dumps([{"t": "AppendEntries", "term": -1}])), 1007),
        (lambda ws: ws.send_bytes(b"\x01\x02"), 1003),
    ]:
        admitted, got = asyncio.run(frame(send))
        assert admitted == '{"admitted":true}'
        assert got == code
    still_healthy(c, *written)
