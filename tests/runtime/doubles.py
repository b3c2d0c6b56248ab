"""In-memory doubles for the runtime's Protocols, and a test bed that builds a real
``Runtime`` from them.

Everything runs on one asyncio loop with no threads (except the snapshot
serializer, which the runtime hands to a worker on purpose) and a manual
clock, so each test is deterministic and takes milliseconds. The doubles
write one shared event log: when a save began and returned, what was applied
and how far the log was durable then, and which message left when together
with the hard state that was durable at that instant. ``check_ordering`` reads
that log and enforces the runtime's durability rules independently of the
code under test.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.config import Config
from node.raft import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    HardState,
    Index,
    Member,
    Membership,
    Message,
    NodeId,
    Ready,
    RequestVote,
    RequestVoteReply,
    Role,
    SnapshotMeta,
    Term,
)
from node.runtime import Runtime
from node.statemachine import Image, KVStateMachine, Result
from node.storage import MemoryStorage

# ---------------------------------------------------------------------- clock


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[_Timer] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, fn: Callable[[], None]) -> _Timer:
        t = _Timer(self.now + delay, next(self._seq), fn)
        heapq.heappush(self._heap, t)
        return t

    def advance(self, dt: float) -> None:
        target = self.now + dt
        while self._heap and self._heap[0].when <= target + 1e-12:
            t = heapq.heappop(self._heap)
            self.now = max(self.now, t.when)
            if not t.cancelled:
                t.fn()
        self.now = target


# ---------------------------------------------------------------------- event log


@dataclass(frozen=True)
class SaveBegin:
    rd: Ready


@dataclass(frozen=True)
class SaveEnd:
    rd: Ready


@dataclass(frozen=True)
class Applied:
    entries: tuple[Entry, ...]
    durable_last: Index  # the last index durable in the stored log at that instant


@dataclass(frozen=True)
class Sent:
    msg: Message
    durable: HardState  # the hard state durable at the instant the message left


Event = SaveBegin | SaveEnd | Applied | Sent


class Gate:
    """A door a storage call waits at while the test holds it shut."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    @property
    def held(self) -> bool:
        return not self._open.is_set()

    async def passing(self) -> None:
        await self._open.wait()


class HeldStorage:
    """The runtime's Storage over a MemoryStorage; ``save`` (and the snapshot calls) can be held open."""

    def __init__(self, store: MemoryStorage, fsm: KVStateMachine, events: list[Event]) -> None:
        self.store = store
        self.fsm = fsm
        self.events = events
        self.save_gate = Gate()
        self.snapshot_gate = Gate()
        self.saves_in_flight = 0

    def durable_last(self) -> Index:
        return Index(max(self.store.log, default=self.store.snap.meta.index))

    async def save(self, rd: Ready) -> list[Result | None]:
        self.events.append(SaveBegin(rd))
        self.saves_in_flight += 1
        try:
            await self.save_gate.passing()
            # entries and hard state first, then the committed entries, as SQLite does in one transaction
            results = self.store.save(rd, self.fsm)
        finally:
            self.saves_in_flight -= 1
        if rd.committed:
            self.events.append(Applied(rd.committed, self.durable_last()))
        self.events.append(SaveEnd(rd))
        return results

    async def apply(self, committed: tuple[Entry, ...]) -> list[Result | None]:
        self.events.append(Applied(committed, self.durable_last()))
        return self.store.apply(committed, self.fsm)

    async def capture(self) -> Image:
        return self.fsm.capture()

    async def save_snapshot(self, meta: SnapshotMeta, data: bytes, keep_from: int | None = None) -> None:
        await self.snapshot_gate.passing()
        self.store.save_snapshot(meta, data, keep_from)

    async def set_cluster_id(self, cluster_id: str) -> None:
        self.store.set_cluster_id(cluster_id)

    def snapshot(self) -> Any:
        return self.store.snapshot()

    @property
    def incarnation(self) -> str | None:
        return self.store.incarnation

    def peer_incarnation(self, peer: str) -> str | None:
        return self.store.peer_incarnation(peer)

    async def record_peer(self, peer: str, incarnation: str | None, replace: bool = False) -> str | None:
        return self.store.record_peer(peer, incarnation, replace)

    async def close(self) -> None:
        pass


