"""raftnet's own node as a system under test, with every white-box hook.

Node i runs ``python -m node --id ID --listen IP:7000 --data-dir DIR`` with
``--peers`` (bootstrap) or ``--join`` (added later); peers and clients share
the one port. Status, the committed log (/v1/debug/log), local reads
(``?stale=true``) and membership (a new node joins through ``--join`` and the
leader promotes it; removal is ``DELETE /v1/members/ID``) are all offered.

``source`` runs the node code of another checkout (e.g. a ``git worktree`` of an
older commit, for a before/after benchmark): its directory goes first on the node's
PYTHONPATH and PYTHONSAFEPATH keeps the working directory off ``sys.path``, so
``python -m node`` imports that checkout's ``node`` package, whatever the cwd.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.model.invariants import NodeLog, gather_logs
from harness.orchestration.local import request
from harness.systems.base import BaseSystem, Endpoint, Feature, NodeSpec, NodeStatus, SystemError_
from harness.systems.raftnet_client import RaftnetClient

NODE_PORT = 7000


class RaftnetSystem(BaseSystem):
    name = "raftnet"
    client_port = NODE_PORT
    peer_port = NODE_PORT
    features = frozenset(Feature)

    def __init__(self, node_args: Sequence[str] = (), *, secret: str | None = None,
                 python: str | None = None, source: str | os.PathLike[str] | None = None) -> None:
        self.node_args = [str(a) for a in node_args]
        self.secret = secret
        self.python = python or sys.executable
        self.source = Path(source).resolve() if source is not None else None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> RaftnetSystem:
        """The cluster file's ``[system]`` table: ``name = "raftnet"``, optional ``node_args`` (a list of
        extra node flags) and ``secret``."""
        unknown = sorted(set(table) - {"name", "node_args", "secret"})
        if unknown:
            raise SystemError_(f"system.{unknown[0]}: unknown field for raftnet (fields: name, node_args, secret)")
        args = table.get("node_args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise SystemError_("system.node_args: expected a list of strings")
        secret = table.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise SystemError_("system.secret: expected a string")
        return cls(args, secret=secret)

    # ------------------------------------------------------------------ processes
    def argv(self, node: NodeSpec) -> list[str]:
        args = [self.python, "-m", "node", "--id", node.id, "--listen", node.client_address,
                "--data-dir", str(node.data_dir)]
        if node.joining:
            if not node.join_via:
                raise SystemError_(f"{node.id} joins but no live member was named")
            args += ["--join", node.join_via]
        else:
            args += ["--peers", node.fields()["peers"]]
        args += self.node_args
        if self.secret:
            sf = node.data_dir.parent / "secret"
            if not sf.exists():
                sf.write_text(self.secret)
                sf.chmod(0o600)
            args += ["--secret-file", str(sf)]
        return args

    def env(self, node: NodeSpec) -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1"}
        if self.source is not None:
            env |= {"PYTHONPATH": str(self.source), "PYTHONSAFEPATH": "1"}
        return env

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}

    def http(self, node: Endpoint, method: str, path: str, body: Any = None, timeout: float = 5.0) -> Any:
        return request(node.address, method, path, body, headers=self.headers(), timeout=timeout)

    def ready(self, node: Endpoint, timeout: float) -> bool:
        try:
            return bool(self.http(node, "GET", "/v1/health", timeout=timeout).status == 200)
        except (OSError, http.client.HTTPException, ValueError):
            return False

    def raw_status(self, node: Endpoint, timeout: float) -> dict[str, Any] | None:
        try:
            r = self.http(node, "GET", "/v1/status", timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        return r.body if r.status == 200 and isinstance(r.body, dict) else None

    def status(self, node: Endpoint, timeout: float) -> NodeStatus | None:
        st = self.raw_status(node, timeout)
        if st is None:
            return None
        return NodeStatus(role=st.get("role"), term=st.get("term"), leader=st.get("leader_id"),
                          commit_index=st.get("commit_index"), applied_index=st.get("last_applied"),
                          members=tuple((m["id"], bool(m["voter"])) for m in st.get("members", ())), raw=st)

    def client(self, *, timeout: float, client_id: str, follow_redirects: bool) -> RaftnetClient:
        return RaftnetClient(client_id=client_id, timeout=timeout, follow_redirects=follow_redirects,
                             headers=self.headers())

    # ------------------------------------------------------------------ white box
    def log(self, node: Endpoint, timeout: float) -> NodeLog:
        return gather_logs([node.id], lambda _n, p: self.http(node, "GET", p, timeout=timeout).body)[node.id]

    def local_read(self, node: Endpoint, key: str, timeout: float) -> Any:
        r = self.http(node, "GET", f"/v1/kv/{quote(key, safe='')}?stale=true", timeout=timeout)
        return r.body.get("value") if r.status == 200 and isinstance(r.body, dict) else None

    def add_member(self, via: Endpoint, node: NodeSpec, timeout: float) -> None:
        """Nothing to do before the start: the new node joins through ``--join`` (its ``join_via``)."""

    def promoted(self, via: Endpoint, node_id: str, timeout: float) -> bool:
        st = self.status(via, timeout)
        return bool(st and st.members and (node_id, True) in st.members)

    def remove_member(self, via: Endpoint, node_id: str, timeout: float) -> None:
        """``DELETE /v1/members/ID`` at ``via`` (the leader), following 307s and retrying 503s."""
        deadline = time.monotonic() + timeout
        target, last = via, None
        while time.monotonic() < deadline:
            try:
                r = self.http(target, "DELETE", f"/v1/members/{quote(node_id, safe='')}",
                              timeout=max(1.0, deadline - time.monotonic()))
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
                continue
            if r.status == 200:
                return
            last = r.body
            if r.status in (400, 404):
                raise SystemError_(f"remove {node_id}: {r.body}")
            leader = r.body.get("leader") if r.status == 307 and isinstance(r.body, dict) else None
            if isinstance(leader, dict) and leader.get("address"):
                host, _, port = str(leader["address"]).rpartition(":")
                target = Endpoint(str(leader.get("id")), host, int(port))
                continue
            time.sleep(0.1)
        raise TimeoutError(f"remove {node_id} did not succeed within {timeout:.0f} s: {last}")

    def describe(self) -> str:
        src = f" from {self.source}" if self.source is not None else ""
        return f"raftnet (python -m node{src})" + (f" {' '.join(self.node_args)}" if self.node_args else "")
