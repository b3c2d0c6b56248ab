"""Node processes on 127.0.0.1, without namespaces: for the benchmark, the
no-root demo and the node tests. Faults here are process faults only
(SIGKILL, SIGSTOP); network faults need the namespace Cluster.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll ``pred`` until it returns something truthy; raise after ``timeout`` seconds."""
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
    extra = f" (last error: {last_exc!r})" if last_exc else ""
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}{extra}")


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


def request(address: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 10.0, raw: bytes | None = None) -> Response:
    """One blocking HTTP request; JSON in and out."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        payload = r.read()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return Response(r.status, parsed, dict(r.getheaders()))
    finally:
        conn.close()


@dataclass
class LocalNode:
    id: str
    address: str
    data_dir: Path
    log_path: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        return request(self.address, "GET", "/v1/status", timeout=2).body  # type: ignore[no-any-return]


@dataclass
class LocalCluster:
    """``n`` nodes n1..nN bootstrapped with --peers, each a real process."""

    root: Path
    n: int = 3
    extra_args: list[str] = field(default_factory=list)
    nodes: dict[str, LocalNode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ids = [f"n{i}" for i in range(1, self.n + 1)]
        addrs = {i: f"127.0.0.1:{free_port()}" for i in ids}
        peers = ",".join(f"{i}={a}" for i, a in addrs.items())
        for i in ids:
            self.nodes[i] = self._node(i, addrs[i], ["--peers", peers])

    def _node(self, node_id: str, address: str, membership_args: list[str]) -> LocalNode:
        d = self.root / node_id
        args = [sys.executable, "-m", "node", "--id", node_id, "--listen", address, "--data-dir", str(d),
                *membership_args, "--log-level", "info", *self.extra_args]
        return LocalNode(node_id, address, d, self.root / f"{node_id}.log", args)

    def start(self, *ids: str) -> None:
        for i in ids or tuple(self.nodes):
            n = self.nodes[i]
            if n.alive():
                continue
            with open(n.log_path, "ab") as log:
                n.proc = subprocess.Popen(n.args, stdout=log, stderr=subprocess.STDOUT,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for i in ids or tuple(self.nodes):
            self.wait_healthy(i)

    def wait_healthy(self, node_id: str, timeout: float = 15.0) -> None:
        n = self.nodes[node_id]

        def up() -> bool:
            if n.proc is not None and n.proc.poll() is not None:
                raise RuntimeError(f"{node_id} exited with {n.proc.returncode}: {self.tail(node_id)}")
            return request(n.address, "GET", "/v1/health", timeout=1).status == 200

        wait_for(up, timeout, what=f"{node_id} healthy")

    def kill(self, node_id: str) -> None:
        n = self.nodes[node_id]
        if n.proc is not None and n.proc.poll() is None:
            n.proc.send_signal(signal.SIGKILL)
            n.proc.wait(10)

    def restart(self, node_id: str) -> None:
        self.kill(node_id)
        self.start(node_id)

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

    def live(self) -> list[LocalNode]:
        return [n for n in self.nodes.values() if n.alive()]

    def leader(self, timeout: float = 10.0) -> LocalNode:
        """Wait until a live node says it leads (the highest term wins) and return it."""

        def find() -> LocalNode | None:
            best: tuple[int, LocalNode] | None = None
            for n in self.live():
                try:
                    st = n.status()
                except (OSError, http.client.HTTPException):
                    continue
                if st["role"] == "leader" and (best is None or st["term"] > best[0]):
                    best = (st["term"], n)
            return best[1] if best else None

        return wait_for(find, timeout, what="a leader")

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