class RecordingTransport:
    """Records each message with the instant it left and what was durable then."""

    def __init__(self, storage: HeldStorage, events: list[Event]) -> None:
        self.storage = storage
        self.events = events
        self.out: list[Message] = []  # sent and not yet taken by the test
        self.lazy: list[Message] = []  # sent with leave to wait for the next message (commit notices)
        self.sent = 0
        self.dropped = 0
        self.refused_by: dict[str, str] = {}
        self.writes_later = False  # True: messages leave on the loop's next turn, not in send_all

    async def start(self) -> None:
        pass

    def send_all(self, msgs: Sequence[Message], lazy: bool = False) -> None:
        if lazy:
            self.lazy.extend(msgs)
        if self.writes_later:
            # as PeerTransport does: a sender task writes them, once the loop lets it run
            asyncio.get_running_loop().call_soon(self._write, msgs)
        else:
            self._write(msgs)

    def _write(self, msgs: Sequence[Message]) -> None:
        for m in msgs:
            self.out.append(m)
            self.sent += 1
            self.events.append(Sent(m, self.storage.store.hard_state))

    async def close(self) -> None:
        pass

    def take(self, kind: type, **match: Any) -> list[Any]:
        """Sent messages of ``kind`` whose fields equal ``match``, removed from the record."""
        got = [m for m in self.out if isinstance(m, kind) and all(getattr(m, k) == v for k, v in match.items())]
        self.out = [m for m in self.out if not any(m is g for g in got)]
        return got


# ---------------------------------------------------------------------- the rules


def check_ordering(events: Sequence[Event]) -> None:
    """The runtime's durability rules, checked from the event log alone.

    1. A message of a Ready that writes something leaves only after that write returned,
       except a leader's AppendEntries that the core marked early (§10.2.1), and those only
       while the leader's term and vote are durable.
    2. Applying never passes the index durable in the log.
    3. Every message of a saved Ready leaves exactly once.
    """
    sent_at: dict[int, tuple[int, Sent]] = {}
    for pos, ev in enumerate(events):
        if isinstance(ev, Sent):
            assert id(ev.msg) not in sent_at, f"{ev.msg} sent twice"
            sent_at[id(ev.msg)] = (pos, ev)
        elif isinstance(ev, Applied):
            assert ev.entries[-1].index <= ev.durable_last, (
                f"applied up to {ev.entries[-1].index} while the log was durable only to {ev.durable_last}")
    ends = {id(ev.rd): pos for pos, ev in enumerate(events) if isinstance(ev, SaveEnd)}
    for ev in events:
        if not isinstance(ev, SaveBegin):
            continue
        rd = ev.rd
        end = ends.get(id(rd))
        for m in rd.messages:
            where = sent_at.get(id(m))
            if end is None:
                assert where is None or (isinstance(m, AppendEntries) and rd.appends_early), (
                    f"{type(m).__name__} left although the write of its Ready never returned")
                continue
            assert where is not None, f"{type(m).__name__} to {m.dst} never left"
            pos, sent = where
            if pos > end:
                continue
            assert isinstance(m, AppendEntries) and rd.appends_early, (
                f"{type(m).__name__} to {m.dst} left before the write that covers it returned")
            assert sent.durable.term == m.term, (
                f"early AppendEntries of term {m.term} while term {sent.durable.term} was durable")
            if rd.hard_state is not None:
                hs = rd.hard_state
                assert (hs.term, hs.voted_for) == (sent.durable.term, sent.durable.voted_for), (
                    "early AppendEntries before the term and vote were durable")


# ---------------------------------------------------------------------- the bed


def config(node: str = "n1", snapshot_every: int = 0, request_timeout_s: float = 5.0) -> Config:
    return Config(id=node, host="127.0.0.1", port=7000, data_dir=Path("/nonexistent/raftnet-bed"),
                  snapshot_every=snapshot_every, request_timeout_s=request_timeout_s)


