"""Helpers for the pure core tests: build cores, drive them like the runtime
does, and a scripted network in which nothing moves unless the test says so.

``drain(core)`` plays the driver for one Ready: persisting is implicit (the
core keeps its log in memory and only needs ``advance``), messages are
returned to the caller instead of being sent. ``Net`` queues every message a
drained core emits; the test then delivers all of them, only some, or drops
them, so each scenario of the paper is scripted exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from node.raft import (
    AppendEntries,
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    Index,
    InitialState,
    Member,
    Membership,
    Message,
    NodeId,
    Progress,
    RaftCore,
    Ready,
    Role,
    SnapshotMeta,
    Term,
)

ELECTION_MIN, ELECTION_MAX = 10, 20
HEARTBEAT = 2
CFG = CoreConfig(election_ticks=(ELECTION_MIN, ELECTION_MAX), heartbeat_ticks=HEARTBEAT)
CLASSIC = replace(CFG, pre_vote=False, check_quorum=False)  # Raft exactly as in the paper's §5

EMPTY = Ready(hard_state=None, entries=(), snapshot=None, messages=(), committed=(), reads=())

M = TypeVar("M")


def nid(name: str) -> NodeId:
    return NodeId(name)


def membership(voters: Iterable[str], learners: Iterable[str] = ()) -> Membership:
    members = [Member(nid(v), f"addr-{v}") for v in voters]
    members += [Member(nid(v), f"addr-{v}", voter=False) for v in learners]
    return Membership.of(members)


def log_of(*terms: int, start: int = 1) -> tuple[Entry, ...]:
    """Entries with the given terms at indexes start, start+1, ... (Figure 7 notation)."""
    return tuple(Entry(Index(start + i), Term(t), EntryKind.NORMAL, f"x{start + i}") for i, t in enumerate(terms))


def make_core(
    node_id: str,
    voters: Sequence[str] = ("n1", "n2", "n3"),
    *,
    learners: Sequence[str] = (),
    seed: int = 0,
    config: CoreConfig | None = None,
    term: int = 0,
    voted_for: str | None = None,
    commit: int = 0,
    log: Sequence[Entry] = (),
    snapshot: SnapshotMeta | None = None,
    applied: int = 0,
) -> RaftCore:
    """A core as storage would hand it over at start-up (everything given is durable)."""
    snap = snapshot or SnapshotMeta(Index(0), Term(0), membership(voters, learners))
    state = InitialState(
        HardState(Term(term), nid(voted_for) if voted_for else None, Index(commit)),
        snap,
        tuple(log),
        Index(applied),
    )
    return RaftCore(nid(node_id), state, config or CFG, random.Random(seed))


def restart(core: RaftCore) -> RaftCore:
    """A new core built from what ``core`` made durable (call after ``drain``)."""
    assert not core.has_ready(), "restart only a drained core"
    log = core.log
    meta = SnapshotMeta(log.snapshot_index, log.snapshot_term, log.snapshot_membership)
    state = InitialState(core.hard_state(), meta, tuple(log.entries), core.applied)
    return RaftCore(core.id, state, core.cfg, random.Random(0))


def _take(core: RaftCore) -> Ready | None:
    """``core.ready()`` and ``advance``, checking what every driver relies on."""
    announced = core.has_ready()
    rd = core.ready()
    assert rd is None or announced, f"{core.id}: ready() had output but has_ready() said no: {rd}"
    if rd is not None:
        core.advance(rd)
    # Invariant: applied <= commit <= last_index
    assert core.applied <= core.commit <= core.last_index, f"{core.id}: index order broken"
    return rd


def drain(core: RaftCore) -> Ready:
    """Take one Ready and advance it as the driver would; EMPTY when there is none."""
    return _take(core) or EMPTY


def drain_all(core: RaftCore, limit: int = 100) -> list[Ready]:
    """Drain until the core has nothing more to say (advance may produce more)."""
    out: list[Ready] = []
    for _ in range(limit):
        rd = _take(core)
        if rd is None:
            return out
        out.append(rd)
    raise AssertionError(f"{core.id} still has a Ready after {limit} rounds")


def tick_until(core: RaftCore, pred: Callable[[RaftCore], bool], limit: int) -> int:
    """Tick until ``pred(core)``; returns the number of ticks; fails after ``limit``."""
    for n in range(1, limit + 1):
        core.tick()
        if pred(core):
            return n
    raise AssertionError(f"{core.id}: condition not reached within {limit} ticks")


def progress_of(core: RaftCore, peer: str) -> Progress:
    pr = core.progress(nid(peer))
    assert pr is not None, f"{core.id} does not track {peer}"
    return pr


def of_type(messages: Iterable[object], kind: type[M]) -> list[M]:
    return [m for m in messages if isinstance(m, kind)]


def committed_data(readies: Iterable[Ready]) -> list[str]:
    return [e.data for rd in readies for e in rd.committed if e.kind is EntryKind.NORMAL]


# ---------------------------------------------------------------- predicates
Pred = Callable[[Message], bool]


def every(_: Message) -> bool:
    return True


def to(*names: str) -> Pred:
    return lambda m: m.dst in names


def frm(*names: str) -> Pred:
    return lambda m: m.src in names


def between(*names: str) -> Pred:
    """Messages whose both ends are inside ``names``."""
    return lambda m: m.src in names and m.dst in names


def kind(*types: type) -> Pred:
    return lambda m: isinstance(m, types)


def both(*preds: Pred) -> Pred:
    return lambda m: all(p(m) for p in preds)


def appends_carrying(index: int) -> Pred:
    """AppendEntries that carry the entry at ``index``."""
    return lambda m: isinstance(m, AppendEntries) and any(e.index == index for e in m.entries)


# ---------------------------------------------------------------- network
class Net:
    """A manual network between cores. Messages leave a core only when it is
    flushed (its Ready drained, hence persisted) and arrive only when delivered.
    A node in ``down`` neither ticks nor flushes, and messages to it vanish."""

    def __init__(self, cores: Mapping[str, RaftCore]) -> None:
        self.cores: dict[str, RaftCore] = dict(cores)
        self.queue: list[Message] = []
        self.down: set[str] = set()
        self.readies: dict[str, list[Ready]] = {n: [] for n in self.cores}

    def __getitem__(self, name: str) -> RaftCore:
        return self.cores[name]

    def live(self, only: Sequence[str] = ()) -> list[str]:
        return [n for n in (only or sorted(self.cores)) if n not in self.down]

    def flush(self, *only: str) -> list[Message]:
        """Drain the given (default: all live) cores; queue and return what they send."""
        out: list[Message] = []
        for n in self.live(only):
            for rd in drain_all(self.cores[n]):
                self.readies[n].append(rd)
                out.extend(rd.messages)
        self.queue.extend(out)
        return out

    def deliver(self, pred: Pred = every) -> list[Message]:
        """Step every queued message matching ``pred`` (in send order) into its destination."""
        chosen = [m for m in self.queue if pred(m)]
        self.queue = [m for m in self.queue if not pred(m)]
        for m in chosen:
            if m.dst not in self.down and m.dst in self.cores:
                self.cores[m.dst].step(m)
        return chosen

    def drop(self, pred: Pred = every) -> list[Message]:
        chosen = [m for m in self.queue if pred(m)]
        self.queue = [m for m in self.queue if not pred(m)]
        return chosen

    def pending(self, pred: Pred = every) -> list[Message]:
        return [m for m in self.queue if pred(m)]

    def tick(self, *only: str, n: int = 1) -> None:
        for _ in range(n):
            for name in self.live(only):
                self.cores[name].tick()

    def settle(self, pred: Pred = every, limit: int = 100) -> int:
        """Flush and deliver (messages matching ``pred``; the rest are dropped)
        until the network is quiet; returns the number of rounds."""
        for rounds in range(1, limit + 1):
            self.flush()
            if not self.queue:
                return rounds
            self.deliver(pred)
            self.drop()
        raise AssertionError(f"network not quiet after {limit} rounds")

    def crash(self, name: str) -> None:
        self.flush(name)  # what it persisted is on disk; what it sent is in flight
        self.down.add(name)

    def restart(self, name: str) -> None:
        self.down.discard(name)
        self.cores[name] = restart(self.cores[name])

    def leader(self) -> str | None:
        leaders = [n for n in self.live() if self.cores[n].role is Role.LEADER]
        assert len(leaders) <= 1 or len({self.cores[n].term for n in leaders}) == len(leaders)
        return max(leaders, key=lambda n: self.cores[n].term) if leaders else None

    def committed(self, name: str) -> list[str]:
        return committed_data(self.readies[name])


def cluster(
    voters: Sequence[str] = ("n1", "n2", "n3"),
    *,
    learners: Sequence[str] = (),
    config: CoreConfig | None = None,
    seed: int = 0,
) -> Net:
    cores = {
        n: make_core(n, voters, learners=learners, config=config, seed=seed + i)
        for i, n in enumerate([*voters, *learners])
    }
    return Net(cores)


def elect(net: Net, name: str, limit: int = 100) -> RaftCore:
    """Make ``name`` time out first and win; deliver everything until the
    cluster is quiet, so the no-op of the new term is committed everywhere."""
    core = net[name]
    tick_until(core, lambda c: c.role is not Role.FOLLOWER, limit=limit)
    net.settle()
    assert core.role is Role.LEADER, f"{name} did not win: {core.role}"
    # one heartbeat round so that followers learn the commit index of the no-op
    net.tick(name, n=HEARTBEAT)
    net.settle()
    return core


def leader_cluster(
    voters: Sequence[str] = ("n1", "n2", "n3"),
    *,
    learners: Sequence[str] = (),
    config: CoreConfig | None = None,
    leader: str = "n1",
) -> Net:
    """A quiet cluster in which ``leader`` leads term 1 and everyone applied its no-op."""
    net = cluster(voters, learners=learners, config=config)
    elect(net, leader)
    return net
