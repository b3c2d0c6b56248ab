"""Cluster invariants, checked from the outside.

- election safety: at most one leader per term (from status samples taken
  throughout a run);
- committed prefixes identical on all nodes (from /v1/debug/log);
- every acknowledged write present, at the index its acknowledgement named,
  on every node, after heal;
- no write in the log twice (the harness's clients never reuse an
  X-Request-Seq, so a duplicate means the node proposed a write twice).

The checks are pure functions over data; ``gather_logs`` and
``LeaderWatch`` fetch that data from a running cluster. ``LeaderWatch``
also keeps every answer as a timestamped `StatusSample` (role, term,
leader, commit index; or no answer), which the report draws as one lane
per node.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness.model.history import History


@dataclass(frozen=True)
class NodeLog:
    node: str
    snapshot_index: int
    commit_index: int
    entries: dict[int, tuple[int, str, str]]  # index -> (term, kind, data)


def check_leaders(samples: Iterable[tuple[str, int, str]]) -> list[str]:
    """``samples`` of (node, term, role): at most one leader per term."""
    leaders: dict[int, set[str]] = {}
    for node, term, role in samples:
        if role == "leader":
            leaders.setdefault(term, set()).add(node)
    return [f"two leaders in term {t}: {', '.join(sorted(ns))}" for t, ns in sorted(leaders.items()) if len(ns) > 1]


def check_prefixes(logs: Mapping[str, NodeLog]) -> list[str]:
    """Committed entries present on two nodes must be identical."""
    out = []
    items = sorted(logs.items())
    for i, (a, la) in enumerate(items):
        for b, lb in items[i + 1:]:
            hi = min(la.commit_index, lb.commit_index)
            for idx in range(max(la.snapshot_index, lb.snapshot_index) + 1, hi + 1):
                ea, eb = la.entries.get(idx), lb.entries.get(idx)
                if ea is not None and eb is not None and ea != eb:
                    out.append(f"committed entry {idx} differs: {a} has term {ea[0]} {ea[2][:80]!r}, "
                               f"{b} has term {eb[0]} {eb[2][:80]!r}")
                    break
    return out


def check_duplicates(logs: Mapping[str, NodeLog]) -> list[str]:
    """No (client, seq) twice in any node's committed log."""
    out = []
    for node, lg in sorted(logs.items()):
        seen: dict[tuple[str, int], int] = {}
        for idx in sorted(lg.entries):
            term, kind, data = lg.entries[idx]
            if kind != "normal" or idx > lg.commit_index:
                continue
            try:
                cmd = json.loads(data)
            except ValueError:
                continue
            if "client" not in cmd:
                continue
            key = (cmd["client"], cmd["seq"])
            if key in seen:
                out.append(f"{node}: write {key} is in the log twice (indexes {seen[key]} and {idx})")
            seen[key] = idx
    return out


def check_acknowledged(history: History, logs: Mapping[str, NodeLog]) -> tuple[list[str], int]:
    """Every ok write/cas/delete is at its acknowledged index on every node that still holds that index.

    Returns (violations, number of acknowledged writes checked).
    """
    out: list[str] = []
    checked = 0
    for op in history.operations():
        if op.status != "ok" or op.f == "read" or op.index is None:
            continue
        if op.f == "cas" and op.output is False:
            continue
        checked += 1
        for node, lg in sorted(logs.items()):
            if op.index <= lg.snapshot_index:
                continue  # compacted: covered by the snapshot and the checker
            e = lg.entries.get(op.index)
            if e is None or op.index > lg.commit_index:
                out.append(f"{node}: acknowledged {op} missing (commit index {lg.commit_index})")
                continue
            try:
                cmd = json.loads(e[2])
            except ValueError:
                cmd = {}
            if not isinstance(cmd, dict):  # a configuration (a JSON list) took the acknowledged index
                cmd = {}
            want_op = {"write": "put", "cas": "cas", "delete": "delete"}[op.f]
            if cmd.get("op") != want_op or cmd.get("key") != op.key or (
                op.f == "write" and cmd.get("value") != op.value
            ):
                out.append(f"{node}: index {op.index} holds {e[2][:100]!r}, not the acknowledged {op}")
    return out, checked


