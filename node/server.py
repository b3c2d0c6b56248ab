"""The HTTP surface of a node: the client API of CONTRACT.md section 2 and
the peer endpoints (``GET /raft/stream``, a WebSocket, and ``POST
/raft/messages`` for older nodes), on one listen address.

Handlers are thin: validate, call the runtime, render. One middleware turns
every ``RaftnetError`` (and any stray HTTP error) into
``{"error", "message", ...}`` with the contract's status.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import WSCloseCode, WSMsgType, web

from . import incarnation as inc
from . import metrics
from .config import MAX_KEY_BYTES, Config, valid_id
from .errors import (
    BadRequestError,
    CasFailedError,
    ForbiddenError,
    NotFoundError,
    RaftnetError,
    StaleIncarnationError,
    TooLargeError,
    UnavailableError,
)
from .raft import Message, Role
from .runtime import Runtime
from .transport import ADDR_HEADER, ADMITTED, CLUSTER_HEADER, FROM_HEADER, POST_PATH, STREAM_PATH
from .wire import WireError, decode

log = logging.getLogger("raftnet.server")

MAX_RAFT_BODY = 512 << 20
MAX_ADMIN_BODY = 64 << 10

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=lambda o: json.dumps(o, separators=(",", ":")))


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except RaftnetError as e:
        headers = {"Location": _leader_location(request, e)} if e.status == 307 else None
        resp = _json(e.status, e.body(), headers)
    except web.HTTPException as e:
        if e.status == 404:
            resp = _json(404, {"error": "not_found", "message": f"no route {request.method} {request.path}"})
        elif e.status == 405:
            resp = _json(405, {"error": "bad_request", "message": f"method {request.method} not allowed here"})
        elif e.status == 413:
            resp = _json(413, {"error": "too_large", "message": "request body too large"})
        elif e.status < 400:
            raise
        else:
            resp = _json(e.status, {"error": "bad_request", "message": e.reason})
    except Exception:  # a bug must not take the node down: log it and answer 500
        log.exception("unhandled error in %s %s", request.method, request.path)
        resp = _json(500, {"error": "internal", "message": "internal error; see the node's log"})
    metrics.HTTP_RESPONSES[resp.status] = metrics.HTTP_RESPONSES.get(resp.status, 0) + 1
    return resp


def _leader_location(request: web.Request, e: RaftnetError) -> str:
    addr = getattr(e, "address", "")
    return f"http://{addr}{request.rel_url}"


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or TooLargeError past ``limit`` (a single read() returns only what is buffered)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLargeError(f"body of {request.content_length} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: web.Request, limit: int) -> dict[str, Any]:
    raw = await _read_body(request, limit)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("body is not valid JSON") from None
    except RecursionError:
        raise BadRequestError("body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    return body


def _utf8(text: str, what: str) -> bytes:
    """Keys and values are UTF-8: a lone surrogate (from JSON or a bad percent-escape) is refused."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError(f"{what} is not valid UTF-8") from None


