"""etcd 3.4 as a system under test, through its gRPC-JSON gateway (``/v3/...`` on the client port).

``EtcdSystem()`` runs ``etcd`` with linearizable reads; ``EtcdSystem(serializable=True)``
("etcd-serializable") reads with ``serializable=true``, i.e. from the answering member's own
state, which may be stale: a configuration the checker is expected to catch.

The model maps one to one onto etcd's KV API (keys and values go base64 in JSON; uint64 come
back as strings):

==========  ================================================================================
read        ``/v3/kv/range``; no ``kvs``: absent (None)
write       ``/v3/kv/put``
cas         ``/v3/kv/txn``: compare ``value == expect`` (expect None: ``create_revision == 0``,
            i.e. absent), success ``put``; the result is the txn's ``succeeded``
delete      ``/v3/kv/deleterange``
==========  ================================================================================

How a completion is classified (``classify``) is written out next to ``_DEFINITE_MESSAGES``;
the short version: ``fail`` only when etcd rejected the request before proposing it (or
rejects it deterministically when applying it), ``info`` for anything that may have reached
the Raft log.

Status comes from two sources: ``/v3/maintenance/status`` (commit and applied index, and the
answer proves the node serves) and the ``raft.status`` expvar at ``/debug/vars`` (role, term,
leader, from one snapshot of the Raft node). The maintenance status's ``raftTerm`` is the term
of the last *applied* entry, not the current term: a freshly elected leader that has not yet
applied its first entry would report the previous leader's term, and two leaders would seem
to share it.

Membership: ``add_member`` registers the new member's peer URL (before its process starts);
the new node then starts with ``--initial-cluster`` = the current members plus itself and
``--initial-cluster-state existing``. etcd checks that list against the cluster's, so
``NodeSpec.members`` of a joining node must be the current membership.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import aiohttp

from harness.model.history import OpType
from harness.systems.base import (
    BaseSystem,
    Endpoint,
    Feature,
    KVClient,
    NodeSpec,
    NodeStatus,
    Op,
    Outcome,
    SystemError_,
)

INSTALL_HINT = ("etcd not installed: run `sudo make setup` (installs Debian's etcd-server) "
                "or `sudo apt install etcd-server`")
CLUSTER_TOKEN = "raftnet-etcd"

# Sent with every request except serializable reads: the node rejects the request at once with
# "etcdserver: no leader" when it knows no leader (the unary interceptor, before any handler
# runs), instead of blocking until its request timeout (5 s + 2 elections) and answering
# "context deadline exceeded", which we could not tell from a proposal that went out. A
# serializable read must not carry it: serving a possibly stale value without a leader is the
# point of that configuration.
REQUIRE_LEADER = {"Grpc-Metadata-Hasleader": "true"}

_RAFT_ROLES = {"StateLeader": "leader", "StateFollower": "follower", "StateCandidate": "candidate",
               "StatePreCandidate": "pre-candidate"}


@functools.cache
def unavailable_reason(binary: str = "etcd") -> str | None:
    """None when ``binary --version`` runs, else one line saying how to install etcd."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return INSTALL_HINT
    return None if done.returncode == 0 else INSTALL_HINT


# -- classification (pure) -------------------------------------------------------------------

# Errors after which a write, cas or delete DEFINITELY did not happen (checked against the
# etcd v3.4.23 sources). Anything not listed is `info`.
#
# - "etcdserver: no leader": only from the unary interceptor when the request carries the
#   hasleader metadata (REQUIRE_LEADER), before the handler runs. (Without that metadata a
#   node that knows no leader blocks the proposal and answers "context deadline exceeded":
#   info, since the same message also ends proposals that did go out.)
# - "etcdserver: not capable", "etcdserver: rpc not supported for learner": interceptor too.
# - "etcdserver: too many requests", "etcdserver: request is too large": checked in
#   processInternalRaftRequestOnce before Propose (Jepsen's etcd test: definite too).
# - "raft proposal dropped": raft refused to append it (no leader known, leader transfer in
#   progress, leader removed). A follower that forwards a proposal never returns it.
_DEFINITE_MESSAGES = (
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: rpc not supported for learner",
    "etcdserver: too many requests",
    "etcdserver: request is too large",
    "raft proposal dropped",
)
# gRPC codes that are definite whatever the message: request validation before proposing, or a
# rejection that every replica makes alike when applying (so the entry changes nothing):
# 3 INVALID_ARGUMENT (empty key, duplicate key in a txn, the gateway's own JSON errors),
# 5 NOT_FOUND (lease not found; Jepsen: definite), 7 PERMISSION_DENIED and 16 UNAUTHENTICATED
# (auth, checked in the applier), 8 RESOURCE_EXHAUSTED (too many requests; NOSPACE alarm,
# checked before proposing and again in the applier), 11 OUT_OF_RANGE (compacted revision).
_DEFINITE_CODES = frozenset({3, 5, 7, 8, 11, 16})
#
# Deliberately `info` for writes: "etcdserver: request timed out" (and its "possibly due to
# ..." variants; HTTP 503 although the proposal may commit later), "etcdserver: leader changed",
# "etcdserver: server stopped" and "raft: stopped" (may come after the proposal went out; Jepsen
# calls the latter definite, we do not), "etcdserver: request cancelled", "context deadline
# exceeded", any unknown error or non-JSON answer, a timeout or a connection that broke after
# the request was sent. So the HTTP status of an error never decides: 503 here is not 503 there.


