"""The simulator can fail: with a known-broken rule patched into the core,
schedules that pass with the real core (they are part of the families in
test_sim.py) must raise InvariantError.

The seeds were found with ``python -m tests.sim.mutants MUTANT FAMILY N``;
a change to the core reshuffles the schedules, so if one of these stops
catching its mutant, look for new seeds that way before suspecting the
simulator.
"""

from __future__ import annotations

import pytest

from node.raft.sim import InvariantError

from .mutants import MUTANTS
from .schedules import FAMILIES

CATCHES = [
    # (mutant, family, seeds of that family found to catch it, what the simulator reports)
    ("commit_old_terms", "e", (65, 81, 89, 101, 115, 152, 166), "leader completeness"),
    ("commit_old_terms", "c", (160, 178), "leader completeness"),
    ("read_unconfirmed", "b", (4, 7, 20, 97, 129, 135, 143), "stale read"),
    ("vote_any_log", "a", (0, 1, 2, 3, 5), "leader completeness"),
]


@pytest.mark.parametrize(("mutant", "family", "seeds", "report"), CATCHES,
                         ids=[f"{c[0]}-{c[1]}" for c in CATCHES])
def test_simulator_catches_a_broken_core(
    mutant: str, family: str, seeds: tuple[int, ...], report: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = MUTANTS[mutant]
    monkeypatch.setattr(m.target, m.attribute, m.replacement)
    for seed in seeds:  # the first schedule that catches it is enough
        try:
            FAMILIES[family].check(seed)
        except InvariantError as e:
            assert f"seed={seed}" in str(e) and report in str(e), str(e)
            return
    pytest.fail(f"{mutant} ({m.breaks}) went unnoticed in family {family}, seeds {seeds}: "
                f"find new seeds with `python -m tests.sim.mutants {mutant} {family} N`")


def test_mutants_are_undone_after_each_test() -> None:
    for m in MUTANTS.values():
        assert getattr(m.target, m.attribute) is not m.replacement