class Api:
    def __init__(self, runtime: Runtime, config: Config) -> None:
        self.rt = runtime
        self.config = config
        self._value_body_limit = config.max_value_bytes * 6 + 4096  # worst-case JSON escaping
        self._refusals_logged: dict[str, float] = {}  # peer -> when we last logged refusing it
        self._streams: dict[str, web.WebSocketResponse] = {}  # peer -> its open stream to us

    # ------------------------------------------------------------------ helpers
    def _key(self, request: web.Request) -> str:
        # Decode the raw segment ourselves, strictly: aiohttp's decoded match_info turns an
        # invalid escape into U+FFFD, and a key must be exactly the UTF-8 the client sent.
        parts = request.raw_path.split("?", 1)[0].split("/")  # ['', 'v1', 'kv', KEY, ...]
        try:
            key = unquote_to_bytes(parts[3]).decode("utf-8") if len(parts) > 3 else ""
        except UnicodeDecodeError:
            raise BadRequestError("key is not valid UTF-8 after percent-decoding") from None
        if not key:
            raise BadRequestError("empty key")
        if len(_utf8(key, "key")) > MAX_KEY_BYTES:
            raise BadRequestError(f"key longer than {MAX_KEY_BYTES} bytes")
        return key

    def _value(self, body: dict[str, Any], field: str, nullable: bool = False) -> str | None:
        if field not in body:
            if nullable:
                raise BadRequestError(f"missing field {field!r} (use null for 'absent')")
            raise BadRequestError(f"missing field {field!r}")
        v = body[field]
        if v is None and nullable:
            return None
        if not isinstance(v, str):
            raise BadRequestError(f"field {field!r} must be a string" + (" or null" if nullable else ""))
        if len(_utf8(v, f"field {field!r}")) > self.config.max_value_bytes:
            raise TooLargeError(f"value over {self.config.max_value_bytes} bytes")
        return v

    def _session(self, request: web.Request, cmd: dict[str, Any]) -> dict[str, Any]:
        client, seq = request.headers.get("X-Client-Id"), request.headers.get("X-Request-Seq")
        if client is None and seq is None:
            return cmd
        if client is None or seq is None:
            raise BadRequestError("X-Client-Id and X-Request-Seq go together")
        if not client or len(client) > 256:
            raise BadRequestError("X-Client-Id must be 1..256 characters")
        if not seq.isdigit() or len(seq) > 18:
            raise BadRequestError("X-Request-Seq must be a non-negative integer")
        return {**cmd, "client": client, "seq": int(seq)}

    async def _write(self, request: web.Request, cmd: dict[str, Any]) -> web.Response:
        result = await self.rt.write(self._session(request, cmd))
        if result.get("error") == "cas_failed":
            raise CasFailedError("compare-and-set precondition is false", current=result.get("current"))
        return _json(200, {"index": result["index"]})

    # ------------------------------------------------------------------ kv
    async def put(self, request: web.Request) -> web.Response:
        key = self._key(request)
        body = await _json_body(request, self._value_body_limit)
        return await self._write(request, {"op": "put", "key": key, "value": self._value(body, "value")})

    async def delete(self, request: web.Request) -> web.Response:
        key = self._key(request)
        return await self._write(request, {"op": "delete", "key": key})

    async def cas(self, request: web.Request) -> web.Response:
        key = self._key(request)
        body = await _json_body(request, self._value_body_limit)
        expect = self._value(body, "expect", nullable=True)
        value = self._value(body, "value")
        return await self._write(request, {"op": "cas", "key": key, "expect": expect, "value": value})

    async def get(self, request: web.Request) -> web.Response:
        key = self._key(request)
        stale = request.query.get("stale", "false").lower()
        if stale not in ("true", "false", "1", "0"):
            raise BadRequestError("stale must be true or false")
        if stale in ("false", "0"):
            await self.rt.read_barrier()
        got = self.rt.fsm.get(key)
        if got is None:
            raise NotFoundError(f"key {key!r} not found")
        return _json(200, {"value": got[0], "index": got[1]})

    # ------------------------------------------------------------------ cluster
    async def status(self, request: web.Request) -> web.Response:
        return _json(200, self.rt.status())

    async def health(self, request: web.Request) -> web.Response:
        if self.rt.fatal is not None:
            return _json(503, {"error": "unavailable", "message": "raft loop failed"})
        return _json(200, {"ok": True, "id": self.config.id})

    async def members(self, request: web.Request) -> web.Response:
        return _json(200, {"members": self.rt.members()})

    async def add_member(self, request: web.Request) -> web.Response:
        body = await _json_body(request, MAX_ADMIN_BODY)
        node_id, address = body.get("id"), body.get("address")
        if not isinstance(node_id, str) or not valid_id(node_id):
            raise BadRequestError("id must be a string of letters, digits, '-', '_' or '.'")
        if not isinstance(address, str) or address.rpartition(":")[2].isdigit() is False:
            raise BadRequestError("address must be HOST:PORT")
        incarnation = body.get("incarnation")
        if incarnation is not None and not inc.valid(incarnation):
            raise BadRequestError(f"incarnation must be 1..{inc.MAX_LEN} ASCII letters and digits")
        return _json(200, {"members": await self.rt.add_member(node_id, address, incarnation)})

    async def remove_member(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        return _json(200, {"members": await self.rt.remove_member(node_id)})

    async def transfer(self, request: web.Request) -> web.Response:
        body = await _json_body(request, MAX_ADMIN_BODY) if request.can_read_body else {}
        to = body.get("to")
        if to is not None and not isinstance(to, str):
            raise BadRequestError("to must be a member id")
        leader = await self.rt.transfer(to)
        return _json(200, {"leader": leader})

    async def metrics(self, request: web.Request) -> web.Response:
        c = self.rt.core
        text = metrics.render({
            "raftnet_term": c.term,
            "raftnet_commit_index": c.commit,
            "raftnet_last_applied": self.rt.fsm.applied,
            "raftnet_last_log_index": c.last_index,
            "raftnet_snapshot_index": c.log.snapshot_index,
            "raftnet_is_leader": 1 if c.role is Role.LEADER else 0,
            "raftnet_transport_sent_total": self.rt.transport.sent,
            "raftnet_transport_dropped_total": self.rt.transport.dropped,
        })
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def debug_log(self, request: web.Request) -> web.Response:
        """Entries still in the log (above the snapshot), for the harness's invariant checks."""
        log = self.rt.core.log
        try:
            lo = int(request.query.get("from", log.snapshot_index + 1))
            hi = int(request.query.get("to", log.last_index))
        except ValueError:
            raise BadRequestError("from and to must be integers") from None
        lo = max(lo, log.snapshot_index + 1)
        hi = min(hi, log.last_index, lo + 9999)
        entries = [[e.index, e.term, e.kind.value, e.data] for e in log.slice(lo, hi)]
        return _json(200, {"snapshot_index": log.snapshot_index, "commit_index": self.rt.core.commit,
                           "last_index": log.last_index, "entries": entries})

    # ------------------------------------------------------------------ peers
    async def raft(self, request: web.Request) -> web.Response:
        """A batch as one POST: how nodes of an older version send (node/transport.py)."""
        body = await _json_body(request, MAX_RAFT_BODY)
        self._check_cluster(body.get("cluster"))
        sender = body.get("from")
        if not isinstance(sender, str):
            raise BadRequestError("from must be the sender's id")
        msgs = self._decode_batch(body.get("msgs"), sender)
        incarnation = self._incarnation(request)
        await self._admit(sender, incarnation)
        addr = body.get("addr")
        self.rt.deliver(msgs, sender, addr if isinstance(addr, str) and len(addr) < 300 else None)
        return web.Response(status=204)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """A peer's long-lived stream (node/transport.py): each text frame is a batch, a JSON
        list of messages. Who the peer is comes with the handshake; its incarnation is judged
        then (``ADMITTED`` is our first frame) and again for every frame. A refusal is one
        text frame with the reason, then the close; a malformed frame closes the stream."""
        self._check_cluster(request.headers.get(CLUSTER_HEADER))
        sender = request.headers.get(FROM_HEADER, "")
        if not valid_id(sender):
            raise BadRequestError(f"{FROM_HEADER} must be the sender's node id")
        addr = request.headers.get(ADDR_HEADER)
        addr = addr if addr is not None and len(addr) < 300 else None
        incarnation = self._incarnation(request)
        ws = web.WebSocketResponse(max_msg_size=MAX_RAFT_BODY, autoping=True, compress=False)
        await ws.prepare(request)
        previous = self._streams.get(sender)
        self._streams[sender] = ws
        if previous is not None:
            await previous.close()  # the peer opened a new stream: the old one is dead or abandoned
        try:
            try:
                await self._admit(sender, incarnation)
            except StaleIncarnationError as e:
                await ws.send_str(json.dumps(e.body(), separators=(",", ":")))
                return ws
            await ws.send_str(ADMITTED)
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    if frame.type is WSMsgType.BINARY:
                        await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"text frames only")
                    continue
                try:
                    msgs = self._decode_batch(json.loads(frame.data), sender)
                except (ValueError, RecursionError, BadRequestError) as e:
                    log.warning("closing %s's stream: %s", sender, str(e)[:200])
                    await ws.close(code=WSCloseCode.INVALID_TEXT, message=b"malformed batch")
                    break
                try:
                    await self._admit(sender, incarnation)
                except StaleIncarnationError as e:
                    await ws.send_str(json.dumps(e.body(), separators=(",", ":")))
                    break
                self.rt.deliver(msgs, sender, addr)
        finally:
            if self._streams.get(sender) is ws:
                del self._streams[sender]
            await ws.close()
        return ws

    async def close_streams(self, app: web.Application) -> None:
        """On shutdown: peers' streams end now, not at the shutdown timeout."""
        for ws in list(self._streams.values()):
            await ws.close(code=WSCloseCode.GOING_AWAY)

    def _check_cluster(self, cluster: Any) -> None:
        if self.rt.cluster_id is None:
            raise UnavailableError("this node does not know its cluster yet")
        if not isinstance(cluster, str) or not hmac.compare_digest(cluster.encode(), self.rt.cluster_id.encode()):
            raise ForbiddenError(f"cluster id mismatch: this node is in cluster {self.rt.cluster_id}")

    def _decode_batch(self, raw: Any, sender: str) -> list[Message]:
        if not isinstance(raw, list):
            raise BadRequestError("msgs must be a list")
        try:
            msgs = [decode(m) for m in raw]
        except WireError as e:
            raise BadRequestError(f"malformed raft message: {e}") from None
        me = self.config.id
        if any(m.dst != me or m.src != sender for m in msgs):
            raise BadRequestError("messages addressed to another node or from another sender")
        return msgs

    @staticmethod
    def _incarnation(request: web.Request) -> str | None:
        incarnation = request.headers.get(inc.HEADER)
        if incarnation is not None and not inc.valid(incarnation):
            raise BadRequestError(f"{inc.HEADER} must be 1..{inc.MAX_LEN} ASCII letters and digits")
        return incarnation

    async def _admit(self, sender: str, incarnation: str | None) -> None:
        try:
            await self.rt.admit(sender, incarnation)  # before stepping: a wiped member's batches never count
        except StaleIncarnationError:
            now = time.monotonic()
            if now - self._refusals_logged.get(sender, -60.0) >= 60.0 and len(self._refusals_logged) < 1000:
                self._refusals_logged[sender] = now
                log.warning("refusing batches from %s: incarnation %s is not the one we know "
                            "(its data dir was wiped?)", sender, incarnation)
            raise


