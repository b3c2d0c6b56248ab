"""The http-kv system: its schema (table-driven), status classes, templates and classification (pure),
the client against small local sockets (a dropped or silent connection, a broken pooled one), and
raftnet's own node described by examples/http-kv/raftnet.toml, run as real processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import socket
import subprocess
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.model.history import OpType
from harness.systems.base import Endpoint, Feature, Member, NodeSpec, NodeStatus, Op, Outcome, SystemError_
from harness.systems.httpkv import HttpKvClient, HttpKvSystem, Redirect, quote_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "http-kv" / "raftnet.toml"
T = TypeVar("T")


def example_table() -> dict[str, Any]:
    with EXAMPLE.open("rb") as f:
        return tomllib.load(f)["system"]


def load(table: Mapping[str, Any]) -> HttpKvSystem:
    return HttpKvSystem.from_table(table, base_dir=EXAMPLE.parent)


MINIMAL: dict[str, Any] = {
    "command": "serve --port {client_port}",
    "client_port": 8000,
    "ready": {"path": "/health"},
    "read": {"path": "/kv/{key}"},
    "write": {"method": "PUT", "path": "/kv/{key}", "body": '{"v": {value}}'},
}


def changed(base: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``dotted`` set to ``value`` (``DELETE``: removed)."""
    out = copy.deepcopy(dict(base))
    *parents, last = dotted.split(".")
    t = out
    for p in parents:
        t = t.setdefault(p, {})
    if value is DELETE:
        del t[last]
    else:
        t[last] = value
    return out


DELETE = object()

# -- schema --------------------------------------------------------------------------------------


def test_the_example_loads_with_every_operation_and_status() -> None:
    s = load(example_table())
    assert s.ops == {"read", "write", "cas", "delete"}
    assert s.features == {Feature.STATUS, Feature.CLOCK}  # clock = true: a Python process, libfaketime reaches it
    assert (s.name, s.client_port, s.peer_ports) == ("raftnet", 7000, (7000,))


def test_a_minimal_table_offers_read_and_write_only() -> None:
    s = load(MINIMAL)
    assert s.ops == {"read", "write"} and s.features == frozenset()
    assert s.status(Endpoint("n1", "127.0.0.1", 1), 0.1) is None
    with pytest.raises(SystemError_, match="does not offer cas"):
        asyncio.run(_call_unsupported(s))


async def _call_unsupported(s: HttpKvSystem) -> None:
    c = s.client(timeout=1, client_id="c", follow_redirects=False)
    try:
        await c.call("n1", Op("cas", "k", [None, "v"]), {})
    finally:
        await c.close()


