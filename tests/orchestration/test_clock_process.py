"""A live process under libfaketime, steered the way the Cluster steers a node's clock (no root):
its clock follows rate changes, jumps and resets while it runs, never goes back on a rate change,
and picks each new line up within milliseconds. The probe reads its (faked) ``time.monotonic``
and the real CLOCK_MONOTONIC through the raw syscall, which libfaketime does not intercept."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.lab import clock as lab_clock
from harness.model.clock import MARGIN, ClockLine

pytestmark = pytest.mark.slow

SYS_CLOCK_GETTIME = {"x86_64": 228, "aarch64": 113}.get(platform.machine())

PROBE = r"""
import ctypes, json, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class TS(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
def real():
    ts = TS()
    libc.syscall(int(sys.argv[1]), 1, ctypes.byref(ts))  # CLOCK_MONOTONIC, past libfaketime
    return ts.s + ts.ns / 1e9
end = real() + float(sys.argv[2])
samples, back, last = [], 0.0, time.monotonic()
while (r := real()) < end:
    f = time.monotonic()
    back = max(back, last - f)
    last = f
    samples.append((r, f))
    time.sleep(0.002)
print(json.dumps({"back": back, "samples": samples}))
"""


def _rate(samples: list[tuple[float, float]], a: float, b: float) -> float:
    """The probe's clock rate between real times a and b."""
    inside = [s for s in samples if a <= s[0] <= b]
    (r0, f0), (r1, f1) = inside[0], inside[-1]
    return (f1 - f0) / (r1 - r0)


def _step(samples: list[tuple[float, float]], at: float) -> float:
    """How far the probe's clock stepped around real time ``at``, beyond what its rates explain."""
    before = [s for s in samples if at - 0.3 <= s[0] <= at - 0.05]
    after = [s for s in samples if at + 0.15 <= s[0] <= at + 0.4]
    rb = (before[-1][1] - before[0][1]) / (before[-1][0] - before[0][0])
    ra = (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])
    return (after[0][1] - ra * (after[0][0] - at)) - (before[-1][1] + rb * (at - before[-1][0]))


@pytest.mark.skipif(SYS_CLOCK_GETTIME is None, reason=f"the probe knows clock_gettime's number on x86_64 and "
                    f"aarch64, not {platform.machine()}")
def test_a_running_process_follows_its_clock_and_never_goes_back(tmp_path: Path) -> None:
    lib = lab_clock.library()
    if lib is None:
        pytest.skip(lab_clock.unavailable_reason() or "no libfaketime")
    ctl = tmp_path / "probe.clock"
    lab_clock.write(ctl, ClockLine(time.monotonic()))
    p = subprocess.Popen([sys.executable, "-c", PROBE, str(SYS_CLOCK_GETTIME), "5.5"],
                         env=lab_clock.env(os.environ, ctl, lib), stdout=subprocess.PIPE, text=True)
    line = ClockLine(time.monotonic())
    t0 = time.monotonic()
    changes: list[tuple[float, str, Callable[[ClockLine, float], ClockLine]]] = [
        (0.6, "3x", lambda ln, now: ln.with_rate(3.0, now)),
        (1.6, "back to 1x", lambda ln, now: ln.with_rate(1.0, now)),
        (2.6, "0.5x", lambda ln, now: ln.with_rate(0.5, now)),
        (3.6, "jump +2 s", lambda ln, now: ln.jumped(2.0)),
        (4.4, "reset", lambda ln, now: ln.reset(now)),
    ]
    at: dict[str, float] = {}
    lags: dict[str, float | None] = {}
    for when, name, change in changes:
        time.sleep(max(0.0, t0 + when - time.monotonic()))
        now = time.monotonic()
        line = change(line, now)
        lab_clock.write(ctl, line)
        at[name] = now
        lags[name] = lab_clock.wait_read(ctl)
    out = json.loads(p.communicate(timeout=60)[0])
    lab_clock.forget(p.pid)
    samples = [(float(r), float(f)) for r, f in out["samples"]]
    assert p.returncode == 0

    assert out["back"] == 0.0, f"the clock went back by {out['back']} s"
    assert all(lag is not None and lag < MARGIN for lag in lags.values()), lags  # picked up in milliseconds
    assert _rate(samples, t0 + 0.1, at["3x"] - 0.05) == pytest.approx(1.0, rel=0.03)
    assert _rate(samples, at["3x"] + 0.1, at["back to 1x"] - 0.05) == pytest.approx(3.0, rel=0.03)
    assert _rate(samples, at["back to 1x"] + 0.15, at["0.5x"] - 0.05) == pytest.approx(1.0, rel=0.03)
    assert _rate(samples, at["0.5x"] + 0.15, at["jump +2 s"] - 0.05) == pytest.approx(0.5, rel=0.03)
    assert _rate(samples, at["reset"] + 0.15, at["reset"] + 0.9) == pytest.approx(1.0, rel=0.03)
    # a rate change steps the clock forward by at most |change| * MARGIN; the jump by its 2 s
    for name, most in (("3x", 2 * MARGIN), ("back to 1x", 2 * MARGIN), ("0.5x", 0.5 * MARGIN)):
        assert -0.005 <= _step(samples, at[name]) <= most + 0.02, name
    assert _step(samples, at["jump +2 s"]) == pytest.approx(2.0, abs=0.03)
    assert 0.0 <= _step(samples, at["reset"]) <= 0.5 * MARGIN + 0.02
