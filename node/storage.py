"""Durable storage of one node: hard state, log, snapshot and the state
machine's tables, in one SQLite database (WAL, synchronous=FULL).

Fsync discipline: ``save`` writes what a Ready must make durable (a snapshot,
entries, a new term or vote) in ONE transaction, fsynced (synchronous=FULL),
and returns before the driver sends any message of that Ready that must wait
for it.

Committed entries are applied in memory at once, and their row changes
(``Writes``), the applied index and the commit index wait: they are written
together, in order, when the owner calls ``flush`` (ThreadedStorage does
within ``FLUSH_S``), when ``DEFER_MAX`` entries wait, and before a snapshot is
stored. A Ready that only commits therefore writes nothing, and an fsynced
one carries only its log entries (and a new term or vote): one page, not
four, on the clients' path of every write. This is safe because both indexes
are volatile in Raft and the entries are durable in the log: a crash or power
cut can at worst make the node re-apply them from its log, and the tables on
disk always match the applied index on disk (etcd's backend commits its batch
the same way).

An I/O error or a corrupt row raises and stops the process: a restart from
disk is always safe, running on after a failed write is not (nor is writing
what waits in memory then: it may cover entries that never reached the log).

Incarnations (issue 10): each data dir gets a random ``incarnation`` id when
it is bootstrapped (or, for a data dir from before, when it is first loaded),
so a wiped node that comes back under the same id is a different incarnation.
The ``peers`` table remembers, durably, the incarnation of each peer the
node has heard from (node/incarnation.py decides what to do with it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .raft import Entry, EntryKind, HardState, Index, Membership, NodeId, Ready, Snapshot, SnapshotMeta, Term
from .statemachine import Image, KVStateMachine, Result, StateMachine, Writes

T = TypeVar("T")

SCHEMA_VERSION = 1
# Test-only: "1" runs SQLite with synchronous=OFF (no fsync at all), so that a test can
# prove the power-cut fault bites. Never set it anywhere else.
UNSAFE_NO_FSYNC_ENV = "RAFTNET_UNSAFE_NO_FSYNC"
_KINDS = {k.value: k for k in EntryKind}


class StorageError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadedState:
    node_id: str | None
    cluster_id: str | None
    hard_state: HardState
    snapshot: SnapshotMeta
    entries: tuple[Entry, ...]
    applied: Index
    incarnation: str | None = None

    @property
    def empty(self) -> bool:
        return self.node_id is None


class LogStore(Protocol):
    """Durable storage, synchronous: each call returns once its write is durable."""

    def load(self, fsm: KVStateMachine) -> LoadedState: ...
    def bootstrap(self, node_id: str, cluster_id: str | None, membership: Membership) -> None: ...
    def set_cluster_id(self, cluster_id: str) -> None: ...
    def save(self, rd: Ready, fsm: StateMachine) -> list[Result | None]: ...
    def needs_sync(self, rd: Ready) -> bool: ...
    def apply(self, committed: tuple[Entry, ...], fsm: StateMachine) -> list[Result | None]: ...
    @property
    def waiting(self) -> bool: ...  # rows, or a commit index, not written yet
    def flush(self) -> None: ...  # write them now
    def save_snapshot(self, meta: SnapshotMeta, data: bytes, keep_from: int | None = None) -> None: ...
    def snapshot(self) -> Snapshot: ...
    def close(self) -> None: ...
    incarnation: str | None
    def peer_incarnation(self, peer: str) -> str | None: ...
    def record_peer(self, peer: str, incarnation: str | None, replace: bool = False) -> str | None: ...


class Storage(Protocol):
    """Storage as the runtime sees it: every call may take a while (an fsync), so it is awaited
    while the event loop goes on. ``save`` makes one Ready durable (snapshot, entries, hard
    state) and applies its committed entries in the same transaction; ``apply`` applies
    entries that are durable in the log already; ``capture`` copies the state machine at a
    consistent applied index, for a snapshot taken off the drive loop."""

    async def save(self, rd: Ready) -> list[Result | None]: ...
    async def apply(self, committed: tuple[Entry, ...]) -> list[Result | None]: ...
    async def capture(self) -> Image: ...
    async def save_snapshot(self, meta: SnapshotMeta, data: bytes, keep_from: int | None = None) -> None: ...
    async def set_cluster_id(self, cluster_id: str) -> None: ...
    def snapshot(self) -> Snapshot: ...
    async def close(self) -> None: ...
    # incarnations (node/incarnation.py): ours, and the ones recorded for peers
    @property
    def incarnation(self) -> str | None: ...
    def peer_incarnation(self, peer: str) -> str | None: ...
    async def record_peer(self, peer: str, incarnation: str | None, replace: bool = False) -> str | None: ...


class ThreadedStorage:
    """A LogStore driven from the event loop: every call runs, in order, in one worker thread
    (the state machine is applied there too, so ``capture`` sees a consistent state), except,
    when the worker is idle, two kinds of write that run at once on the loop, sparing two
    thread hops (on a VM, waking the worker and then the loop costs ~200 us, more than the
    fsync itself):

    - one that needs no fsync (applying committed entries, moving the commit index): it only
      applies in memory (SqliteStorage: the rows wait; a timer has the worker write them
      within ``FLUSH_S``);
    - one that nothing overlaps: a Ready none of whose messages may leave before it is
      durable (a follower's entries, a vote), on a disk whose last fsynced write took under
      ``INLINE_SYNC_MAX_S``. The loop would only wait for it anyway; a leader's write, which
      runs while its appends travel, stays in the worker, as does every write after a slow one.
    """

    INLINE_MAX = 128  # entries applied at once on the loop at most: a big batch would stall it
    INLINE_SYNC_MAX_S = 0.005  # a disk slower than this blocks the worker, never the loop
    FLUSH_S = 0.1  # rows of applied entries wait about this long before the worker writes them

    def __init__(self, store: LogStore, fsm: KVStateMachine) -> None:
        self.store = store
        self.fsm = fsm
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        self._pending = 0  # calls handed to the worker and not finished: nothing may overtake them
        self._last_sync_s = 0.0  # how long the last fsynced write took (inline, or in the worker)
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None  # a flush that failed: the next call raises it

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1

    async def save(self, rd: Ready) -> list[Result | None]:
        try:
            return await self._save(rd)
        finally:
            self._flush_later()

    async def _save(self, rd: Ready) -> list[Result | None]:
        if self._failed is not None:
            raise self._failed
        sync = self.store.needs_sync(rd)
        inline = self._pending == 0 and len(rd.committed) <= self.INLINE_MAX
        if inline and not sync:
            return self.store.save(rd, self.fsm)
        start = time.perf_counter()
        try:
            if inline and not rd.messages_now() and self._last_sync_s < self.INLINE_SYNC_MAX_S:
                return self.store.save(rd, self.fsm)
            return await self._run(self.store.save, rd, self.fsm)
        finally:
            if sync:
                self._last_sync_s = time.perf_counter() - start

    async def apply(self, committed: tuple[Entry, ...]) -> list[Result | None]:
        if self._failed is not None:
            raise self._failed
        try:
            if self._pending == 0 and len(committed) <= self.INLINE_MAX:
                return self.store.apply(committed, self.fsm)
            return await self._run(self.store.apply, committed, self.fsm)
        finally:
            self._flush_later()

    def _flush_later(self) -> None:
        if self._flush_timer is None and self._flushing is None and self.store.waiting:
            self._flush_timer = asyncio.get_running_loop().call_later(self.FLUSH_S, self._flush)

    def _flush(self) -> None:
        """Have the worker write what waits (never the loop: that can be a thousand rows)."""
        self._flush_timer = None
        if self.store.waiting:
            self._flushing = asyncio.ensure_future(self._run(self.store.flush))
            self._flushing.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing = None
        if task.cancelled():
            return
        if task.exception() is not None:
            self._failed = task.exception()  # the drive loop's next write raises it and stops the node
            return
        self._flush_later()

    async def capture(self) -> Image:
        return await self._run(self.fsm.capture)

    async def save_snapshot(self, meta: SnapshotMeta, data: bytes, keep_from: int | None = None) -> None:
        await self._run(self.store.save_snapshot, meta, data, keep_from)

    async def set_cluster_id(self, cluster_id: str) -> None:
        await self._run(self.store.set_cluster_id, cluster_id)

    def snapshot(self) -> Snapshot:
        return self.store.snapshot()

    @property
    def incarnation(self) -> str | None:
        return self.store.incarnation

    def peer_incarnation(self, peer: str) -> str | None:
        return self.store.peer_incarnation(peer)

    async def record_peer(self, peer: str, incarnation: str | None, replace: bool = False) -> str | None:
        return await self._run(self.store.record_peer, peer, incarnation, replace)

    async def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self._flushing is not None:
            await asyncio.wait([self._flushing])
        self._executor.shutdown(wait=True)
        self.store.close()  # writes what waits


class MemoryStorage:
    """A LogStore in memory (the test double): 'durable' means stored in this object."""

    def __init__(self) -> None:
        self.meta: dict[str, str] = {}
        self.hard_state = HardState(Term(0), None, Index(0))
        self.log: dict[int, Entry] = {}
        self.snap = Snapshot(SnapshotMeta(Index(0), Term(0), Membership()), b"")
        self.applied = Index(0)
        self.incarnation: str | None = None
        self.peers: dict[str, str] = {}

    def load(self, fsm: KVStateMachine) -> LoadedState:
        entries = tuple(self.log[i] for i in sorted(self.log))  # catch-up entries below the snapshot too
        fsm.restore(None, self.snap.data, self.snap.meta.index)
        replay = [e for e in entries if self.snap.meta.index < e.index <= self.applied]
        if replay:
            fsm.apply(None, replay)
        return LoadedState(self.meta.get("node_id"), self.meta.get("cluster_id"), self.hard_state,
                           self.snap.meta, entries, self.applied, self.incarnation)

    def bootstrap(self, node_id: str, cluster_id: str | None, membership: Membership) -> None:
        self.meta["node_id"] = node_id
        self.incarnation = new_incarnation()
        if cluster_id:
            self.meta["cluster_id"] = cluster_id
        self.snap = Snapshot(SnapshotMeta(Index(0), Term(0), membership), b"")

    def set_cluster_id(self, cluster_id: str) -> None:
        self.meta["cluster_id"] = cluster_id

    def save(self, rd: Ready, fsm: StateMachine) -> list[Result | None]:
        if rd.snapshot is not None:
            self.snap = rd.snapshot
            self.log.clear()
            fsm.restore(None, rd.snapshot.data, rd.snapshot.meta.index)
            self.applied = rd.snapshot.meta.index
        if rd.entries:
            first = rd.entries[0].index
            self.log = {i: e for i, e in self.log.items() if i < first}
            self.log.update((e.index, e) for e in rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state
        return self.apply(rd.committed, fsm) if rd.committed else []

    def needs_sync(self, rd: Ready) -> bool:
        return needs_sync(rd, (self.hard_state.term, self.hard_state.voted_for))

    def apply(self, committed: tuple[Entry, ...], fsm: StateMachine) -> list[Result | None]:
        assert all(e.index in self.log or e.index <= self.snap.meta.index for e in committed), \
            "applying an entry that is not durable"
        results = fsm.apply(None, committed)
        self.applied = fsm.applied
        return results

    def save_snapshot(self, meta: SnapshotMeta, data: bytes, keep_from: int | None = None) -> None:
        if meta.index <= self.snap.meta.index:
            return
        keep_from = meta.index + 1 if keep_from is None else keep_from
        self.snap = Snapshot(meta, data)
        self.log = {i: e for i, e in self.log.items() if i >= keep_from}

    def snapshot(self) -> Snapshot:
        return self.snap

    def peer_incarnation(self, peer: str) -> str | None:
        return self.peers.get(peer)

    def record_peer(self, peer: str, incarnation: str | None, replace: bool = False) -> str | None:
        cur = self.peers.get(peer)
        if cur == incarnation or (cur is not None and not replace):
            return cur
        if incarnation is None:
            self.peers.pop(peer, None)
        else:
            self.peers[peer] = incarnation
        return incarnation

    @property
    def waiting(self) -> bool:
        return False  # memory is where this store keeps everything

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteStorage:
    DEFER_MAX = 1_000  # applied entries whose rows may wait, at most

    def __init__(self, path: Path) -> None:
        self.path = path
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        self._unsafe = os.environ.get(UNSAFE_NO_FSYNC_ENV) == "1"
        if self._unsafe:
            logging.getLogger("raftnet.storage").warning("%s=1: fsync is OFF; acknowledged writes can be lost",
                                                         UNSAFE_NO_FSYNC_ENV)
        self._sync = ""
        self._set_sync("FULL")
        self._deferred = Writes()  # applied, not written yet (see the module docstring)
        self._deferred_commit: int | None = None
        self._failed: BaseException | None = None  # a write or an apply failed: write nothing more
        self._create()
        # SQLite syncs the directory when it creates the WAL, not when it creates the
        # database file: make the file's directory entry durable ourselves.
        fsync_dir(path.parent)
        self._snapshot_cache: Snapshot | None = None
        self._term_vote: tuple[int, str | None] | None = None  # as durable on disk; None: not known yet
        self.incarnation: str | None = None
        self._peers: dict[str, str] = dict(self.conn.execute("SELECT id, incarnation FROM peers"))

    def _create(self) -> None:
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
            # sqlite-utils is imported only here, on a data dir's first start: a restart does
            # not pay its 30 ms of imports before it can catch up (issue 11)
            import sqlite_utils

            db = sqlite_utils.Database(self.conn)
            with self._tx():
                db.table("meta").create({"key": str, "value": str}, pk="key")
                db.table("log").create({"idx": int, "term": int, "kind": str, "data": str}, pk="idx")
                db.table("snapshot").create(
                    {"id": int, "idx": int, "term": int, "membership": str, "data": bytes}, pk="id"
                )
                db.table("kv").create({"key": str, "value": str, "mod": int}, pk="key")
                db.table("sessions").create({"client": str, "seq": int, "result": str, "idx": int},
                                            pk=("client", "seq"))
                self.conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        # added after schema 1 shipped; a data dir from before gets it on its first open
        self.conn.execute("CREATE TABLE IF NOT EXISTS peers (id TEXT PRIMARY KEY, incarnation TEXT NOT NULL)")

    def _tx(self, flush: bool = True) -> _Transaction:
        """A transaction; with ``flush``, what waits is written in it first."""
        if self._failed is not None:
            # what waits in memory may cover a write that never happened: a restart from
            # disk is safe, writing more is not
            raise StorageError(f"an earlier write failed: {self._failed!r}")
        return _Transaction(self.conn, self._write_deferred if flush else None)

    def _write_deferred(self, tx: _Transaction) -> None:
        """In ``tx``: write what waits (rows, applied and commit index); forget it once committed."""
        w, commit = self._deferred, self._deferred_commit
        if not w.entries and commit is None:
            return
        w.write(self.conn)
        meta: dict[str, str] = {}
        if w.entries:
            meta["applied"] = str(w.applied)
        if commit is not None:
            meta["commit"] = str(commit)
        self._set_meta(**meta)

        def written() -> None:
            if self._deferred is w:
                self._deferred = Writes()
            if self._deferred_commit == commit:
                self._deferred_commit = None
        tx.on_commit(written)

    def _meta(self) -> dict[str, str]:
        return {k: v for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def _set_meta(self, **kv: Any) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in kv.items()],
        )

    # ------------------------------------------------------------------ start-up
    def load(self, fsm: KVStateMachine) -> LoadedState:
        meta = self._meta()
        try:
            if meta.get("schema") != str(SCHEMA_VERSION):
                raise StorageError(f"unknown schema version {meta.get('schema')!r}")
            hs = HardState(
                Term(int(meta.get("term", "0"))),
                NodeId(json.loads(meta["voted_for"])) if json.loads(meta.get("voted_for", "null")) else None,
                Index(int(meta.get("commit", "0"))),
            )
            row = self.conn.execute("SELECT idx, term, membership FROM snapshot WHERE id = 1").fetchone()
            snap = (SnapshotMeta(Index(row[0]), Term(row[1]), Membership.from_json(row[2])) if row
                    else SnapshotMeta(Index(0), Term(0), Membership()))
            # the log may begin at or below the snapshot: catch-up entries kept by compaction,
            # the first of them the anchor that gives the term before the first sendable entry
            entries = tuple(
                Entry(Index(i), Term(t), _KINDS[k], d)
                for i, t, k, d in self.conn.execute("SELECT idx, term, kind, data FROM log ORDER BY idx")
            )
            applied = Index(int(meta.get("applied", "0")))
            first = entries[0].index if entries else snap.index + 1
            if first > snap.index + 1:
                raise StorageError(f"log has a gap before index {first}")
            for n, e in enumerate(entries):
                if e.index != first + n:
                    raise StorageError(f"log has a gap before index {e.index}")
            last = entries[-1].index if entries else snap.index
            if last < snap.index:
                raise StorageError(f"log ends at {last}, before the snapshot at {snap.index}")
            if first <= snap.index and entries[snap.index - first].term != snap.term:
                raise StorageError(f"log entry {snap.index} disagrees with the snapshot's term {snap.term}")
            if applied < snap.index or applied > last:
                raise StorageError(f"applied index {applied} outside the stored log")
            fsm.load(self.conn.execute("SELECT key, value, mod FROM kv"),
                     self.conn.execute("SELECT client, seq, result, idx FROM sessions").fetchall(), applied)
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
            raise StorageError(f"corrupt data dir {self.path}: {e}") from e
        if row is not None:
            # fill the snapshot cache here, in the storage thread: a lazy fill from the event loop
            # (the transport) could race save_snapshot and leave an older image cached
            self._snapshot_cache = None
            self.snapshot()
        inc = meta.get("incarnation")
        if inc is None and meta.get("node_id") is not None:
            inc = new_incarnation()  # a data dir from before incarnations: give it one now
            with self._tx():
                self._set_meta(incarnation=inc)
        self.incarnation = inc
        self._term_vote = (hs.term, hs.voted_for)
        return LoadedState(meta.get("node_id"), meta.get("cluster_id"), hs, snap, entries, applied, inc)

    def bootstrap(self, node_id: str, cluster_id: str | None, membership: Membership) -> None:
        """First start: record who we are and the initial configuration (a snapshot at index 0)."""
        with self._tx():
            self._set_meta(node_id=node_id, term="0", voted_for="null", commit="0", applied="0",
                           incarnation=new_incarnation())
            if cluster_id:
                self._set_meta(cluster_id=cluster_id)
            self.conn.execute(
                "INSERT OR REPLACE INTO snapshot(id, idx, term, membership, data) VALUES (1, 0, 0, ?, ?)",
                (membership.to_json(), b""),
            )
        self._term_vote = (Term(0), None)

    def set_cluster_id(self, cluster_id: str) -> None:
        with self._tx():
            self._set_meta(cluster_id=cluster_id)

    # ------------------------------------------------------------------ the hot path
    def needs_sync(self, rd: Ready) -> bool:
        return needs_sync(rd, self._term_vote)

    @contextlib.contextmanager
    def _fatal(self) -> Iterator[None]:
        """A failure in here is the store's last: nothing is written after it."""
        try:
            yield
        except BaseException as e:
            self._failed = e
            raise

    def save(self, rd: Ready, fsm: StateMachine) -> list[Result | None]:
        with self._fatal():
            return self._save(rd, fsm)

    def _save(self, rd: Ready, fsm: StateMachine) -> list[Result | None]:
        hs = rd.hard_state
        if hs is not None:
            self._deferred_commit = hs.commit  # first: a write of what waits takes it along
        if not self.needs_sync(rd):  # nothing the log needs: apply now, write later
            return self.apply(rd.committed, fsm) if rd.committed else []
        self._set_sync("FULL")
        c = self.conn
        with self._tx(flush=False) as tx:
            if rd.snapshot is not None:
                s = rd.snapshot
                c.execute("DELETE FROM log")
                c.execute(
                    "INSERT OR REPLACE INTO snapshot(id, idx, term, membership, data) VALUES (1, ?, ?, ?, ?)",
                    (s.meta.index, s.meta.term, s.meta.membership.to_json(), s.data),
                )
                self._deferred = Writes()  # rows of entries the snapshot covers: its state replaces them
                fsm.restore(c, s.data, s.meta.index)
                self._set_meta(applied=str(s.meta.index))
                self._snapshot_cache = s
            if rd.entries:
                c.execute("DELETE FROM log WHERE idx >= ?", (rd.entries[0].index,))
                c.executemany(
                    "INSERT INTO log(idx, term, kind, data) VALUES (?, ?, ?, ?)",
                    [(e.index, e.term, e.kind.value, e.data) for e in rd.entries],
                )
            if hs is not None and (hs.term, hs.voted_for) != self._term_vote:
                self._set_meta(term=str(hs.term), voted_for=json.dumps(hs.voted_for))
            results = fsm.apply(None, rd.committed, into=self._deferred) if rd.committed else []
            if self._deferred.entries >= self.DEFER_MAX:
                self._write_deferred(tx)
        if hs is not None:
            self._term_vote = (hs.term, hs.voted_for)
        return results

    def apply(self, committed: tuple[Entry, ...], fsm: StateMachine) -> list[Result | None]:
        """Apply entries already durable in the log; their rows wait for a flush (see the
        module docstring), or are written now, without an fsync, past DEFER_MAX."""
        with self._fatal():
            results = fsm.apply(None, committed, into=self._deferred)
        if self._deferred.entries >= self.DEFER_MAX:
            self.flush()
        return results

    @property
    def deferred(self) -> int:
        return self._deferred.entries

    @property
    def waiting(self) -> bool:
        return bool(self._deferred.entries) or self._deferred_commit is not None

    def flush(self) -> None:
        """Write the rows, applied and commit index that wait, without an fsync."""
        if self.waiting and self._failed is None:
            self._set_sync("NORMAL")
            with self._fatal(), self._tx():
                pass

    def _set_sync(self, mode: str) -> None:
        if self._unsafe:
            mode = "OFF"
        if mode != self._sync:
            self.conn.execute(f"PRAGMA synchronous={mode}")
            self._sync = mode

    # ------------------------------------------------------------------ snapshots
    def save_snapshot(self, meta: SnapshotMeta, data: bytes, keep_from: int | None = None) -> None:
        """Compaction: store the image at ``meta.index`` and drop the log it covers, except
        the entries from ``keep_from`` on (``RaftCore.compaction_start``: the anchor and the
        catch-up entries); by default everything up to ``meta.index`` goes."""
        if meta.index <= self.snapshot().meta.index:
            return  # no newer than the stored one (installed from the leader while ours was serialized)
        keep_from = meta.index + 1 if keep_from is None else keep_from
        assert keep_from <= meta.index + 1
        self._set_sync("FULL")
        with self._tx():
            self.conn.execute(
                "INSERT OR REPLACE INTO snapshot(id, idx, term, membership, data) VALUES (1, ?, ?, ?, ?)",
                (meta.index, meta.term, meta.membership.to_json(), data),
            )
            self.conn.execute("DELETE FROM log WHERE idx < ?", (keep_from,))
        self._snapshot_cache = Snapshot(meta, data)

    def snapshot(self) -> Snapshot:
        if self._snapshot_cache is None:
            row = self.conn.execute("SELECT idx, term, membership, data FROM snapshot WHERE id = 1").fetchone()
            if row is None:
                raise StorageError("no snapshot stored")
            self._snapshot_cache = Snapshot(
                SnapshotMeta(Index(row[0]), Term(row[1]), Membership.from_json(row[2])), bytes(row[3] or b"")
            )
        return self._snapshot_cache

    # ------------------------------------------------------------------ peers' incarnations
    def peer_incarnation(self, peer: str) -> str | None:
        """The incarnation recorded for ``peer``, if any (from memory: no I/O)."""
        return self._peers.get(peer)

    def record_peer(self, peer: str, incarnation: str | None, replace: bool = False) -> str | None:
        """Durably record ``peer``'s incarnation if none is recorded yet (``replace``: in any
        case; None then forgets it), and return the one recorded now: first writer wins.

        Rare: once per peer, and again only when a member is re-added. fsynced, so a
        restart never forgets an incarnation it acted on. Call it from one thread."""
        cur = self._peers.get(peer)
        if cur == incarnation or (cur is not None and not replace):
            return cur
        self._set_sync("FULL")
        with self._tx():
            if incarnation is None:
                self.conn.execute("DELETE FROM peers WHERE id = ?", (peer,))
            else:
                self.conn.execute("INSERT OR REPLACE INTO peers(id, incarnation) VALUES (?, ?)", (peer, incarnation))
        if incarnation is None:
            self._peers.pop(peer, None)
        else:
            self._peers[peer] = incarnation
        return incarnation

    def close(self) -> None:
        self.flush()  # unless a write failed
        self.conn.close()


def needs_sync(rd: Ready, term_vote: tuple[int, str | None] | None) -> bool:
    """Must the write of ``rd`` be fsynced, given the term and vote durable now? Entries, a
    snapshot, a new term or vote must; the commit index alone need not (it is volatile state
    in Raft, §5: a restart with an older one only re-learns it)."""
    hs = rd.hard_state
    return bool(rd.entries) or rd.snapshot is not None or (
        hs is not None and (hs.term, hs.voted_for) != term_vote)


def new_incarnation() -> str:
    """A random id for one life of a data dir (64 bits: two wipes never collide in practice)."""
    return secrets.token_hex(8)


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (files created or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Transaction:
    """BEGIN IMMEDIATE and ``first`` (what waits to be written goes in first); then COMMIT and
    the ``on_commit`` callbacks, or ROLLBACK."""

    def __init__(self, conn: sqlite3.Connection, first: Callable[[_Transaction], None] | None = None) -> None:
        self.conn = conn
        self.first = first
        self._on_commit: list[Callable[[], None]] = []

    def on_commit(self, fn: Callable[[], None]) -> None:
        self._on_commit.append(fn)

    def __enter__(self) -> _Transaction:
        self.conn.execute("BEGIN IMMEDIATE")
        if self.first is not None:
            try:
                self.first(self)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
            for fn in self._on_commit:
                fn()
        else:
            self.conn.execute("ROLLBACK")