@pytest.mark.parametrize(("dotted", "value", "message"), [
    ("colour", "red", "system.colour: unknown field"),
    ("read.oks", [200], "system.read.oks: unknown field"),
    ("write.headers", {"X-Seq": "{key}"}, "system.write.headers.X-Seq: unknown field {key}"),
    ("status", {"path": "/s", "rol": "role"}, "system.status.rol: unknown field"),
    ("status", {"path": "/s"}, "system.status: name at least one of role"),
    ("redirect", {"status": [307], "leader": "l", "to": 1}, "system.redirect.to: unknown field"),
    ("redirect", {"status": [307]}, "system.redirect.leader: required field missing"),
    ("ready.fail", [500], "system.ready.fail: unknown field"),
    ("read.mismatch", [409], "system.read.mismatch: unknown field"),
    ("write.ok", 200, "system.write.ok: expected a list of status codes"),
    ("write.ok", ["4x"], "system.write.ok: '4x' is neither a status code"),
    ("write.fail", [600], "system.write.fail: 600 is neither a status code"),
    ("write.fail", [True], "system.write.fail: True is neither a status code"),
    ("read.absent", [404, 404.0], "system.read.absent: 404.0 is neither"),
    ("client_port", "8000", "system.client_port: expected a port number"),
    ("clock", "yes", "system.clock: expected true or false"),
    ("peer_ports", 8001, "system.peer_ports: expected a non-empty list"),
    ("peer_ports", [8001, 0], "system.peer_ports: expected a port number"),
    ("env", {"A": 1}, "system.env: expected a table of strings"),
    ("headers", {"Bad Name": "x"}, "system.headers: 'Bad Name' is not a header name"),
    ("headers", {"Authorization": "Bearer {token}"}, "system.headers.Authorization: unknown field {token}"),
    ("read", "/kv/{key}", "system.read: expected a table"),
    ("read.value", 3, "system.read.value: expected a dotted path"),
    ("read.value", "a..b", "system.read.value: 'a..b' is not a dotted path"),
    ("write.method", 7, "system.write.method: expected a non-empty string"),
    ("write.method", "PU T", "system.write.method: 'PU T' is not an HTTP method"),
    ("name", "etcd", "system.name: expected \"http-kv\""),
    ("label", "", "system.label: expected a non-empty string"),
    # missing required fields
    ("command", DELETE, "system.command: required field missing"),
    ("client_port", DELETE, "system.client_port: required field missing"),
    ("ready", DELETE, "system.ready: required table missing"),
    ("read", DELETE, "system.read: required table missing"),
    ("write", DELETE, "system.write: required table missing"),
    ("read.path", DELETE, "system.read.path: required field missing"),
    ("write.method", DELETE, "system.write.method: required field missing"),
    # templates
    ("command", "serve --port {port}", "system.command: unknown field {port}"),
    ("command", "serve '--port", "system.command: No closing quotation"),
    ("command", [], "system.command: is empty"),
    ("command", "serve {id", "system.command: bad template"),
    ("join_command", "serve --join {joint}", "system.join_command: unknown field {joint}"),
    ("env", {"DIR": "{data}"}, "system.env.DIR: unknown field {data}"),
    ("read.path", "/kv/{value}", "system.read.path: unknown field {value} (fields here: {client_id}, {key}, {seq})"),
    ("read.path", "kv/{key}", "system.read.path: expected an ASCII path starting with /"),
    ("read.path", "/kv/{key} x", "system.read.path: expected an ASCII path"),
    ("ready.path", "/здоровье", "system.ready.path: expected an ASCII path"),
    ("headers", {"Authorization": "Bearer é"}, "system.headers.Authorization: a header value is printable ASCII"),
    ("write.headers", {"X-Id": "{client_id}\n"}, "system.write.headers.X-Id: a header value is printable"),
    ("write.body", '{"v": {expect}}', "system.write.body: unknown field {expect}"),
    ("write.body", '{"v": "{value}"}', "system.write.body: not JSON once filled in"),
    ("write.body", '{"v": {value}', "system.write.body: not JSON once filled in"),
    ("write.path", "/kv/{value}", "system.write.path: unknown field {value}"),
    ("ready.path", "/health/{key}", "system.ready.path: unknown field {key} (fields here: none)"),
    # a code or class in two lists of one table
    ("read.fail", [404], "system.read: status 404 is in both absent and fail"),
    ("write.info", ["2xx"], "system.write: status class \"2xx\" is in both ok and info"),
])
def test_a_bad_table_is_one_line_naming_the_field(dotted: str, value: Any, message: str) -> None:
    table = changed(MINIMAL, "read.absent", [404])
    with pytest.raises(SystemError_) as e:
        load(changed(table, dotted, value))
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_a_redirect_code_in_an_operations_list_is_ambiguous() -> None:
    table = changed(changed(MINIMAL, "redirect", {"status": [307], "leader": "leader"}), "write.fail", [307])
    with pytest.raises(SystemError_, match=r"^system.write: status 307 is in both fail and redirect"):
        load(table)


def test_a_bare_string_table_is_rejected() -> None:
    with pytest.raises(SystemError_, match="^system: expected a table"):
        HttpKvSystem.from_table("command", base_dir=ROOT)  # type: ignore[arg-type]


# -- command, env ------------------------------------------------------------------------------


def spec(node_id: str = "n2", *, joining: bool = False) -> NodeSpec:
    members = tuple(Member(f"n{i}", f"10.0.0.{i}", 7000, 7001) for i in (1, 2, 3))
    return NodeSpec(node_id, "10.0.0.2", 7000, 7001, Path("/data/n2"), members if not joining else members[:2],
                    joining=joining, join_via="10.0.0.1:7000" if joining else None)


