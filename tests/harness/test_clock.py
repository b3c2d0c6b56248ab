"""Pure tests of harness/model/clock.py: parsing rates and durations, the control line libfaketime
reads, and the rule that a rate change never steps a process's clock back."""

from __future__ import annotations

import random

import pytest

from harness.model.clock import LEAD, MARGIN, ClockError, ClockLine, check_offset, parse_duration, parse_rate


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5.0), ("-200ms", -0.2), ("+1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), ("1d", 86400.0),
    ("250us", 250e-6), ("10ns", 1e-8), (".5s", 0.5), ("3.s", 3.0), (" 7 s ", 7.0), ("0", 0.0), ("-0", 0.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "s", "", "5 sec", "5ss", "--5s", "1e3s", "five s", "5s5", "400d"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ClockError) as e:
        parse_duration(text)
    assert "\n" not in str(e.value) and ("5s" in str(e.value) or "year" in str(e.value))


@pytest.mark.parametrize(("text", "rate"), [("2.0", 2.0), ("0.5", 0.5), ("1", 1.0), ("100", 100.0), ("0.01", 0.01)])
def test_rates(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0", "-1", "0.001", "101", "nan", "inf", "fast", ""])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ClockError, match="rate"):
        parse_rate(text)


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1e9])
def test_bad_offsets(seconds: float) -> None:
    with pytest.raises(ClockError, match="at most a year"):
        check_offset(seconds)
    assert check_offset(-0.5) == -0.5


def test_the_control_line_is_fixed_point_with_no_unit_letters() -> None:
    # libfaketime multiplies the offset by 60 when it sees an "m" anywhere in the line, and so on
    for line in (ClockLine(0.0), ClockLine(10.0, -0.2, 0.5), ClockLine(0.0, 1e-9, 3.0), ClockLine(0.0, 86400.0, 100)):
        spec = line.spec()
        off, rate = spec.split(" x")
        assert float(off) == pytest.approx(line.offset, abs=1e-6) and float(rate) == line.rate
        assert off[0] in "+-" and not set(spec) & set("mhdyie")
    assert ClockLine(5.0).spec() == "+0.000000 x1.000000"


def test_skew_grows_with_the_rate_from_the_start() -> None:
    line = ClockLine(100.0, 2.0, 3.0)
    assert line.skew(100.0) == 2.0 and line.skew(101.0) == 4.0
    assert line.fake(101.0) == 105.0
    assert ClockLine(0.0).real and not line.real


def test_a_rate_change_meets_the_old_line_at_its_pivot() -> None:
    old = ClockLine(0.0, 1.0, 1.0)
    fast = old.with_rate(3.0, 10.0)
    assert fast.skew(10.0 - LEAD) == pytest.approx(old.skew(10.0 - LEAD))  # faster: pivot before the write
    slow = fast.with_rate(0.5, 20.0)
    assert slow.skew(20.0 + MARGIN) == pytest.approx(fast.skew(20.0 + MARGIN))  # slower: pivot after it
    assert slow.rate == 0.5 and slow.start == 0.0
    assert old.with_rate(1.0, 5.0) is old


def test_reset_keeps_the_skew_and_a_restart_may_drop_it() -> None:
    line = ClockLine(0.0).with_rate(3.0, 0.0)  # 3x from t=0: 2 s ahead after 1 s
    back = line.reset(1.0)
    assert back.rate == 1.0 and back.skew(5.0) == pytest.approx(line.skew(1.0 + MARGIN))
    assert line.respawned(1.0, keep=True) == ClockLine(1.0, line.skew(1.0), 3.0)
    assert line.respawned(1.0, keep=False) == ClockLine(1.0)


def test_jumps_add_to_the_offset() -> None:
    line = ClockLine(0.0, 0.5, 2.0).jumped(-0.2)
    assert line.offset == pytest.approx(0.3) and line.rate == 2.0


def test_json_round_trip() -> None:
    line = ClockLine(12.5, -0.25, 0.5)
    assert ClockLine.from_json(line.to_json()) == line


def _process_clock(lines: list[tuple[float, ClockLine]], start: float, t: float) -> float:
    """What libfaketime shows a process that started at ``start`` (not the harness's estimate) at real
    time ``t``, given the lines it picked up at the times given."""
    current = max((p, line) for p, line in lines if p <= t)[1] if any(p <= t for p, _ in lines) else lines[0][1]
    return t + current.offset + (current.rate - 1.0) * (t - start)


@pytest.mark.parametrize("seed", range(300))
def test_rate_changes_and_resets_never_step_the_clock_back(seed: int) -> None:
    """Random rate changes and resets, each picked up by the process some time within MARGIN after it
    was written, with libfaketime starting in the process up to 20 ms after the harness's estimate:
    the process's clock never goes back, and each step forward is small."""
    rng = random.Random(seed)
    estimate = 1000.0
    start = estimate + rng.uniform(0.0, 0.02)
    line = ClockLine(estimate)
    lines = [(start, line)]
    t = start + rng.uniform(0.0, 2.0)
    for _ in range(12):
        old_rate = line.rate
        line = line.reset(t) if rng.random() < 0.25 else line.with_rate(rng.choice((0.2, 0.5, 1.0, 2.0, 3.0, 5.0)), t)
        pickup = t + rng.uniform(0.0, MARGIN * 0.99)
        before = _process_clock(lines, start, pickup)
        lines.append((pickup, line))
        after = _process_clock(lines, start, pickup)
        assert after >= before - 1e-9, (seed, old_rate, line.rate, before - after)
        assert after - before <= abs(line.rate - old_rate) * (LEAD + MARGIN + 0.02) + 1e-9
        t = pickup + rng.uniform(0.0, 3.0)
    # and between changes it runs at its rate
    p, last = lines[-1]
    assert _process_clock(lines, start, p + 2.0) - _process_clock(lines, start, p + 1.0) == pytest.approx(last.rate)
