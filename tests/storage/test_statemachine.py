"""KVStateMachine: command results, the exactly-once session window,
serialize/restore, and determinism (the same entries give the same state)."""

from __future__ import annotations

import json
import threading
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.raft import Entry, EntryKind, Index, Term
from node.statemachine import SESSION_WINDOW, KVStateMachine
from tests.storage.workload import entry


class Log:
    """Builds consecutive entries from commands."""

    def __init__(self) -> None:
        self.index = 0

    def __call__(self, op: str, key: str, client: str | None = None, seq: int | None = None, **kw: Any) -> Entry:
        self.index += 1
        cmd: dict[str, Any] = {"op": op, "key": key, **kw}
        if client is not None:
            cmd.update(client=client, seq=seq)
        return Entry(Index(self.index), Term(1), EntryKind.NORMAL, json.dumps(cmd))

    def noop(self) -> Entry:
        self.index += 1
        return Entry(Index(self.index), Term(1), EntryKind.NOOP, "")


def apply1(fsm: KVStateMachine, e: Entry) -> Any:
    [r] = fsm.apply(None, [e])
    return r


def test_put_delete_and_cas_results() -> None:
    fsm, log = KVStateMachine(), Log()
    assert apply1(fsm, log("put", "a", value="1")) == {"index": 1}
    assert fsm.get("a") == ("1", 1)
    assert apply1(fsm, log("put", "a", value="2")) == {"index": 2}
    assert fsm.get("a") == ("2", 2)
    assert apply1(fsm, log("cas", "a", expect="1", value="x")) == {"error": "cas_failed", "current": "2"}
    assert fsm.get("a") == ("2", 2)
    assert apply1(fsm, log("cas", "a", expect="2", value="3")) == {"index": 4}
    assert fsm.get("a") == ("3", 4)
    assert apply1(fsm, log("cas", "a", expect=None, value="x")) == {"error": "cas_failed", "current": "3"}
    assert apply1(fsm, log("delete", "a")) == {"index": 6}
    assert fsm.get("a") is None
    assert apply1(fsm, log("delete", "a")) == {"index": 7}  # deleting a missing key succeeds
    assert apply1(fsm, log("cas", "a", expect="3", value="x")) == {"error": "cas_failed", "current": None}
    assert apply1(fsm, log("cas", "a", expect=None, value="new")) == {"index": 9}
    assert fsm.get("a") == ("new", 9)
    assert apply1(fsm, log.noop()) is None
    assert fsm.applied == 10


def test_entries_apply_in_order_only() -> None:
    fsm, log = KVStateMachine(), Log()
    fsm.apply(None, [log("put", "a", value="1")])
    log.index += 1  # skip one
    with pytest.raises(AssertionError):
        fsm.apply(None, [log("put", "a", value="3")])


def test_a_retry_returns_the_first_outcome_and_is_not_applied_again() -> None:
    fsm, log = KVStateMachine(), Log()
    first = apply1(fsm, log("put", "k", "c", 1, value="v1"))
    assert apply1(fsm, log("put", "k", value="v2")) == {"index": 2}
    # the same (client, seq) again, even with another command: the first outcome, nothing applied
    assert apply1(fsm, log("put", "k", "c", 1, value="v1")) == first == {"index": 1}
    assert apply1(fsm, log("delete", "k", "c", 1)) == first
    assert fsm.get("k") == ("v2", 2)
    # a failed CAS is an outcome too
    failed = apply1(fsm, log("cas", "k", "c", 2, expect="zzz", value="x"))
    assert failed == {"error": "cas_failed", "current": "v2"}
    apply1(fsm, log("put", "k", value="zzz"))
    assert apply1(fsm, log("cas", "k", "c", 2, expect="zzz", value="x")) == failed
    assert fsm.get("k") == ("zzz", 6)
    assert fsm.cached("c", 1) == first and fsm.cached("c", 2) == failed and fsm.cached("c", 3) is None
    # sessions are per client
    assert apply1(fsm, log("put", "k", "other", 1, value="o")) == {"index": 8}
    assert fsm.get("k") == ("o", 8)


def test_the_session_window_keeps_the_last_sequence_numbers() -> None:
    fsm, log = KVStateMachine(), Log()
    n = SESSION_WINDOW + 8
    results = {seq: apply1(fsm, log("put", f"k{seq}", "c", seq, value=str(seq))) for seq in range(1, n + 1)}
    oldest_kept = n - SESSION_WINDOW + 1
    assert fsm.cached("c", oldest_kept) == results[oldest_kept]
    assert fsm.cached("c", oldest_kept - 1) is None
    # a retry inside the window: the first outcome
    assert apply1(fsm, log("put", "x", "c", oldest_kept, value="again")) == results[oldest_kept]
    # older than the window: refused, not applied
    assert apply1(fsm, log("put", "k1", "c", 1, value="again")) == {"error": "stale_request"}
    assert fsm.get("k1") == ("1", 1) and fsm.get("x") is None
    # a new one moves the window on
    assert apply1(fsm, log("put", "y", "c", n + 1, value="new")) == {"index": log.index}
    assert fsm.cached("c", oldest_kept) is None