class Bed:
    """A Runtime built from the doubles, for node ``n1`` of ``voters`` (+ ``learners``)."""

    def __init__(self, voters: Sequence[str] = ("n1", "n2", "n3"), learners: Sequence[str] = (),
                 *, snapshot_every: int = 0, request_timeout_s: float = 5.0, seed: int = 1) -> None:
        self.events: list[Event] = []
        self.clock = ManualClock()
        self.fsm = KVStateMachine()
        self.store = MemoryStorage()
        # every member's incarnation is in the configuration already: the leader adopts none
        members = [Member(NodeId(v), f"{v}:7000", incarnation=f"inc{v}") for v in voters]
        members += [Member(NodeId(v), f"{v}:7000", voter=False, incarnation=f"inc{v}") for v in learners]
        self.store.bootstrap("n1", "bed", Membership.of(members))
        self.store.incarnation = "incn1"
        state = self.store.load(self.fsm)
        self.storage = HeldStorage(self.store, self.fsm, self.events)
        self.transport = RecordingTransport(self.storage, self.events)
        self.cfg = config(snapshot_every=snapshot_every, request_timeout_s=request_timeout_s)
        self.rt = Runtime(self.cfg, self.storage, self.fsm, state, transport=self.transport,
                          clock=self.clock, rng=random.Random(seed))
        self.core = self.rt.core

    async def __aenter__(self) -> Bed:
        await self.rt.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.storage.save_gate.release()
        self.storage.snapshot_gate.release()
        await self.rt.stop()
        check_ordering(self.events)

    # -------------------------------------------------------------- driving
    async def settle(self, rounds: int = 30) -> None:
        """Let the drive loop run until it waits (for a held save, or for work)."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def until(self, cond: Callable[[], bool], what: str, rounds: int = 2_000) -> None:
        """Poll ``cond`` with a bound (the snapshot serializer runs in a real thread)."""
        for _ in range(rounds):
            if cond():
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"timed out waiting for {what}")

    async def run_ticks(self, n: int) -> None:
        """Advance the clock ``n`` ticks, letting the loop run after each."""
        for _ in range(n):
            self.clock.advance(self.cfg.tick_s)
            await self.settle(5)

    async def outcome(self, fut: asyncio.Future[Any], what: str) -> Any:
        """The result of ``fut``, which must be done once the loop settled (never hang a test)."""
        await self.settle()
        assert fut.done(), f"{what}: still waiting"
        return fut.result()

    def deliver(self, *msgs: Message) -> None:
        self.rt.deliver(list(msgs))

    def now_ticks(self, ms: float) -> int:
        return round(ms / 1000 / self.cfg.tick_s)

    async def elect(self) -> None:
        """Make n1 the leader: time out, win the pre-vote, win the vote."""
        for _ in range(200):
            await self.run_ticks(1)
            pre = self.transport.take(RequestVote, pre_vote=True)
            if pre:
                break
        else:
            raise AssertionError("n1 never started a pre-vote")
        self.deliver(*[RequestVoteReply(m.term, m.dst, m.src, True, pre_vote=True) for m in pre])
        await self.settle()
        votes = self.transport.take(RequestVote, pre_vote=False)
        assert votes, "no RequestVote after a won pre-vote"
        self.deliver(*[RequestVoteReply(m.term, m.dst, m.src, True) for m in votes])
        await self.settle()
        assert self.core.role is Role.LEADER

    def ack(self, *peers: str) -> None:
        """Each peer in ``peers`` accepts every AppendEntries sent to it so far."""
        for m in list(self.transport.out):
            if isinstance(m, AppendEntries) and m.dst in peers:
                self.transport.out.remove(m)
                self.deliver(AppendEntriesReply(m.term, m.dst, m.src, True,
                                                Index(m.prev_index + len(m.entries)), seq=m.seq))

    async def elect_and_commit(self) -> None:
        """Leader with its no-op committed on n2 and n3."""
        await self.elect()
        await self.settle()
        self.ack("n2", "n3")
        await self.settle()
        assert self.core.commit >= 1 and self.fsm.applied >= 1


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def entry(index: int, term: int, data: str = "") -> Entry:
    from node.raft import EntryKind
    return Entry(Index(index), Term(term), EntryKind.NOOP if not data else EntryKind.NORMAL, data)


def put(key: str, value: str) -> str:
    import json
    return json.dumps({"op": "put", "key": key, "value": value})
