"""ThreadedStorage: which writes run at once on the event loop and which in the worker
thread, and that rows of applied entries left waiting are written within FLUSH_S."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from node.raft import AppendEntries, AppendEntriesReply, Entry, HardState, Index, NodeId, Ready, Term
from node.statemachine import KVStateMachine, Result, StateMachine
from node.storage import MemoryStorage, SqliteStorage, ThreadedStorage
from tests.storage.workload import MEMBERSHIP, entry

N1, N2 = NodeId("n1"), NodeId("n2")
HS = HardState(Term(1), N1, Index(0))


class WhereStore(MemoryStorage):
    """A MemoryStorage that notes the thread of each save, and can be made slow."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []
        self.delay_s = 0.0

    def save(self, rd: Ready, fsm: StateMachine) -> list[Result | None]:
        self.threads.append(threading.get_ident())
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().save(rd, fsm)


def follower_ready(i: int) -> Ready:
    """Entry ``i`` from the leader; the reply may leave only once it is durable."""
    return Ready(HS, (entry(i, 1),), None, (AppendEntriesReply(Term(1), N1, N2, True, Index(i)),), (), ())


def leader_ready(i: int) -> Ready:
    """Entry ``i`` proposed by a leader, its AppendEntries free to leave before the write."""
    append = AppendEntries(Term(1), N1, N2, Index(i - 1), Term(1), (entry(i, 1),), Index(0))
    return Ready(HS, (entry(i, 1),), None, (append,), (), (), appends_early=True)


def test_a_write_nothing_overlaps_runs_on_the_loop_and_a_leaders_in_the_worker() -> None:
    async def scenario() -> None:
        store = WhereStore()
        storage = ThreadedStorage(store, KVStateMachine())
        loop_thread = threading.get_ident()
        await storage.save(follower_ready(1))
        await storage.save(leader_ready(2))
        assert store.threads[0] == loop_thread, "a follower's write went through the worker"
        assert store.threads[1] != loop_thread, "a leader's write blocked the loop its appends travel on"
        assert sorted(store.log) == [1, 2]
        await storage.close()

    asyncio.run(scenario())


def test_after_a_slow_fsync_writes_go_to_the_worker_until_one_is_fast_again() -> None:
    async def scenario() -> None:
        store = WhereStore()
        storage = ThreadedStorage(store, KVStateMachine())
        loop_thread = threading.get_ident()
        store.delay_s = 2 * ThreadedStorage.INLINE_SYNC_MAX_S
        await storage.save(follower_ready(1))  # on the loop: nothing said the disk was slow
        store.delay_s = 0.0
        await storage.save(follower_ready(2))  # the disk was slow: not on the loop
        await storage.save(follower_ready(3))  # the worker's write was fast: back on the loop
        assert [t == loop_thread for t in store.threads] == [True, False, True]
        await storage.close()

    asyncio.run(scenario())


def test_a_write_while_the_worker_is_busy_waits_its_turn_in_the_worker() -> None:
    async def scenario() -> None:
        store = WhereStore()
        storage = ThreadedStorage(store, KVStateMachine())
        store.delay_s = 0.001
        first = asyncio.ensure_future(storage.save(leader_ready(1)))
        await asyncio.sleep(0)  # the worker has it
        await storage.save(follower_ready(2))  # would be inline, but must not overtake 1
        await first
        assert len(set(store.threads)) == 1 and store.threads[0] != threading.get_ident()
        assert sorted(store.log) == [1, 2]
        await storage.close()

    asyncio.run(scenario())


def _on_sqlite(path: Path) -> tuple[SqliteStorage, KVStateMachine, ThreadedStorage]:
    store = SqliteStorage(path)
    store.bootstrap("n1", "cid", MEMBERSHIP)
    fsm = KVStateMachine()
    store.load(fsm)
    return store, fsm, ThreadedStorage(store, fsm)


def _applied_on_disk(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'applied'").fetchone()[0])
    finally:
        conn.close()


def test_rows_left_waiting_are_written_within_flush_s(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "raft.db"
        store, fsm, storage = _on_sqlite(path)
        entries: tuple[Entry, ...] = tuple(entry(i, 1) for i in range(1, 4))
        await storage.save(Ready(HS, entries, None, (), (), ()))
        await storage.apply(entries)
        assert fsm.applied == 3 and store.deferred == 3 and _applied_on_disk(path) == 0
        deadline = time.monotonic() + 10 * ThreadedStorage.FLUSH_S + 5
        while _applied_on_disk(path) != 3:
            assert time.monotonic() < deadline, "the rows of applied entries were never written"
            await asyncio.sleep(0.01)
        assert store.deferred == 0
        await storage.close()

    asyncio.run(scenario())


def test_close_writes_what_waits(tmp_path: Path) -> None:
    async def scenario() -> Any:
        store, fsm, storage = _on_sqlite(tmp_path / "raft.db")
        entries = tuple(entry(i, 1) for i in range(1, 4))
        await storage.save(Ready(HS, entries, None, (), (), ()))
        await storage.save(Ready(HardState(Term(1), N1, Index(3)), (), None, (), entries, ()))
        assert store.deferred == 3
        await storage.close()
        return fsm.kv

    kv = asyncio.run(scenario())
    store = SqliteStorage(tmp_path / "raft.db")
    fsm = KVStateMachine()
    st = store.load(fsm)
    assert st.applied == 3 and st.hard_state.commit == 3 and fsm.kv == kv
    store.close()


class FailingFlush(WhereStore):
    """Applied rows wait; writing them fails (a full disk)."""

    @property
    def waiting(self) -> bool:
        return True

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


def test_a_flush_that_fails_stops_the_next_write() -> None:
    async def scenario() -> None:
        store = FailingFlush()
        storage = ThreadedStorage(store, KVStateMachine())
        storage.FLUSH_S = 0.01
        await storage.save(follower_ready(1))
        deadline = time.monotonic() + 10
        while True:  # the timer fires, the worker's flush fails
            try:
                await storage.save(follower_ready(2))
            except OSError:
                break
            assert time.monotonic() < deadline, "a failed flush went unnoticed"
            await asyncio.sleep(0.01)
        await storage.close()

    asyncio.run(scenario())
