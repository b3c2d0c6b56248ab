"""The nemesis interpreter: carries out a planned ``Fault`` (harness/model/nemesis.py) on a cluster,
resolving symbolic targets (the leader, a follower) at run time, and ends it again."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.model.nemesis import (
    CLOCK_SHAPES,
    KINDS,
    PARTITION_SHAPES,
    SLOW_SHAPES,
    Fault,
    Kind,
    NemesisError,
    Shape,
    _fmt,
    parse_kinds,
    ring_groups,
    schedule,
    unsupported,
)

__all__ = ["CLOCK_SHAPES", "KINDS", "PARTITION_SHAPES", "SLOW_SHAPES", "Applied", "Fault", "Kind", "NemesisError",
           "Shape", "Target", "apply", "parse_kinds", "ring_groups", "schedule", "undo", "unsupported"]


class Target(Protocol):
    """What the interpreter needs from a cluster."""

    @property
    def knows_leader(self) -> bool: ...
    def members(self) -> list[str]: ...
    def leader(self, timeout: float = ...) -> str: ...
    def partition(self, *groups: Sequence[str]) -> None: ...
    def isolate(self, node: str) -> None: ...
    def bridge(self, node: str) -> None: ...
    def cut(self, src: str, dst: str) -> None: ...
    def ring(self, reach: dict[str, set[str]]) -> None: ...
    def loss(self, node: str, percent: int) -> None: ...
    def slow(self, node: str, delay_ms: int, jitter_ms: int = ...) -> None: ...
    def duplicate(self, node: str, percent: int) -> None: ...
    def reorder(self, node: str, percent: int) -> None: ...
    def heal(self) -> None: ...
    def kill(self, node: str) -> None: ...
    def restart(self, node: str) -> None: ...
    def pause(self, node: str) -> None: ...
    def resume(self, node: str) -> None: ...
    def remove(self, node: str) -> None: ...
    def add(self) -> str: ...
    def power_cut(self, node: str) -> None: ...
    def power_cut_all(self) -> None: ...
    def start_all(self) -> None: ...
    def clock_rate(self, node: str, rate: float) -> None: ...
    def clock_offset(self, node: str, seconds: float) -> None: ...
    def clock_reset(self, node: str) -> None: ...


@dataclass
class Applied:
    """A fault as carried out, with the concrete targets; ``undo`` ends it."""

    fault: Fault
    text: str
    undo: list[tuple[str, tuple[Any, ...]]]


def apply(target: Target, fault: Fault) -> Applied:
    """Start ``fault`` on ``target``; return how to end it."""
    members = target.members()
    p = fault.params
    s = fault.shape

    def pick(node: str) -> str:
        if node in ("leader", "follower") and not target.knows_leader:  # a black box: any node
            return random.Random(fault.at).choice(members)
        if node in ("leader",):
            return target.leader(timeout=10.0)
        if node == "follower":
            ld = target.leader(timeout=10.0)
            others = [m for m in members if m != ld]
            return random.Random(fault.at).choice(others)
        return node if node in members else random.Random(fault.at).choice(members)

    if s == "halves":
        groups = [[n for n in g if n in members] for g in p["groups"]]
        placed = {n for g in groups for n in g}
        groups[-1] += [m for m in members if m not in placed]
        target.partition(*[g for g in groups if g])
        return Applied(fault, f"partition {_fmt(groups)}", [("heal", ())])
    if s == "isolate-leader":
        ld = pick("leader")
        target.isolate(ld)
        return Applied(fault, f"isolate leader {ld}", [("heal", ())])
    if s == "majority-ring":
        target.ring(ring_groups(members))
        return Applied(fault, "majority ring", [("heal", ())])
    if s == "bridge":
        n = pick(p["node"])
        target.bridge(n)
        return Applied(fault, f"bridge {n}", [("heal", ())])
    if s == "one-way":
        a, b = pick(p["src"]), pick(p["dst"])
        if a == b:
            b = next(m for m in members if m != a)
        target.cut(a, b)
        return Applied(fault, f"cut {a} -> {b}", [("heal", ())])
    if s == "loss":
        n = pick(p["node"])
        target.loss(n, int(p["percent"]))
        return Applied(fault, f"loss {n} {p['percent']}%", [("heal", ())])
    if s == "slow":
        n = pick(p["node"])
        delay, jitter = int(p["delay_ms"]), int(p.get("jitter_ms", 0))
        target.slow(n, delay, jitter)
        return Applied(fault, f"slow {n} {delay}ms" + (f" jitter {jitter}ms" if jitter else ""), [("heal", ())])
    if s == "duplicate":
        n = pick(p["node"])
        target.duplicate(n, int(p["percent"]))
        return Applied(fault, f"duplicate {n} {p['percent']}%", [("heal", ())])
    if s == "reorder":
        n = pick(p["node"])
        target.reorder(n, int(p["percent"]))
        return Applied(fault, f"reorder {n} {p['percent']}%", [("heal", ())])
    if s in ("kill", "kill-leader"):
        n = pick(p.get("node", "leader"))
        target.kill(n)
        return Applied(fault, f"kill {n}", [("restart", (n,))])
    if s in ("pause", "pause-leader"):
        n = pick(p.get("node", "leader"))
        target.pause(n)
        return Applied(fault, f"pause {n}", [("resume", (n,))])
    if s in ("power-cut", "power-cut-leader"):
        n = pick(p.get("node", "leader"))
        target.power_cut(n)
        return Applied(fault, f"power cut {n}", [("restart", (n,))])
    if s == "power-cut-all":
        target.power_cut_all()
        return Applied(fault, "power cut all", [("start_all", ())])
    if s in ("clock-fast", "clock-slow"):
        n = pick(p["node"])
        target.clock_rate(n, float(p["rate"]))
        return Applied(fault, f"clock {n} rate {float(p['rate']):g}x", [("clock_reset", (n,))])
    if s == "clock-jump":
        n = pick(p["node"])
        target.clock_offset(n, float(p["offset"]))
        return Applied(fault, f"clock {n} jump {float(p['offset']):+g} s", [("clock_reset", (n,))])
    if s == "remove-add":
        n = pick("follower")
        target.remove(n)
        return Applied(fault, f"remove {n}", [("add", ())])
    raise NemesisError(f"unknown fault shape {s!r}")


def undo(target: Target, applied: Applied) -> str:
    """End a fault; returns a description (``add`` reports the new member's id)."""
    said = []
    for name, args in applied.undo:
        result = getattr(target, name)(*args)
        said.append(f"{name} {' '.join(map(str, args))}".strip() + (f" -> {result}" if result else ""))
    return "; ".join(said)
