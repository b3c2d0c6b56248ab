"""The etcd adapter: pure tables (classification, requests, argv, status, the [system] table),
then real etcd processes on 127.0.0.1 (skipped when etcd is not installed).

The launcher below is the tests' own: three nodes on free ports, one data dir and log each,
killed and reaped in teardown."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from harness.model.history import OpType
from harness.systems.base import Endpoint, Feature, Member, NodeSpec, NodeStatus, Op, Outcome, SystemError_
from harness.systems.etcd import (
    INSTALL_HINT,
    EtcdSystem,
    classify,
    parse_status,
    request_for,
    unavailable_reason,
)

T = TypeVar("T")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def err(message: str, code: int) -> dict[str, Any]:
    return {"error": message, "message": message, "code": code}


_KEY = ConnectionKey("127.0.0.1", 1, False, True, None, None, None, None)
REFUSED = aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "Connection refused"))

# -- classification -----------------------------------------------------------------------------

OK, FAIL, INFO = OpType.OK, OpType.FAIL, OpType.INFO
KV = {"header": {"revision": "7"}, "kvs": [{"key": b64("k"), "value": b64("v1"), "create_revision": "5"}],
      "count": "1"}

CLASSIFY: list[tuple[str, str, int | None, Any, OpType, Any]] = [
    # (case, f, HTTP status, body or exception, type, value)
    ("read hit", "read", 200, KV, OK, "v1"),
    ("read absent", "read", 200, {"header": {}}, OK, None),
    ("read empty value", "read", 200, {"kvs": [{"key": b64("k")}]}, OK, ""),
    ("write", "write", 200, {"header": {}}, OK, None),
    ("delete", "delete", 200, {"header": {}, "deleted": "1"}, OK, None),
    ("cas applied", "cas", 200, {"header": {}, "succeeded": True}, OK, True),
    ("cas compare false (field omitted)", "cas", 200, {"header": {}}, OK, False),
    # may have been proposed: info
    ("timed out", "write", 503, err("etcdserver: request timed out", 14), INFO, None),
    ("timed out, leader failure", "cas", 503,
     err("etcdserver: request timed out, possibly due to previous leader failure", 14), INFO, None),
    ("leader changed", "write", 503, err("etcdserver: leader changed", 14), INFO, None),
    ("server stopped", "delete", 503, err("etcdserver: server stopped", 14), INFO, None),
    ("raft stopped", "write", 500, err("raft: stopped", 2), INFO, None),
    ("cancelled", "write", 503, err("etcdserver: request cancelled", 14), INFO, None),
    ("deadline", "write", 500, err("context deadline exceeded", 2), INFO, None),
    ("unknown error", "cas", 500, err("something new", 2), INFO, None),
    ("not JSON", "write", 502, None, INFO, None),
    # rejected before proposing (or deterministically at apply): fail
    ("no leader (hasleader)", "write", 503, err("etcdserver: no leader", 14), FAIL, None),
    ("proposal dropped", "cas", 500, err("raft proposal dropped", 2), FAIL, None),
    ("too many requests", "write", 429, err("etcdserver: too many requests", 8), FAIL, None),
    ("too large", "write", 400, err("etcdserver: request is too large", 3), FAIL, None),
    ("empty key", "delete", 400, err("etcdserver: key is not provided", 3), FAIL, None),
    ("no space", "write", 429, err("etcdserver: mvcc: database space exceeded", 8), FAIL, None),
    ("learner", "write", 503, err("etcdserver: rpc not supported for learner", 14), FAIL, None),
    # a read changes nothing: any failure is a fail
    ("read timed out", "read", 503, err("etcdserver: request timed out", 14), FAIL, None),
    ("read leader changed", "read", 503, err("etcdserver: leader changed", 14), FAIL, None),
    ("read not JSON", "read", 502, None, FAIL, None),
    # exceptions
    ("refused write", "write", None, REFUSED, FAIL, None),
    ("refused cas", "cas", None, REFUSED, FAIL, None),
    ("connect timeout", "delete", None, aiohttp.ConnectionTimeoutError("connect"), FAIL, None),
    ("timeout write", "write", None, TimeoutError(), INFO, None),
    ("timeout read", "read", None, TimeoutError(), FAIL, None),
    ("disconnected", "cas", None, aiohttp.ServerDisconnectedError(), INFO, None),
    ("reset", "delete", None, aiohttp.ClientOSError(104, "Connection reset by peer"), INFO, None),
    ("bad JSON after 200", "write", 200, ValueError("Expecting value"), INFO, None),
    ("payload broken", "read", 200, aiohttp.ClientPayloadError("truncated"), FAIL, None),
]


@pytest.mark.parametrize(("case", "f", "status", "result", "kind", "value"), CLASSIFY, ids=[c[0] for c in CLASSIFY])
def test_classify(case: str, f: str, status: int | None, result: Any, kind: OpType, value: Any) -> None:
    out = classify(f, status, result)
    assert (out.type, out.value) == (kind, value), case
    assert (out.error is None) == (kind is OK), out.error


def test_classify_keeps_etcds_message() -> None:
    assert classify("write", 503, err("etcdserver: request timed out", 14)).error == "etcdserver: request timed out"
    assert (classify("write", None, REFUSED).error or "").startswith("connect: ConnectionRefusedError")


# -- requests -----------------------------------------------------------------------------------

REQUESTS: list[tuple[Op, bool, str, dict[str, Any], bool]] = [
    (Op("read", "k"), False, "/v3/kv/range", {"key": b64("k"), "serializable": False}, True),
    (Op("read", "k"), True, "/v3/kv/range", {"key": b64("k"), "serializable": True}, False),
    (Op("write", "k", "v"), True, "/v3/kv/put", {"key": b64("k"), "value": b64("v")}, True),
    (Op("cas", "k", ["a", "b"]), False, "/v3/kv/txn",
     {"compare": [{"key": b64("k"), "target": "VALUE", "result": "EQUAL", "value": b64("a")}],
      "success": [{"request_put": {"key": b64("k"), "value": b64("b")}}]}, True),
    (Op("cas", "k", [None, "b"]), False, "/v3/kv/txn",
     {"compare": [{"key": b64("k"), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
      "success": [{"request_put": {"key": b64("k"), "value": b64("b")}}]}, True),
    (Op("delete", "k"), False, "/v3/kv/deleterange", {"key": b64("k")}, True),
]


@pytest.mark.parametrize(("op", "serializable", "path", "body", "leader"), REQUESTS)
def test_request_for(op: Op, serializable: bool, path: str, body: dict[str, Any], leader: bool) -> None:
    assert request_for(op, serializable) == (path, body, leader)


def test_request_for_unknown_operation() -> None:
    with pytest.raises(ValueError, match="frobnicate"):
        request_for(Op("frobnicate", "k"), False)


# -- argv ---------------------------------------------------------------------------------------

MEMBERS = (Member("n1", "127.0.0.1", 5001, 6001), Member("n2", "127.0.0.1", 5002, 6002),
           Member("n3", "127.0.0.1", 5003, 6003))


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_argv_new_node() -> None:
    node = NodeSpec("n2", "127.0.0.1", 5002, 6002, Path("/data/n2"), MEMBERS)
    argv = EtcdSystem(heartbeat_ms=50, election_ms=600).argv(node)
    assert argv[0] == "etcd"
    assert flag(argv, "--name") == "n2" and flag(argv, "--data-dir") == "/data/n2"
    assert flag(argv, "--listen-client-urls") == flag(argv, "--advertise-client-urls") == "http://127.0.0.1:5002"
    assert flag(argv, "--listen-peer-urls") == flag(argv, "--initial-advertise-peer-urls") == "http://127.0.0.1:6002"
    assert sorted(flag(argv, "--initial-cluster").split(",")) == [
        "n1=http://127.0.0.1:6001", "n2=http://127.0.0.1:6002", "n3=http://127.0.0.1:6003"]
    assert flag(argv, "--initial-cluster-state") == "new"
    assert flag(argv, "--initial-cluster-token")
    assert (flag(argv, "--heartbeat-interval"), flag(argv, "--election-timeout")) == ("50", "600")
    assert (flag(argv, "--logger"), flag(argv, "--log-outputs")) == ("zap", "stderr")
    assert "--pre-vote" in argv
    assert {"--discovery=", "--discovery-srv=", "--listen-metrics-urls="} <= set(argv)
    assert not any("unsafe" in a or "fsync" in a for a in argv)


def test_argv_joining_node_adds_itself() -> None:
    node = NodeSpec("n4", "10.0.0.4", 2379, 2380, Path("/d"), MEMBERS, joining=True, join_via="127.0.0.1:5001")
    argv = EtcdSystem(pre_vote=False, binary="/opt/etcd").argv(node)
    assert argv[0] == "/opt/etcd"
    assert flag(argv, "--initial-cluster-state") == "existing"
    assert flag(argv, "--initial-cluster").split(",")[-1] == "n4=http://10.0.0.4:2380"
    assert len(flag(argv, "--initial-cluster").split(",")) == 4
    assert "--pre-vote" not in argv


@pytest.mark.parametrize(("system", "name"), [(EtcdSystem(), "etcd"), (EtcdSystem(True), "etcd-serializable")])
def test_name_and_features(system: EtcdSystem, name: str) -> None:
    assert system.name == name and name in system.describe()
    assert (system.client_port, system.peer_port, system.peer_ports) == (2379, 2380, (2380,))
    assert system.features == {Feature.STATUS, Feature.LOCAL_READ, Feature.MEMBERSHIP}


def test_unavailable_reason() -> None:
    assert unavailable_reason("/nonexistent/etcd") == INSTALL_HINT
    assert "\n" not in INSTALL_HINT and "sudo make setup" in INSTALL_HINT


# -- the [system] table -------------------------------------------------------------------------

TABLE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"nmae": "etcd"}, "nmae"),
    ({"name": "zookeeper"}, "name"),
    ({"binary": 7}, "binary"),
    ({"pre_vote": "yes"}, "pre_vote"),
    ({"heartbeat_ms": "100"}, "heartbeat_ms"),
    ({"heartbeat_ms": True}, "heartbeat_ms"),
    ({"election_ms": 1.5}, "election_ms"),
    ({"heartbeat_ms": 0}, "heartbeat_ms"),
    ({"heartbeat_ms": 100, "election_ms": 400}, "election_ms"),
    ({"election_ms": 60_000}, "election_ms"),
    ({"serializable": 1}, "serializable"),
    ({"name": "etcd-serializable", "serializable": False}, "serializable"),
    ({"binary": ""}, "binary"),
]


@pytest.mark.parametrize(("table", "field"), TABLE_ERRORS)
def test_from_table_errors(table: dict[str, Any], field: str) -> None:
    with pytest.raises(SystemError_) as e:
        EtcdSystem.from_table(table)
    assert field in str(e.value) and "\n" not in str(e.value)


def test_from_table() -> None:
    s = EtcdSystem.from_table({"name": "etcd", "binary": "/usr/local/bin/etcd", "pre_vote": False,
                               "heartbeat_ms": 20, "election_ms": 200})
    assert (s.name, s.binary, s.pre_vote, s.heartbeat_ms, s.election_ms) == (
        "etcd", "/usr/local/bin/etcd", False, 20, 200)
    assert EtcdSystem.from_table({"name": "etcd-serializable"}).serializable
    assert EtcdSystem.from_table({"name": "etcd", "serializable": True}).name == "etcd-serializable"
    assert EtcdSystem.from_table({}, serializable=True).name == "etcd-serializable"
    assert EtcdSystem.from_table({}).name == "etcd"


# -- status parsing -----------------------------------------------------------------------------

MAINT = {"header": {"member_id": "11"}, "leader": "11", "raftIndex": "40", "raftTerm": "3",
         "raftAppliedIndex": "39"}
LIST = {"members": [{"ID": "11", "name": "n1"}, {"ID": "27", "name": "n2"},
                    {"ID": "99", "name": "", "isLearner": True}]}
NAMES = {11: "n1", 27: "n2"}


def test_parse_status_takes_role_and_term_from_raft() -> None:
    raft = {"id": "1b", "term": 4, "lead": "1b", "raftState": "StateFollower", "commit": 40, "applied": 39}
    st = parse_status(MAINT, LIST, raft, NAMES)
    # raft's own view wins: maintenance raftTerm (3) is the term of the last applied entry
    assert (st.role, st.term, st.leader) == ("follower", 4, "n2")
    assert (st.commit_index, st.applied_index) == (40, 39)
    assert st.members == (("n1", True), ("n2", True), ("63", False))  # unnamed: hex id


def test_parse_status_leader_and_no_leader() -> None:
    lead = parse_status(MAINT, LIST, {"term": 4, "lead": "b", "raftState": "StateLeader"}, NAMES)
    assert (lead.role, lead.leader) == ("leader", "n1")
    pre = parse_status(MAINT, None, {"term": 5, "lead": "0", "raftState": "StatePreCandidate"}, NAMES)
    assert (pre.role, pre.leader, pre.members) == ("pre-candidate", None, None)


def test_parse_status_without_raft_expvar_has_no_term() -> None:
    st = parse_status(MAINT, LIST, None, NAMES)
    assert (st.role, st.term, st.leader) == ("leader", None, "n1")
    follower = parse_status({**MAINT, "leader": "27"}, LIST, None, NAMES)
    assert (follower.role, follower.leader) == ("follower", "n2")
    lost = parse_status({k: v for k, v in MAINT.items() if k != "leader"}, LIST, None, NAMES)
    assert (lost.role, lost.leader) == (None, None)


# -- real etcd processes ------------------------------------------------------------------------

needs_etcd = pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")
LOCAL = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """``pred()``'s first truthy value, polled until ``timeout`` s have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Launcher:
    """etcd nodes on 127.0.0.1, each with its own client and peer port, data dir and log."""

    def __init__(self, system: EtcdSystem, root: Path) -> None:
        self.system = system
        self.root = root
        self.members: dict[str, Member] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, IO[bytes]] = {}

    def place(self, node_id: str) -> Member:
        self.members[node_id] = Member(node_id, LOCAL, free_port(), free_port())
        return self.members[node_id]

    def spec(self, node_id: str, *, joining: bool = False) -> NodeSpec:
        m = self.members[node_id]
        others = tuple(x for x in self.members.values() if not (joining and x.id == node_id))
        return NodeSpec(node_id, LOCAL, m.client_port, m.peer_port, self.root / node_id / "data", others,
                        joining=joining)

    def endpoint(self, node_id: str) -> Endpoint:
        return Endpoint(node_id, LOCAL, self.members[node_id].client_port)

    def endpoints(self) -> dict[str, Endpoint]:
        return {i: self.endpoint(i) for i in self.members}

    def start(self, node_id: str, *, joining: bool = False) -> None:
        spec = self.spec(node_id, joining=joining)
        spec.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = self.logs[node_id] = open(self.root / node_id / "etcd.log", "ab")
        self.procs[node_id] = subprocess.Popen(self.system.argv(spec), stdin=subprocess.DEVNULL, stdout=log,
                                               stderr=subprocess.STDOUT)

    def kill(self, node_id: str) -> None:
        proc = self.procs.pop(node_id)
        try:
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
            self.logs.pop(node_id).close()

    def exited(self, node_id: str) -> bool:
        return self.procs[node_id].poll() is not None

    def close(self) -> None:
        for node_id in list(self.procs):
            with contextlib.suppress(ProcessLookupError):
                self.kill(node_id)
        for log in self.logs.values():
            log.close()

    def wait_ready(self, *ids: str) -> None:
        for i in ids:
            wait_until(functools.partial(self._ready, i), f"{i} ready")

    def _ready(self, node_id: str) -> bool:
        if self.exited(node_id):
            raise AssertionError(f"{node_id} exited: {(self.root / node_id / 'etcd.log').read_text()[-2000:]}")
        return self.system.ready(self.endpoint(node_id), 1.0)


