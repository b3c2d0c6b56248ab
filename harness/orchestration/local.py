"""Node processes on 127.0.0.1, without namespaces: for the benchmark, the
no-root demo and the node tests. Faults here are process faults only
(SIGKILL, SIGSTOP, SIGTERM); network faults need the namespace Cluster.

Each cluster has its own temp dir and free ports; every process is killed
at teardown. Synchronisation is by polling with deadlines.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]  # the checkout: `python -m node` runs from here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> T:
    """``pred()``'s first truthy value, polled every ``interval`` s; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {last_exc!r})" if last_exc else ""))


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


def request(address: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 10.0, raw: bytes | None = None) -> Response:
    """One HTTP request on a fresh connection; the body is parsed as JSON when it is JSON."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if data is not None and "Content-Length" not in hdrs:
            hdrs["Content-Length"] = str(len(data))
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        payload = r.read()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return Response(r.status, parsed, {k: v for k, v in r.getheaders()})
    finally:
        conn.close()


@dataclass
class Node:
    id: str
    address: str
    data_dir: Path
    log_path: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (the cluster secret)
    paused: bool = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 10.0, raw: bytes | None = None) -> Response:
        return request(self.address, method, path, body, {**self.headers, **(headers or {})}, timeout, raw)

    def status(self) -> dict[str, Any]:
        r = self.request("GET", "/v1/status", timeout=5)
        if r.status != 200:
            raise ValueError(f"{self.id}: GET /v1/status answered {r.status} {r.body}")
        return r.body

    def stale(self, key: str) -> Response:
        return self.request("GET", f"/v1/kv/{key}?stale=true")


@dataclass
class LocalCluster:
    root: Path
    n: int = 3
    extra_args: list[str] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.auth: dict[str, str] = {}
        if "--secret-file" in self.extra_args:
            secret = Path(self.extra_args[self.extra_args.index("--secret-file") + 1]).read_text().strip()
            self.auth = {"Authorization": f"Bearer {secret}"}
        ids = [f"n{i}" for i in range(1, self.n + 1)]
        addrs = {i: f"127.0.0.1:{free_port()}" for i in ids}
        peers = ",".join(f"{i}={a}" for i, a in addrs.items())
        for i in ids:
            self.nodes[i] = self._node(i, addrs[i], ["--peers", peers])

    def _node(self, node_id: str, address: str, membership_args: list[str]) -> Node:
        d = self.root / node_id
        args = [sys.executable, "-m", "node", "--id", node_id, "--listen", address, "--data-dir", str(d),
                *membership_args, "--log-level", "info", *self.extra_args]
        return Node(node_id, address, d, self.root / f"{node_id}.log", args, headers=dict(self.auth))

    # ------------------------------------------------------------ processes
    def start(self, *ids: str) -> None:
        for i in ids or tuple(self.nodes):
            n = self.nodes[i]
            if n.alive():
                continue
            log = open(n.log_path, "ab")
            n.proc = subprocess.Popen(n.args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"})
            log.close()
        for i in ids or tuple(self.nodes):
            self.wait_healthy(i)

    def wait_healthy(self, node_id: str, timeout: float = 30.0) -> None:
        n = self.nodes[node_id]

        def up() -> bool:
            if n.proc is not None and n.proc.poll() is not None:
                raise RuntimeError(f"{node_id} exited with {n.proc.returncode}: {self.tail(node_id)}")
            return n.request("GET", "/v1/health", timeout=1).status == 200

        wait_for(up, timeout, what=f"{node_id} healthy")

    def kill(self, node_id: str) -> None:
        n = self.nodes[node_id]
        if n.proc is not None and n.proc.poll() is None:
            n.proc.send_signal(signal.SIGKILL)
            n.proc.wait(10)
        n.paused = False

    def kill_all(self) -> None:
        """SIGKILL every live node at (nearly) the same instant, then reap them."""
        procs = [n.proc for n in self.nodes.values() if n.proc is not None and n.proc.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait(10)
        for n in self.nodes.values():
            n.paused = False

    def terminate(self, node_id: str, timeout: float = 10.0) -> int:
        n = self.nodes[node_id]
        assert n.proc is not None
        n.proc.send_signal(signal.SIGTERM)
        return n.proc.wait(timeout)

    def pause(self, node_id: str) -> None:
        n = self.nodes[node_id]
        assert n.proc is not None
        n.proc.send_signal(signal.SIGSTOP)
        n.paused = True

    def resume(self, node_id: str) -> None:
        n = self.nodes[node_id]
        assert n.proc is not None
        n.proc.send_signal(signal.SIGCONT)
        n.paused = False

    def restart(self, node_id: str) -> None:
        self.kill(node_id)
        self.start(node_id)

    def add_node(self, node_id: str, join_via: str) -> Node:
        n = self._node(node_id, f"127.0.0.1:{free_port()}", ["--join", self.nodes[join_via].address])
        self.nodes[node_id] = n
        self.start(node_id)
        return n

    def stop_all(self) -> None:
        for n in self.nodes.values():
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
                n.proc.kill()
                n.proc.wait(10)

    def tail(self, node_id: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.nodes[node_id].log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------ queries
    def live(self) -> list[Node]:
        """Running and not paused (a paused node would only time out)."""
        return [n for n in self.nodes.values() if n.alive() and not n.paused]

    def followers(self, leader: Node) -> list[Node]:
        return [n for n in self.live() if n.id != leader.id]

    def leader(self, timeout: float = 20.0, among: list[str] | None = None) -> Node:
        """Wait until exactly one live node says it leads the highest term, and return it."""

        def find() -> Node | None:
            best: tuple[int, Node] | None = None
            for n in self.live():
                if among is not None and n.id not in among:
                    continue
                try:
                    st = n.status()
                except (OSError, http.client.HTTPException):
                    continue
                if st["role"] == "leader" and (best is None or st["term"] > best[0]):
                    best = (st["term"], n)
            return best[1] if best else None

        return wait_for(find, timeout, what="a leader")

    def put(self, key: str, value: str, via: Node | None = None, headers: dict[str, str] | None = None,
            timeout: float = 20.0) -> Response:
        """PUT through the leader, following 307s and retrying 503s until the deadline."""
        return self.call("PUT", f"/v1/kv/{key}", {"value": value}, via=via, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None, via: Node | None = None,
             headers: dict[str, str] | None = None, timeout: float = 20.0) -> Response:
        """A request to the leader that follows 307s and retries 503s and refused connections
        until it gets any other answer or the deadline passes. Use it only for requests that
        are safe to resend (a 503 is "not applied"; a 504 is returned, never retried)."""
        deadline = time.monotonic() + timeout
        target = via or self.leader(timeout)
        while True:
            try:
                r = target.request(method, path, body, headers=headers, timeout=timeout)
            except OSError:
                r = Response(0, None, {})
            if r.status not in (0, 307, 503) or time.monotonic() > deadline:
                return r
            if r.status == 307:
                addr = r.body["leader"]["address"]
                target = next(n for n in self.nodes.values() if n.address == addr)
                if target.alive() and not target.paused:
                    continue
            time.sleep(0.05)
            target = self.leader(max(0.1, deadline - time.monotonic()))

    def get(self, key: str, via: Node, stale: bool = False) -> Response:
        return via.request("GET", f"/v1/kv/{key}" + ("?stale=true" if stale else ""))

    def wait_caught_up(self, node: Node, leader: Node, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until ``node`` has applied everything ``leader`` had committed when called."""
        target = leader.status()["commit_index"]
        return wait_for(lambda: (st := node.status())["last_applied"] >= target and st, timeout,
                        what=f"{node.id} to apply up to {target}")

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


LocalNode = Node
