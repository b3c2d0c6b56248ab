"""The key-value state machine: apply, snapshot, restore, and exactly-once
client sessions.

State lives twice: in memory (dicts, for reads) and in SQLite (tables ``kv``
and ``sessions``, for durability). ``apply`` writes both, on the connection
and inside the transaction the storage opened for the whole Ready, so the
applied index and the data it describes are always durable together.

A command is JSON: ``{"op": "put"|"delete"|"cas", "key": K, "value": V,
"expect": E, "client": C, "seq": S}``. The result of each command is JSON
too: ``{"index": N}`` or ``{"error": "cas_failed", "current": X}``. A client
session keeps the results of the client's last ``SESSION_WINDOW`` sequence
numbers, so a retry returns the first outcome and is applied at most once.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .raft import Entry, EntryKind, Index

SESSION_WINDOW = 32
MAX_SESSIONS = 10_000

Result = dict[str, Any]

_SESSION_SQL = {
    "put": "INSERT OR REPLACE INTO sessions(client, seq, result, idx) VALUES (?,?,?,?)",
    "drop": "DELETE FROM sessions WHERE client = ? AND seq = ?",
    "evict": "DELETE FROM sessions WHERE client = ?",
}


class StateMachine(Protocol):
    applied: Index

    def apply(self, conn: sqlite3.Connection | None, entries: Iterable[Entry],
              into: Writes | None = None) -> list[Result | None]: ...
    def serialize(self) -> bytes: ...
    def restore(self, conn: sqlite3.Connection | None, data: bytes, index: Index) -> None: ...


@dataclass(frozen=True)
class Image:
    """The state machine's state at one applied index, detached from the live dicts."""

    applied: Index
    kv: dict[str, tuple[str, int]]
    sessions: dict[str, dict[int, tuple[str, int]]]


@dataclass
class Writes:
    """The row changes of applied entries, for the ``kv`` and ``sessions`` tables: what
    ``apply`` writes, kept to be written in a later transaction. Merging later entries
    into it keeps the order that matters: the last change of each key wins, and session
    row changes stay in entry order (an eviction followed by the same client's return
    must leave the new row in place)."""

    kv: dict[str, tuple[str, int] | None] = field(default_factory=dict)  # key -> (value, mod), None: deleted
    sessions: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)  # ("put"|"drop"|"evict", args)
    entries: int = 0  # entries applied into it
    applied: Index = Index(0)  # the applied index these rows bring the tables to

    def write(self, conn: sqlite3.Connection) -> None:
        ups = [(k, v[0], v[1]) for k, v in self.kv.items() if v is not None]
        dels = [(k,) for k, v in self.kv.items() if v is None]
        if ups:
            conn.executemany("INSERT OR REPLACE INTO kv(key, value, mod) VALUES (?, ?, ?)", ups)
        if dels:
            conn.executemany("DELETE FROM kv WHERE key = ?", dels)
        for kind, group in itertools.groupby(self.sessions, key=lambda op: op[0]):
            conn.executemany(_SESSION_SQL[kind], [args for _, args in group])


def serialize_image(image: Image, chunk: int = 2_000) -> bytes:
    """The snapshot format (zlib-compressed JSON ``{"applied", "kv", "sessions"}``), encoded
    ``chunk`` items at a time: one json.dumps of a large state holds the GIL for its whole
    duration and would stall the event loop; small calls let the loop thread in between."""
    z = zlib.compressobj(1)
    parts: list[bytes] = [z.compress(b'{"applied":%d,"kv":[' % image.applied)]

    def emit(rows: Iterable[list[Any]]) -> None:
        first, batch = True, []
        for row in rows:
            batch.append(row)
            if len(batch) >= chunk:
                parts.append(z.compress((("" if first else ",") + _dumps(batch)[1:-1]).encode()))
                first, batch = False, []
        if batch:
            parts.append(z.compress((("" if first else ",") + _dumps(batch)[1:-1]).encode()))

    emit([k, v, i] for k, (v, i) in image.kv.items())
    parts.append(z.compress(b'],"sessions":['))
    emit([c, seq, r, i] for c, s in image.sessions.items() for seq, (r, i) in s.items())
    parts.append(z.compress(b"]}"))
    parts.append(z.flush())
    return b"".join(parts)


def _dumps(x: Any) -> str:
    return json.dumps(x, separators=(",", ":"))