@contextlib.contextmanager
def running(system: EtcdSystem, root: Path, n: int = 3) -> Iterator[Launcher]:
    launcher = Launcher(system, root)
    try:
        ids = [f"n{i}" for i in range(1, n + 1)]
        for i in ids:
            launcher.place(i)
        for i in ids:
            launcher.start(i)
        launcher.wait_ready(*ids)
        yield launcher
    finally:
        procs = list(launcher.procs.values())
        launcher.close()
        assert all(p.poll() is not None for p in procs)  # nothing left behind


SYSTEM = EtcdSystem(heartbeat_ms=50, election_ms=500)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    if unavailable_reason():
        pytest.skip(unavailable_reason() or "")
    with running(SYSTEM, tmp_path_factory.mktemp("etcd")) as launcher:
        yield launcher


def call(system: EtcdSystem, endpoints: Mapping[str, Endpoint], steps: list[tuple[str, Op]]) -> list[Outcome]:
    """Run ``steps`` (node, op) one after the other through one client."""

    async def run() -> list[Outcome]:
        client = system.client(timeout=5.0, client_id="test", follow_redirects=False)
        try:
            return [await client.call(node, op, endpoints) for node, op in steps]
        finally:
            await client.close()

    return asyncio.run(run())


def agreed_status(launcher: Launcher) -> dict[str, NodeStatus] | None:
    st = {i: launcher.system.status(launcher.endpoint(i), 2.0) for i in launcher.procs}
    seen = {(s.leader, s.term) for s in st.values() if s is not None}
    if None in st.values() or len(seen) != 1 or None in next(iter(seen)):
        return None
    return {i: s for i, s in st.items() if s is not None}