def test_argv_and_env_fill_the_node_fields_and_the_config_dir() -> None:
    table = {**MINIMAL, "command": ["{config_dir}/run", "--id={id}", "--peers", "{peers}", "{{literal}}"],
             "join_command": "{config_dir}/run --id={id} --join {join}",
             "env": {"DATA": "{data_dir}", "HOME_OF_CONFIG": "{config_dir}"}}
    s = HttpKvSystem.from_table(table, base_dir=Path("/etc/my {kv}"))
    assert s.argv(spec()) == ["/etc/my {kv}/run", "--id=n2", "--peers",
                              "n1=10.0.0.1:7001,n2=10.0.0.2:7001,n3=10.0.0.3:7001", "{literal}"]
    assert s.argv(spec(joining=True)) == ["/etc/my {kv}/run", "--id=n2", "--join", "10.0.0.1:7000"]
    assert s.env(spec()) == {"DATA": "/data/n2", "HOME_OF_CONFIG": "/etc/my {kv}"}


def test_peer_ports_default_to_the_client_port() -> None:
    assert load(MINIMAL).peer_ports == (8000,)
    assert load({**MINIMAL, "peer_ports": [8001, 8002, 8001]}).peer_ports == (8001, 8002)


# -- status classes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "verdict"), [
    (200, "ok"), (201, None), (404, "absent"), (403, "fail"), (400, "fail"), (503, "fail"),
    (504, "info"), (500, "info"), (502, "info"), (307, "redirect"), (302, None), (100, None),
])
def test_an_exact_code_wins_over_a_class(status: int, verdict: str | None) -> None:
    assert load(example_table()).requests["read"].verdicts.of(status) == verdict


@pytest.mark.parametrize(("status", "verdict"), [(200, "ok"), (204, "ok"), (299, "ok"), (300, None), (404, None)])
def test_ok_defaults_to_the_2xx_class(status: int, verdict: str | None) -> None:
    assert load(MINIMAL).requests["write"].verdicts.of(status) == verdict


def test_a_status_class_is_case_insensitive() -> None:
    s = load(changed(MINIMAL, "write.fail", ["4XX"]))
    assert s.requests["write"].verdicts.of(418) == "fail"


# -- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "quoted"), [
    ("plain", "plain"), ("a/b", "a%2Fb"), ("a b?c#d&e=f", "a%20b%3Fc%23d%26e%3Df"), ("100%", "100%25"),
    (".", "%2E"), ("..", "%2E%2E"), ("a.b", "a.b"), ("ключ", "%D0%BA%D0%BB%D1%8E%D1%87"), ("~-_", "~-_"),
])
def test_a_key_is_one_url_path_segment(key: str, quoted: str) -> None:
    assert quote_key(key) == quoted
    path, _, _ = load(example_table()).requests["cas"].render(
        {"key": key, "expect": None, "value": "v", "client_id": "c", "seq": 1})
    assert path == f"/v1/kv/{quoted}/cas"


@pytest.mark.parametrize(("expect", "value"), [
    (None, "v"), ("a", 'quote " and \\ backslash'), ("", "line\nbreak"), ("{value}", "ключ {expect}"), ("1", "null"),
])
def test_a_body_takes_its_fields_as_json(expect: str | None, value: str) -> None:
    cas = load(example_table()).requests["cas"]
    path, body, headers = cas.render({"key": "k", "expect": expect, "value": value, "client_id": "c 1", "seq": 7})
    assert body is not None and json.loads(body) == {"expect": expect, "value": value}
    assert headers == {"X-Client-Id": "c 1", "X-Request-Seq": "7", "Content-Type": "application/json"}


def test_a_body_keeps_its_other_braces_and_a_stated_content_type() -> None:
    s = load(changed(changed(MINIMAL, "write.body", '{"put": {"k": {key}, "v": {value}, "n": {seq}}, "x": {}}'),
                     "write.headers", {"content-type": "application/vnd.kv+json"}))
    _, body, headers = s.requests["write"].render({"key": "k", "value": None, "client_id": "c", "seq": 3})
    assert body is not None and json.loads(body) == {"put": {"k": "k", "v": None, "n": 3}, "x": {}}
    assert headers == {"content-type": "application/vnd.kv+json"}


def test_a_request_without_body_sends_no_content_type() -> None:
    path, body, headers = load(example_table()).requests["read"].render({"key": "k", "client_id": "c", "seq": 1})
    assert (path, body, headers) == ("/v1/kv/k", None, {})