def _secret_middleware(secret: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    expected = f"Bearer {secret}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/v1/health":
            got = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(got, expected):
                raise ForbiddenError("wrong or missing cluster secret")
        return await handler(request)

    return check


def make_app(runtime: Runtime, config: Config) -> web.Application:
    middlewares: list[Any] = [_errors]
    if config.secret:
        middlewares.append(_secret_middleware(config.secret))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_RAFT_BODY)
    api = Api(runtime, config)
    r = app.router
    r.add_put("/v1/kv/{key}", api.put)
    r.add_get("/v1/kv/{key}", api.get, allow_head=False)
    r.add_delete("/v1/kv/{key}", api.delete)
    r.add_post("/v1/kv/{key}/cas", api.cas)
    r.add_get("/v1/status", api.status, allow_head=False)
    r.add_get("/v1/health", api.health, allow_head=False)
    r.add_get("/v1/members", api.members, allow_head=False)
    r.add_post("/v1/members", api.add_member)
    r.add_delete("/v1/members/{id}", api.remove_member)
    r.add_post("/v1/leader/transfer", api.transfer)
    r.add_get("/metrics", api.metrics, allow_head=False)
    r.add_get("/v1/debug/log", api.debug_log, allow_head=False)
    r.add_post(POST_PATH, api.raft)
    r.add_get(STREAM_PATH, api.stream, allow_head=False)
    app.on_shutdown.append(api.close_streams)
    return app