@needs_etcd
def test_ready_and_status(cluster: Launcher) -> None:
    assert all(SYSTEM.ready(cluster.endpoint(i), 1.0) for i in ("n1", "n2", "n3"))
    statuses = wait_until(lambda: agreed_status(cluster), "one leader seen by all")
    leader = next(iter(statuses.values())).leader
    assert leader in {"n1", "n2", "n3"}
    assert [i for i, s in statuses.items() if s.role == "leader"] == [leader]
    for s in statuses.values():
        assert sorted(s.members or ()) == [("n1", True), ("n2", True), ("n3", True)]
        assert s.term and s.term >= 1 and (s.commit_index or 0) >= (s.applied_index or 0) > 0


@needs_etcd
def test_kv_operations(cluster: Launcher) -> None:
    eps = cluster.endpoints()
    steps = [
        ("n2", Op("write", "kv", "v1")), ("n3", Op("read", "kv")),
        ("n1", Op("cas", "kv", ["v1", "v2"])), ("n2", Op("cas", "kv", ["v1", "v3"])), ("n3", Op("read", "kv")),
        ("n1", Op("cas", "fresh", [None, "x"])), ("n2", Op("cas", "fresh", [None, "y"])),
        ("n3", Op("read", "fresh")), ("n1", Op("delete", "kv")), ("n2", Op("read", "kv")),
        ("n3", Op("cas", "kv", [None, "again"])), ("n1", Op("read", "kv")), ("n1", Op("read", "never")),
    ]
    outs = call(SYSTEM, eps, steps)
    assert all(o.type is OpType.OK for o in outs), outs
    assert [o.value for o in outs] == [None, "v1", True, False, "v2", True, False, "x", None, None, True, "again",
                                       None]
    assert [o.node for o in outs] == [node for node, _ in steps]


