"""The nemesis schedule (pure; its interpreter is harness/orchestration/nemesis.py).

``schedule(seed, duration, kinds, nodes)`` returns the same list of
``Fault``s for the same arguments: when each fault starts, how long it
lasts, and its parameters. Targets that only exist at run time (the current
leader) are named symbolically (``"leader"``) and resolved by the
interpreter, which logs what it actually did. Faults never overlap: each is
followed by a quiet period in which the cluster heals and recovers.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError


class Kind(enum.StrEnum):
    PARTITION = "partition"
    KILL = "kill"
    PAUSE = "pause"
    LOSS = "loss"
    MEMBERSHIP = "membership"
    POWER = "power"  # SIGKILL plus the loss of every unsynced write (harness/lab/powerfs.py); power=True
    CLOCK = "clock"  # a node's clock fast, slow or jumping (libfaketime, harness/lab/clock.py); clock=True
    SLOW = "slow"  # a node's peer traffic delayed with jitter, duplicated or reordered (harness/lab/slownet.py)


class Shape(enum.StrEnum):
    HALVES = "halves"
    ISOLATE_LEADER = "isolate-leader"
    MAJORITY_RING = "majority-ring"
    BRIDGE = "bridge"
    ONE_WAY = "one-way"
    KILL = "kill"
    KILL_LEADER = "kill-leader"
    PAUSE = "pause"
    PAUSE_LEADER = "pause-leader"
    LOSS = "loss"
    REMOVE_ADD = "remove-add"
    POWER_CUT = "power-cut"
    POWER_CUT_LEADER = "power-cut-leader"
    POWER_CUT_ALL = "power-cut-all"
    CLOCK_FAST = "clock-fast"
    CLOCK_SLOW = "clock-slow"
    CLOCK_JUMP = "clock-jump"
    SLOW = "slow"
    DUPLICATE = "duplicate"
    REORDER = "reorder"


KINDS: tuple[Kind, ...] = tuple(Kind)
PARTITION_SHAPES = (Shape.HALVES, Shape.ISOLATE_LEADER, Shape.MAJORITY_RING, Shape.BRIDGE, Shape.ONE_WAY)
CLOCK_SHAPES = (Shape.CLOCK_FAST, Shape.CLOCK_SLOW, Shape.CLOCK_JUMP)
CLOCK_FAST_RATES = (2.0, 3.0, 5.0)  # a fast follower times out first: it tends to take the lead
CLOCK_SLOW_RATES = (0.2, 0.5)  # a slow leader's heartbeats come late: followers may depose it
CLOCK_JUMPS = (-0.5, 2.0, 10.0)  # s; a jump back is a pause of its timers, a jump ahead fires them at once
SLOW_SHAPES = (Shape.SLOW, Shape.DUPLICATE, Shape.REORDER)


class NemesisError(HarnessError, ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the start of the run
    duration: float
    kind: Kind
    shape: Shape
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        args = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.shape}{' ' + args if args else ''}"


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        if v and isinstance(v[0], (list, tuple)):
            return "|".join(",".join(g) for g in v)
        return ",".join(str(x) for x in v)
    return str(v)


def unsupported(system: Any, kinds: Sequence[str]) -> dict[str, str]:
    """The kinds in ``kinds`` that ``system`` cannot undergo, each with the reason (one line)."""
    from harness.systems.base import Feature

    out = {}
    feats: frozenset[Feature] = getattr(system, "features", frozenset())
    if "membership" in kinds and Feature.MEMBERSHIP not in feats:
        out["membership"] = f"{system.name} has no membership hooks (add_member / remove_member)"
    if "power" in kinds and Feature.POWER not in feats:
        out["power"] = f"{system.name} does not run on a powerfs disk"
    if "clock" in kinds and Feature.CLOCK not in feats:
        out["clock"] = (f"libfaketime cannot reach {system.name}'s clock (a Go runtime such as etcd's reads it "
                        "without libc)")
    return out


def parse_kinds(text: str) -> tuple[str, ...]:
    """``"partition,kill"`` or ``"all"`` -> the kinds, validated."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise NemesisError("empty --nemesis")
    if "all" in parts:
        return KINDS
    bad = [p for p in parts if p not in KINDS]
    if bad:
        raise NemesisError(f"unknown nemesis {', '.join(bad)} (choose from {', '.join(KINDS)}, all)")
    return tuple(dict.fromkeys(Kind(p) for p in parts))


