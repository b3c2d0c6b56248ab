"""A child process saves Readys in a loop and is SIGKILLed at a random moment;
the reopened database must be consistent: nothing reported durable is
missing, no entry is torn, and the state machine equals the stored log
applied up to the stored applied index.

Applied entries' rows, the applied and the commit index wait in memory until
they are written together (node/storage.py: a flush, explicit or past
DEFER_MAX, small for some seeds, or a compaction), so the child reports the
commit and applied index as of the last time nothing waited."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from node.raft import Index
from node.statemachine import KVStateMachine
from node.storage import SqliteStorage
from tests.node.localcluster import ROOT
from tests.storage.workload import entry

CHILD = r'''
import json, random, sys
from pathlib import Path
from node.raft import HardState, Index, NodeId, Ready, SnapshotMeta, Term
from node.statemachine import KVStateMachine
from node.storage import SqliteStorage
from tests.storage.workload import MEMBERSHIP, entry

path, seed = Path(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
s = SqliteStorage(path)
s.DEFER_MAX = rng.choice([1_000, 1_000, 3])
fsm = KVStateMachine()
st = s.load(fsm)
if st.empty:
    s.bootstrap("n1", "cid", MEMBERSHIP)
    st = s.load(fsm)
log = {e.index: e for e in st.entries}
snap = st.snapshot.index
term, commit = max(1, st.hard_state.term), st.hard_state.commit
last = snap + len(st.entries)
durable = (commit, fsm.applied)  # as of the last transaction

def save(entries=(), new_commit=None):
    global last, commit, durable
    if new_commit is not None:
        commit = new_commit
    committed = tuple(log[i] for i in range(fsm.applied + 1, commit + 1)) if new_commit is not None else ()
    s.save(Ready(HardState(Term(term), NodeId("n1"), Index(commit)), tuple(entries), None, (), committed, ()), fsm)

while True:
    x = rng.random()
    if x < 0.45 or last == commit:                      # append
        es = [entry(last + 1 + j, term) for j in range(rng.randint(1, 30))]
        log.update((e.index, e) for e in es)
        last = es[-1].index
        save(es, rng.choice([None, None, rng.randint(commit, last)]) if x < 0.3 else None)
    elif x < 0.55:                                      # a new term replaces the uncommitted tail
        term += 1
        start = rng.randint(commit + 1, last)
        es = [entry(start + j, term) for j in range(rng.randint(1, 10))]
        for i in range(start, last + 1):
            log.pop(i, None)
        log.update((e.index, e) for e in es)
        last = es[-1].index
        save(es)
    elif x < 0.88:                                      # commit and apply
        save((), rng.randint(commit + 1, last))
    elif x < 0.93:                                      # what waits is written (ThreadedStorage, on a timer)
        s.flush()
    elif fsm.applied > snap:                            # compaction
        meta = SnapshotMeta(Index(fsm.applied), log[fsm.applied].term, MEMBERSHIP)
        s.save_snapshot(meta, fsm.serialize())
        snap = meta.index
    if not s.waiting:
        durable = (commit, fsm.applied)
    print(json.dumps({"commit": durable[0], "applied": durable[1], "snap": snap, "term": term}), flush=True)
'''


def run_child_until_killed(path: Path, seed: int, saves: int) -> dict[str, Any]:
    """Start the writer, let it report ``saves`` durable saves, SIGKILL it; return its last report."""
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(seed)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last: dict[str, Any] | None = None
    try:
        assert p.stdout is not None
        for _ in range(saves):
            line = p.stdout.readline()
            if not line:
                break
            last = json.loads(line)
    finally:
        p.kill()  # SIGKILL, wherever the child is: likely inside its next transaction
        _, err = p.communicate(timeout=30)
    assert last is not None and p.returncode == -9, f"the writer died on its own ({p.returncode}):\n{err}"
    return last


def check_consistent(path: Path, report: dict[str, Any], committed_terms: dict[int, int]) -> None:
    s = SqliteStorage(path)
    try:
        fsm = KVStateMachine()
        st = s.load(fsm)  # raises StorageError on gaps or an applied index outside the log
        snap = s.snapshot()
        last_index = st.snapshot.index + len(st.entries)
        # nothing the child saw saved is missing
        assert st.hard_state.commit >= report["commit"]
        assert st.applied >= report["applied"]
        assert st.snapshot.index >= report["snap"]
        assert st.hard_state.term >= report["term"]
        # consistent among themselves
        assert st.snapshot.index <= st.applied <= st.hard_state.commit <= last_index
        assert snap.meta == st.snapshot
        # no torn entry: each one is exactly what the generator made for its (index, term)
        for e in st.entries:
            assert e == entry(e.index, e.term), f"torn or foreign entry at {e.index}"
        terms = [e.term for e in st.entries]
        assert terms == sorted(terms) and all(t <= st.hard_state.term for t in terms)
        # committed entries never change
        for e in st.entries:
            if e.index <= st.hard_state.commit:
                assert committed_terms.setdefault(e.index, e.term) == e.term, f"committed entry {e.index} changed"
        # the state machine is the snapshot plus the stored log applied up to the applied index
        replay = KVStateMachine()
        if snap.meta.index:
            assert json.loads(zlib.decompress(snap.data))["applied"] == snap.meta.index
            replay.restore(None, snap.data, snap.meta.index)
        replay.apply(None, [e for e in st.entries if e.index <= st.applied])
        assert replay.applied == fsm.applied == st.applied
        assert replay.kv == fsm.kv
        assert replay.sessions == fsm.sessions
    finally:
        s.close()


@pytest.mark.parametrize("seed", range(6))
def test_a_writer_killed_at_random_moments_leaves_a_consistent_database(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "raft.db"
    committed_terms: dict[int, int] = {}
    for cycle in range(3):  # kill, check, and let a new writer go on from what is on disk
        report = run_child_until_killed(path, seed * 10 + cycle, rng.randint(5, 60))
        check_consistent(path, report, committed_terms)
    assert Index(max(committed_terms, default=0)) > 0, "the workload never committed anything"