def classify(f: str, status: int | None, result: Mapping[str, Any] | BaseException | None) -> Outcome:
    """The outcome of one request: ``status`` is the HTTP status (None when no response came),
    ``result`` the JSON body or the exception raised while sending or reading."""
    if isinstance(result, BaseException):
        if isinstance(result, aiohttp.ClientConnectorError):
            # Could not connect (refused, unreachable): nothing was sent.
            return Outcome(OpType.FAIL, error=f"connect: {result.os_error!r}"[:200])
        if isinstance(result, aiohttp.ConnectionTimeoutError):
            # aiohttp raises this only around opening the connection: nothing was sent.
            return Outcome(OpType.FAIL, error="connect timeout")
        # A read changes nothing: one that did not complete is dropped exactly.
        kind = OpType.FAIL if f == "read" else OpType.INFO
        return Outcome(kind, error=(f"{type(result).__name__}: {result}" if str(result)
                                    else type(result).__name__)[:200])
    body = result if isinstance(result, Mapping) else {}
    if status == 200 and isinstance(result, Mapping):
        if f == "read":
            kvs = body.get("kvs") or []
            return Outcome(OpType.OK, decode(kvs[0].get("value", "")) if kvs else None)
        if f == "cas":
            # The gateway leaves false fields out: no "succeeded" means the compare failed.
            return Outcome(OpType.OK, bool(body.get("succeeded", False)))
        return Outcome(OpType.OK)
    message = str(body.get("error") or body.get("message") or f"HTTP {status}")[:200]
    if f == "read":
        return Outcome(OpType.FAIL, error=message)
    code = body.get("code")
    if (isinstance(code, int) and code in _DEFINITE_CODES) or message.startswith(_DEFINITE_MESSAGES):
        return Outcome(OpType.FAIL, error=message)
    return Outcome(OpType.INFO, error=message)


def encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def decode(b64: str) -> str:
    return base64.b64decode(b64).decode(errors="replace")