def gather_logs(nodes: Iterable[str], fetch: Callable[[str, str], Any]) -> dict[str, NodeLog]:
    """Read each node's log through ``fetch(node, path) -> body`` (paged)."""
    logs = {}
    for n in nodes:
        first = fetch(n, "/v1/debug/log?from=0&to=0")
        snap, commit = first["snapshot_index"], first["commit_index"]
        entries: dict[int, tuple[int, str, str]] = {}
        lo = snap + 1
        while lo <= commit:
            body = fetch(n, f"/v1/debug/log?from={lo}&to={commit}")
            if not body["entries"]:
                break
            for idx, term, kind, data in body["entries"]:
                entries[idx] = (term, kind, data)
            lo = body["entries"][-1][0] + 1
        logs[n] = NodeLog(n, snap, commit, entries)
    return logs


@dataclass(frozen=True)
class StatusSample:
    """What ``node`` said when asked for its status at ``time``; ``role`` None: no answer."""

    time: float
    node: str
    role: str | None
    term: int | None = None
    leader: str | None = None
    commit_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "node": self.node, "role": self.role, "term": self.term,
                "leader": self.leader, "commit_index": self.commit_index}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusSample:
        """Inverse of `to_json`; raises `ValueError` on a malformed record."""
        try:
            def opt_int(k: str) -> int | None:
                return None if data.get(k) is None else int(data[k])

            def opt_str(k: str) -> str | None:
                return None if data.get(k) is None else str(data[k])

            return cls(float(data["time"]), str(data["node"]), opt_str("role"), opt_int("term"),
                       opt_str("leader"), opt_int("commit_index"))
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad status sample {data!r}: {e}") from None


def read_status(st: Any) -> tuple[str | None, int | None, str | None, int | None]:
    """(role, term, leader, commit_index) of a NodeStatus or a status dict (raftnet's /v1/status)."""
    if st is None:
        return None, None, None, None
    if isinstance(st, Mapping):
        role, term, leader, commit = st.get("role"), st.get("term"), st.get("leader_id", st.get("leader")), \
            st.get("commit_index")
    else:
        role, term = getattr(st, "role", None), getattr(st, "term", None)
        leader, commit = getattr(st, "leader", None), getattr(st, "commit_index", None)
    return (None if role is None else str(role), None if term is None else int(term),
            None if leader is None else str(leader), None if commit is None else int(commit))


@dataclass
class LeaderWatch:
    """Samples every node's status in the background while a run goes on: (node, term, role) in
    ``samples`` for `check_leaders`, and every answer (or its absence) with its time in
    ``timeline``. Each node is asked every ``interval`` seconds, on its own, so a node that does
    not answer delays only its own samples."""

    status: Callable[[str], Any]  # node -> a NodeStatus or a status dict; None: no answer
    nodes: Callable[[], Iterable[str]]
    interval: float = 0.1
    clock: Callable[[], float] = time.monotonic  # the history's clock
    samples: list[tuple[str, int, str]] = field(default_factory=list)
    timeline: list[StatusSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LeaderWatch:
        self._thread = threading.Thread(target=self._run, name="leader-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asked: dict[str, Future[StatusSample]] = {}
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="leader-watch") as pool:
            while not self._stop.wait(self.interval):
                for n in list(self.nodes()):
                    if n not in asked or asked[n].done():
                        asked[n] = pool.submit(self.sample, n)

    def sample(self, node: str) -> StatusSample:
        """Ask ``node`` once and record the answer."""
        t = self.clock()
        role, term, leader, commit = read_status(self.status(node))
        s = StatusSample(t, node, role, term, leader, commit)
        self.timeline.append(s)
        if term is not None and role is not None:
            self.samples.append((node, term, role))
        return s

    def violations(self) -> list[str]:
        return check_leaders(self.samples)
