"""Slow networks as values (pure): what a node's peer traffic suffers, how it
is written, which kernel mechanism carries it out, and the per-packet plan
of the userspace mechanism. The acting side is harness/lab/slownet.py.

A node's ``Shaping`` applies to the packets it sends to its peers (the
netem convention: an interface delays what leaves it), so every connection
between the node and a peer gets ``delay`` more round-trip time:

* delay D with jitter J: each packet waits a time drawn uniformly from
  [D - J, D + J] (netem's distribution when no table is given), so with
  jitter the packets also leave out of order, as through netem;
* duplicate P: P% of the packets leave twice, the copy with its own wait;
* reorder P: P% of the packets are sent at once, ahead of the others,
  which wait the delay (``REORDER_HOLD_MS`` when no delay is set): netem's
  ``delay D reorder P% gap 1``.

Mechanisms: ``NETEM`` (tc netem behind a prio qdisc, peer packets steered
to it by a firewall mark) when the kernel has netem, else ``NFQUEUE``: the
peer packets go to a netfilter queue whose userspace handler
(harness/lab/nfqueue.py) holds each for its ``Planner`` wait.
"""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError

REORDER_HOLD_MS = 10  # what the packets not picked by reorder wait when no delay is set (netem's usual example)
MAX_DELAY_MS = 10_000
LIMIT = 10_000  # packets held at once; more are dropped (netem's "limit")

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)\s*")


class ShapingError(HarnessError, ValueError):
    """A delay, jitter or percentage that does not make sense."""


class Mechanism(enum.StrEnum):
    NETEM = "netem"  # tc netem (sch_netem), where the kernel has it
    NFQUEUE = "nfqueue"  # netfilter queue + the userspace handler (harness/lab/nfqueue.py)


def parse_duration(text: str) -> int:
    """``"100ms"``, ``"1.5s"`` -> whole milliseconds (raises ShapingError)."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ShapingError(f"bad duration {text!r}: expected a number with ms or s, like 100ms or 1.5s")
    value = float(m.group(1)) * (1000 if m.group(2) == "s" else 1)
    if value != int(value):
        raise ShapingError(f"bad duration {text!r}: whole milliseconds only")
    return check_delay(int(value))


def format_ms(ms: int) -> str:
    return f"{ms}ms"


def check_delay(ms: int, what: str = "delay") -> int:
    if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= MAX_DELAY_MS:
        raise ShapingError(f"{what} must be 0..{MAX_DELAY_MS} ms, not {ms!r}")
    return ms


def check_percent(percent: int, what: str = "percent") -> int:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ShapingError(f"{what} must be an integer 0..100, not {percent!r}")
    return percent


@dataclass(frozen=True)
class Shaping:
    """What one node's outgoing peer packets suffer; all zero is nothing."""

    delay_ms: int = 0
    jitter_ms: int = 0
    duplicate: int = 0  # percent of packets sent twice
    reorder: int = 0  # percent of packets sent at once, ahead of the waiting ones

    def __post_init__(self) -> None:
        check_delay(self.delay_ms)
        check_delay(self.jitter_ms, "jitter")
        if self.jitter_ms > self.delay_ms:
            raise ShapingError(f"jitter {self.jitter_ms}ms exceeds the delay {self.delay_ms}ms")
        check_percent(self.duplicate, "duplicate percent")
        check_percent(self.reorder, "reorder percent")

    @property
    def active(self) -> bool:
        return bool(self.delay_ms or self.duplicate or self.reorder)

    @property
    def hold_ms(self) -> int:
        """The mean wait of a packet that reorder does not pick."""
        return self.delay_ms or (REORDER_HOLD_MS if self.reorder else 0)

    def describe(self, node: str) -> list[str]:
        """The faults as ``raftnet status`` lists them."""
        out = []
        if self.delay_ms:
            jitter = f" jitter {format_ms(self.jitter_ms)}" if self.jitter_ms else ""
            out.append(f"slow {node} {format_ms(self.delay_ms)}{jitter}")
        if self.duplicate:
            out.append(f"duplicate {node} {self.duplicate}%")
        if self.reorder:
            out.append(f"reorder {node} {self.reorder}%")
        return out

    def to_json(self) -> dict[str, int]:
        return {"delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms, "duplicate": self.duplicate,
                "reorder": self.reorder}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Shaping:
        return cls(int(d.get("delay_ms", 0)), int(d.get("jitter_ms", 0)), int(d.get("duplicate", 0)),
                   int(d.get("reorder", 0)))


def choose(forced: str | None, *, netem: bool, nfqueue: bool) -> Mechanism:
    """The mechanism: ``forced`` (e.g. $RAFTNET_SLOW) if it is available, else netem when the
    kernel has it, else the netfilter queue. Raises ShapingError when none can run."""
    have = {Mechanism.NETEM: netem, Mechanism.NFQUEUE: nfqueue}
    if forced:
        try:
            m = Mechanism(forced)
        except ValueError:
            raise ShapingError(f"unknown slow-network mechanism {forced!r} (choose from "
                               f"{', '.join(Mechanism)})") from None
        if not have[m]:
            raise ShapingError(f"slow-network mechanism {m} requested but this kernel or system lacks it")
        return m
    for m in (Mechanism.NETEM, Mechanism.NFQUEUE):
        if have[m]:
            return m
    raise ShapingError("slow networks need tc netem or the netfilter queue (nfnetlink_queue) with iptables")


class Planner:
    """When each packet leaves (the userspace mechanism): ``plan()`` gives the waits in seconds
    of one packet's copies, one or (duplicated) two, drawn as netem draws them."""

    def __init__(self, shaping: Shaping, rng: random.Random) -> None:
        self.shaping = shaping
        self.rng = rng

    def plan(self) -> tuple[float, ...]:
        s = self.shaping
        first = self._wait()
        if s.duplicate and self.rng.random() * 100 < s.duplicate:
            return first, self._wait()
        return (first,)

    def _wait(self) -> float:
        s = self.shaping
        if s.reorder and self.rng.random() * 100 < s.reorder:
            return 0.0
        ms = float(s.hold_ms)
        if s.jitter_ms:
            ms += self.rng.uniform(-s.jitter_ms, s.jitter_ms)
        return max(0.0, ms) / 1000.0