# -- answers -> outcomes -------------------------------------------------------------------------

OK, FAIL, INFO = OpType.OK, OpType.FAIL, OpType.INFO


@pytest.mark.parametrize(("f", "status", "body", "want"), [
    ("read", 200, {"value": "v", "index": 3}, (OK, "v")),
    ("read", 200, {"value": None}, (OK, None)),
    ("read", 200, {}, (FAIL, None)),  # an ok answer without the value: not understood, so nothing learnt
    ("read", 200, b"not json", (FAIL, None)),
    ("read", 404, {"error": "not_found"}, (OK, None)),
    ("read", 503, {}, (FAIL, None)),
    ("read", 403, {}, (FAIL, None)),
    ("read", 504, {}, (FAIL, None)),  # info on a read: recorded as fail, reads change nothing
    ("read", 500, {}, (FAIL, None)),
    ("read", 302, {}, (FAIL, None)),  # in no list
    ("write", 200, {"index": 4}, (OK, None)),
    ("write", 503, {}, (FAIL, None)),
    ("write", 413, {}, (FAIL, None)),
    ("write", 504, {}, (INFO, None)),
    ("write", 502, {}, (INFO, None)),
    ("write", 302, {}, (INFO, None)),  # in no list: maybe applied
    ("write", 201, {}, (INFO, None)),  # ok is [200] here
    ("cas", 200, {"index": 5}, (OK, True)),
    ("cas", 409, {"error": "cas_failed", "current": "x"}, (OK, False)),
    ("cas", 503, {}, (FAIL, None)),
    ("cas", 504, {}, (INFO, None)),
    ("delete", 200, {}, (OK, None)),
    ("delete", 400, {}, (FAIL, None)),
    ("delete", 599, {}, (INFO, None)),
])
def test_classification(f: str, status: int, body: Any, want: tuple[OpType, Any]) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    got = load(example_table()).classify(f, status, payload, "n1")
    assert isinstance(got, Outcome)
    assert (got.type, got.value, got.node) == (*want, "n1")
    assert (got.error is None) == (want[0] is OK), got


@pytest.mark.parametrize(("body", "leader"), [
    ({"error": "not_leader", "leader": {"id": "n2", "address": "h:1"}}, "n2"),
    ({"error": "not_leader", "leader": {"id": None}}, None),
    ({"error": "not_leader"}, None),
    (b"", None),
])
def test_a_redirect_names_the_leader_where_the_table_says(body: Any, leader: str | None) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    for f in ("read", "write", "cas", "delete"):
        assert load(example_table()).classify(f, 307, payload) == Redirect(leader, 307)


@pytest.mark.parametrize(("body", "want"), [
    ({"succeeded": True}, (OK, True)), ({"succeeded": False}, (OK, False)),
    ({"succeeded": "false"}, (INFO, None)), ({}, (INFO, None)),
])
def test_a_cas_outcome_can_come_from_the_body(body: Any, want: tuple[OpType, Any]) -> None:
    cas = {"method": "POST", "path": "/txn", "body": '{"k": {key}, "if": {expect}, "then": {value}}',
           "result": "succeeded", "ok": [200]}
    s = load({**MINIMAL, "cas": cas})
    got = s.classify("cas", 200, json.dumps(body).encode())
    assert isinstance(got, Outcome) and (got.type, got.value) == want


def test_status_reads_the_fields_where_the_table_says() -> None:
    spec_ = load(example_table()).status_spec
    assert spec_ is not None
    doc = {"id": "n1", "role": "leader", "term": 3, "leader_id": "n1", "commit_index": 9, "last_applied": 8}
    assert spec_.parse(doc) == NodeStatus("leader", 3, "n1", 9, 8, raw=doc)
    doc = {"role": "pre-candidate", "term": "12", "leader_id": None, "commit_index": True}
    assert spec_.parse(doc) == NodeStatus("pre-candidate", 12, None, None, None, raw=doc)