@needs_etcd
def test_local_read(cluster: Launcher) -> None:
    (out,) = call(SYSTEM, cluster.endpoints(), [("n1", Op("write", "local", "here"))])
    assert out.type is OpType.OK

    def applied(node: Endpoint) -> bool:
        return bool(SYSTEM.local_read(node, "local", 2.0) == "here")

    for i in ("n1", "n2", "n3"):
        wait_until(functools.partial(applied, cluster.endpoint(i)), f"{i} applied")
    assert SYSTEM.local_read(cluster.endpoint("n2"), "absent", 2.0) is None


@needs_etcd
def test_killed_node_fails_and_minority_reads_locally(tmp_path: Path) -> None:
    serializable = EtcdSystem(True, heartbeat_ms=50, election_ms=500)
    with running(SYSTEM, tmp_path) as c:
        eps = c.endpoints()
        assert call(SYSTEM, eps, [("n1", Op("write", "k", "before"))])[0].type is OpType.OK
        wait_until(lambda: SYSTEM.local_read(c.endpoint("n1"), "k", 2.0) == "before", "n1 applied")
        c.kill("n3")
        assert not SYSTEM.ready(c.endpoint("n3"), 1.0) and SYSTEM.status(c.endpoint("n3"), 1.0) is None
        outs = call(SYSTEM, eps, [("n3", Op("write", "k", "x")), ("n3", Op("read", "k")),
                                  ("n3", Op("cas", "k", ["before", "y"]))])
        assert [o.type for o in outs] == [OpType.FAIL] * 3
        assert all((o.error or "").startswith("connect") for o in outs), outs

        # n1 alone: it loses its leader; writes are refused up front (REQUIRE_LEADER), definitely
        c.kill("n2")
        wait_until(lambda: (st := SYSTEM.status(c.endpoint("n1"), 2.0)) is not None and st.leader is None,
                   "n1 without leader")
        start = time.monotonic()
        write, read = call(SYSTEM, eps, [("n1", Op("write", "k", "lost")), ("n1", Op("read", "k"))])
        assert (write.type, write.error) == (OpType.FAIL, "etcdserver: no leader")
        assert (read.type, read.error) == (OpType.FAIL, "etcdserver: no leader")
        assert time.monotonic() - start < 2.0  # no request timeout waited out
        # etcd-serializable reads n1's own state
        (stale,) = call(serializable, eps, [("n1", Op("read", "k"))])
        assert (stale.type, stale.value) == (OpType.OK, "before")
        assert SYSTEM.local_read(c.endpoint("n1"), "k", 2.0) == "before"


