"""Pure tests of harness.orchestration.nemesis: the seeded fault schedule, the kinds
parser, the majority ring, and the interpreter against a fake cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from harness.orchestration import nemesis
from harness.orchestration.nemesis import KINDS, PARTITION_SHAPES, Fault, Kind, NemesisError, Shape

NODES5 = [f"n{i}" for i in range(1, 6)]
FAULT_S = (3.0, 8.0)
QUIET_S = (2.0, 5.0)


# -- schedule ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_same_seed_same_plan(seed: int) -> None:
    a = nemesis.schedule(seed, 300, KINDS, NODES5)
    b = nemesis.schedule(seed, 300, KINDS, list(reversed(NODES5)))  # node order does not matter
    assert a == b
    assert a, "a 300 s plan has faults"


def test_different_seeds_different_plans() -> None:
    plans = [repr(nemesis.schedule(seed, 300, KINDS, NODES5)) for seed in range(20)]
    assert len(set(plans)) == len(plans)
    assert nemesis.schedule(1, 300, KINDS, NODES5) != nemesis.schedule(2, 300, KINDS, NODES5)


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("duration", [10.0, 15.0, 60.0, 600.0])
def test_faults_never_overlap_and_leave_quiet_periods(seed: int, duration: float) -> None:
    plan = nemesis.schedule(seed, duration, KINDS, NODES5)
    prev_end = 0.0
    for f in plan:
        assert f.kind in KINDS
        assert FAULT_S[0] - 1e-3 <= f.duration <= FAULT_S[1] + 1e-3
        # a quiet period of at least QUIET_S[0] before each fault (the start of the run included)
        assert f.at - prev_end >= QUIET_S[0] - 2e-3, (seed, f)
        prev_end = f.at + f.duration
    # and after the last one, within the run
    assert prev_end + QUIET_S[0] <= duration + 2e-3
    assert [f.at for f in plan] == sorted(f.at for f in plan)


def test_custom_fault_and_quiet_lengths_are_respected() -> None:
    plan = nemesis.schedule(3, 500, ("kill",), NODES5, fault_s=(1.0, 1.5), quiet_s=(0.5, 0.6))
    assert len(plan) > 100
    prev_end = 0.0
    for f in plan:
        assert 1.0 - 1e-3 <= f.duration <= 1.5 + 1e-3
        assert 0.5 - 2e-3 <= f.at - prev_end <= 0.6 + 2e-3
        prev_end = f.at + f.duration


def test_a_run_too_short_for_a_fault_gets_none() -> None:
    assert nemesis.schedule(1, 4.0, KINDS, NODES5) == []
    assert nemesis.schedule(1, 0.0, KINDS, NODES5) == []
    assert nemesis.schedule(1, 600, (), NODES5) == []


def test_every_kind_and_shape_appears_over_long_plans() -> None:
    plan = nemesis.schedule(11, 3000, KINDS, NODES5)
    assert {f.kind for f in plan} == set(KINDS)
    shapes = {f.shape for f in plan if f.kind == "partition"}
    assert shapes == set(PARTITION_SHAPES)
    assert {f.shape for f in plan if f.kind == "kill"} == {"kill", "kill-leader"}
    assert {f.shape for f in plan if f.kind == "pause"} == {"pause", "pause-leader"}
    assert {f.params["percent"] for f in plan if f.kind == "loss"} == {20, 30, 40}


@pytest.mark.parametrize("kinds", [("partition",), ("kill", "pause"), ("loss", "membership")])
def test_only_the_requested_kinds(kinds: tuple[str, ...]) -> None:
    plan = nemesis.schedule(5, 1000, kinds, NODES5)
    assert plan and {f.kind for f in plan} == set(kinds)


@pytest.mark.parametrize("seed", range(40))
def test_parameters_name_real_nodes(seed: int) -> None:
    for f in nemesis.schedule(seed, 400, KINDS, NODES5):
        p = f.params
        if f.shape == "halves":
            a, b = p["groups"]
            assert a and b and not set(a) & set(b) and sorted(a + b) == NODES5
            assert abs(len(a) - len(b)) <= 1
        elif f.shape == "one-way":
            assert p["src"] in NODES5 and p["dst"] in NODES5 and p["src"] != p["dst"]
        elif f.shape in ("bridge", "kill", "pause", "loss", "power-cut"):
            assert p["node"] in NODES5
        elif f.shape == "remove-add":
            assert p == {"node": "follower"}
        elif f.shape in (*nemesis.CLOCK_SHAPES, "slow", "duplicate", "reorder"):
            assert p["node"] in (*NODES5, "leader")
        else:
            assert f.shape in ("isolate-leader", "majority-ring", "kill-leader", "pause-leader", "power-cut-leader",
                               "power-cut-all") and p == {}
        assert f.describe().startswith(f.shape)


def test_unknown_kind_in_schedule_raises() -> None:
    with pytest.raises(NemesisError, match="bogus"):
        nemesis.schedule(1, 100, ("kill", "bogus"), NODES5)


def test_describe() -> None:
    f = Fault(1.0, 3.0, Kind("partition"), Shape("halves"), {"groups": [["n1", "n2"], ["n3", "n4", "n5"]]})
    assert f.describe() == "halves groups=n1,n2|n3,n4,n5"
    assert Fault(1.0, 3.0, Kind("kill"), Shape("kill-leader")).describe() == "kill-leader"
    loss = Fault(1.0, 3.0, Kind("loss"), Shape("loss"), {"percent": 30, "node": "n2"})
    assert loss.describe() == "loss node=n2 percent=30"


# -- parse_kinds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("all", KINDS),
        ("kill,all", KINDS),
        ("partition", ("partition",)),
        ("kill,partition", ("kill", "partition")),
        (" kill , pause ,", ("kill", "pause")),
        ("kill,kill,loss", ("kill", "loss")),
        ("membership", ("membership",)),
    ],
)
def test_parse_kinds(text: str, kinds: tuple[str, ...]) -> None:
    assert nemesis.parse_kinds(text) == kinds


@pytest.mark.parametrize(("text", "what"), [("", "empty"), (" , ", "empty"), ("bogus", "bogus"),
                                            ("kill,bogus,pause", "bogus"), ("Kill", "Kill")])
def test_parse_kinds_errors(text: str, what: str) -> None:
    with pytest.raises(NemesisError, match=what) as e:
        nemesis.parse_kinds(text)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)


# -- majority ring ------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 12))
def test_ring_groups_give_every_node_a_bare_majority(n: int) -> None:
    nodes = [f"n{i}" for i in range(1, n + 1)]
    ring = nemesis.ring_groups(list(reversed(nodes)))
    assert set(ring) == set(nodes)
    for me, seen in ring.items():
        assert me in seen
        assert seen <= set(nodes)
        assert len(seen) == n // 2 + 1, (me, seen)
    if n >= 3:
        assert len({frozenset(s) for s in ring.values()}) == n  # all different
        # no node hears everyone: it is a ring, not a star
        assert all(len(s) < n for s in ring.values())


def test_ring_of_five_is_nearest_neighbours() -> None:
    ring = nemesis.ring_groups(NODES5)
    assert ring["n1"] == {"n1", "n2", "n5"}
    assert ring["n3"] == {"n2", "n3", "n4"}


# -- the interpreter against a fake target ------------------------------------------------


class FakeCluster:
    """Records what the interpreter does; n1 leads."""

    def __init__(self, members: Sequence[str] = NODES5, leader: str = "n1") -> None:
        self._members = list(members)
        self._leader = leader
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def members(self) -> list[str]:
        return list(self._members)

    def leader(self, timeout: float = 10.0) -> str:
        return self._leader

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args: Any) -> Any:
            self.calls.append((name, args))
            return "n6" if name == "add" else None

        return record


def test_apply_and_undo_every_shape() -> None:
    cases: list[tuple[Fault, list[tuple[str, tuple[Any, ...]]], str]] = [
        (Fault(1, 3, Kind("partition"), Shape("halves"), {"groups": [["n1", "n2"], ["n3", "n4", "n5"]]}),
         [("partition", (["n1", "n2"], ["n3", "n4", "n5"]))], "heal"),
        (Fault(1, 3, Kind("partition"), Shape("isolate-leader")), [("isolate", ("n1",))], "heal"),
        (Fault(1, 3, Kind("partition"), Shape("majority-ring")), [("ring", (nemesis.ring_groups(NODES5),))], "heal"),
        (Fault(1, 3, Kind("partition"), Shape("bridge"), {"node": "n3"}), [("bridge", ("n3",))], "heal"),
        (Fault(1, 3, Kind("partition"), Shape("one-way"), {"src": "n2", "dst": "n4"}), [("cut", ("n2", "n4"))], "heal"),
        (Fault(1, 3, Kind("loss"), Shape("loss"), {"node": "n5", "percent": 30}), [("loss", ("n5", 30))], "heal"),
        (Fault(1, 3, Kind("kill"), Shape("kill-leader")), [("kill", ("n1",))], "restart n1"),
        (Fault(1, 3, Kind("kill"), Shape("kill"), {"node": "n4"}), [("kill", ("n4",))], "restart n4"),
        (Fault(1, 3, Kind("pause"), Shape("pause-leader")), [("pause", ("n1",))], "resume n1"),
        (Fault(1, 3, Kind("pause"), Shape("pause"), {"node": "n2"}), [("pause", ("n2",))], "resume n2"),
        (Fault(1, 3, Kind("power"), Shape("power-cut-leader")), [("power_cut", ("n1",))], "restart n1"),
        (Fault(1, 3, Kind("power"), Shape("power-cut"), {"node": "n3"}), [("power_cut", ("n3",))], "restart n3"),
        (Fault(1, 3, Kind("power"), Shape("power-cut-all")), [("power_cut_all", ())], "start_all"),
        (Fault(1, 3, Kind("clock"), Shape("clock-fast"), {"node": "n2", "rate": 3.0}), [("clock_rate", ("n2", 3.0))],
         "clock_reset n2"),
        (Fault(1, 3, Kind("clock"), Shape("clock-slow"), {"node": "leader", "rate": 0.5}),
         [("clock_rate", ("n1", 0.5))], "clock_reset n1"),
        (Fault(1, 3, Kind("clock"), Shape("clock-jump"), {"node": "n4", "offset": -0.5}),
         [("clock_offset", ("n4", -0.5))], "clock_reset n4"),
    ]
    for fault, started, ended in cases:
        t = FakeCluster()
        applied = nemesis.apply(t, fault)
        assert t.calls == started, fault
        assert applied.fault == fault and applied.text
        t.calls.clear()
        assert nemesis.undo(t, applied) == ended
        assert [c[0] for c in t.calls] == [ended.split()[0]]


def test_remove_add_removes_a_follower_and_adds_a_new_node() -> None:
    t = FakeCluster(leader="n3")
    applied = nemesis.apply(t, Fault(2.5, 3, Kind("membership"), Shape("remove-add"), {"node": "follower"}))
    ((name, (removed,)),) = t.calls
    assert name == "remove" and removed in NODES5 and removed != "n3"
    assert nemesis.undo(t, applied) == "add -> n6"


def test_targets_that_left_are_replaced_by_members() -> None:
    t = FakeCluster(members=["n1", "n2", "n3"])
    nemesis.apply(t, Fault(4, 3, Kind("partition"), Shape("halves"), {"groups": [["n1", "n4"], ["n2", "n3", "n5"]]}))
    assert t.calls == [("partition", (["n1"], ["n2", "n3"]))]
    t.calls.clear()
    nemesis.apply(t, Fault(4, 3, Kind("kill"), Shape("kill"), {"node": "n5"}))
    assert t.calls[0][0] == "kill" and t.calls[0][1][0] in ("n1", "n2", "n3")
    t.calls.clear()
    nemesis.apply(t, Fault(4, 3, Kind("partition"), Shape("one-way"), {"src": "n4", "dst": "n5"}))
    ((name, (a, b)),) = t.calls
    assert name == "cut" and a != b and {a, b} <= {"n1", "n2", "n3"}


@pytest.mark.parametrize("seed", range(20))
def test_power_plans_cut_one_node_or_all(seed: int) -> None:
    plan = nemesis.schedule(seed, 200, ("power",), NODES5)
    assert plan and {f.kind for f in plan} == {"power"}
    for f in plan:
        assert f.shape in ("power-cut", "power-cut-leader", "power-cut-all"), f
        assert f.shape != "power-cut" or f.params["node"] in NODES5


def test_power_plans_have_every_shape() -> None:
    shapes = {f.shape for f in nemesis.schedule(5, 2000, ("power",), NODES5)}
    assert shapes == {"power-cut", "power-cut-leader", "power-cut-all"}


def test_power_in_all_and_alone() -> None:
    assert "power" in nemesis.parse_kinds("all")
    assert nemesis.parse_kinds("power,kill") == ("power", "kill")


def test_unknown_shape_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="weird"):
        Shape("weird")  # faults are typed: a planned fault names one of the shapes the interpreter knows
    with pytest.raises(NemesisError, match="weird"):
        nemesis.parse_kinds("partition,weird")


# -- clock ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_clock_plans_skew_one_node(seed: int) -> None:
    plan = nemesis.schedule(seed, 200, ("clock",), NODES5)
    assert plan and {f.kind for f in plan} == {"clock"}
    for f in plan:
        p = f.params
        assert f.shape in nemesis.CLOCK_SHAPES, f
        if f.shape == "clock-fast":
            assert p["node"] in NODES5 and p["rate"] > 1
        elif f.shape == "clock-slow":
            assert p["node"] in (*NODES5, "leader") and 0 < p["rate"] < 1
        else:
            assert p["node"] in NODES5 and p["offset"] != 0


def test_clock_plans_have_every_shape_and_value() -> None:
    plan = nemesis.schedule(5, 3000, ("clock",), NODES5)
    assert {f.shape for f in plan} == set(nemesis.CLOCK_SHAPES)
    assert {f.params["rate"] for f in plan if f.shape != "clock-jump"} == {0.2, 0.5, 2.0, 3.0, 5.0}
    assert {f.params["offset"] for f in plan if f.shape == "clock-jump"} == {-0.5, 2.0, 10.0}
    assert {f.params["node"] for f in plan if f.shape == "clock-slow"} >= {"leader"}


def test_clock_in_all() -> None:
    assert "clock" in nemesis.parse_kinds("all")
    assert nemesis.parse_kinds("clock") == ("clock",)


def test_clock_left_out_for_a_system_libfaketime_cannot_reach() -> None:
    from harness.systems import by_name

    etcd = by_name("etcd")
    why = nemesis.unsupported(etcd, KINDS)["clock"]
    assert "etcd" in why and "libfaketime" in why and "\n" not in why
    assert "clock" not in nemesis.unsupported(by_name("raftnet"), KINDS)
