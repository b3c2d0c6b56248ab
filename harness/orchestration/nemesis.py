"""The nemesis: a seeded schedule of faults (pure) and its interpreter.

``schedule(seed, duration, kinds, nodes)`` returns the same list of
``Fault``s for the same arguments: when each fault starts, how long it
lasts, and its parameters. Targets that only exist at run time (the current
leader) are named symbolically (``"leader"``) and resolved by the
interpreter, which logs what it actually did. Faults never overlap: each is
followed by a quiet period in which the cluster heals and recovers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

KINDS = ("partition", "kill", "pause", "loss", "membership", "power")
# power: a power cut (SIGKILL plus the loss of every unsynced write, harness/lab/powerfs.py) of
# one node or of the whole cluster; it needs a cluster started with power=True.
PARTITION_SHAPES = ("halves", "isolate-leader", "majority-ring", "bridge", "one-way")


class NemesisError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the start of the run
    duration: float
    kind: str  # one of KINDS
    shape: str  # e.g. "halves", "isolate-leader", "kill-leader", "loss"
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
    return tuple(dict.fromkeys(parts))


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
        out.append(Fault(round(t, 3), round(length, 3), kind, shape, params))
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
