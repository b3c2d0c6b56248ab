"""LeaderWatch's timestamped status samples (role, term, leader, commit index, or no answer), which
the report draws as one lane per node; sampled here by hand, without its thread."""

from __future__ import annotations

from typing import Any

import pytest

from harness.model.invariants import LeaderWatch, StatusSample, read_status
from harness.systems.base import NodeStatus


@pytest.mark.parametrize(
    ("answer", "read"),
    [
        pytest.param(None, (None, None, None, None), id="no-answer"),
        pytest.param(NodeStatus(role="leader", term=3, leader="n1", commit_index=40, applied_index=39),
                     ("leader", 3, "n1", 40), id="node-status"),
        pytest.param(NodeStatus(role="follower"), ("follower", None, None, None), id="partial-status"),
        pytest.param({"role": "candidate", "term": "4", "leader_id": None, "commit_index": 7},
                     ("candidate", 4, None, 7), id="raftnet-status-dict"),
        pytest.param({"role": "follower", "term": 2, "leader": "n3"}, ("follower", 2, "n3", None), id="dict-leader"),
    ],
)
def test_read_status(answer: Any, read: tuple[Any, ...]) -> None:
    assert read_status(answer) == read


def test_samples_carry_time_role_term_leader_and_commit_index() -> None:
    answers: dict[str, Any] = {
        "n1": NodeStatus(role="leader", term=2, leader="n1", commit_index=10),
        "n2": NodeStatus(role="follower", term=2, leader="n1", commit_index=9),
        "n3": None,  # paused, killed or cut off
    }
    now = iter([5.0, 5.1, 5.2])
    watch = LeaderWatch(lambda n: answers[n], lambda: list(answers), clock=lambda: next(now))
    got = [watch.sample(n) for n in answers]
    assert got == [
        StatusSample(5.0, "n1", "leader", 2, "n1", 10),
        StatusSample(5.1, "n2", "follower", 2, "n1", 9),
        StatusSample(5.2, "n3", None),
    ]
    assert watch.timeline == got
    assert watch.samples == [("n1", 2, "leader"), ("n2", 2, "follower")]  # for check_leaders
    assert watch.violations() == []


@pytest.mark.parametrize(
    "sample",
    [StatusSample(1.5, "n1", "leader", 2, "n1", 10), StatusSample(2.0, "n3", None)],
)
def test_sample_json_round_trip(sample: StatusSample) -> None:
    assert StatusSample.from_json(sample.to_json()) == sample


@pytest.mark.parametrize(
    "data", [{}, {"time": 1.0}, {"time": "x", "node": "n1"}, {"time": 1, "node": "n1", "term": "a"}]
)
def test_sample_from_json_rejects_garbage(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        StatusSample.from_json(data)
