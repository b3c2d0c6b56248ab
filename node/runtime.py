"""The driver: the only module that touches both the Raft core and I/O.

One asyncio task (``_drive``) owns the core. HTTP handlers never call the
core; they queue work (inbound messages, proposals, reads, admin calls) and
wait on futures. The loop drains the queue (inbound messages first, then the
tick backlog, capped), and handles each Ready in order: the messages the core
says are safe now (a leader's AppendEntries, §10.2.1), persist (one SQLite
transaction in a worker thread, fsync), the other messages, resolve waiters
and reads, advance. While a transaction is being fsynced the event loop keeps
accepting requests, which land in the next Ready: that is the group commit.
Snapshots are taken off the loop: the state is copied in the storage thread,
serialized in another, written, and the log compacted back in the loop.

Storage, transport, state machine and clock sit behind small Protocols
(``Storage`` in node/storage.py, ``Transport`` and ``Clock`` here,
``StateMachine`` in node/statemachine.py), so tests build a Runtime from
in-memory doubles and check the ordering rules deterministically.

Waiters are keyed by log index and remember the term of their proposal. An
entry applied at that index with the same term is our command: its result is
the answer. An entry with another term means ours can never commit: 503. No
answer in time: 504 (it may still commit).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from . import incarnation as inc
from . import metrics
from .config import Config
from .errors import (
    BadRequestError,
    IndeterminateError,
    MemberExistsError,
    NotFoundError,
    NotLeaderError,
    RaftnetError,
    StaleIncarnationError,
    UnavailableError,
)
from .raft import (
    Entry,
    EntryKind,
    Index,
    InitialState,
    Member,
    Membership,
    MembershipChangeError,
    Message,
    NodeId,
    ProposalDroppedError,
    RaftCore,
    Ready,
    Role,
    Term,
)
from .raft import NotLeaderError as CoreNotLeaderError
from .statemachine import KVStateMachine, Result, serialize_image
from .storage import LoadedState, Storage
from .transport import PeerTransport

log = logging.getLogger("raftnet.runtime")


def _quiet(fut: asyncio.Future[Any]) -> None:
    """Nobody awaits ``fut`` any more: retrieve its outcome so asyncio does not warn."""
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time as the runtime sees it (the event loop's clock; a manual one in tests)."""

    def time(self) -> float: ...
    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer: ...


class LoopClock:
    def time(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, fn)


class Transport(Protocol):
    """Fire-and-forget delivery of Raft messages to peers (PeerTransport; a recorder in tests)."""

    sent: int  # messages delivered, for /metrics
    dropped: int  # messages given up on
    refused_by: dict[str, str]  # peer -> why it refuses our batches (a wiped data dir: node/incarnation.py)

    async def start(self) -> None: ...
    def send_all(self, msgs: Sequence[Message], lazy: bool = False) -> None: ...
    async def close(self) -> None: ...


@dataclass
class _Waiter:
    term: Term
    future: asyncio.Future[Result | None]


@dataclass
class _Inbox:
    messages: list[Message] = field(default_factory=list)
    calls: list[Callable[[], None]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.messages or self.calls)


class JoinRefusedError(Exception):
    """The cluster refused to add this node for good; the process exits 2 with this reason."""