def schedule(
    seed: int,
    duration: float,
    kinds: Sequence[str],
    nodes: Sequence[str],
    *,
    fault_s: tuple[float, float] = (3.0, 8.0),
    quiet_s: tuple[float, float] = (2.0, 5.0),
) -> list[Fault]:
    """A deterministic fault plan filling ``duration`` seconds (the last quiet period included)."""
    if not kinds:
        return []
    for k in kinds:
        if k not in KINDS:
            raise NemesisError(f"unknown nemesis kind {k!r}")
    rng = random.Random(seed)
    nodes = sorted(nodes)
    out: list[Fault] = []
    t = rng.uniform(*quiet_s)
    while True:
        length = rng.uniform(*fault_s)
        if t + length + quiet_s[0] > duration:
            break
        kind = rng.choice(list(kinds))
        shape, params = _plan(rng, kind, nodes)
        out.append(Fault(round(t, 3), round(length, 3), Kind(kind), Shape(shape), params))
        t += length + rng.uniform(*quiet_s)
    return out


def _plan(rng: random.Random, kind: str, nodes: list[str]) -> tuple[str, dict[str, Any]]:
    if kind == "partition":
        shape = rng.choice(PARTITION_SHAPES)
        if shape == "halves":
            shuffled = nodes[:]
            rng.shuffle(shuffled)
            cut = len(shuffled) // 2
            return shape, {"groups": [sorted(shuffled[:cut]), sorted(shuffled[cut:])]}
        if shape == "bridge":
            return shape, {"node": rng.choice(nodes)}
        if shape == "one-way":
            a, b = rng.sample(nodes, 2)
            return shape, {"src": a, "dst": b}
        return shape, {}
    if kind == "kill":
        return ("kill-leader", {}) if rng.random() < 0.5 else ("kill", {"node": rng.choice(nodes)})
    if kind == "pause":
        return ("pause-leader", {}) if rng.random() < 0.5 else ("pause", {"node": rng.choice(nodes)})
    if kind == "loss":
        return "loss", {"node": rng.choice(nodes), "percent": rng.choice((20, 30, 40))}
    if kind == "membership":
        return "remove-add", {"node": "follower"}
    if kind == "power":
        r = rng.random()
        if r < 0.4:
            return "power-cut-all", {}
        return ("power-cut-leader", {}) if r < 0.7 else ("power-cut", {"node": rng.choice(nodes)})
    if kind == "clock":
        r = rng.random()
        if r < 0.4:
            return "clock-fast", {"node": rng.choice(nodes), "rate": rng.choice(CLOCK_FAST_RATES)}
        if r < 0.7:
            node = "leader" if rng.random() < 0.5 else rng.choice(nodes)
            return "clock-slow", {"node": node, "rate": rng.choice(CLOCK_SLOW_RATES)}
        return "clock-jump", {"node": rng.choice(nodes), "offset": rng.choice(CLOCK_JUMPS)}
    if kind == "slow":  # half the time the leader, whose heartbeats and appends then lag
        node = "leader" if rng.random() < 0.5 else rng.choice(nodes)
        shape = rng.choice(SLOW_SHAPES)
        if shape == "slow":
            delay = rng.choice((50, 100, 200))
            return shape, {"node": node, "delay_ms": delay, "jitter_ms": delay * rng.choice((0, 1, 2)) // 10}
        if shape == "duplicate":
            return shape, {"node": node, "percent": rng.choice((5, 10, 20))}
        return shape, {"node": node, "percent": rng.choice((10, 25, 50))}
    raise NemesisError(kind)


def ring_groups(nodes: Sequence[str]) -> dict[str, set[str]]:
    """Majority ring: each node hears its nearest neighbours, a bare majority, all different."""
    nodes = sorted(nodes)
    n = len(nodes)
    reach = n // 2  # neighbours on each side... trimmed to a majority including itself
    out: dict[str, set[str]] = {}
    for i, me in enumerate(nodes):
        seen = {me}
        d = 1
        while len(seen) < n // 2 + 1 and d <= reach:
            seen.add(nodes[(i + d) % n])
            if len(seen) < n // 2 + 1:
                seen.add(nodes[(i - d) % n])
            d += 1
        out[me] = seen
    return out


