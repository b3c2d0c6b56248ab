"""Incarnations on disk (issue 10): each data dir gets its own random id at
bootstrap and keeps it; the peers' incarnations survive a reopen; a data dir
from before incarnations gets one on its first load."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from node.statemachine import KVStateMachine
from node.storage import SqliteStorage
from tests.storage.workload import MEMBERSHIP


def bootstrapped(path: Path) -> str:
    s = SqliteStorage(path)
    s.bootstrap("n1", "cluster-1", MEMBERSHIP)
    inc = s.load(KVStateMachine()).incarnation
    s.close()
    assert inc
    return inc


def reopen(path: Path) -> SqliteStorage:
    s = SqliteStorage(path)
    s.load(KVStateMachine())
    return s


def test_each_bootstrap_gets_its_own_incarnation_and_keeps_it(tmp_path: Path) -> None:
    first = bootstrapped(tmp_path / "a.db")
    assert bootstrapped(tmp_path / "b.db") != first  # the same id, wiped and bootstrapped again
    for _ in range(2):
        s = reopen(tmp_path / "a.db")
        assert s.incarnation == first
        s.close()


def test_an_empty_data_dir_has_no_incarnation_until_bootstrapped(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path / "raft.db")
    st = s.load(KVStateMachine())
    assert st.empty and st.incarnation is None and s.incarnation is None
    s.close()


def test_peer_incarnations_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "raft.db"
    bootstrapped(path)
    s = reopen(path)
    assert s.peer_incarnation("n2") is None
    assert s.record_peer("n2", "aaaa") == "aaaa"
    assert s.record_peer("n2", "bbbb") == "aaaa"  # first writer wins
    assert s.record_peer("n3", "cccc") == "cccc"
    s.close()

    s = reopen(path)
    assert (s.peer_incarnation("n2"), s.peer_incarnation("n3")) == ("aaaa", "cccc")
    assert s.record_peer("n2", "bbbb", replace=True) == "bbbb"  # re-added with a new data dir
    assert s.record_peer("n3", None, replace=True) is None  # forgotten
    s.close()

    s = reopen(path)
    assert (s.peer_incarnation("n2"), s.peer_incarnation("n3")) == ("bbbb", None)
    assert dict(s.conn.execute("SELECT id, incarnation FROM peers")) == {"n2": "bbbb"}
    s.close()


def test_a_data_dir_from_before_incarnations_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "raft.db"
    bootstrapped(path)
    # what the previous version wrote: no incarnation in meta, no peers table
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM meta WHERE key = 'incarnation'")
    conn.execute("DROP TABLE peers")
    conn.commit()
    conn.close()

    s = SqliteStorage(path)
    st = s.load(KVStateMachine())
    assert st.node_id == "n1" and st.incarnation and s.incarnation == st.incarnation
    assert s.peer_incarnation("n2") is None  # peers recorded none: the first one heard is accepted
    s.close()
    s = reopen(path)
    assert s.incarnation == st.incarnation  # given once, durably
    s.close()
