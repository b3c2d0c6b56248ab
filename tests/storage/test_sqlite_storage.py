"""SqliteStorage round trips: what one instance saves, a new instance on the
same file loads back exactly; corrupt data raises StorageError."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from node.raft import (
    Entry,
    EntryKind,
    HardState,
    Index,
    InitialState,
    Member,
    Membership,
    NodeId,
    RaftCore,
    Ready,
    Snapshot,
    SnapshotMeta,
    Term,
)
from node.statemachine import KVStateMachine
from node.storage import LoadedState, SqliteStorage, StorageError
from tests.storage.workload import MEMBERSHIP

NO_SNAPSHOT = SnapshotMeta(Index(0), Term(0), MEMBERSHIP)


def cmd(index: int, term: int, op: str, key: str, **kw: object) -> Entry:
    return Entry(Index(index), Term(term), EntryKind.NORMAL,
                 json.dumps({"op": op, "key": key, **kw}, separators=(",", ":")))


def ready(hs: HardState | None = None, entries: tuple[Entry, ...] = (), snapshot: Snapshot | None = None,
          committed: tuple[Entry, ...] = ()) -> Ready:
    return Ready(hs, entries, snapshot, (), committed, ())


def reopen(path: Path) -> tuple[SqliteStorage, KVStateMachine, LoadedState]:
    s = SqliteStorage(path)
    fsm = KVStateMachine()
    return s, fsm, s.load(fsm)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "raft.db"
    s = SqliteStorage(path)
    s.bootstrap("n1", "cluster-1", MEMBERSHIP)
    s.close()
    return path


ENTRIES = (
    cmd(1, 1, "put", "a", value="1"),
    Entry(Index(2), Term(1), EntryKind.NOOP, ""),
    cmd(3, 2, "put", "b", value="é😀\x00", client="c1", seq=1),
    cmd(4, 2, "cas", "a", expect="1", value="2", client="c1", seq=2),
    cmd(5, 2, "cas", "b", expect="nope", value="x", client="c2", seq=7),
    cmd(6, 2, "delete", "zzz"),
    cmd(7, 2, "put", "c", value="3"),
    Entry(Index(8), Term(2), EntryKind.CONFIG, Membership.of(
        [*MEMBERSHIP.members, Member(NodeId("n4"), "127.0.0.1:7004", voter=False)]).to_json()),
)


def test_a_new_database_is_empty_until_bootstrapped(tmp_path: Path) -> None:
    s, fsm, st = reopen(tmp_path / "raft.db")
    assert st.empty and st.node_id is None
    s.bootstrap("n1", None, MEMBERSHIP)
    s.set_cluster_id("cid")
    s.close()
    s, fsm, st = reopen(tmp_path / "raft.db")
    assert (st.node_id, st.cluster_id, st.hard_state, st.snapshot, st.entries, st.applied) == (
        "n1", "cid", HardState(Term(0), None, Index(0)), NO_SNAPSHOT, (), 0)
    assert s.snapshot().meta == NO_SNAPSHOT
    s.close()


def test_saved_readys_load_back_identically(db: Path) -> None:
    s, fsm, _ = reopen(db)
    s.save(ready(HardState(Term(1), NodeId("n2"), Index(0)), ENTRIES[:2]), fsm)
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(2)), ENTRIES[2:], committed=ENTRIES[:2]), fsm)
    results = s.save(ready(HardState(Term(2), NodeId("n1"), Index(6)), committed=ENTRIES[2:6]), fsm)
    assert results == [{"index": 3}, {"index": 4}, {"error": "cas_failed", "current": "é😀\x00"}, {"index": 6}]
    assert fsm.applied == 6
    s.close()

    s2, fsm2, st = reopen(db)
    assert st.node_id == "n1" and st.cluster_id == "cluster-1"
    assert st.hard_state == HardState(Term(2), NodeId("n1"), Index(6))
    assert st.snapshot == NO_SNAPSHOT
    assert st.entries == ENTRIES
    assert st.applied == fsm2.applied == 6
    assert fsm2.kv == fsm.kv == {"a": ("2", 4), "b": ("é😀\x00", 3)}
    assert fsm2.sessions == fsm.sessions
    assert fsm2.cached("c1", 2) == {"index": 4}
    assert fsm2.cached("c2", 7) == {"error": "cas_failed", "current": "é😀\x00"}
    # the reopened instance goes on where the first stopped
    assert s2.save(ready(HardState(Term(2), NodeId("n1"), Index(8)), committed=ENTRIES[6:]), fsm2) == [
        {"index": 7}, None]
    s2.close()
    _, fsm3, st3 = reopen(db)
    assert st3.applied == 8 and fsm3.kv["c"] == ("3", 7)


def test_a_hard_state_alone_is_saved(db: Path) -> None:
    s, fsm, _ = reopen(db)
    s.save(ready(HardState(Term(5), NodeId("n3"), Index(0))), fsm)
    s.save(ready(HardState(Term(6), None, Index(0))), fsm)
    s.close()
    assert reopen(db)[2].hard_state == HardState(Term(6), None, Index(0))


def test_entries_replace_the_stored_log_from_their_first_index(db: Path) -> None:
    s, fsm, _ = reopen(db)
    old = tuple(cmd(i, 1, "put", f"k{i}", value="old") for i in range(1, 8))
    s.save(ready(HardState(Term(1), None, Index(2)), old, committed=old[:2]), fsm)
    new = tuple(cmd(i, 3, "put", f"k{i}", value="new") for i in range(4, 6))
    s.save(ready(HardState(Term(3), NodeId("n2"), Index(2)), new), fsm)
    s.close()
    _, fsm2, st = reopen(db)
    assert st.entries == old[:3] + new  # 6 and 7 are gone with the conflict at 4
    assert st.applied == 2 and fsm2.kv == {"k1": ("old", 1), "k2": ("old", 2)}
    # replacing at the very end appends
    s, fsm, _ = reopen(db)
    s.save(ready(None, (cmd(6, 3, "put", "k6", value="appended"),)), fsm)
    s.close()
    assert [e.index for e in reopen(db)[2].entries] == [1, 2, 3, 4, 5, 6]


def test_an_installed_snapshot_replaces_the_log_and_the_state(db: Path) -> None:
    s, fsm, _ = reopen(db)
    mine = tuple(cmd(i, 1, "put", f"mine{i}", value="x", client="me", seq=i) for i in range(1, 6))
    s.save(ready(HardState(Term(1), None, Index(3)), mine, committed=mine[:3]), fsm)
    # the leader's state at index 20: another history altogether
    theirs = KVStateMachine()
    history = [cmd(i, 2, "put", f"t{i % 4}", value=f"v{i}", client="them", seq=i) for i in range(1, 21)]
    theirs.apply(None, history)
    snap = Snapshot(SnapshotMeta(Index(20), Term(2), MEMBERSHIP), theirs.serialize())
    after = (cmd(21, 3, "put", "after", value="a"),)
    s.save(ready(HardState(Term(3), None, Index(20)), after, snapshot=snap), fsm)
    assert fsm.applied == 20 and fsm.kv == theirs.kv
    assert s.snapshot() == snap
    s.close()
    s2, fsm2, st = reopen(db)
    assert st.snapshot == snap.meta and st.entries == after and st.applied == 20
    assert fsm2.kv == theirs.kv and fsm2.sessions == theirs.sessions
    assert "mine1" not in fsm2.kv and fsm2.cached("me", 1) is None
    assert fsm2.cached("them", 20) == {"index": 20}
    assert s2.snapshot() == snap  # read back from the file, not a cache
    s2.save(ready(HardState(Term(3), None, Index(21)), committed=after), fsm2)
    s2.close()
    assert reopen(db)[1].kv["after"] == ("a", 21)


def test_save_snapshot_compacts_the_log(db: Path) -> None:
    s, fsm, _ = reopen(db)
    entries = tuple(cmd(i, 1, "put", f"k{i % 3}", value=str(i)) for i in range(1, 11))
    s.save(ready(HardState(Term(1), None, Index(7)), entries, committed=entries[:7]), fsm)
    meta = SnapshotMeta(Index(7), Term(1), MEMBERSHIP)
    data = fsm.serialize()
    s.save_snapshot(meta, data)
    assert s.snapshot() == Snapshot(meta, data)
    rows = [r[0] for r in sqlite3.connect(db).execute("SELECT idx FROM log ORDER BY idx")]
    assert rows == [8, 9, 10]
    s.close()
    s2, fsm2, st = reopen(db)
    assert st.snapshot == meta and st.entries == entries[7:] and st.applied == 7
    assert fsm2.kv == fsm.kv
    assert s2.snapshot() == Snapshot(meta, data)
    restored = KVStateMachine()
    restored.restore(None, s2.snapshot().data, meta.index)
    assert restored.kv == fsm.kv and restored.applied == 7
    s2.close()


def test_a_ready_that_fails_to_apply_leaves_nothing_behind(db: Path) -> None:
    s, fsm, _ = reopen(db)
    good = (cmd(1, 1, "put", "a", value="1"),)
    s.save(ready(HardState(Term(1), None, Index(1)), good, committed=good), fsm)
    s.flush()
    bad = Entry(Index(2), Term(1), EntryKind.NORMAL, json.dumps({"op": "explode", "key": "a"}))
    with pytest.raises(AssertionError):
        s.save(ready(HardState(Term(1), None, Index(2)), (bad,), committed=(bad,)), fsm)
    # what waits in memory now covers a write that never happened: nothing more is written
    with pytest.raises(StorageError):
        s.save_snapshot(SnapshotMeta(Index(1), Term(1), MEMBERSHIP), b"")
    s.close()
    _, fsm2, st = reopen(db)  # one transaction per Ready: all of it or none of it
    assert st.entries == good and st.applied == 1 and st.hard_state.commit == 1
    assert fsm2.kv == {"a": ("1", 1)}


def _damage(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("sql,args", [
    ("UPDATE meta SET value = '2' WHERE key = 'schema'", ()),
    ("DELETE FROM meta WHERE key = 'schema'", ()),
    ("UPDATE meta SET value = 'seven' WHERE key = 'term'", ()),
    ("UPDATE meta SET value = '{not json' WHERE key = 'voted_for'", ()),
    ("UPDATE meta SET value = 'x' WHERE key = 'applied'", ()),
    ("UPDATE meta SET value = '99' WHERE key = 'applied'", ()),
    ("UPDATE log SET kind = 'mystery' WHERE idx = 2", ()),
    ("DELETE FROM log WHERE idx = 2", ()),
    ("UPDATE snapshot SET membership = '[{\"id\": ' WHERE id = 1", ()),
    ("UPDATE snapshot SET membership = '[{\"address\": \"x\"}]' WHERE id = 1", ()),
], ids=["schema-version", "schema-missing", "term", "voted-for", "applied-not-int", "applied-beyond-log",
        "entry-kind", "log-gap", "membership-json", "membership-fields"])
def test_corrupt_data_raises_storage_error(db: Path, sql: str, args: tuple[object, ...]) -> None:
    s, fsm, _ = reopen(db)
    entries = tuple(cmd(i, 1, "put", "k", value=str(i)) for i in range(1, 4))
    s.save(ready(HardState(Term(1), None, Index(1)), entries, committed=entries[:1]), fsm)
    s.close()
    _damage(db, sql, *args)
    with pytest.raises(StorageError):
        reopen(db)


def test_a_file_that_is_not_a_database_does_not_load(tmp_path: Path) -> None:
    path = tmp_path / "raft.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises((StorageError, sqlite3.DatabaseError)):
        reopen(path)


def test_a_client_evicted_and_back_in_one_batch_keeps_its_session_row(db: Path) -> None:
    # max_sessions=2: c3 evicts c1, then c1 comes back (evicting c2), all in ONE applied
    # batch. The rows must be written in entry order, or the eviction's delete of c1
    # wipes c1's new row and a restarted node re-applies c1's retry.
    s = SqliteStorage(db)
    fsm = KVStateMachine(max_sessions=2)
    s.load(fsm)
    batch = (
        cmd(1, 1, "put", "a", value="1", client="c1", seq=1),
        cmd(2, 1, "put", "b", value="1", client="c2", seq=1),
        cmd(3, 1, "put", "c", value="1", client="c3", seq=1),  # evicts c1
        cmd(4, 1, "put", "a", value="2", client="c1", seq=2),  # c1 is back; evicts c2
    )
    s.save(ready(HardState(Term(1), None, Index(4)), batch, committed=batch), fsm)
    assert sorted(fsm.sessions) == ["c1", "c3"]
    s.close()

    s2 = SqliteStorage(db)
    fsm2 = KVStateMachine(max_sessions=2)
    s2.load(fsm2)
    assert fsm2.sessions == fsm.sessions and fsm2.session_last == fsm.session_last
    # c1 retries seq 2: the live node and the restarted one decide the same way (deduplicated)
    retry = (cmd(5, 1, "put", "a", value="2", client="c1", seq=2),)
    assert fsm.apply(None, retry) == [{"index": 4}]
    assert s2.save(ready(HardState(Term(1), None, Index(5)), retry, committed=retry), fsm2) == [{"index": 4}]
    assert fsm2.kv == fsm.kv == {"a": ("2", 4), "b": ("1", 2), "c": ("1", 3)}
    s2.close()


def test_save_snapshot_keeps_the_catch_up_entries(db: Path) -> None:
    s, fsm, _ = reopen(db)
    entries = tuple(cmd(i, 1 + i // 6, "put", f"k{i % 3}", value=str(i)) for i in range(1, 11))
    s.save(ready(HardState(Term(2), None, Index(9)), entries, committed=entries[:9]), fsm)
    meta = SnapshotMeta(Index(8), Term(2), MEMBERSHIP)
    data = fsm.serialize()
    s.save_snapshot(meta, data, keep_from=5)  # the anchor 5, then 6..8 below the snapshot, 9..10 above
    rows = [r[0] for r in sqlite3.connect(db).execute("SELECT idx FROM log ORDER BY idx")]
    assert rows == [5, 6, 7, 8, 9, 10]
    s.close()
    s2, fsm2, st = reopen(db)
    assert st.snapshot == meta and st.entries == entries[4:] and st.applied == 9
    assert fsm2.kv == fsm.kv and s2.snapshot() == Snapshot(meta, data)
    core = RaftCore(NodeId("n1"), InitialState(st.hard_state, st.snapshot, st.entries, st.applied))
    assert (core.log.start, core.log.first_index, core.log.snapshot_index, core.last_index) == (5, 6, 8, 10)
    assert [core.log.term(i) for i in range(4, 11)] == [None, 1, 2, 2, 2, 2, 2]
    assert core.log.slice(1, 10) == list(entries[5:])
    # compacting again moves the start on; an installed snapshot replaces the whole log
    s2.save_snapshot(SnapshotMeta(Index(9), Term(2), MEMBERSHIP), fsm2.serialize(), keep_from=7)
    assert [r[0] for r in sqlite3.connect(db).execute("SELECT idx FROM log ORDER BY idx")] == [7, 8, 9, 10]
    s2.close()
    s3, _, st3 = reopen(db)
    assert [e.index for e in st3.entries] == [7, 8, 9, 10] and st3.snapshot.index == 9
    s3.close()


@pytest.mark.parametrize("sql", [
    "DELETE FROM log WHERE idx >= 8",  # the kept entries no longer reach the snapshot at 8
    "UPDATE log SET term = 9 WHERE idx = 8",  # the entry at the snapshot index has another term
], ids=["ends-before-snapshot", "disagrees-with-snapshot"])
def test_catch_up_entries_that_contradict_the_snapshot_do_not_load(db: Path, sql: str) -> None:
    s, fsm, _ = reopen(db)
    entries = tuple(cmd(i, 1, "put", "k", value=str(i)) for i in range(1, 9))
    s.save(ready(HardState(Term(1), None, Index(8)), entries, committed=entries), fsm)
    s.save_snapshot(SnapshotMeta(Index(8), Term(1), MEMBERSHIP), fsm.serialize(), keep_from=5)
    s.close()
    _damage(db, sql)
    with pytest.raises(StorageError):
        reopen(db)


def test_the_snapshot_image_is_cached_at_load(db: Path) -> None:
    """snapshot() is called from the event loop (the transport): after load it must not query
    the connection the storage thread writes through (a lazy fill raced save_snapshot)."""
    s, fsm, _ = reopen(db)
    entries = tuple(cmd(i, 1, "put", "k", value=str(i)) for i in range(1, 4))
    s.save(ready(HardState(Term(1), None, Index(3)), entries, committed=entries), fsm)
    meta = SnapshotMeta(Index(3), Term(1), MEMBERSHIP)
    s.save_snapshot(meta, fsm.serialize())
    s.close()
    s2, _, _ = reopen(db)
    s2.conn.close()  # any query now fails
    assert s2.snapshot().meta == meta


# ---------------------------------------------------------------------- applied rows wait for a transaction


def _on_disk(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """What another connection sees: the kv table and the meta rows."""
    conn = sqlite3.connect(path)
    try:
        return (dict(conn.execute("SELECT key, value FROM kv")), dict(conn.execute("SELECT key, value FROM meta")))
    finally:
        conn.close()


def test_applied_rows_and_the_commit_index_wait_for_a_flush(db: Path) -> None:
    s, fsm, _ = reopen(db)
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(0)), ENTRIES[:4]), fsm)
    results = s.save(ready(HardState(Term(2), NodeId("n1"), Index(4)), committed=ENTRIES[:4]), fsm)
    assert results == [{"index": 1}, None, {"index": 3}, {"index": 4}]
    assert fsm.applied == 4 and fsm.kv["a"] == ("2", 4) and fsm.cached("c1", 2) == {"index": 4}
    assert s.deferred == 4 and s.waiting
    kv, meta = _on_disk(db)
    assert kv == {} and (meta["applied"], meta["commit"]) == ("0", "0"), "a commit alone was written at once"
    # an fsynced transaction carries its log entries only: the rows still wait
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(5)), ENTRIES[4:6], committed=ENTRIES[4:5]), fsm)
    kv, meta = _on_disk(db)
    assert kv == {} and (meta["applied"], meta["commit"]) == ("0", "0")
    assert [r[0] for r in sqlite3.connect(db).execute("SELECT idx FROM log")] == [1, 2, 3, 4, 5, 6]
    s.flush()
    kv, meta = _on_disk(db)
    assert kv == {"a": "2", "b": "é😀\x00"} and (meta["applied"], meta["commit"]) == ("5", "5")
    assert s.deferred == 0 and not s.waiting
    s.close()
    _, fsm2, st = reopen(db)
    assert st.applied == 5 and fsm2.kv == fsm.kv and fsm2.sessions == fsm.sessions


def test_flush_writes_what_waits_and_so_does_close(db: Path) -> None:
    s, fsm, _ = reopen(db)
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(0)), ENTRIES), fsm)
    s.apply(ENTRIES[:3], fsm)
    s.flush()
    assert _on_disk(db)[1]["applied"] == "3" and s.deferred == 0
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(8)), committed=ENTRIES[3:]), fsm)
    assert _on_disk(db)[1]["applied"] == "3"
    s.close()
    _, fsm2, st = reopen(db)
    assert st.applied == 8 and st.hard_state.commit == 8 and fsm2.kv == fsm.kv == {"a": ("2", 4), "b": (
        "é😀\x00", 3), "c": ("3", 7)}


def test_rows_wait_for_at_most_defer_max_entries(db: Path) -> None:
    s, fsm, _ = reopen(db)
    s.DEFER_MAX = 3
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(0)), ENTRIES[:6]), fsm)
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(2)), committed=ENTRIES[:2]), fsm)
    assert _on_disk(db)[1]["applied"] == "0"
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(3)), committed=ENTRIES[2:3]), fsm)
    kv, meta = _on_disk(db)
    assert (meta["applied"], meta["commit"]) == ("3", "3") and kv == {"a": "1", "b": "é😀\x00"}
    # and in an fsynced transaction, with its own entries and commit index
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(7)), ENTRIES[6:], committed=ENTRIES[3:7]), fsm)
    kv, meta = _on_disk(db)
    assert (meta["applied"], meta["commit"]) == ("7", "7") and kv["c"] == "3"
    s.close()


def test_a_crash_before_the_rows_are_written_replays_them_from_the_log(db: Path) -> None:
    s, fsm, _ = reopen(db)
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(2)), ENTRIES, committed=ENTRIES[:2]), fsm)
    s.flush()
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(8)), committed=ENTRIES[2:]), fsm)
    s.conn.close()  # the process dies: what waited in memory is gone
    _, fsm2, st = reopen(db)
    assert st.applied == 2 and st.hard_state.commit == 2 and st.entries == ENTRIES
    # the log still has them: applying it again gives the same state and the same session outcomes
    fsm2.apply(None, [e for e in st.entries if e.index > st.applied])
    assert fsm2.kv == fsm.kv and fsm2.sessions == fsm.sessions and fsm2.applied == 8


def test_an_installed_snapshot_goes_after_the_rows_that_waited(db: Path) -> None:
    s, fsm, _ = reopen(db)
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(0)), ENTRIES[:2]), fsm)
    s.apply(ENTRIES[:2], fsm)
    theirs = KVStateMachine()
    theirs.apply(None, [cmd(i, 2, "put", "t", value=str(i)) for i in range(1, 11)])
    snap = Snapshot(SnapshotMeta(Index(10), Term(2), MEMBERSHIP), theirs.serialize())
    s.save(ready(HardState(Term(2), NodeId("n1"), Index(10)), snapshot=snap), fsm)
    s.close()
    _, fsm2, st = reopen(db)
    assert st.applied == 10 and fsm2.kv == theirs.kv == {"t": ("10", 10)}