def test_status_with_a_boolean_role_and_nested_fields() -> None:
    s = load({**MINIMAL, "status": {"path": "/s", "role": "raft.is_leader", "leader_role": True,
                                    "leader": "raft.leader.0", "term": "raft.term"}})
    assert s.features == {Feature.STATUS}
    assert s.status_spec is not None
    got = s.status_spec.parse({"raft": {"is_leader": False, "leader": ["n3"], "term": 2}})
    assert (got.role, got.leader, got.term) == ("follower", "n3", 2)
    assert s.status_spec.parse({"raft": {"is_leader": True, "leader": [""]}}).role == "leader"
    assert s.status_spec.parse([]).role is None
    assert s.status_spec.parse({"raft": {"term": "²", "leader": {"0": "n1"}}}) == NodeStatus(
        raw={"raft": {"term": "²", "leader": {"0": "n1"}}}, leader="n1")


# -- the client against small local servers ------------------------------------------------------


@dataclass
class FakeServer:
    """A raw HTTP server on 127.0.0.1: ``behave(connection number, request number on it)`` says
    "answer" (200 keep-alive), "drop" (read the request, close) or "silent" (read it, never answer)."""

    behave: Callable[[int, int], str]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.connections
        self.connections += 1
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                what = self.behave(conn, n)
                n += 1
                if what == "drop":
                    break
                if what == "silent":
                    await asyncio.sleep(30)
                body = b'{"value": "v"}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def with_server(behave: Callable[[int, int], str],
                      body: Callable[[FakeServer, Mapping[str, Endpoint]], Awaitable[T]]) -> T:
    fake = FakeServer(behave)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await body(fake, {"n1": Endpoint("n1", "127.0.0.1", port)})
    finally:
        server.close()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()  # the handlers
        await asyncio.sleep(0)


async def calls(endpoints: Mapping[str, Endpoint], ops: list[Op], timeout: float = 5.0) -> list[Outcome]:
    c = load(example_table()).client(timeout=timeout, client_id="c1", follow_redirects=True)
    try:
        return [await c.call("n1", op, endpoints) for op in ops]
    finally:
        await c.close()


@pytest.mark.parametrize(("f", "want"), [("write", INFO), ("delete", INFO), ("cas", INFO), ("read", FAIL)])
def test_a_connection_dropped_after_sending_is_info_for_a_write_fail_for_a_read(f: str, want: OpType) -> None:
    op = Op(f, "k", [None, "v"] if f == "cas" else "v" if f == "write" else None)

    async def run(fake: FakeServer, eps: Mapping[str, Endpoint]) -> list[Outcome]:
        return await calls(eps, [op])

    [got] = asyncio.run(with_server(lambda conn, n: "drop", run))
    assert got.type is want and got.node == "n1" and got.error is not None and "after send" in got.error


def test_a_silent_node_is_info_for_a_write_fail_for_a_read() -> None:
    async def run(fake: FakeServer, eps: Mapping[str, Endpoint]) -> list[Outcome]:
        return await calls(eps, [Op("write", "k", "v"), Op("read", "k")], timeout=0.3)

    t0 = time.monotonic()
    write, read = asyncio.run(with_server(lambda conn, n: "silent", run))
    assert (write.type, read.type) == (INFO, FAIL)
    assert time.monotonic() - t0 < 5


def test_a_broken_pooled_connection_is_not_silently_retried() -> None:
    """aiohttp would re-send the PUT on a new connection (answered 200 here) and report ok, although
    the first copy may apply too: the client must report info."""
    async def run(fake: FakeServer, eps: Mapping[str, Endpoint]) -> list[Outcome]:
        return await calls(eps, [Op("write", "k", "a"), Op("write", "k", "b")])

    def behave(conn: int, n: int) -> str:
        return "drop" if (conn, n) == (0, 1) else "answer"

    first, second = asyncio.run(with_server(behave, run))
    assert (first.type, second.type) == (OK, INFO)


