"""A node's clock under a clock fault (pure; the lab side is harness/lab/clock.py).

libfaketime, preloaded into a node process, shows it a clock that runs at
``rate`` times the real one and is ``offset`` seconds off, both the wall
clock and CLOCK_MONOTONIC (what ``time.monotonic`` and asyncio's timers
read). Given the control line ``"+OFFSET xRATE"`` it answers, at real time t,

    fake(t) = t + offset + (rate - 1) * (t - start)

where ``start`` is the moment libfaketime started in that process. A
``ClockLine`` is that line, with ``start`` as the harness estimated it (the
time its spawn returned; libfaketime starts a few milliseconds later).

Theory of operation. The process re-reads its control file at every clock
call, so a new line takes effect at the first clock call after it is
written: a moment the harness knows only roughly (its pickup). A new rate
pivots the line around a chosen instant, so that the old and the new line
meet there. Past the pivot a faster line is above the old one and a slower
line below it, so:

- a faster rate pivots ``LEAD`` seconds *before* the write: whenever the
  process picks it up, the new line is already at or above the old one;
- a slower rate pivots ``MARGIN`` seconds *after* the write: the new line is
  above the old one until then, so a pickup within ``MARGIN`` never steps
  the clock back.

Either way the clock steps forward by at most ``|rate change| * MARGIN``
when the process picks the line up (0.2 s going from 3x back to 1x), and
never back, provided a slower line is picked up within ``MARGIN`` (a live
process reads its clock every few milliseconds; a stopped one does not,
which is why the cluster refuses clock changes of a paused node). Only an
offset steps the clock: forward, or back for a negative one, the one fault
here that makes a process's monotonic clock go back (no kernel does that;
asyncio then simply waits that much longer for its timers, once).
``reset`` restores the real rate from where the clock is: it keeps the
offset gathered so far instead of stepping back (a restart gives the node
the real time again).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import HarnessError

LEAD = 0.05  # s: a faster line meets the old one this long before it is written
MARGIN = 0.1  # s: a slower line meets the old one this long after it is written
RATE_MIN, RATE_MAX = 0.01, 100.0
OFFSET_MAX = 365 * 86400.0  # s

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ns|us|ms|s|m|h|d)")


class ClockError(HarnessError, ValueError):
    """A clock fault that cannot be: a bad rate or duration."""


def parse_duration(text: str) -> float:
    """``"5s"``, ``"-200ms"``, ``"+1.5s"``, ``"2m"`` -> seconds. A unit is required (ns, us, ms, s,
    m, h, d); ``"0"`` alone is 0."""
    t = text.strip()
    if t in ("0", "+0", "-0"):
        return 0.0
    m = _DURATION.fullmatch(t)
    if m is None:
        raise ClockError(f"expected a duration with a unit like 5s, -200ms or 1.5s, got {text!r}")
    return check_offset(float(m.group(1)) * _UNITS[m.group(2)], text)


def check_offset(seconds: float, text: str | None = None) -> float:
    """``seconds`` when it is a usable clock jump (finite, at most a year either way)."""
    if not math.isfinite(seconds) or abs(seconds) > OFFSET_MAX:
        raise ClockError(f"an offset of at most a year either way, got {text if text is not None else seconds!r}")
    return float(seconds)


def parse_rate(text: str | float) -> float:
    """A clock rate: ``2`` runs twice as fast as real time, ``0.5`` half as fast."""
    try:
        rate = float(text)
    except (TypeError, ValueError):
        raise ClockError(f"expected a rate like 2.0 or 0.5, got {text!r}") from None
    if not math.isfinite(rate) or not RATE_MIN <= rate <= RATE_MAX:
        raise ClockError(f"a rate must be between {RATE_MIN:g} and {RATE_MAX:g} (1 is real time), got {text}")
    return rate


def format_duration(seconds: float) -> str:
    """``+1.500 s``, ``-0.200 s``."""
    return f"{seconds:+.3f} s"


@dataclass(frozen=True)
class ClockLine:
    """``fake(t) = t + offset + (rate - 1) * (t - start)`` (see the module docstring); times in seconds
    of CLOCK_MONOTONIC (``time.monotonic()``, the same in every process of the machine)."""

    start: float
    offset: float = 0.0
    rate: float = 1.0

    def skew(self, t: float) -> float:
        """How far ahead of the real clock (negative: behind) the process's clock is at real time ``t``."""
        return self.offset + (self.rate - 1.0) * (t - self.start)

    def fake(self, t: float) -> float:
        """The process's clock at real time ``t`` (in the real clock's frame)."""
        return t + self.skew(t)

    @property
    def real(self) -> bool:
        return self.rate == 1.0 and self.offset == 0.0

    def spec(self) -> str:
        """The control file's line for libfaketime: ``"+OFFSET xRATE"`` in seconds. Fixed-point
        only: libfaketime reads ``m``, ``h``, ``d`` or ``y`` anywhere in it as a unit, ``i`` as a mode."""
        return f"{self.offset:+.6f} x{self.rate:.6f}"

    def with_rate(self, rate: float, now: float, *, lead: float = LEAD, margin: float = MARGIN) -> ClockLine:
        """The line that runs at ``rate`` from now on, meeting this one where a pickup cannot step back."""
        if rate == self.rate:
            return self
        pivot = now - lead if rate > self.rate else now + margin
        return ClockLine(self.start, self.skew(pivot) - (rate - 1.0) * (pivot - self.start), rate)

    def jumped(self, seconds: float) -> ClockLine:
        """The line ``seconds`` ahead of this one (behind, when negative)."""
        return replace(self, offset=self.offset + seconds)

    def reset(self, now: float, *, margin: float = MARGIN) -> ClockLine:
        """The real rate again, from where the clock is (the offset gathered so far stays)."""
        return self.with_rate(1.0, now, margin=margin)

    def respawned(self, now: float, *, keep: bool) -> ClockLine:
        """The line of a new process of the node started about ``now``: the same rate and where the
        clock was (``keep``: a fault is still on), or the real time again."""
        return ClockLine(now, self.skew(now), self.rate) if keep else ClockLine(now)

    def describe(self, now: float) -> str:
        rate = "real rate" if self.rate == 1.0 else f"rate {self.rate:g}x"
        return f"{rate}, {format_duration(self.skew(now))} from real time"

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "offset": self.offset, "rate": self.rate}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClockLine:
        return cls(float(d["start"]), float(d.get("offset", 0.0)), float(d.get("rate", 1.0)))