@needs_etcd
def test_membership_add_and_remove(tmp_path: Path) -> None:
    with running(SYSTEM, tmp_path) as c:
        via = c.endpoint("n1")
        c.place("n4")
        SYSTEM.add_member(via, c.spec("n4", joining=True), 10.0)
        SYSTEM.add_member(via, c.spec("n4", joining=True), 10.0)  # a retried add changes nothing
        assert not SYSTEM.promoted(via, "n4", 2.0)
        unstarted = SYSTEM.status(via, 2.0)
        assert unstarted is not None and ("n4", True) in (unstarted.members or ())  # named from add_member
        c.start("n4", joining=True)
        c.wait_ready("n4")
        wait_until(lambda: SYSTEM.promoted(via, "n4", 2.0), "n4 promoted")
        st = wait_until(lambda: SYSTEM.status(c.endpoint("n4"), 2.0), "n4 status")
        assert sorted(st.members or ()) == [("n1", True), ("n2", True), ("n3", True), ("n4", True)]
        outs = call(SYSTEM, c.endpoints(), [("n4", Op("write", "m", "4")), ("n2", Op("read", "m"))])
        assert [(o.type, o.value) for o in outs] == [(OpType.OK, None), (OpType.OK, "4")]

        SYSTEM.remove_member(via, "n4", 10.0)
        SYSTEM.remove_member(via, "n4", 10.0)  # already gone: not an error
        after = SYSTEM.status(via, 2.0)
        assert after is not None and sorted(after.members or ()) == [("n1", True), ("n2", True), ("n3", True)]
        wait_until(lambda: c.exited("n4"), "removed n4 to exit")  # etcd stops a removed member itself
        assert call(SYSTEM, c.endpoints(), [("n1", Op("read", "m"))])[0].value == "4"
        with pytest.raises(SystemError_, match="n4"):
            SYSTEM.remove_member(c.endpoint("n4"), "n2", 1.0)  # a dead node cannot remove anyone