class _PreemptedAfterEachRead(dict):
    """A session dict that, on the reader's thread, hands control to the applier after
    every read it answers: the thread switch the GIL may make between two bytecodes,
    made certain. ``cached`` must give a consistent answer whatever happens there."""

    def __init__(self, data: dict[int, Any], reader: int, preempt: Any) -> None:
        super().__init__(data)
        self.reader, self.preempt = reader, preempt

    def _read(self, result: Any) -> Any:
        if threading.get_ident() == self.reader:
            self.preempt()
        return result

    def __contains__(self, key: object) -> bool:
        return bool(self._read(super().__contains__(key)))

    def __getitem__(self, key: Any) -> Any:
        return self._read(super().__getitem__(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return self._read(super().get(key, default))


def test_cached_is_safe_while_the_storage_thread_trims_the_window() -> None:
    # The node calls cached() on the event loop while the storage thread applies. Here an
    # applier thread applies one command of client "c" (trimming the oldest seq of its
    # window) every time the reader's session dict was read, i.e. in the middle of
    # cached(). A test-then-index read ("seq in s" then "s[seq]") raised KeyError (a 500).
    fsm, log = KVStateMachine(), Log()
    fsm.apply(None, [log("put", "k", "c", seq, value=str(seq)) for seq in range(1, SESSION_WINDOW + 1)])
    go, done, stop = threading.Semaphore(0), threading.Semaphore(0), threading.Event()

    def applier() -> None:
        seq = SESSION_WINDOW
        while True:
            go.acquire()
            if stop.is_set():
                return
            seq += 1
            try:  # an exception here fails the test (pytest reports unhandled thread exceptions)
                fsm.apply(None, [log("put", "k", "c", seq, value=str(seq))])
            finally:
                done.release()

    def preempt() -> None:
        go.release()
        assert done.acquire(timeout=10), "applier stuck"

    t = threading.Thread(target=applier, name="storage")
    t.start()
    try:
        fsm.sessions["c"] = _PreemptedAfterEachRead(fsm.sessions["c"], threading.get_ident(), preempt)
        for _ in range(50):
            oldest = min(dict.keys(fsm.sessions["c"]))
            got = fsm.cached("c", oldest)  # the applier drops `oldest` during this call
            assert got in ({"index": oldest}, None)
    finally:
        stop.set()
        go.release()
        t.join(timeout=10)
    assert fsm.applied == SESSION_WINDOW + 50
    fsm.sessions["c"] = dict(fsm.sessions["c"])  # no more preemption
    assert fsm.cached("c", SESSION_WINDOW + 50) == {"index": SESSION_WINDOW + 50}


def test_serialize_and_restore_round_trip() -> None:
    fsm = KVStateMachine()
    fsm.apply(None, [entry(i, 1 + i // 40) for i in range(1, 301)])
    data = fsm.serialize()
    copy = KVStateMachine()
    copy.restore(None, data, fsm.applied)
    assert (copy.kv, copy.sessions, copy.applied) == (fsm.kv, fsm.sessions, fsm.applied)
    for client, seqs in fsm.sessions.items():
        for seq in seqs:
            assert copy.cached(client, seq) == fsm.cached(client, seq)
    assert json.loads(zlib.decompress(data))["applied"] == 300
    # restoring replaces whatever was there
    other = KVStateMachine()
    other.apply(None, [Log()("put", "gone", value="x")])
    other.restore(None, data, fsm.applied)
    assert "gone" not in other.kv and other.kv == fsm.kv
    # the empty image
    empty = KVStateMachine()
    empty.restore(None, b"", Index(0))
    assert (empty.kv, empty.sessions, empty.applied) == ({}, {}, 0)


def test_two_machines_fed_the_same_entries_are_identical() -> None:
    entries = [entry(i, 1 + i // 50) for i in range(1, 501)]
    a, b = KVStateMachine(), KVStateMachine()
    ra = a.apply(None, entries)
    rb = []
    for i in range(0, len(entries), 7):  # other batch boundaries
        rb += b.apply(None, entries[i:i + 7])
    assert ra == rb
    assert a.serialize() == b.serialize()
    # one restored from a snapshot half-way and fed the rest ends in the same state
    half = KVStateMachine()
    half.apply(None, entries[:250])
    c = KVStateMachine()
    c.restore(None, half.serialize(), half.applied)
    assert c.apply(None, entries[250:]) == ra[250:]
    assert (c.kv, c.sessions, c.applied) == (a.kv, a.sessions, a.applied)


# a reference model: a dict, and per client the outcomes of its recent sequence numbers
commands = st.lists(st.tuples(
    st.sampled_from(["put", "delete", "cas"]),
    st.sampled_from(["a", "b", "c"]),
    st.one_of(st.none(), st.sampled_from(["0", "1", "2"])),  # cas expect
    st.sampled_from(["0", "1", "2"]),  # value
    st.one_of(st.none(), st.tuples(st.sampled_from(["x", "y"]), st.integers(1, 6))),  # session
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(commands)
def test_the_machine_matches_a_reference_model(cmds: list[Any]) -> None:
    fsm, log = KVStateMachine(), Log()
    model: dict[str, tuple[str, int]] = {}
    outcomes: dict[tuple[str, int], Any] = {}
    for op, key, expect, value, sess in cmds:
        extra: dict[str, Any] = {"value": value} if op != "delete" else {}
        if op == "cas":
            extra["expect"] = expect
        e = log(op, key, *(sess or (None, None)), **extra)
        got = apply1(fsm, e)
        if sess is not None and sess in outcomes:
            assert got == outcomes[sess]  # never applied twice
            continue
        seen = [seq for client, seq in outcomes if sess is not None and client == sess[0]]
        if sess is not None and seen and sess[1] < min(seen):
            assert got == {"error": "stale_request"}  # older than anything in its session: refused
            continue
        if op == "put":
            model[key] = (value, e.index)
            want: Any = {"index": e.index}
        elif op == "delete":
            model.pop(key, None)
            want = {"index": e.index}
        else:
            cur = model.get(key, (None, 0))[0]
            if cur == expect:
                model[key] = (value, e.index)
                want = {"index": e.index}
            else:
                want = {"error": "cas_failed", "current": cur}
        assert got == want
        if sess is not None:
            outcomes[sess] = want
        assert fsm.kv == model
