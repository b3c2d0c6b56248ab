"""History details the report and ``raftnet analyze`` rely on: an info op keeps the time its client
gave up, `load_history` reads raftnet JSONL, Jepsen logs and Jepsen/Knossos EDN, and an ILLEGAL
verdict carries the longest linearizable prefix the search reached and the state it ends in."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from harness.model.checker import Result, check, step
from harness.model.history import History, Operation, OpType, load_history, parse_edn_history
from tests.checker.test_checker import LABELLED, label_of, random_small_history

# -- info completions ------------------------------------------------------------------


def test_an_info_op_keeps_when_its_client_gave_up() -> None:
    h = History()
    h.invoke(0, "write", "k", "a", 1.0)
    h.complete(0, OpType.INFO, None, 6.0, error="timeout")
    h.invoke(10, "read", "k", None, 6.1)  # the client goes on as a new process
    h.complete(10, OpType.OK, "a", 6.2)
    h.invoke(1, "read", "k", None, 7.0)  # never completes
    info, read, pending = h.operations()
    assert (info.status, info.ret, info.end, info.finish, info.error) == ("info", None, 6.0, 6.0, "timeout")
    assert (read.ret, read.end, read.finish) == (6.2, 6.2, 6.2)
    assert (pending.status, pending.end, pending.finish) == ("info", None, None)
    assert check(h).ok


def test_an_info_completion_before_its_invocation_is_refused() -> None:
    h = History()
    h.invoke(0, "write", "k", "a", 5.0)
    h.complete(0, OpType.INFO, None, 4.0)
    with pytest.raises(ValueError, match="before invocation"):
        h.operations()


# -- load_history --------------------------------------------------------------------------

JEPSEN_LOG = (
    "INFO  jepsen.util - 0\t:invoke\t:write\t3\n"
    "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 0\t:ok\t:write\t3\n"
    "INFO  jepsen.util - 1\t:ok\t:read\t3\n"
)
EDN_LINES = (
    "{:type :invoke, :f :write, :value 3, :process 0, :time 1000000000, :index 0}\n"
    "{:type :invoke, :f :read, :value nil, :process 1, :time 1500000000, :index 1}\n"
    "{:type :info, :f :start, :value nil, :process :nemesis, :time 1600000000}\n"
    "{:type :ok, :f :write, :value 3, :process 0, :time 2000000000, :index 2}\n"
    "{:type :ok, :f :read, :value 3, :process 1, :time 2500000000, :index 3}\n"
)
KNOSSOS_VECTOR = """; a Knossos test history
[{:process 0, :type :invoke, :f :cas, :value [nil 1]}
 {:process 0, :type :ok, :f :cas, :value [nil 1]}
 {:process 1, :type :invoke, :f :write, :value 2}
 {:process 1, :type :info, :f :write, :value 2 :error :timeout}
 {:process 2, :type :invoke, :f :cas, :value [1 5]}
 {:process 2, :type :fail, :f :cas, :value [1 5]}
 {:process 3, :type :invoke, :f :read, :value nil}
 {:process 3, :type :ok, :f :read, :value 1}]