class KVStateMachine:
    """Deterministic: the same entries give the same state and results on every node."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions  # overridable for tests; every replica must use the same value
        self.applied: Index = Index(0)
        self.kv: dict[str, tuple[str, int]] = {}  # key -> (value, index of last change)
        self.sessions: dict[str, dict[int, tuple[str, int]]] = {}  # client -> seq -> (result json, index)
        self.session_last: dict[str, int] = {}  # client -> index of its last command

    # ------------------------------------------------------------------ reads
    def get(self, key: str) -> tuple[str, int] | None:
        return self.kv.get(key)

    def cached(self, client: str, seq: int) -> Result | None:
        # Called on the event loop while the storage thread may be applying (trimming
        # the window, evicting, or replacing ``sessions`` on restore): read with single
        # atomic ``dict.get`` calls only, never test-then-index or iterate.
        s = self.sessions.get(client)
        hit = s.get(seq) if s is not None else None
        return dict(json.loads(hit[0])) if hit is not None else None

    # ------------------------------------------------------------------ apply
    def apply(self, conn: sqlite3.Connection | None, entries: Iterable[Entry],
              into: Writes | None = None) -> list[Result | None]:
        """Apply ``entries`` in memory and return their results. Their row changes are written
        on ``conn`` now, or, with ``into``, added to those ``Writes`` for a later transaction
        (node/storage.py); with neither (conn None), memory only."""
        out: list[Result | None] = []
        writes = into if into is not None else Writes()
        kv_rows, sess_ops = writes.kv, writes.sessions
        for e in entries:
            assert e.index == self.applied + 1, f"apply {e.index} after {self.applied}"
            self.applied = e.index
            writes.entries += 1
            if e.kind is not EntryKind.NORMAL:
                out.append(None)
                continue
            cmd = json.loads(e.data)
            client, seq = cmd.get("client"), cmd.get("seq")
            if client is not None:
                s = self.sessions.setdefault(client, {})
                if seq in s:
                    out.append(dict(json.loads(s[seq][0])))  # a retry: the first outcome
                    continue
                if s and seq < min(s):
                    out.append({"error": "stale_request"})
                    continue
            result = self._execute(cmd, e.index, kv_rows)
            if client is not None:
                text = json.dumps(result, separators=(",", ":"))
                s[seq] = (text, e.index)
                self.session_last[client] = e.index
                sess_ops.append(("put", (client, seq, text, e.index)))
                while len(s) > SESSION_WINDOW:
                    old = min(s)
                    del s[old]
                    sess_ops.append(("drop", (client, old)))
                if len(self.sessions) > self.max_sessions:
                    victim = min(self.session_last, key=lambda c: (self.session_last[c], c))
                    del self.sessions[victim], self.session_last[victim]
                    sess_ops.append(("evict", (victim,)))
            out.append(result)
        writes.applied = self.applied
        if into is None and conn is not None:
            writes.write(conn)
        return out

    def _execute(self, cmd: dict[str, Any], index: int, rows: dict[str, tuple[str, int] | None]) -> Result:
        op, key = cmd["op"], cmd["key"]
        if op == "put":
            self.kv[key] = (cmd["value"], index)
        elif op == "delete":
            if key in self.kv:
                del self.kv[key]
                rows[key] = None
            return {"index": index}
        elif op == "cas":
            cur = self.kv.get(key)
            current = cur[0] if cur is not None else None
            if current != cmd["expect"]:
                return {"error": "cas_failed", "current": current}
            self.kv[key] = (cmd["value"], index)
        else:
            raise AssertionError(f"unknown op {op!r} in a committed entry")
        rows[key] = self.kv[key]
        return {"index": index}

    # ------------------------------------------------------------------ snapshots
    def capture(self) -> Image:
        """A copy of the state at ``applied``: cheap (dict copies), so that the expensive
        serialization can run while apply goes on."""
        return Image(self.applied, dict(self.kv), {c: dict(s) for c, s in self.sessions.items()})

    def serialize(self) -> bytes:
        return serialize_image(self.capture())

    def restore(self, conn: sqlite3.Connection | None, data: bytes, index: Index) -> None:
        doc = json.loads(zlib.decompress(data)) if data else {"kv": [], "sessions": []}
        self.load(((k, v, i) for k, v, i in doc["kv"]), ((c, s, r, i) for c, s, r, i in doc["sessions"]), index)
        if conn is not None:
            conn.execute("DELETE FROM kv")
            conn.execute("DELETE FROM sessions")
            conn.executemany("INSERT INTO kv(key, value, mod) VALUES (?, ?, ?)",
                             [(k, v, i) for k, (v, i) in self.kv.items()])
            conn.executemany("INSERT INTO sessions(client, seq, result, idx) VALUES (?,?,?,?)",
                             [(c, seq, r, i) for c, s in self.sessions.items() for seq, (r, i) in s.items()])

    def load(self, kv: Iterable[tuple[str, str, int]], sessions: Iterable[tuple[str, int, str, int]],
             applied: Index) -> None:
        self.kv = {k: (v, i) for k, v, i in kv}
        self.sessions = {}
        self.session_last = {}
        for c, seq, r, i in sorted(sessions, key=lambda row: (row[3], row[0], row[1])):
            self.sessions.setdefault(c, {})[seq] = (r, i)
            self.session_last[c] = max(self.session_last.get(c, 0), i)
        self.applied = applied