def test_the_requests_carry_the_templated_session_headers_and_quoted_keys() -> None:
    async def run(fake: FakeServer, eps: Mapping[str, Endpoint]) -> list[bytes]:
        await calls(eps, [Op("read", "a/b"), Op("write", ".", "x"), Op("cas", "k", [None, "y"]), Op("delete", "..")])
        return fake.requests

    reqs = asyncio.run(with_server(lambda conn, n: "answer", run))
    lines = [r.split(b"\r\n")[0].decode() for r in reqs]
    assert lines == ["GET /v1/kv/a%2Fb HTTP/1.1", "PUT /v1/kv/%2E HTTP/1.1", "POST /v1/kv/k/cas HTTP/1.1",
                     "DELETE /v1/kv/%2E%2E HTTP/1.1"]
    assert [r.count(b"X-Client-Id: c1") for r in reqs] == [0, 1, 1, 1]
    assert [b"X-Request-Seq: %d" % i in r for i, r in enumerate(reqs, 1)] == [False, True, True, True]
    assert reqs[1].endswith(b'{"value": "x"}') and reqs[2].endswith(b'{"expect": null, "value": "y"}')


def test_a_refused_connection_is_fail_and_ready_and_status_do_not_raise() -> None:
    with socket.socket() as held:  # bound, never listening: connections to it are refused
        held.bind(("127.0.0.1", 0))
        ep = Endpoint("n1", "127.0.0.1", held.getsockname()[1])
        s = load(example_table())
        assert s.ready(ep, 1.0) is False and s.status(ep, 1.0) is None
        [write] = asyncio.run(calls({"n1": ep}, [Op("write", "k", "v")]))
        assert write.type is FAIL and write.error is not None and write.error.startswith("connect")
    unknown = asyncio.run(calls({}, [Op("write", "k", "v")]))
    assert unknown[0].type is FAIL and unknown[0].error == "unknown node n1"