"""


def jsonl_text() -> str:
    h = History()
    h.invoke(0, "write", "k1", "a", 10.0, node="n1")
    h.complete(0, OpType.OK, None, 10.5, index=3)
    return "\n".join(json.dumps(e.to_json()) for e in h) + "\n"


@pytest.mark.parametrize(
    ("text", "fmt", "timed", "ops"),
    [
        pytest.param(jsonl_text(), "jsonl", True, [("write", "ok", 10.0, 10.5)], id="raftnet-jsonl"),
        pytest.param(JEPSEN_LOG, "jepsen-log", False, [("write", "ok", 0.0, 2.0), ("read", "ok", 1.0, 3.0)],
                     id="jepsen-log"),
        pytest.param(EDN_LINES, "edn", True, [("write", "ok", 1.0, 2.0), ("read", "ok", 1.5, 2.5)],
                     id="jepsen-history-edn"),
        pytest.param(KNOSSOS_VECTOR, "edn", False,
                     [("cas", "ok", 0.0, 1.0), ("write", "info", 2.0, None), ("cas", "fail", 4.0, 5.0),
                      ("read", "ok", 6.0, 7.0)], id="knossos-vector"),
    ],
)
def test_load_history_tells_formats_apart(tmp_path: Path, text: str, fmt: str, timed: bool,
                                          ops: list[tuple[str, str, float, float | None]]) -> None:
    path = tmp_path / "h"
    path.write_text(text)
    loaded = load_history(path)
    assert (loaded.format, loaded.timed) == (fmt, timed)
    got = [(o.f, o.status, o.call, o.ret) for o in loaded.history.operations()]
    assert got == ops
    assert check(loaded.history).ok


def test_edn_values_and_outcomes() -> None:
    h, timed = parse_edn_history(KNOSSOS_VECTOR)
    cas, write, failed, read = h.operations()
    assert not timed
    assert (cas.value, cas.output) == ((None, 1), True)
    assert (write.status, write.end, write.error) == ("info", 3.0, "timeout")
    assert failed.status == "fail"  # Knossos: a failed op did not happen
    assert read.output == 1 and {o.key for o in (cas, write, read)} == {"x"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("\n\n", "empty", id="blank"),
        pytest.param("hello world\n", "not a history", id="prose"),
        pytest.param('{"process": 0, "type": "invoke"}\n', "lacks field", id="jsonl-missing-field"),
        pytest.param("{not json\n", "bad:1", id="neither-json-nor-edn"),
        pytest.param("{:type :invoke :f :read :process 0 :value nil\n", "ends inside", id="edn-unbalanced"),
        pytest.param("{:type :invoke :f :append :process 0 :value 1}\n", "single register", id="edn-other-model"),
        pytest.param("{:type :invoke :f :cas :process 0 :value 3}\n", "cas value", id="edn-bad-cas"),
        pytest.param("INFO  jepsen.util - 0\t:invoke\t:write\t3\ngarbage\n", "not a Jepsen op line", id="log-garbage"),
    ],
)
def test_load_history_refuses_what_is_not_a_history(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_history(path)


# -- the longest linearizable prefix --------------------------------------------------------


def assert_prefix_explains(ops: list[Operation], res: Any) -> None:
    """The prefix is a legal sequential run in real-time order, ending in prefix_state, without the culprit."""
    state: Any = None
    for i, o in enumerate(res.prefix):
        if o.status == "ok" and o.f == "read":
            assert o.output == state, f"prefix op {i} {o} reads {o.output!r} in state {state!r}"
        if o.status == "ok" and o.f == "cas":
            assert (state == o.value[0]) is (o.output is not False), f"prefix op {i} {o} in state {state!r}"
        state = step(state, o)
        assert o.status != "fail" and not (o.f == "read" and o.status != "ok")
    assert state == res.prefix_state
    for i, a in enumerate(res.prefix):
        for b in res.prefix[i + 1:]:
            assert not (b.ret is not None and b.ret < a.call), f"{b} returned before {a} was called"
    assert res.culprit is not None and all(o is not res.culprit for o in res.prefix)
    assert all(o in ops for o in res.prefix)


@pytest.mark.parametrize("path", [p for p in LABELLED if label_of(p) is Result.ILLEGAL], ids=lambda p: p.name)
def test_illegal_labelled_histories_carry_a_prefix(path: Path) -> None:
    history = History.read_jsonl(path)
    res = check(history, timeout=10)
    assert res.result is Result.ILLEGAL
    assert_prefix_explains([o for o in history.operations() if o.key == res.key], res)


def test_prefix_of_a_stale_read_ends_in_the_overwriting_value() -> None:
    ops = [
        Operation(0, "write", "x", "a", None, 0.0, 1.0, "ok"),
        Operation(1, "write", "x", "b", None, 2.0, 3.0, "ok"),
        Operation(2, "read", "x", None, "a", 4.0, 5.0, "ok"),
    ]
    res = check(ops)
    assert res.result is Result.ILLEGAL
    assert [o.value for o in res.prefix] == ["a", "b"] and res.prefix_state == "b"
    assert res.culprit is ops[2]


@pytest.mark.parametrize("unique", [False, True], ids=["few-values", "unique-values"])
def test_prefix_is_sound_on_small_random_histories(unique: bool) -> None:
    rng = random.Random(77 + unique)
    illegal = 0
    for _ in range(1_500):
        ops = random_small_history(rng, unique)
        res = check(ops)
        if res.result is Result.ILLEGAL:
            illegal += 1
            assert_prefix_explains(ops, res)
        else:
            assert res.prefix == () and res.prefix_state is None
    assert illegal > 200


@pytest.mark.parametrize(
    ("state", "op", "after"),
    [
        ("a", Operation(0, "write", "x", "b", None, 0, 1, "ok"), "b"),
        ("a", Operation(0, "delete", "x", None, None, 0, 1, "ok"), None),
        ("a", Operation(0, "read", "x", None, "a", 0, 1, "ok"), "a"),
        ("a", Operation(0, "cas", "x", ("a", "c"), True, 0, 1, "ok"), "c"),
        ("a", Operation(0, "cas", "x", ("z", "c"), False, 0, 1, "ok"), "a"),
        ("a", Operation(0, "cas", "x", ("a", "c"), None, 0, None, "info"), "c"),
        ("a", Operation(0, "cas", "x", ("z", "c"), None, 0, None, "info"), "a"),
        (None, Operation(0, "cas", "x", (None, "c"), True, 0, 1, "ok"), "c"),
    ],
)
def test_step_follows_the_model_table(state: Any, op: Operation, after: Any) -> None:
    assert step(state, op) == after