class Runtime:
    def __init__(
        self,
        config: Config,
        storage: Storage,
        fsm: KVStateMachine,
        state: LoadedState,
        *,
        transport: Transport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.fsm = fsm
        self.cluster_id: str | None = state.cluster_id
        self.core = RaftCore(
            NodeId(config.id),
            InitialState(state.hard_state, state.snapshot, state.entries, state.applied),
            config.core_config(),
            rng or random.Random(),
        )
        self.clock: Clock = clock or LoopClock()
        if transport is None:
            peers = PeerTransport(
                config.id, config.address, lambda: self.cluster_id, self._address_of, storage.snapshot,
                self._report_unreachable, config.secret, on_snapshot_failed=self._report_snapshot_failed,
            )
            peers.incarnation = storage.incarnation  # sent with every batch (node/incarnation.py)
            transport = peers
        self.transport: Transport = transport
        self._inbox = _Inbox()
        self._wake = asyncio.Event()
        self._tick_due = 0
        self._waiters: dict[int, _Waiter] = {}
        self._reads: dict[int, asyncio.Future[None]] = {}
        self._read_ctx = 0
        self._apply_waits: list[tuple[int, asyncio.Future[None]]] = []
        self._known_addresses: dict[str, str] = {m.id: m.address for m in self.core.membership.members}
        self._task: asyncio.Task[None] | None = None
        self._join_task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._ticker: Timer | None = None
        self._tick_s = config.tick_s
        self._tick_every = 1  # ticks per wake of the ticker (see _on_tick)
        self._stopping = False
        self._last_role = self.core.role
        self._last_term = self.core.term
        self._last_leader: NodeId | None = None
        self.fatal: BaseException | None = None
        self._member_ids = self.core.membership.ids
        self._background: set[asyncio.Task[Any]] = set()
        # adopting a member's incarnation into the configuration (node/incarnation.py): one at a time
        self._adopting: asyncio.Task[None] | None = None
        self._adopt_after = 0.0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.transport.start()
        self._ticker = self.clock.call_later(self._tick_s, self._on_tick)
        self._task = asyncio.create_task(self._drive(), name="raft-drive")
        if self.config.join and not self.core.membership.members:
            self._join_task = asyncio.create_task(self._join(self.config.join), name="join")

    async def stop(self) -> None:
        self._stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
        for t in (self._join_task, self._snapshot_task, self._task):
            if t is not None:
                t.cancel()
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
        for w in self._waiters.values():
            if not w.future.done():
                w.future.set_exception(IndeterminateError("node shutting down; the write may or may not apply"))
        self._fail_reads(UnavailableError("node shutting down"))
        await self.transport.close()
        await self.storage.close()

    @property
    def done(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def joining(self) -> asyncio.Task[None] | None:
        """The --join task; it fails with JoinRefusedError when the cluster refuses us for good."""
        return self._join_task

    def _on_tick(self) -> None:
        if self._stopping:
            return
        self._tick_due += self._tick_every
        self._wake.set()
        # A leader's timers (heartbeats, CheckQuorum, a transfer) run in heartbeat intervals:
        # it wakes once per heartbeat with the ticks of it, not every tick, which halves an
        # idle leader's wake-ups (issue 11); followers and candidates keep every tick for their
        # randomised election timeouts.
        self._tick_every = self.core.cfg.heartbeat_ticks if self.core.role is Role.LEADER else 1
        self._ticker = self.clock.call_later(self._tick_s * self._tick_every, self._on_tick)

    # ------------------------------------------------------------------ the loop
    async def _drive(self) -> None:
        core = self.core
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                if self.fatal is not None:
                    raise self.fatal
                # Inbound messages before the tick backlog: after a stall of this loop (a slow
                # fsync, a big apply) the replies that queued meanwhile must count before time
                # does, or a healthy leader steps down under CheckQuorum and drops them. The
                # backlog itself is capped: a stall is not evidence that peers went silent.
                inbox, self._inbox = self._inbox, _Inbox()
                for m in inbox.messages:
                    core.step(m)
                for call in inbox.calls:
                    call()
                ticks, self._tick_due = self._tick_due, 0
                for _ in range(min(ticks, self.max_tick_burst)):
                    core.tick()
                while (rd := core.ready()) is not None:
                    await self._handle_ready(rd)
                self._observe()
                self._maybe_snapshot()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # storage failure or a broken invariant: stop the process
            log.critical("raft loop failed: %r", e, exc_info=True)
            self.fatal = e
            raise

    @property
    def max_tick_burst(self) -> int:
        """Ticks run at most per wake-up: one heartbeat interval, well under an election timeout."""
        return self.core.cfg.heartbeat_ticks

    async def _handle_ready(self, rd: Ready) -> None:
        hs = rd.hard_state
        now = rd.messages_now()  # the core's rule: a durable leader's AppendEntries (§10.2.1)
        # New entries leave before our own write, to be fsynced in parallel with it. Without
        # them (a commit index moving on) the clients are answered first, then the appends.
        if now and (rd.entries or rd.snapshot is not None):
            self.transport.send_all(now)
            now = ()
            # let the senders write them now, before our write takes the loop or the GIL
            await asyncio.sleep(0)
        durable = self.core.log.stable_index
        if rd.entries:
            durable = Index(min(durable, rd.entries[0].index - 1))
        if (rd.committed and rd.entries and rd.snapshot is None and rd.committed[-1].index <= durable
                and (self._waiters or self._apply_waits)):
            # Entries already durable in our log: apply and answer the clients now,
            # without waiting for the fsync of the entries that follow them (without
            # new entries, or nobody waiting, one transaction does both).
            # Invariant: early apply never passes the durable index.
            self._resolve(rd.committed, await self.storage.apply(rd.committed))
            rd_log = dataclasses.replace(rd, committed=())
        else:
            rd_log = rd
        if hs is not None or rd_log.entries or rd_log.snapshot is not None or rd_log.committed:
            with metrics.FSYNC_SECONDS.time():
                results = await self.storage.save(rd_log)
            self._resolve(rd_log.committed, results)
        if now:
            # appends that only carry a commit index may wait a moment for the next append;
            # not while a read waits for its heartbeat round (ReadIndex)
            self.transport.send_all(now, lazy=bool(rd.committed) and not self._reads)
        if rd.snapshot is not None or any(e.kind is EntryKind.CONFIG for e in rd.entries):
            self._note_removals(rd)
        after = rd.messages_after()  # votes, replies, TimeoutNow: only once the write returned
        if after:
            self.transport.send_all(after)
            await asyncio.sleep(0)  # a follower's reply is on its leader's clients' path: out first
        self.core.advance(rd)
        if rd.snapshot is not None:
            for idx in [i for i in self._waiters if i <= rd.snapshot.meta.index]:
                w = self._waiters.pop(idx)
                if not w.future.done():
                    w.future.set_exception(
                        IndeterminateError("outcome covered by a snapshot; retry with the same X-Request-Seq"))
            for m in rd.snapshot.meta.membership.members:
                self._known_addresses[m.id] = m.address
        for r in rd.reads:
            fut = self._reads.pop(r.ctx, None)
            if fut is not None and not fut.done():
                self._wait_applied(r.index, fut)
        self._release_applied()

    def _resolve(self, committed: tuple[Entry, ...], results: list[Result | None]) -> None:
        """Answer the waiters of applied entries: ours if the term matches, else never ours."""
        metrics.APPLIED.inc(len(committed))
        for e, r in zip(committed, results, strict=True):  # one result per entry
            w = self._waiters.pop(e.index, None)
            if w is None or w.future.done():
                continue
            if w.term == e.term:
                w.future.set_result(r)
            else:
                w.future.set_exception(UnavailableError("leadership changed before the write committed; not applied"))

    def _wait_applied(self, index: int, fut: asyncio.Future[None]) -> None:
        if self.fsm.applied >= index:
            fut.set_result(None)
        else:
            self._apply_waits.append((index, fut))

    def _release_applied(self) -> None:
        if not self._apply_waits:
            return
        keep = []
        for index, fut in self._apply_waits:
            if fut.done():
                continue
            if self.fsm.applied >= index:
                fut.set_result(None)
            else:
                keep.append((index, fut))
        self._apply_waits = keep

    def _observe(self) -> None:
        """Notice role and term changes: fail reads a deposed leader can no longer confirm."""
        core = self.core
        if core.role is not self._last_role or core.term != self._last_term:
            if self._last_role is Role.LEADER:
                self._fail_reads(UnavailableError("leadership lost; read not served"))
            if core.role is Role.LEADER:
                metrics.LEADER_CHANGES.inc()
                log.info("became leader in term %d", core.term)
            if core.role in (Role.CANDIDATE,):
                metrics.ELECTIONS.inc()
            self._last_role, self._last_term = core.role, core.term
        if core.leader_id != self._last_leader:
            self._last_leader = core.leader_id
            log.info("term %d: leader is %s", core.term, core.leader_id)
        for m in core.membership.members:
            self._known_addresses[m.id] = m.address

    def _note_removals(self, rd: Ready) -> None:
        """Forget the recorded incarnation of every member a configuration in ``rd`` removes
        (node/incarnation.py): the id's next life, a new data dir, must not meet its old
        record, even when its removal and its return arrive in one batch."""
        ids = self._member_ids
        steps = [rd.snapshot.meta.membership.ids] if rd.snapshot is not None else []
        steps += [Membership.from_json(e.data).ids for e in rd.entries if e.kind is EntryKind.CONFIG]
        for now in steps:
            for gone in ids - now:
                if self.storage.peer_incarnation(gone) is not None:
                    self._forget(gone)
            ids = now
        self._member_ids = self.core.membership.ids

    def _forget(self, peer: str) -> None:
        task = asyncio.create_task(self.storage.record_peer(peer, None, True), name=f"forget-{peer}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _fail_reads(self, err: RaftnetError) -> None:
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(err)
        self._reads.clear()

    def _maybe_snapshot(self) -> None:
        """Start a snapshot in the background when enough was applied since the last one."""
        core = self.core
        every = self.config.snapshot_every
        if self._snapshot_task is not None or self._stopping or every <= 0:
            return
        if core.applied - core.log.snapshot_index < every or core.applied > core.log.stable_index:
            return
        self._snapshot_task = asyncio.create_task(self._take_snapshot(), name="snapshot")

    async def _take_snapshot(self) -> None:
        """Copy (storage thread), serialize (another thread), write, then compact in the loop:
        the drive loop, and so the heartbeats, never wait for a large state."""
        try:
            image = await self.storage.capture()
            plan = await self._run_in_loop(
                lambda: (self.core.snapshot_meta_at(image.applied), self.core.compaction_start(image.applied))
                if image.applied > self.core.log.snapshot_index else None)
            if plan is None:
                return  # a snapshot from the leader superseded ours meanwhile
            meta, keep_from = plan  # the catch-up entries from keep_from on stay in the log
            data = await asyncio.get_running_loop().run_in_executor(None, serialize_image, image)
            await self.storage.save_snapshot(meta, data, keep_from)

            def compact() -> None:
                if meta.index > self.core.log.snapshot_index:
                    self.core.compact(meta.index)

            await self._run_in_loop(compact)
            metrics.SNAPSHOTS.inc()
            log.info("snapshot at index %d; log compacted", meta.index)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # a storage failure: the drive loop raises it and the node exits
            log.critical("snapshot failed: %r", e, exc_info=True)
            self.fatal = e
        finally:
            self._snapshot_task = None
            self._wake.set()

    # ------------------------------------------------------------------ plumbing
    def _address_of(self, node_id: NodeId) -> str | None:
        return self._known_addresses.get(node_id)

    def _report_unreachable(self, peer: NodeId) -> None:
        self._call(lambda: self.core.report_unreachable(peer))

    def _report_snapshot_failed(self, peer: NodeId) -> None:
        self._call(lambda: self.core.report_snapshot_failed(peer))

    def _call(self, fn: Callable[[], None]) -> None:
        self._inbox.calls.append(fn)
        self._wake.set()

    async def admit(self, sender: str, incarnation: str | None) -> None:
        """Let a peer batch through only from the incarnation we know for ``sender``
        (node/incarnation.py); a member's first one is recorded durably before its
        messages are stepped. Another incarnation: StaleIncarnationError (409)."""
        verdict = inc.judge(incarnation, self.core.membership.get(sender), self.storage.peer_incarnation(sender))
        if verdict is inc.Verdict.ADMIT:
            return
        if verdict is inc.Verdict.REFUSE:
            raise StaleIncarnationError(inc.refusal(sender))
        stored = await self.storage.record_peer(sender, incarnation, verdict is inc.Verdict.SYNC)
        if stored != incarnation:  # another incarnation of it was recorded first, meanwhile
            raise StaleIncarnationError(inc.refusal(sender))
        if verdict is inc.Verdict.RECORD:
            log.info("recorded %s's incarnation %s", sender, incarnation)

    def deliver(self, msgs: list[Message], sender: str | None = None, address: str | None = None) -> None:
        """Queue an admitted batch (see ``admit``) for the core."""
        if sender is not None and address is not None and sender not in self._known_addresses:
            # a node that joined knows nobody's address until it has the configuration
            self._known_addresses[sender] = address
        self._inbox.messages.extend(msgs)
        self._wake.set()
        if self.core.role is Role.LEADER:
            self._maybe_adopt()

    def _maybe_adopt(self) -> None:
        """Leader: write the incarnation of a member that has none in the configuration yet
        (bootstrap members, data dirs from before) into it, so that every member refuses a
        wiped copy of it, not only those that heard from it (node/incarnation.py)."""
        if self._adopting is not None and not self._adopting.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._adopt_after or self._stopping:
            return
        member = inc.to_adopt(self.core.membership, self.storage.peer_incarnation, self.config.id,
                              self.storage.incarnation)
        if member is None:
            return
        self._adopt_after = loop.time() + 0.2

        def adopt(m: Membership) -> Membership:
            x = m.get(member.id)
            if x is None or x.incarnation is not None:
                raise NotFoundError("nothing to adopt")
            return m.with_member(dataclasses.replace(x, incarnation=member.incarnation))

        async def run() -> None:
            try:
                await self._change(adopt)
                log.info("configuration: %s is incarnation %s", member.id, member.incarnation)
            except RaftnetError as e:  # not leader any more, another change in flight: next time
                log.debug("adopting %s's incarnation: %s", member.id, e)

        self._adopting = asyncio.create_task(run(), name="adopt-incarnation")

    def _check_serving(self) -> None:
        if self._stopping:
            raise UnavailableError("node shutting down")
        if self.fatal is not None:
            raise UnavailableError("node failed; restart it")

    def not_leader(self) -> RaftnetError:
        leader = self.core.leader_id
        if leader is not None and leader != self.config.id:
            addr = self._known_addresses.get(leader)
            if addr:
                return NotLeaderError(leader, addr)
        return UnavailableError("no leader known; try again")

    async def _run_in_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` against the core inside the drive loop; return its value."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def call() -> None:
            if fut.done():
                return
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

        self._call(call)
        return await fut

    # ------------------------------------------------------------------ client API
    async def write(self, cmd: dict[str, Any]) -> Result:
        """Propose a command and wait until it is committed and applied."""
        self._check_serving()
        client, seq = cmd.get("client"), cmd.get("seq")
        if client is not None and seq is not None:  # the server sets both or neither
            cached = self.fsm.cached(client, seq)
            if cached is not None:
                return cached
        if self.core.role is not Role.LEADER:
            raise self.not_leader()
        data = json.dumps(cmd, separators=(",", ":"))
        metrics.PROPOSALS.inc()
        r = await self._commit(lambda: self.core.propose(data),
                               IndeterminateError("not confirmed in time; the write may or may not apply"))
        assert r is not None
        if r.get("error") == "stale_request":
            raise BadRequestError("X-Request-Seq is older than this client's session window")
        return r

    async def read_barrier(self) -> None:
        """Return once a linearizable read may be served from local state (ReadIndex)."""
        self._check_serving()
        if self.core.role is not Role.LEADER:
            raise self.not_leader()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_ctx += 1
        ctx = self._read_ctx

        def register() -> None:
            if fut.done():
                return
            try:
                self.core.read_index(ctx)
            except CoreNotLeaderError:
                fut.set_exception(self.not_leader())
                return
            self._reads[ctx] = fut

        self._call(register)
        try:
            await self._within(fut, UnavailableError("leadership not confirmed in time; read not served"))
        finally:
            self._reads.pop(ctx, None)

    async def _within(self, fut: asyncio.Future[Any], err: RaftnetError) -> Any:
        """Await ``fut``; past the request timeout it fails with ``err`` (cheaper than wait_for)."""
        def expire() -> None:
            if not fut.done():
                fut.set_exception(err)

        timer = self.clock.call_later(self.config.request_timeout_s, expire)
        try:
            return await fut
        finally:
            timer.cancel()
            if not fut.done():
                _quiet(fut)  # the client went away; whatever comes later, nobody reads it

    # ------------------------------------------------------------------ membership
    def members(self) -> list[dict[str, Any]]:
        return [{"id": m.id, "address": m.address, "voter": m.voter} for m in self.core.membership.members]

    async def _change(self, build: Callable[[Membership], Membership]) -> None:
        """Propose a configuration change and wait until it is committed."""
        await self._commit(lambda: self.core.propose_membership(build(self.core.membership)),
                           IndeterminateError("membership change not confirmed in time"))

    async def _commit(self, append: Callable[[], Index], late: RaftnetError) -> Result | None:
        """Run ``append`` (a proposal to the core) in the drive loop, then wait until the
        entry it appended is applied: its result, 503 if another entry took its index,
        ``late`` (504) past the request timeout."""
        result: asyncio.Future[Result | None] = asyncio.get_running_loop().create_future()

        def propose() -> None:
            if result.done():
                return
            try:
                idx = append()
            except CoreNotLeaderError:
                result.set_exception(self.not_leader())
                return
            except ProposalDroppedError as e:
                result.set_exception(UnavailableError(str(e)))
                return
            except MembershipChangeError as e:
                result.set_exception(BadRequestError(str(e)))
                return
            except RaftnetError as e:
                result.set_exception(e)
                return
            self._waiters[idx] = _Waiter(self.core.term, result)

        self._call(propose)
        return await self._within(result, late)

    async def _retry_change(self, build: Callable[[Membership], Membership], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._change(build)
                return
            except UnavailableError:
                if loop.time() > deadline or self.core.role is not Role.LEADER:
                    raise
                await asyncio.sleep(0.05)  # the previous change or the no-op is committing

    async def add_member(self, node_id: str, address: str, incarnation: str | None = None) -> list[dict[str, Any]]:
        """Add as a learner, wait for it to catch up, then promote it to voter (§4.2.1).

        ``incarnation`` (sent by --join) goes into the member record; an existing member
        of another incarnation (a wiped data dir) is refused: MemberExistsError (409)."""
        self._check_serving()
        if self.core.role is not Role.LEADER:
            raise self.not_leader()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(10.0, self.config.request_timeout_s)
        cur = self.core.membership.get(node_id)
        if cur is not None and cur.address != address:
            raise BadRequestError(f"member {node_id} exists with address {cur.address}")
        if inc.conflicts(incarnation, cur, self.storage.peer_incarnation(node_id)):
            raise MemberExistsError(inc.member_exists(node_id))
        if cur is not None and cur.voter:
            return self.members()
        if cur is None:
            # a record from an earlier life of this id (removed since) must not refuse the new one
            await self.storage.record_peer(node_id, incarnation, True)

            def add(m: Membership) -> Membership:
                known = m.get(node_id)
                if known is not None:
                    return m.with_member(known)
                return m.with_member(Member(NodeId(node_id), address, voter=False, incarnation=incarnation))

            await self._retry_change(add, deadline)
        while True:  # catch-up rounds: promote once its log reaches our commit index
            if self.core.role is not Role.LEADER:
                raise self.not_leader()
            pr = self.core.progress(NodeId(node_id))
            if pr is not None and pr.match_index >= self.core.commit:
                break
            if loop.time() > deadline:
                raise IndeterminateError(f"{node_id} added as a learner but has not caught up yet; retry to promote")
            await asyncio.sleep(0.02)

        def promote(m: Membership) -> Membership:
            x = m.get(node_id)
            if x is None:
                raise NotFoundError(f"member {node_id} was removed meanwhile")
            return m.with_member(dataclasses.replace(x, voter=True))

        await self._retry_change(promote, deadline)
        return self.members()

    async def remove_member(self, node_id: str) -> list[dict[str, Any]]:
        self._check_serving()
        if self.core.role is not Role.LEADER:
            raise self.not_leader()
        if self.core.membership.get(node_id) is None:
            raise NotFoundError(f"no member {node_id}")
        deadline = asyncio.get_running_loop().time() + max(10.0, self.config.request_timeout_s)

        def remove(m: Membership) -> Membership:
            if m.get(node_id) is None:
                return m
            return m.without(node_id)

        await self._retry_change(remove, deadline)
        return self.members()

    async def transfer(self, to: str | None) -> str:
        self._check_serving()
        if self.core.role is not Role.LEADER:
            raise self.not_leader()
        if to is not None and to not in self.core.membership.voters:
            raise BadRequestError(f"{to} is not a voting member")

        def start() -> NodeId:
            try:
                return self.core.transfer_leadership(NodeId(to) if to else None)
            except CoreNotLeaderError:
                raise self.not_leader() from None
            except MembershipChangeError as e:
                raise BadRequestError(str(e)) from None

        target = await self._run_in_loop(start)
        if target == self.config.id:
            return target
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.config.election_ms[1] / 1000 + 1.0
        while loop.time() < deadline:
            if self.core.leader_id == target and self.core.role is not Role.LEADER:
                return target
            await asyncio.sleep(0.01)
        raise UnavailableError(f"leadership did not move to {target} in time")

    # ------------------------------------------------------------------ joining
    async def _join(self, target: str) -> None:
        """A fresh node asks the cluster at ``target`` to add it, retrying until it is a member."""
        headers = {"Authorization": f"Bearer {self.config.secret}"} if self.config.secret else {}
        body = {"id": self.config.id, "address": self.config.address, "incarnation": self.storage.incarnation}
        timeout = aiohttp.ClientTimeout(total=max(15.0, self.config.request_timeout_s + 10))
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as s:
            addr = target
            while not self._stopping:
                try:
                    if self.cluster_id is None:
                        async with s.get(f"http://{addr}/v1/status") as r:
                            st = await r.json()
                            cid = st.get("cluster_id")
                            if r.status == 200 and isinstance(cid, str):
                                await self.storage.set_cluster_id(cid)
                                self.cluster_id = cid
                            continue
                    async with s.post(f"http://{addr}/v1/members", json=body, allow_redirects=False) as r:
                        reply = await r.json(content_type=None)
                        if r.status == 200:
                            log.info("joined the cluster through %s", addr)
                            return
                        if r.status == 307 and isinstance(reply.get("leader"), dict):
                            addr = reply["leader"]["address"]
                            continue
                        if r.status == 409 and reply.get("error") == "member_exists":
                            raise JoinRefusedError(f"{addr} refuses to add us (member_exists): {reply.get('message')}")
                        log.info("join via %s: HTTP %d %s", addr, r.status, reply.get("message"))
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
                    log.info("join via %s failed: %r", addr, e)
                    addr = target
                await asyncio.sleep(0.2)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        c = self.core
        leader = c.leader_id
        return {
            "id": self.config.id,
            "address": self.config.address,
            "cluster_id": self.cluster_id,
            "role": c.role.value,
            "term": c.term,
            "leader_id": leader,
            "leader_address": self._known_addresses.get(leader) if leader else None,
            "commit_index": c.commit,
            "last_applied": self.fsm.applied,
            "last_log_index": c.last_index,
            "snapshot_index": c.log.snapshot_index,
            "voted_for": c.voted_for,
            "members": self.members(),
            "incarnation": self.storage.incarnation,
            # each member's incarnation in the configuration (null: not known to it yet)
            "incarnations": {m.id: m.incarnation for m in c.membership.members},
            # peers that refuse our messages (we are a wiped member's new data dir): peer -> reason
            "refused_by": dict(self.transport.refused_by),
        }
