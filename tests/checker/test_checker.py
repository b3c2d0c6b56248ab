"""Tests for harness.model.history and harness.model.checker on hand-made and generated histories.

Labelled histories live in ``histories/NAME.LABEL.jsonl`` with LABEL ``ok``
or ``illegal``. Generated histories come from simulating a real register:
every operation takes effect at one instant inside its interval, so the
result is linearizable by construction. Small random histories are also
compared with a brute-force reference, which guards the pruning rules.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness.model.checker import CheckResult, Result, check
from harness.model.history import Event, History, Operation, OpType, parse_jepsen_log

HISTORIES = Path(__file__).resolve().parent / "histories"
LABELLED = sorted(HISTORIES.glob("*.jsonl"))


def label_of(path: Path) -> Result:
    """``stale_read.illegal.jsonl`` -> Result.ILLEGAL."""
    return Result(path.name.removesuffix(".jsonl").rsplit(".", 1)[1])


def check_file(name: str) -> CheckResult:
    return check(History.read_jsonl(HISTORIES / name), timeout=10)


# -- labelled histories ----------------------------------------------------------


def test_labelled_histories_exist_with_both_labels() -> None:
    labels = {label_of(p) for p in LABELLED}
    assert labels == {Result.OK, Result.ILLEGAL}


@pytest.mark.parametrize("path", LABELLED, ids=lambda p: p.name)
def test_labelled_history(path: Path) -> None:
    expected = label_of(path)
    res = check(History.read_jsonl(path), timeout=10)
    assert res.result is expected, res.explain()
    if expected is Result.ILLEGAL:
        assert res.key is not None
        assert res.culprit is not None and res.culprit in res.window
        assert 0 < len(res.window) <= 20
        assert all(op.key == res.key for op in res.window)
        assert [op.call for op in res.window] == sorted(op.call for op in res.window)
    else:
        assert res.key is None and res.window == ()


def test_stale_read_names_the_read_and_the_overwriting_write() -> None:
    res = check_file("stale_read.illegal.jsonl")
    assert res.key == "x"
    assert res.culprit is not None
    assert (res.culprit.f, res.culprit.output, res.culprit.node) == ("read", "a", "n3")
    assert {op.value for op in res.window if op.f == "write"} == {"a", "b"}
    assert "not linearizable" in res.message
    assert "> " in res.explain()


def test_multi_key_history_names_only_the_bad_key() -> None:
    res = check_file("multi_key.illegal.jsonl")
    assert res.result is Result.ILLEGAL
    assert res.key == "y"
    assert res.culprit is not None and res.culprit.output == "y1"
    assert {op.key for op in res.window} == {"y"}
    assert {op.value for op in res.window if op.f == "write"} == {"y1", "y2"}
    assert res.keys_checked >= 1


def test_dropping_the_bad_key_makes_the_multi_key_history_ok() -> None:
    history = History.read_jsonl(HISTORIES / "multi_key.illegal.jsonl")
    res = check([op for op in history.operations() if op.key != "y"])
    assert res.result is Result.OK
    assert res.keys_checked == 2
    assert res.ops_checked == 5


def test_lost_write_is_illegal() -> None:
    res = check_file("lost_write.illegal.jsonl")
    assert res.result is Result.ILLEGAL
    assert any(op.f == "write" and op.value == "b" for op in res.window)


def test_cas_both_applied_from_same_expect_is_illegal() -> None:
    res = check_file("cas_both_applied.illegal.jsonl")
    assert res.result is Result.ILLEGAL
    assert res.culprit is not None and res.culprit.f == "cas"


def test_indeterminate_write_may_or_may_not_take_effect() -> None:
    assert check_file("info_write_appears.ok.jsonl").result is Result.OK
    assert check_file("info_write_never_appears.ok.jsonl").result is Result.OK
    assert check_file("info_write_reverts.illegal.jsonl").result is Result.ILLEGAL


def test_failed_and_indeterminate_reads_are_not_checked() -> None:
    res = check_file("failed_write_hidden.ok.jsonl")
    assert res.result is Result.OK
    assert res.ops_checked == 1  # only the ok read; the fail write and fail/info reads are dropped


def test_empty_history_is_ok() -> None:
    res = check(History())
    assert res.result is Result.OK and res.ops_checked == 0 and res.keys_checked == 0


# -- model details -----------------------------------------------------------------


def op(
    f: str,
    value: Any,
    call: float,
    ret: float | None,
    output: Any = None,
    *,
    status: str = "ok",
    key: str = "x",
    process: int = 0,
) -> Operation:
    if ret is None and status == "ok":
        status = "info"
    return Operation(process, f, key, value, output, call, ret, status)


def test_cas_expect_none_means_only_if_absent() -> None:
    ops = [
        op("cas", (None, "a"), 0, 1, True),
        op("cas", (None, "b"), 2, 3, False),
        op("delete", None, 4, 5),
        op("cas", (None, "c"), 6, 7, True),
        op("read", None, 8, 9, "c"),
    ]
    assert check(ops).result is Result.OK
    ops[1] = op("cas", (None, "b"), 2, 3, True)
    assert check(ops).result is Result.ILLEGAL


def test_delete_of_absent_key_succeeds_and_read_after_delete_is_none() -> None:
    ops = [op("delete", None, 0, 1), op("read", None, 2, 3, None)]
    assert check(ops).result is Result.OK
    ops = [op("write", "a", 0, 1), op("delete", None, 2, 3), op("read", None, 4, 5, "a")]
    assert check(ops).result is Result.ILLEGAL


def test_indeterminate_delete_and_cas() -> None:
    ops = [
        op("write", "a", 0, 1),
        op("delete", None, 2, None),
        op("cas", ("a", "b"), 2.5, None, process=1),
        op("read", None, 3, 4, "a", process=2),
        op("read", None, 5, 6, "b", process=2),
        op("read", None, 7, 8, None, process=2),
        op("read", None, 9, 10, None, process=2),
    ]
    assert check(ops).result is Result.OK
    ops.append(op("read", None, 11, 12, "b", process=2))
    assert check(ops).result is Result.ILLEGAL


def test_many_identical_indeterminate_writes_stay_cheap() -> None:
    # 60 timed-out writes of two values, then reads that flip between them:
    # each flip consumes one indeterminate write.
    ops = [op("write", "ab"[i % 2], i, None, process=i) for i in range(60)]
    ops += [op("read", None, 100 + 2 * i, 101 + 2 * i, "ab"[i % 2], process=99) for i in range(60)]
    res = check(ops, timeout=10)
    assert res.result is Result.OK
    ops.append(op("read", None, 300, 301, "a", process=99))  # one flip too many
    res = check(ops, timeout=10)
    assert res.result is Result.ILLEGAL
    assert res.culprit is not None and res.culprit.call == 300


def test_touching_intervals_count_as_concurrent() -> None:
    ops = [op("write", "a", 0, 1), op("read", None, 1, 2, None, process=1)]
    assert check(ops).result is Result.OK


def test_malformed_operations_are_refused() -> None:
    with pytest.raises(ValueError, match="return time"):
        check([Operation(0, "write", "x", "a", None, 0.0, None, "ok")])
    with pytest.raises(ValueError, match="status"):
        check([Operation(0, "write", "x", "a", None, 0.0, 1.0, "maybe")])


def test_unobserved_writes_are_absorbed_and_unobserved_info_writes_ignored() -> None:
    # 40 concurrent writes nobody reads, then one read of a value written by
    # an op concurrent with all of them; plus timed-out writes nobody reads.
    ops = [op("write", f"w{i}", 0.1 * i, 10 + 0.1 * i, process=i) for i in range(40)]
    ops += [op("write", f"i{i}", 0.1 * i, None, process=100 + i) for i in range(40)]
    ops.append(op("write", "seen", 5, 30, process=200))
    ops.append(op("read", None, 25, 26, "seen", process=201))
    res = check(ops, timeout=10)
    assert res.result is Result.OK
    assert res.steps < 5_000
    ops.append(op("read", None, 27, 28, "w3", process=202))  # w3 was overwritten by "seen"
    res = check(ops, timeout=10)
    assert res.result is Result.ILLEGAL
    assert res.culprit is not None and res.culprit.output in ("w3", "seen")
    assert {"w3", "seen"} <= {o.output for o in res.window if o.f == "read"}


# -- budgets -------------------------------------------------------------------------


def test_step_budget_gives_unknown() -> None:
    history = simulate(seed=3, n_ops=500)
    res = check(history, max_steps=10)
    assert res.result is Result.UNKNOWN
    assert res.key is not None and "budget" in res.message
    assert check(history, max_steps=10_000_000).result is Result.OK


def test_cache_bound_gives_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.model.checker

    history = simulate(seed=6, n_ops=20_000, keys=1, clients=20)
    monkeypatch.setattr(harness.model.checker, "MAX_CONFIGS", 100)
    assert check(history).result is Result.UNKNOWN


def test_zero_timeout_gives_unknown() -> None:
    assert check(simulate(seed=4, n_ops=200), timeout=0).result is Result.UNKNOWN


def test_small_keys_are_checked_first() -> None:
    ops = [op("write", "a", 0, 1, key="a"), op("read", None, 2, 3, "zz", key="a")]
    ops += [dataclasses.replace(o, key="b") for o in simulate(seed=5, n_ops=300).operations()]
    res = check(ops, max_steps=20)  # key "a" is smaller, checked first
    assert res.result is Result.ILLEGAL and res.key == "a"


# -- history records -----------------------------------------------------------------


def test_event_json_round_trip() -> None:
    events = [
        Event(3, OpType.INVOKE, "cas", "k", (None, "b"), 1.25, node="n2"),
        Event(3, OpType.OK, "cas", "k", False, 2.5, node="n2", index=9, error="cas_failed"),
        Event(4, OpType.INFO, "write", "k/ü", None, 3.0, error="timeout"),
    ]
    for e in events:
        data = json.loads(json.dumps(e.to_json()))
        assert Event.from_json(data) == e
    assert events[0].to_json()["value"] == [None, "b"]
    assert "node" not in events[2].to_json()
    assert OpType.INFO.value == "info"


def test_event_from_json_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        Event.from_json({"process": 1, "type": "ok", "f": "read"})
    with pytest.raises(ValueError):
        Event.from_json({"process": 1, "type": "ok", "f": "frob", "key": "x", "time": 0})
    with pytest.raises(ValueError):
        Event.from_json({"process": 1, "type": "meh", "f": "read", "key": "x", "time": 0})


def test_jsonl_round_trip(tmp_path: Path) -> None:
    history = simulate(seed=7, n_ops=400)
    path = tmp_path / "history.jsonl"
    history.write_jsonl(path)
    back = History.read_jsonl(path)
    assert back == history
    assert back.operations() == history.operations()
    assert len(path.read_text().splitlines()) == len(history)


def test_recording_helpers_pair_operations() -> None:
    h = History()
    h.invoke(1, "write", "x", "a", 0.0, node="n1")
    h.invoke(2, "cas", "x", ["a", "b"], 0.5)
    h.complete(1, OpType.OK, None, 1.0, index=4)
    h.complete(2, OpType.OK, True, 1.5, node="n2", index=5)
    h.invoke(1, "read", "x", None, 2.0)
    h.complete(1, OpType.OK, "b", 3.0)
    h.invoke(3, "delete", "y", None, 3.5)
    h.complete(3, OpType.FAIL, None, 4.0, error="unavailable")
    h.invoke(1, "write", "y", "c", 5.0)
    ops = h.operations()
    assert [o.f for o in ops] == ["write", "cas", "read", "delete", "write"]
    write, cas, read, delete, pending = ops
    assert (write.call, write.ret, write.status, write.node, write.index) == (0.0, 1.0, "ok", "n1", 4)
    assert (cas.value, cas.output, cas.node) == (("a", "b"), True, "n2")
    assert read.output == "b"
    assert (delete.status, delete.error) == ("fail", "unavailable")
    assert (pending.status, pending.ret, pending.output) == ("info", None, None)
    assert h.keys() == ["x", "y"]
    assert check(h).result is Result.OK
    with pytest.raises(ValueError):
        h.complete(2, OpType.OK, None, 6.0)
    with pytest.raises(ValueError):
        h.complete(1, OpType.INVOKE, None, 6.0)


def test_operations_rejects_broken_recordings() -> None:
    two_outstanding = History([
        Event(1, OpType.INVOKE, "read", "x", None, 0.0),
        Event(1, OpType.INVOKE, "read", "x", None, 1.0),
    ])
    with pytest.raises(ValueError, match="outstanding"):
        two_outstanding.operations()
    orphan = History([Event(1, OpType.OK, "read", "x", None, 0.0)])
    with pytest.raises(ValueError, match="without invocation"):
        orphan.operations()
    mismatch = History([
        Event(1, OpType.INVOKE, "read", "x", None, 0.0),
        Event(1, OpType.OK, "read", "y", None, 1.0),
    ])
    with pytest.raises(ValueError, match="does not match"):
        mismatch.operations()


def test_parse_jepsen_log(tmp_path: Path) -> None:
    path = tmp_path / "tiny.log"
    path.write_text(
        "INFO  jepsen.util - 0\t:invoke\t:write\t3\n"
        "INFO  jepsen.util - 1   :invoke :read   nil\n"
        "INFO  jepsen.util - 0\t:ok\t:write\t3\n"
        "INFO  jepsen.util - 1   :ok     :read   3\n"
        "INFO  jepsen.util - 2\t:invoke\t:cas\t[3 4]\n"
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[0 1]\n"
        "INFO  jepsen.util - 2\t:ok\t:cas\t[3 4]\n"
        "INFO  jepsen.util - 3\t:fail\t:cas\t[0 1]\n"
        "INFO  jepsen.util - 4\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 4\t:fail\t:read\t:timed-out\n"
        "INFO  jepsen.util - 5\t:invoke\t:write\t1\n"
        "INFO  jepsen.util - 5\t:info\t:write\t:timed-out\n"
        "INFO  jepsen.util - 6\t:invoke\t:read\tnil\n"
        "\n"
    )
    history = parse_jepsen_log(path)
    assert len(history) == 13
    assert history[0] == Event(0, OpType.INVOKE, "write", "x", 3, 0.0)
    ops = history.operations()
    write, read, cas_ok, cas_failed, read_timeout, write_info, read_pending = ops
    assert read.output == 3 and read.call == 1.0 and read.ret == 3.0
    assert cas_ok.value == (3, 4) and cas_ok.output is True
    assert cas_failed.status == "ok" and cas_failed.output is False
    assert read_timeout.status == "info" and write_info.status == "info"
    assert read_pending.status == "info" and read_pending.ret is None
    assert check(history).result is Result.OK
    path.write_text("INFO  jepsen.util - 0\t:invoke\t:frob\t3\n")
    with pytest.raises(ValueError):
        parse_jepsen_log(path)


# -- generated histories ----------------------------------------------------------


def simulate(
    seed: int,
    n_ops: int = 10_000,
    keys: int = 5,
    clients: int = 10,
    info_rate: float = 0.01,
    fail_rate: float = 0.01,
    weights: tuple[int, int, int, int] = (45, 35, 15, 5),
) -> History:
    """A linearizable history: clients drive a real register with overlapping ops.

    Each op takes effect at a random instant inside its interval (info ops:
    maybe later, maybe never); written values are unique. ``weights`` are
    the odds of read, write, cas and delete.
    """
    rng = random.Random(seed)
    names = [f"k{i}" for i in range(keys)]
    clock = [rng.random() for _ in range(clients)]
    process = list(range(clients))
    next_process = clients
    planned: list[dict[str, Any]] = []
    for i in range(n_ops):
        c = i % clients
        call = clock[c] + rng.expovariate(20.0)
        ret = call + rng.expovariate(2.0)
        clock[c] = ret
        r = rng.random()
        status = "info" if r < info_rate else "fail" if r < info_rate + fail_rate else "ok"
        f = rng.choices(["read", "write", "cas", "delete"], weights=weights)[0]
        lin = rng.uniform(call, ret if status != "info" else ret + 2.0)
        applied = status == "ok" or (status == "info" and rng.random() < 0.5)
        planned.append(dict(
            i=i, process=process[c], f=f, key=rng.choice(names), call=call, ret=ret,
            lin=lin, status=status, applied=applied, output=None, value=None,
            silent=status == "info" and rng.random() < 0.5,
        ))
        if planned[-1]["silent"]:  # never completes: the process id retires
            process[c] = next_process
            next_process += 1
    state: dict[str, str | None] = {k: None for k in names}
    for p in sorted(planned, key=lambda p: p["lin"]):
        key, f = p["key"], p["f"]
        cur = state[key]
        if f == "write":
            p["value"] = f"v{p['i']}"
        elif f == "cas":
            expect = cur if rng.random() < 0.6 else rng.choice([None, f"v{rng.randrange(n_ops)}"])
            p["value"] = (expect, f"v{p['i']}")
        if not p["applied"]:
            continue
        if f == "read":
            p["output"] = cur
        elif f == "write":
            state[key] = p["value"]
        elif f == "delete":
            state[key] = None
        else:
            p["output"] = cur == p["value"][0]
            if p["output"]:
                state[key] = p["value"][1]
    timeline: list[tuple[float, int, int, Event]] = []
    for p in planned:
        invoke = Event(p["process"], OpType.INVOKE, p["f"], p["key"], p["value"], p["call"])
        timeline.append((p["call"], 1, p["i"], invoke))
        if p["silent"]:
            continue
        kind = {"ok": OpType.OK, "fail": OpType.FAIL, "info": OpType.INFO}[p["status"]]
        value = p["output"] if kind is OpType.OK else None
        timeline.append((p["ret"], 0, p["i"], Event(p["process"], kind, p["f"], p["key"], value, p["ret"], node="n1")))
    timeline.sort(key=lambda t: t[:3])
    return History(e for *_, e in timeline)


def test_simulated_history_is_well_formed() -> None:
    history = simulate(seed=1, n_ops=2_000)
    ops = history.operations()
    assert len(ops) == 2_000
    statuses = {o.status for o in ops}
    assert statuses == {"ok", "fail", "info"}
    assert {o.f for o in ops} == {"read", "write", "cas", "delete"}
    assert any(o.f == "cas" and o.status == "ok" and o.output is False for o in ops)


def test_10k_operations_check_fast_and_a_corrupted_read_is_found() -> None:
    history = simulate(seed=42, n_ops=10_000, keys=5)
    t0 = time.process_time()
    res = check(history, timeout=30)
    elapsed = time.process_time() - t0
    assert res.result is Result.OK, res.explain()
    assert res.ops_checked > 9_000 and res.keys_checked == 5
    assert elapsed < 1.0, f"10k-op check took {elapsed:.2f}s of CPU"

    # Corrupt one late read into a stale read: it returns w1's value although
    # w2 overwrote it entirely between w1 and the read (values are unique).
    ops = history.operations()
    reads = [o for o in ops if o.f == "read" and o.status == "ok"]
    target = next(r for r in reversed(reads) if r.call < ops[-1].call * 0.9)
    writes = [o for o in ops if o.f == "write" and o.status == "ok" and o.key == target.key]
    w1 = writes[0]
    assert any(w.call > w1.ret and w.ret < target.call for w in writes)  # type: ignore[operator]  # ok ops have a ret
    events = list(history)
    i = next(
        i for i, e in enumerate(events)
        if e.type is OpType.OK and e.process == target.process and e.time == target.ret
    )
    events[i] = dataclasses.replace(events[i], value=w1.value)
    bad = check(History(events), timeout=30)
    assert bad.result is Result.ILLEGAL
    assert bad.key == target.key
    assert bad.culprit is not None
    assert (bad.culprit.process, bad.culprit.call, bad.culprit.output) == (target.process, target.call, w1.value)
    assert len(bad.window) <= 20 and bad.culprit in bad.window
    assert any(o.f == "write" and o.value == w1.value for o in bad.window)


def test_same_seed_same_history() -> None:
    assert simulate(seed=9, n_ops=300) == simulate(seed=9, n_ops=300)


VALUES = st.sampled_from(["a", "b", "c"])


@st.composite
def sequential_executions(draw: st.DrawFn) -> list[Operation]:
    """Ops executed one by one at instants 0, 1, 2, ...; each gets a random
    interval around its instant. Fail ops do not execute; info ops may."""
    n = draw(st.integers(0, 24))
    state: dict[str, str | None] = {"x": None, "y": None}
    ops: list[Operation] = []
    for i in range(n):
        key = draw(st.sampled_from(["x", "y"]))
        f = draw(st.sampled_from(["read", "read", "write", "cas", "delete"]))
        status = draw(st.sampled_from(["ok", "ok", "ok", "ok", "info", "fail"]))
        call = i - draw(st.floats(0, 3))
        ret = i + draw(st.floats(0, 3))
        applied = status == "ok" or (status == "info" and draw(st.booleans()))
        cur = state[key]
        value: Any = None
        output: Any = None
        if f == "write":
            value = draw(VALUES)
        elif f == "cas":
            value = (draw(st.one_of(st.none(), VALUES)), draw(VALUES))
        if applied:
            if f == "read":
                output = cur
            elif f == "write":
                state[key] = value
            elif f == "delete":
                state[key] = None
            else:
                output = cur == value[0]
                if output:
                    state[key] = value[1]
        ops.append(Operation(i, f, key, value, output, call, None if status == "info" else ret, status))
    return ops


@settings(derandomize=True, database=None, max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(sequential_executions())
def test_sequential_execution_with_overlapping_intervals_is_ok(ops: list[Operation]) -> None:
    res = check(ops, timeout=10)
    assert res.result is Result.OK, res.explain()


@settings(derandomize=True, database=None, max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(sequential_executions(), st.data())
def test_read_of_a_value_never_written_is_illegal(ops: list[Operation], data: st.DataObject) -> None:
    reads = [i for i, o in enumerate(ops) if o.f == "read" and o.status == "ok"]
    assume(reads)
    i = data.draw(st.sampled_from(reads))
    ops[i] = dataclasses.replace(ops[i], output="never-written")
    res = check(ops, timeout=10)
    assert res.result is Result.ILLEGAL
    assert res.key == ops[i].key and res.culprit == ops[i]


# -- differential test against a brute-force reference -----------------------------


def reference_linearizable(ops: list[Operation]) -> bool:
    """Try every order (memoised). Ok ops must be placed, info ops may be."""
    ops = [o for o in ops if o.status != "fail" and not (o.f == "read" and o.status != "ok")]
    must = sum(1 << i for i, o in enumerate(ops) if o.status == "ok")
    failed: set[tuple[int, Any]] = set()

    def step(state: Any, o: Operation) -> tuple[bool, Any]:
        if o.f == "read":
            return state == o.output, state
        if o.f == "write":
            return True, o.value
        if o.f == "delete":
            return True, None
        expect, new = o.value
        if o.status != "ok":
            return True, new if state == expect else state
        if o.output is False:
            return state != expect, state
        return state == expect, new

    def search(placed: int, state: Any) -> bool:
        if placed & must == must:
            return True
        if (placed, state) in failed:
            return False
        for i, o in enumerate(ops):
            if placed >> i & 1:
                continue
            if any(
                not placed >> j & 1 and q.status == "ok" and q.ret < o.call  # type: ignore[operator]  # ok: has a ret
                for j, q in enumerate(ops)
            ):
                continue
            ok, new = step(state, o)
            if ok and search(placed | 1 << i, new):
                return True
        failed.add((placed, state))
        return False

    return search(0, None)


def random_small_history(rng: random.Random, unique: bool) -> list[Operation]:
    """Up to 9 ops on one key with random intervals (ties included) and
    random outcomes: about half are linearizable."""
    mixes = [["read", "read", "write", "cas", "delete"], ["read", "write", "write", "delete"]]
    fs = rng.choice(mixes)
    no_failed_cas = rng.random() < 0.5
    values = [f"w{i}" for i in range(9)] if unique else ["a", "b"]
    ops = []
    for i in range(rng.randrange(1, 10)):
        f = rng.choice(fs)
        status = rng.choice(["ok"] * 5 + ["info", "fail"])
        call = rng.randrange(0, 12)
        ret = call + rng.randrange(0, 5)
        value: Any = None
        output: Any = None
        if f == "write":
            value = values[i] if unique else rng.choice(values)
        elif f == "cas":
            value = (rng.choice([*values, None]), values[i] if unique else rng.choice(values))
        if status == "ok" and f == "read":
            output = rng.choice([*values[: i + 1], None])
        elif status == "ok" and f == "cas":
            output = no_failed_cas or rng.random() < 0.5
        ops.append(Operation(i, f, "x", value, output, float(call), None if status == "info" else float(ret), status))
    return ops


@pytest.mark.parametrize("unique", [False, True], ids=["few-values", "unique-values"])
def test_agrees_with_brute_force_on_small_random_histories(unique: bool) -> None:
    rng = random.Random(2024 + unique)
    seen = {True: 0, False: 0}
    for case in range(3_000):
        ops = random_small_history(rng, unique)
        expected = reference_linearizable(ops)
        seen[expected] += 1
        got = check(ops).result
        assert got is (Result.OK if expected else Result.ILLEGAL), (
            f"case {case}: reference says {expected}, check says {got}:\n"
            + "\n".join(str(o) for o in ops)
        )
    assert min(seen.values()) > 500  # both verdicts well represented