# -- raftnet's own node through examples/http-kv/raftnet.toml ----------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Launched:
    """Nodes started through the system's argv / env, each on its own port on 127.0.0.1."""

    system: HttpKvSystem
    root: Path
    endpoints: dict[str, Endpoint]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def start(cls, system: HttpKvSystem, root: Path, n: int) -> Launched:
        members = tuple(Member(f"n{i}", "127.0.0.1", p, p) for i, p in ((i, free_port()) for i in range(1, n + 1)))
        self = cls(system, root, {m.id: Endpoint(m.id, m.ip, m.client_port) for m in members})
        try:
            for m in members:
                node = NodeSpec(m.id, m.ip, m.client_port, m.peer_port, root / m.id, members)
                with (root / f"{m.id}.log").open("wb") as log:
                    self.procs[m.id] = subprocess.Popen(system.argv(node), env={**os.environ, **system.env(node)},
                                                        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            for m in members:
                self.wait_serving(m.id)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_serving(self, node_id: str) -> None:
        wait_for(lambda: self.serves(node_id), 30, f"{node_id} ready")

    def serves(self, node_id: str) -> bool:
        proc = self.procs[node_id]
        if proc.poll() is not None:
            tail = (self.root / f"{node_id}.log").read_text()[-2000:]
            raise RuntimeError(f"{node_id} exited {proc.returncode}: {tail}")
        return self.system.ready(self.endpoints[node_id], 1.0)

    def statuses(self) -> dict[str, NodeStatus | None]:
        return {i: self.system.status(ep, 2.0) for i, ep in self.endpoints.items() if self.procs[i].poll() is None}

    def leader(self, timeout: float = 20.0) -> str:
        """The one leader that every live node follows (polled until so)."""
        def agreed() -> str | None:
            sts = self.statuses()
            leaders = {i for i, st in sts.items() if st is not None and st.role == "leader"}
            followed = {st.leader if st is not None else None for st in sts.values()}
            return next(iter(leaders)) if len(leaders) == 1 and followed == leaders else None

        return wait_for(agreed, timeout, "one leader followed by all")

    def kill(self, node_id: str) -> None:
        proc = self.procs[node_id]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for node_id in self.procs:
            self.kill(node_id)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    c = Launched.start(load(example_table()), tmp_path_factory.mktemp("httpkv"), 3)
    try:
        c.leader()
        yield c
    finally:
        c.stop()


def run_ops(c: Launched, node: str, ops: list[Op], *, follow: bool = False,
            client_id: str | None = None, seq: int | None = None) -> list[Outcome]:
    async def go() -> list[Outcome]:
        client = c.system.client(timeout=5.0, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
                                 follow_redirects=follow)
        assert isinstance(client, HttpKvClient)
        if seq is not None:
            client.seq = seq
        try:
            return [await client.call(node, op, c.endpoints) for op in ops]
        finally:
            await client.close()

    return asyncio.run(go())


def test_status_names_one_leader_that_every_node_follows(cluster: Launched) -> None:
    leader = cluster.leader()
    sts = cluster.statuses()
    assert set(sts) == {"n1", "n2", "n3"}
    assert all(st is not None for st in sts.values())
    assert sorted(st.role or "" for st in sts.values() if st is not None) == ["follower", "follower", "leader"]
    assert {st.leader for st in sts.values() if st is not None} == {leader}
    assert all(isinstance(st.term, int) and isinstance(st.commit_index, int) and isinstance(st.applied_index, int)
               and st.raw.get("id") == i for i, st in sts.items() if st is not None)


def test_read_write_cas_delete_outcomes_on_the_leader(cluster: Launched) -> None:
    leader = cluster.leader()
    k, fresh = f"k/{uuid.uuid4().hex[:8]} ?", f"fresh-{uuid.uuid4().hex[:8]}"
    ops = [
        Op("read", k), Op("write", k, "a"), Op("read", k),
        Op("cas", k, ["a", "b"]), Op("cas", k, ["a", "c"]), Op("read", k),
        Op("cas", fresh, [None, "x"]), Op("cas", fresh, [None, "y"]), Op("read", fresh),
        Op("delete", k), Op("read", k), Op("delete", k), Op("write", ".", "dot"), Op("read", "."),
    ]
    got = [(o.type, o.value) for o in run_ops(cluster, leader, ops)]
    assert got == [
        (OK, None), (OK, None), (OK, "a"),
        (OK, True), (OK, False), (OK, "b"),
        (OK, True), (OK, False), (OK, "x"),
        (OK, None), (OK, None), (OK, None), (OK, None), (OK, "dot"),
    ]


def test_a_follower_redirects_to_the_leader_when_the_client_follows(cluster: Launched) -> None:
    leader = cluster.leader()
    follower = next(i for i in cluster.endpoints if i != leader)
    k = f"r-{uuid.uuid4().hex[:8]}"
    write, read = run_ops(cluster, follower, [Op("write", k, "v"), Op("read", k)], follow=True)
    assert (write.type, write.node, read.type, read.value, read.node) == (OK, leader, OK, "v", leader)


def test_a_follower_redirect_is_fail_when_the_client_does_not_follow(cluster: Launched) -> None:
    leader = cluster.leader()
    follower = next(i for i in cluster.endpoints if i != leader)
    k = f"nf-{uuid.uuid4().hex[:8]}"
    outs = run_ops(cluster, follower, [Op("write", k, "v"), Op("read", k), Op("cas", k, [None, "v"])])
    assert [(o.type, o.node) for o in outs] == [(FAIL, follower)] * 3
    assert all(o.error == "not leader (HTTP 307)" for o in outs)
    [read] = run_ops(cluster, leader, [Op("read", k)])
    assert (read.type, read.value) == (OK, None)  # nothing applied


def test_the_session_headers_make_a_resent_write_apply_once(cluster: Launched) -> None:
    leader = cluster.leader()
    k, client = f"s-{uuid.uuid4().hex[:8]}", f"sess-{uuid.uuid4().hex[:8]}"
    run_ops(cluster, leader, [Op("write", k, "first")], client_id=client)  # seq 1
    again = run_ops(cluster, leader, [Op("write", k, "second")], client_id=client, seq=0)  # seq 1 again
    assert again[0].type is OK
    [read] = run_ops(cluster, leader, [Op("read", k)])
    assert read.value == "first"  # the second copy of (client, 1) answered from the session, not applied


def test_a_killed_node_is_fail_on_connect(tmp_path: Path) -> None:
    c = Launched.start(load(example_table()), tmp_path, 1)
    try:
        c.leader()
        [ok] = run_ops(c, "n1", [Op("write", "k", "v")])
        assert ok.type is OK
        c.kill("n1")
        ep = c.endpoints["n1"]
        assert c.system.ready(ep, 1.0) is False and c.system.status(ep, 1.0) is None
        outs = run_ops(c, "n1", [Op("write", "k", "w"), Op("read", "k")])
        assert [o.type for o in outs] == [FAIL, FAIL]
        assert all(o.error is not None and o.error.startswith("connect") for o in outs), outs
    finally:
        c.stop()