def request_for(op: Op, serializable: bool) -> tuple[str, dict[str, Any], bool]:
    """``(path, JSON body, require leader)`` for ``op`` (values are strings)."""
    key = encode(op.key)
    if op.f == "read":
        return "/v3/kv/range", {"key": key, "serializable": serializable}, not serializable
    if op.f == "write":
        return "/v3/kv/put", {"key": key, "value": encode(str(op.value))}, True
    if op.f == "cas":
        expect, new = op.value
        compare: dict[str, Any] = (
            {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"} if expect is None
            else {"key": key, "target": "VALUE", "result": "EQUAL", "value": encode(str(expect))})
        return "/v3/kv/txn", {"compare": [compare],
                              "success": [{"request_put": {"key": key, "value": encode(str(new))}}]}, True
    if op.f == "delete":
        return "/v3/kv/deleterange", {"key": key}, True
    raise ValueError(f"unknown operation {op.f!r}")


def _id(value: Any) -> int:
    """A member id as the gateway writes it (a uint64 as a decimal string)."""
    return int(value)


def _hex_id(value: Any) -> int:
    """A member id as the ``raft.status`` expvar writes it (hex, "0" for none)."""
    return int(str(value), 16)


def parse_status(maintenance: Mapping[str, Any], member_list: Mapping[str, Any] | None,
                 raft: Mapping[str, Any] | None, names: Mapping[int, str]) -> NodeStatus:
    """A NodeStatus from the gateway's maintenance status and member list and the ``raft.status``
    expvar (None: unavailable). ``names`` maps member ids to names."""
    me = _id(maintenance.get("header", {}).get("member_id", 0))
    members = None
    if member_list is not None:
        members = tuple((names.get(_id(m.get("ID", 0)), f"{_id(m.get('ID', 0)):x}"), not m.get("isLearner", False))
                        for m in member_list.get("members", []))
    role: str | None
    if raft is not None:
        role = _RAFT_ROLES.get(str(raft.get("raftState")), str(raft.get("raftState")).lower())
        lead = _hex_id(raft.get("lead", "0"))
        term: int | None = int(raft["term"]) if "term" in raft else None
    else:
        # Without the expvar: the maintenance status's leader, and no term (its raftTerm is the
        # term of the last applied entry, see the module docstring).
        lead = _id(maintenance.get("leader", "0"))
        role = "leader" if lead and lead == me else ("follower" if lead else None)
        term = None
    return NodeStatus(
        role=role, term=term, leader=names.get(lead, f"{lead:x}") if lead else None,
        commit_index=int(maintenance["raftIndex"]) if "raftIndex" in maintenance else None,
        applied_index=int(maintenance["raftAppliedIndex"]) if "raftAppliedIndex" in maintenance else None,
        members=members, raw={"maintenance": dict(maintenance), "raft": dict(raft) if raft else None})


# -- the system ------------------------------------------------------------------------------

_TABLE_FIELDS: dict[str, type] = {"name": str, "binary": str, "pre_vote": bool, "heartbeat_ms": int,
                                  "election_ms": int, "serializable": bool}


class EtcdSystem(BaseSystem):
    client_port = 2379
    peer_port = 2380
    # No Feature.CLOCK: etcd is Go, whose runtime reads the clock through the vDSO, not libc, so
    # libfaketime does not reach it (checked: etcd 3.4 under FAKETIME="+100d x10" logs real time).
    features = frozenset({Feature.STATUS, Feature.LOCAL_READ, Feature.MEMBERSHIP})

    def __init__(self, serializable: bool = False, *, binary: str = "etcd", pre_vote: bool = True,
                 heartbeat_ms: int = 100, election_ms: int = 1000) -> None:
        if not binary:
            raise SystemError_("etcd: binary is empty")
        if heartbeat_ms < 1:
            raise SystemError_(f"etcd: heartbeat_ms must be at least 1, not {heartbeat_ms}")
        if election_ms < 5 * heartbeat_ms:  # etcd refuses to start otherwise
            raise SystemError_(f"etcd: election_ms ({election_ms}) must be at least 5 x heartbeat_ms ({heartbeat_ms})")
        if election_ms > 50_000:  # etcd's own limit
            raise SystemError_(f"etcd: election_ms must be at most 50000, not {election_ms}")
        self.serializable = serializable
        self.name = "etcd-serializable" if serializable else "etcd"
        self.binary = binary
        self.pre_vote = pre_vote
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self._lock = threading.Lock()  # status may run in worker threads
        self._names: dict[int, str] = {}  # member id -> name, from every member list seen
        self._joining: dict[str, str] = {}  # peer URL -> node id, for members added but not started

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, serializable: bool = False) -> EtcdSystem:
        """The system of a cluster file's ``[system]`` table (``name`` is "etcd" or "etcd-serializable")."""
        for key, value in table.items():
            want = _TABLE_FIELDS.get(key)
            if want is None:
                raise SystemError_(f"[system] {key}: unknown field for etcd (fields: {', '.join(_TABLE_FIELDS)})")
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise SystemError_(f"[system] {key} must be {want.__name__}, not {type(value).__name__} ({value!r})")
        name = table.get("name", "etcd-serializable" if serializable else "etcd")
        if name not in ("etcd", "etcd-serializable"):
            raise SystemError_(f"[system] name must be 'etcd' or 'etcd-serializable', not {name!r}")
        serializable = bool(table.get("serializable", serializable or name == "etcd-serializable"))
        if name == "etcd-serializable" and not serializable:
            raise SystemError_("[system] serializable = false contradicts name = 'etcd-serializable'")
        return cls(serializable, binary=table.get("binary", "etcd"), pre_vote=table.get("pre_vote", True),
                   heartbeat_ms=table.get("heartbeat_ms", 100), election_ms=table.get("election_ms", 1000))

    def describe(self) -> str:
        reads = "serializable (local, possibly stale) reads" if self.serializable else "linearizable reads"
        return (f"{self.name}: {self.binary}, {reads}, heartbeat {self.heartbeat_ms} ms, election "
                f"{self.election_ms} ms, pre-vote {'on' if self.pre_vote else 'off'}")

    # -- processes ---------------------------------------------------------------------------

    def argv(self, node: NodeSpec) -> list[str]:
        client_url = f"http://{node.ip}:{node.client_port}"
        peer_url = f"http://{node.ip}:{node.peer_port}"
        initial = [f"{m.id}=http://{m.ip}:{m.peer_port}" for m in node.members if m.id != node.id]
        initial.append(f"{node.id}={peer_url}")  # a joining node is not among node.members
        argv = [
            self.binary, "--name", node.id, "--data-dir", str(node.data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", ",".join(initial),
            "--initial-cluster-state", "existing" if node.joining else "new",
            "--initial-cluster-token", CLUSTER_TOKEN,
            "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
            # Nothing beyond the lab's addresses: flags given here win over ETCD_* variables the
            # environment may carry (no discovery service, no extra metrics listener).
            "--discovery=", "--discovery-srv=", "--listen-metrics-urls=",
            "--logger", "zap", "--log-outputs", "stderr",
        ]  # fsync stays on: never --unsafe-no-fsync
        if self.pre_vote:
            argv.append("--pre-vote")
        return argv

    def ready(self, node: Endpoint, timeout: float) -> bool:
        # etcd serves its client port only once it has joined and published itself (ReadyNotify).
        try:
            status, _ = _http(node, "GET", "/version", None, min(timeout, 2.0))
        except (OSError, http.client.HTTPException, ValueError):
            return False
        return status == 200

    # -- status ------------------------------------------------------------------------------

    def status(self, node: Endpoint, timeout: float) -> NodeStatus | None:
        try:
            code, maintenance = _http(node, "POST", "/v3/maintenance/status", {}, timeout)
            if code != 200 or not isinstance(maintenance, dict):
                return None
            member_list = self._member_list(node, timeout)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        try:
            code, expvars = _http(node, "GET", "/debug/vars", None, timeout)
            raft = expvars.get("raft.status") if code == 200 and isinstance(expvars, dict) else None
        except (OSError, http.client.HTTPException, ValueError):
            raft = None
        with self._lock:
            names = dict(self._names)
        return parse_status(maintenance, member_list, raft if isinstance(raft, dict) else None, names)

    def _member_list(self, via: Endpoint, timeout: float) -> dict[str, Any]:
        """``via``'s member list; remembers every name it shows (a member added but not yet
        started has none: it is named from ``add_member``'s peer URL)."""
        code, body = _http(via, "POST", "/v3/cluster/member/list", {}, timeout)
        if code != 200 or not isinstance(body, dict):
            raise ValueError(f"member list: HTTP {code}: {body!r}"[:200])
        with self._lock:
            for m in body.get("members", []):
                urls = m.get("peerURLs", [])
                name = m.get("name") or next((self._joining[u] for u in urls if u in self._joining), "")
                if name:
                    self._names[_id(m.get("ID", 0))] = name
        return body

    # -- client ------------------------------------------------------------------------------

    def client(self, *, timeout: float, client_id: str, follow_redirects: bool) -> KVClient:
        # etcd forwards proposals to its leader itself: there is no redirect to follow.
        return EtcdClient(serializable=self.serializable, timeout=timeout, client_id=client_id)

    def local_read(self, node: Endpoint, key: str, timeout: float) -> Any:
        """``key``'s value in ``node``'s own state (a serializable range), None when absent."""
        try:
            code, body = _http(node, "POST", "/v3/kv/range", {"key": encode(key), "serializable": True}, timeout)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise SystemError_(f"{node.id}: local read of {key!r}: {e!r}") from None
        if code != 200 or not isinstance(body, dict):
            raise SystemError_(f"{node.id}: local read of {key!r}: HTTP {code}: {body!r}"[:300])
        kvs = body.get("kvs") or []
        return decode(kvs[0].get("value", "")) if kvs else None

    # -- membership --------------------------------------------------------------------------

    def add_member(self, via: Endpoint, node: NodeSpec, timeout: float) -> None:
        """Register ``node``'s peer URL as a voter; its process starts afterwards (joining).
        Repeating the call after an ambiguous failure is harmless: a peer URL already in the
        member list is left as it is. Raises SystemError_ when etcd refuses or does not answer."""
        url = f"http://{node.ip}:{node.peer_port}"
        with self._lock:
            self._joining[url] = node.id
        deadline = time.monotonic() + timeout
        listing = self._membership_call(via, "/v3/cluster/member/list", {}, timeout)
        if any(url in m.get("peerURLs", []) for m in listing.get("members", [])):
            return
        self._membership_call(via, "/v3/cluster/member/add", {"peerURLs": [url]}, _left(deadline))

    def promoted(self, via: Endpoint, node_id: str, timeout: float) -> bool:
        """True once ``node_id`` has started and published its name (etcd's ReadyNotify), as a voter."""
        try:
            body = self._member_list(via, timeout)
        except (OSError, http.client.HTTPException, ValueError):
            return False
        return any(m.get("name") == node_id and not m.get("isLearner", False) for m in body.get("members", []))

    def remove_member(self, via: Endpoint, node_id: str, timeout: float) -> None:
        """Remove ``node_id`` (by name, or by peer URL when it was added but never started).
        A member already gone is not an error (a retried removal)."""
        deadline = time.monotonic() + timeout
        listing = self._membership_call(via, "/v3/cluster/member/list", {}, timeout)
        with self._lock:
            urls = {u for u, n in self._joining.items() if n == node_id}
        target = next((m for m in listing.get("members", [])
                       if m.get("name") == node_id or urls & set(m.get("peerURLs", []))), None)
        if target is None:
            return
        try:
            self._membership_call(via, "/v3/cluster/member/remove", {"ID": str(_id(target["ID"]))},
                                  _left(deadline))
        except SystemError_ as e:
            if "member not found" not in str(e):
                raise

    def _membership_call(self, via: Endpoint, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One membership request, repeated while etcd answers "unhealthy cluster": its strict
        reconfiguration check refuses a change, before proposing it, until ``via`` has been
        connected to every voter for 5 s (e.g. right after the cluster started or healed)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                code, answer = _http(via, "POST", path, body, _left(deadline))
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise SystemError_(f"etcd {via.id}: {path}: {e!r}") from None
            if code == 200 and isinstance(answer, dict):
                return answer
            detail = answer.get("error") if isinstance(answer, dict) else answer
            if detail != "etcdserver: unhealthy cluster" or time.monotonic() + 0.2 > deadline:
                raise SystemError_(f"etcd {via.id}: {path}: HTTP {code}: {detail}"[:300])
            time.sleep(0.2)


class EtcdClient:
    """An asyncio client of one etcd cluster through the JSON gateway (see ``classify``)."""

    def __init__(self, *, serializable: bool, timeout: float, client_id: str) -> None:
        self.serializable = serializable
        self.timeout = timeout
        self.client_id = client_id  # etcd has no request dedup: only for logs
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the running loop, on first use
            self._session = aiohttp.ClientSession()
            # aiohttp silently re-sends an idempotent request on a new connection when a pooled one
            # breaks after sending; a re-send's connect error would then be recorded as a definite
            # `fail`. All our requests are POSTs (not re-sent) but keep the guarantee explicit: a
            # broken connection must surface as `info`.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def call(self, node: str, op: Op, endpoints: Mapping[str, Endpoint]) -> Outcome:
        endpoint = endpoints.get(node)
        if endpoint is None:
            return Outcome(OpType.FAIL, error=f"unknown node {node}", node=node)
        path, body, require_leader = request_for(op, self.serializable)
        headers = {"Content-Type": "application/json", **(REQUIRE_LEADER if require_leader else {})}
        status: int | None = None
        try:
            async with self._open().post(
                f"http://{endpoint.address}{path}", data=json.dumps(body), headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=min(1.0, self.timeout)),
            ) as resp:
                status = resp.status
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            return replace(classify(op.f, status, e), node=node)
        return replace(classify(op.f, status, payload if isinstance(payload, dict) else None), node=node)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _http(node: Endpoint, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
    """One synchronous request; ``(status, JSON body or None)``. Raises OSError, HTTPException,
    ValueError."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()
