"""RaftCore: a sans-io Raft state machine (election, replication, ReadIndex,
snapshots, single-server membership changes, leadership transfer).

Theory of operation
-------------------
The core never touches a clock, a socket or a disk. The driver feeds it
``tick()`` (one unit of logical time), ``step(message)`` (an inbound RPC) and
calls (``propose``, ``read_index``, ``propose_membership``,
``transfer_leadership``, ``compact``, ``report_unreachable``,
``report_snapshot_failed``). Effects accumulate inside the core and
come out, in one batch, from ``ready()``:

    hard_state  -> make durable first (term, vote and commit; §5.1)
    snapshot    -> install into storage and the state machine
    entries     -> append durably, replacing stored entries from entries[0].index
    messages    -> send only after the above is durable
    committed   -> apply to the state machine in order
    reads       -> serve each once last_applied >= read.index

after which the driver calls ``advance(ready)``. Many proposals and messages
stepped between two ``ready()`` calls become one Ready: one fsync and one
message per peer (batching). A leader streams entries to followers in the
"replicate" state without waiting for acknowledgements (pipelining), up to
``max_inflight`` entries beyond what the follower has acknowledged.

Compaction (§7): once the driver has stored a snapshot at ``index`` it calls
``compact(index)``; the log keeps the last ``snapshot_catchup_entries``
entries below the snapshot (``compaction_start`` tells storage which), so a
follower a little behind still gets AppendEntries. Only a follower whose
next_index lies below the log's first entry gets an InstallSnapshot. When
the driver reports that the send failed (``report_snapshot_failed``), the
leader probes again from the next heartbeat on; waiting ten election
timeouts is kept only as the last resort for a lost reply.

Safety rules and where they live:
- Election safety: one vote per term, durable before the reply leaves (§5.2).
- Log matching / conflict resolution: ``_handle_append`` (§5.3).
- Leader completeness: the up-to-date check when voting (§5.4.1).
- Commit rule: only an entry of the current term is committed by counting
  replicas (§5.4.2, Figure 8); each new leader appends a no-op (§8).
- Leader's own copy counts only once durable (``log.stable_index``).
- Linearizable reads: ReadIndex (§6.4): record the commit index, confirm
  leadership with a round of heartbeats answered by a majority, serve once
  applied. No read before the leader committed an entry of its term.
- PreVote (§9.6) and CheckQuorum: a node that cannot win does not bump terms,
  voters inside a leader lease ignore vote requests, and a leader that has
  not heard from a majority for an election timeout steps down.
- Membership: one server at a time, effective when appended (§4.1), at most
  one uncommitted change, only after the leader committed in its term.

Invariant: applied <= commit <= last_index.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field

from . import quorum
from .errors import MembershipChangeError, NotLeaderError, ProposalDroppedError
from .log import RaftLog
from .messages import (
    AppendEntries,
    AppendEntriesReply,
    InstallSnapshot,
    InstallSnapshotReply,
    Message,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)
from .types import (
    Entry,
    EntryKind,
    HardState,
    Index,
    Membership,
    NodeId,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
    Term,
)


@dataclass(frozen=True, slots=True)
class CoreConfig:
    election_ticks: tuple[int, int] = (30, 60)  # randomised in [min, max)
    heartbeat_ticks: int = 5
    max_append_bytes: int = 1 << 20  # per AppendEntries
    max_inflight: int = 8192  # entries sent beyond a follower's match index
    max_apply_batch: int = 4096  # committed entries per Ready
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_catchup_entries: int = 0  # entries compaction keeps below the snapshot index (etcd: 5000)

    def __post_init__(self) -> None:
        lo, hi = self.election_ticks
        if not (0 < self.heartbeat_ticks < lo < hi):
            raise ValueError("need 0 < heartbeat_ticks < election min < election max")
        if self.snapshot_catchup_entries < 0:
            raise ValueError("snapshot_catchup_entries must be >= 0")


@dataclass(frozen=True)
class Ready:
    hard_state: HardState | None  # durable before any message leaves
    entries: tuple[Entry, ...]  # append, replacing stored entries from entries[0].index on
    snapshot: Snapshot | None  # install (replaces the whole stored log) before entries
    messages: tuple[Message, ...]  # all of them; send as messages_now() / messages_after() say
    committed: tuple[Entry, ...]  # apply in order
    reads: tuple[ReadState, ...]  # serve once last_applied >= read.index
    # §10.2.1: a leader whose term and vote are already durable may send its AppendEntries
    # before its own write of ``entries`` completes (its own copy counts toward commitment
    # only after advance()). Decided by the core, so the driver and the simulator share it.
    appends_early: bool = False

    def messages_now(self) -> tuple[Message, ...]:
        """Messages safe to send before the write of this Ready is durable."""
        if not self.appends_early:
            return ()
        return tuple(m for m in self.messages if isinstance(m, AppendEntries))

    def messages_after(self) -> tuple[Message, ...]:
        """Messages that may leave only once the write of this Ready returned (votes, replies, TimeoutNow)."""
        if not self.appends_early:
            return self.messages
        return tuple(m for m in self.messages if not isinstance(m, AppendEntries))


@dataclass(frozen=True, slots=True)
class InitialState:
    """What storage hands the core at start-up."""

    hard_state: HardState
    snapshot: SnapshotMeta
    entries: tuple[Entry, ...] = ()  # may begin at or below snapshot.index (catch-up entries)
    applied: Index = Index(0)


class ProgressState(enum.Enum):
    PROBE = "probe"  # one append at a time until a match is found
    REPLICATE = "replicate"  # stream entries optimistically
    SNAPSHOT = "snapshot"  # an InstallSnapshot is outstanding


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower (§5.3 nextIndex / matchIndex)."""

    next_index: Index
    match_index: Index = Index(0)
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    snapshot_index: Index = Index(0)
    snapshot_ticks: int = 0
    acked_seq: int = 0
    last_active: int = 0  # core tick of the last message from this follower


@dataclass(slots=True)
class _PendingRead:
    ctx: int
    seq: int
    index: Index


@dataclass(slots=True)
class _Votes:
    granted: dict[NodeId, bool] = field(default_factory=dict)


class RaftCore:
    def __init__(
        self,
        node_id: NodeId,
        state: InitialState,
        config: CoreConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.id = node_id
        self.cfg = config or CoreConfig()
        self.rng = rng or random.Random(0)
        hs = state.hard_state
        self.term: Term = hs.term
        self.voted_for: NodeId | None = hs.voted_for
        self.log = RaftLog(state.snapshot, state.entries)
        self.commit: Index = Index(max(hs.commit, state.snapshot.index, state.applied))
        assert self.commit <= self.log.last_index, "commit beyond the durable log"
        self.applied: Index = Index(max(state.applied, state.snapshot.index))
        self.role = Role.FOLLOWER
        self.leader_id: NodeId | None = None
        self._prev_hard_state = HardState(self.term, self.voted_for, self.commit)
        self._now = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = 0
        self._reset_timeout()
        self._votes = _Votes()
        self._progress: dict[NodeId, Progress] = {}
        self._msgs: list[Message] = []
        self._pending_snapshot: Snapshot | None = None
        self._term_start: Index = Index(0)  # index of the current leader's no-op
        self._read_seq = 0
        self._reads_waiting: list[int] = []  # until the no-op of this term commits
        self._reads_pending: deque[_PendingRead] = deque()
        self._reads_ready: list[ReadState] = []
        self._read_bcast = False
        self._commit_dirty = False
        self._transferee: NodeId | None = None
        self._transfer_elapsed = 0

    # ------------------------------------------------------------------ queries
    @property
    def membership(self) -> Membership:
        return self.log.membership()

    @property
    def last_index(self) -> Index:
        return self.log.last_index

    @property
    def transferring(self) -> bool:
        return self._transferee is not None

    def is_voter(self) -> bool:
        return self.id in self.membership.voters

    def hard_state(self) -> HardState:
        return HardState(self.term, self.voted_for, self.commit)

    def progress(self, peer: NodeId) -> Progress | None:
        return self._progress.get(peer)

    def snapshot_meta_at(self, index: int) -> SnapshotMeta:
        """Metadata of a snapshot taken after applying ``index`` (for compaction)."""
        term = self.log.term(index)
        assert term is not None and index <= self.applied
        return SnapshotMeta(Index(index), term, self.log.membership_at(index))

    # ------------------------------------------------------------------ inputs
    def tick(self) -> None:
        self._now += 1
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self._election_elapsed += 1
        if self._election_elapsed >= self._timeout:
            self._election_elapsed = 0
            if self.is_voter():
                self._campaign(pre_vote=self.cfg.pre_vote)
            else:
                self._reset_timeout()

    def step(self, m: Message) -> None:
        if m.dst != self.id:
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                if not m.transfer and self._in_lease():
                    return  # a leader is alive: ignore the disruption (§4.2.3 / §9.6)
                if m.pre_vote:
                    self._handle_vote(m)
                    return
            if isinstance(m, RequestVoteReply) and m.pre_vote and m.granted:
                pass  # a granted pre-vote carries the future term; keep ours
            else:
                leader = m.src if isinstance(m, (AppendEntries, InstallSnapshot)) else None
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, (AppendEntries, InstallSnapshot)):
                # tell a stale leader about the newer term so it steps down
                self._send(AppendEntriesReply(self.term, self.id, m.src, False, Index(0)))
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(RequestVoteReply(self.term, self.id, m.src, False, pre_vote=True))
            return

        match m:
            case RequestVote():
                self._handle_vote(m)
            case RequestVoteReply():
                self._handle_vote_reply(m)
            case AppendEntries():
                self._on_leader_contact(m.src)
                self._handle_append(m)
            case AppendEntriesReply():
                self._handle_append_reply(m)
            case InstallSnapshot():
                self._on_leader_contact(m.src)
                self._handle_snapshot(m)
            case InstallSnapshotReply():
                self._handle_snapshot_reply(m)
            case TimeoutNow():
                if self.role is not Role.LEADER and self.is_voter():
                    self._campaign(pre_vote=False, transfer=True)

    def propose(self, data: str) -> Index:
        """Append a client command; returns its index. Leader only."""
        return self._propose(EntryKind.NORMAL, data)

    def propose_membership(self, new: Membership) -> Index:
        """Append a single-server configuration change (§4.1). Leader only."""
        self._require_leader()
        old = self.membership
        if self.log.last_config_index() > self.commit:
            raise ProposalDroppedError("another membership change is in progress")
        if self.commit < self._term_start:
            raise ProposalDroppedError("the new leader has not committed its first entry yet")
        changed = {m.id for m in old.members if new.get(m.id) != m} | {
            m.id for m in new.members if old.get(m.id) != m
        }
        voters_changed = old.voters ^ new.voters
        if len(changed) > 1 or len(voters_changed) > 1:
            raise MembershipChangeError("only one member may change at a time")
        if not new.voters:
            raise MembershipChangeError("a configuration needs at least one voter")
        return self._propose(EntryKind.CONFIG, new.to_json())

    def read_index(self, ctx: int) -> None:
        """Register a linearizable read; a ReadState with ``ctx`` comes out later.

        Reads of a leader that steps down are dropped: the driver fails them
        when it sees the term or role change.
        """
        self._require_leader()
        if self.commit < self._term_start:
            self._reads_waiting.append(ctx)
            return
        self._queue_read(ctx)

    def transfer_leadership(self, to: NodeId | None = None) -> NodeId:
        """Hand leadership to ``to`` (or the most up-to-date voter), §3.10."""
        self._require_leader()
        voters = self.membership.voters - {self.id}
        if to is None:
            if not voters:
                raise MembershipChangeError("no other voter to transfer leadership to")
            to = max(sorted(voters), key=lambda v: self._progress[v].match_index)
        if to == self.id:
            return to
        if to not in voters:
            raise MembershipChangeError(f"{to} is not a voting member")
        self._transferee = to
        self._transfer_elapsed = 0
        self._maybe_send_timeout_now()
        return to

    def report_unreachable(self, peer: NodeId) -> None:
        """The driver could not deliver to ``peer``: fall back to probing it."""
        pr = self._progress.get(peer)
        if pr is not None and pr.state is ProgressState.REPLICATE:
            self._to_probe(pr)

    def report_snapshot_failed(self, peer: NodeId) -> None:
        """The driver could not deliver our InstallSnapshot to ``peer`` (an error, a timeout,
        or it was dropped): probe again from the next heartbeat on instead of waiting for the
        last-resort timeout, and send the (then newest) snapshot again if still needed."""
        pr = self._progress.get(peer)
        if pr is not None and pr.state is ProgressState.SNAPSHOT:
            self._to_probe(pr)
            pr.probe_sent = True  # paused until the next heartbeat, as after any probe (etcd does the same)

    def compaction_start(self, index: int) -> Index:
        """Where the log will start once ``compact(index)`` ran: the driver's storage keeps
        the entries from this index on (the anchor, then the catch-up entries)."""
        return self.log.start_after_compact(index, self.cfg.snapshot_catchup_entries)

    def compact(self, index: int) -> None:
        """The driver stored a snapshot covering ``index``: drop those entries, except the
        last ``snapshot_catchup_entries`` of them, which lagging followers may still need."""
        assert index <= self.applied
        self.log.compact(index, self.cfg.snapshot_catchup_entries)

    # ------------------------------------------------------------------ output
    def ready(self) -> Ready | None:
        if self.role is Role.LEADER:
            if self._read_bcast:
                self._read_seq += 1
            self._flush_appends(heartbeat=self._read_bcast)
            self._read_bcast = False
            self._commit_dirty = False
        hs = self.hard_state()
        hs_out = hs if hs != self._prev_hard_state else None
        entries = tuple(self.log.unstable())
        committed: tuple[Entry, ...] = ()
        if self.commit > self.applied:
            hi = min(self.commit, self.applied + self.cfg.max_apply_batch)
            committed = tuple(self.log.slice(self.applied + 1, hi))
        if not (hs_out or entries or self._pending_snapshot or self._msgs or committed or self._reads_ready):
            return None
        durable = self._prev_hard_state
        rd = Ready(
            hard_state=hs_out,
            entries=entries,
            snapshot=self._pending_snapshot,
            messages=tuple(self._msgs),
            committed=committed,
            reads=tuple(self._reads_ready),
            # Invariant: an AppendEntries leaves early only from a leader whose term and
            # vote are already durable (the hard state last handed out and advanced).
            appends_early=self.role is Role.LEADER and (hs.term, hs.voted_for) == (durable.term, durable.voted_for),
        )
        self._msgs = []
        self._reads_ready = []
        return rd

    def has_ready(self) -> bool:
        return bool(
            self._msgs
            or self._reads_ready
            or self._pending_snapshot
            or self.log.unstable_from <= self.log.last_index
            or self.commit > self.applied
            or self.hard_state() != self._prev_hard_state
            or (self.role is Role.LEADER and (self._read_bcast or self._commit_dirty or self._owes_appends()))
        )

    def _owes_appends(self) -> bool:
        """Would ``ready()`` send some follower an append or a snapshot right now?"""
        last = self.log.last_index
        for pr in self._progress.values():
            if pr.state is ProgressState.SNAPSHOT or (pr.state is ProgressState.PROBE and pr.probe_sent):
                continue
            if pr.next_index < self.log.first_index or pr.state is ProgressState.PROBE:
                return True
            if (pr.state is ProgressState.REPLICATE and pr.next_index <= last
                    and pr.next_index - pr.match_index <= self.cfg.max_inflight):
                return True
        return False

    def advance(self, rd: Ready) -> None:
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        if rd.snapshot is not None:
            if self._pending_snapshot is rd.snapshot:
                self._pending_snapshot = None
            self.applied = Index(max(self.applied, rd.snapshot.meta.index))
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed:
            self.applied = Index(max(self.applied, rd.committed[-1].index))
        if self.role is Role.LEADER:
            self._maybe_commit()

    # ------------------------------------------------------------------ roles
    def _reset_timeout(self) -> None:
        lo, hi = self.cfg.election_ticks
        self._timeout = self.rng.randrange(lo, hi)

    def _in_lease(self) -> bool:
        return (
            self.cfg.check_quorum
            and self.leader_id is not None
            and self._election_elapsed < self.cfg.election_ticks[0]
        )

    def _become_follower(self, term: Term, leader: NodeId | None) -> None:
        if term > self.term:
            self.term = term
            self.voted_for = None
        self.role = Role.FOLLOWER
        self.leader_id = leader
        self._election_elapsed = 0
        self._reset_timeout()
        self._leave_leadership()

    def _leave_leadership(self) -> None:
        self._progress = {}
        self._votes = _Votes()
        self._reads_waiting.clear()
        self._reads_pending.clear()
        self._transferee = None
        self._read_bcast = False
        self._commit_dirty = False

    def _campaign(self, pre_vote: bool, transfer: bool = False) -> None:
        self._leave_leadership()
        self.leader_id = None
        self._election_elapsed = 0
        self._reset_timeout()
        if pre_vote:
            self.role = Role.PRE_CANDIDATE
            term = Term(self.term + 1)  # the term it would run in; ours stays (§9.6)
        else:
            self.role = Role.CANDIDATE
            self.term = Term(self.term + 1)
            self.voted_for = self.id
            term = self.term
        self._votes.granted[self.id] = True
        if self._tally() is quorum.VoteResult.WON:
            return
        for v in sorted(self.membership.voters - {self.id}):
            self._send(
                RequestVote(term, self.id, v, self.log.last_index, self.log.last_term, pre_vote, transfer)
            )

    def _tally(self) -> quorum.VoteResult:
        result = quorum.vote_result(self.membership.voters, self._votes.granted)
        if result is quorum.VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre_vote=False)
            else:
                self._become_leader()
        elif result is quorum.VoteResult.LOST:
            self._become_follower(self.term, None)
        return result

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader_id = self.id
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._votes = _Votes()
        self._progress = {}
        self._sync_progress()
        self._append_local(EntryKind.NOOP, "")  # §8: commit an entry of this term
        self._term_start = self.log.last_index

    def _sync_progress(self) -> None:
        """Track exactly the members of the current configuration (leader)."""
        members = self.membership.ids - {self.id}
        for peer in list(self._progress):
            if peer not in members:
                del self._progress[peer]
        for peer in sorted(members):
            if peer not in self._progress:
                self._progress[peer] = Progress(next_index=Index(self.log.last_index + 1), last_active=self._now)

    def _require_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.leader_id)

    # ------------------------------------------------------------------ leader
    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.cfg.election_ticks[0]:
                self._transferee = None  # abort: the target did not take over in time
        for pr in self._progress.values():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks >= 10 * self.cfg.election_ticks[1]:
                    # last resort: the reply was lost (a failed send is reported at once,
                    # report_snapshot_failed); a big snapshot may take a while
                    self._to_probe(pr)
        if self._heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                self._become_follower(self.term, None)
                return
            for pr in self._progress.values():
                pr.probe_sent = False
            self._flush_appends(heartbeat=True)

    def _quorum_active(self) -> bool:
        horizon = self._now - self.cfg.election_ticks[0]
        alive = {p for p, pr in self._progress.items() if pr.last_active > horizon}
        alive.add(self.id)
        voters = self.membership.voters
        if self.id not in voters:
            alive.discard(self.id)
        return quorum.has_quorum(voters, alive)

    def _propose(self, kind: EntryKind, data: str) -> Index:
        self._require_leader()
        if self._transferee is not None:
            raise ProposalDroppedError("leadership transfer in progress")
        if self.id not in self.membership.ids:
            raise ProposalDroppedError("this leader is being removed from the cluster")
        return self._append_local(kind, data)

    def _append_local(self, kind: EntryKind, data: str) -> Index:
        e = Entry(Index(self.log.last_index + 1), self.term, kind, data)
        self.log.append([e])
        if kind is EntryKind.CONFIG:
            self._sync_progress()
        return e.index

    def _flush_appends(self, heartbeat: bool) -> None:
        """Send every follower what it lacks; with ``heartbeat`` at least an empty append."""
        for peer, pr in self._progress.items():
            self._send_append(peer, pr, heartbeat or self._commit_dirty)

    def _send_append(self, peer: NodeId, pr: Progress, force: bool) -> None:
        last = self.log.last_index
        if pr.state is ProgressState.SNAPSHOT:
            if force:  # keep the lease and read confirmations alive; log untouched
                self._send(self._append_msg(peer, self.log.snapshot_index, ()))
            return
        if pr.state is ProgressState.PROBE and pr.probe_sent and not force:
            return
        if pr.next_index < self.log.first_index:  # compacted away, catch-up entries included (§7)
            self._send_snapshot(peer, pr)
            return
        if pr.state is ProgressState.PROBE:
            entries = self.log.slice(pr.next_index, last, self.cfg.max_append_bytes)
            self._send(self._append_msg(peer, Index(pr.next_index - 1), entries))
            pr.probe_sent = True
            return
        sent = False
        while pr.next_index <= last and pr.next_index - pr.match_index <= self.cfg.max_inflight:
            hi = min(last, pr.match_index + self.cfg.max_inflight)  # flow control: the window, in entries
            entries = self.log.slice(pr.next_index, hi, self.cfg.max_append_bytes)
            self._send(self._append_msg(peer, Index(pr.next_index - 1), entries))
            pr.next_index = Index(entries[-1].index + 1)
            sent = True
        if force and not sent:
            self._send(self._append_msg(peer, Index(pr.next_index - 1), ()))

    def _append_msg(self, peer: NodeId, prev: Index, entries: list[Entry] | tuple[Entry, ...]) -> AppendEntries:
        prev_term = self.log.term(prev)
        assert prev_term is not None, "prev entry compacted"
        return AppendEntries(
            self.term, self.id, peer, prev, prev_term, tuple(entries), self.commit, self._read_seq
        )

    def _send_snapshot(self, peer: NodeId, pr: Progress) -> None:
        meta = SnapshotMeta(self.log.snapshot_index, self.log.snapshot_term, self.log.snapshot_membership)
        self._send(InstallSnapshot(self.term, self.id, peer, meta))
        pr.state = ProgressState.SNAPSHOT
        pr.snapshot_index = meta.index
        pr.snapshot_ticks = 0

    def _to_probe(self, pr: Progress) -> None:
        pr.state = ProgressState.PROBE
        pr.next_index = Index(pr.match_index + 1)
        pr.probe_sent = False

    def _handle_append_reply(self, m: AppendEntriesReply) -> None:
        pr = self._progress.get(m.src)
        if self.role is not Role.LEADER or pr is None:
            return
        pr.last_active = self._now
        if m.seq > pr.acked_seq:
            pr.acked_seq = m.seq
            self._confirm_reads()
        if m.success:
            if m.match_index > pr.match_index:
                pr.match_index = m.match_index
            if pr.next_index <= pr.match_index:
                pr.next_index = Index(pr.match_index + 1)
            if pr.state is ProgressState.PROBE:
                pr.state = ProgressState.REPLICATE
                pr.next_index = Index(pr.match_index + 1)
            elif pr.state is ProgressState.SNAPSHOT and pr.match_index >= pr.snapshot_index:
                pr.state = ProgressState.REPLICATE
                pr.next_index = Index(pr.match_index + 1)
            pr.probe_sent = False
            self._maybe_commit()
            self._maybe_send_timeout_now()
            return
        # rejected: back up, unless the reply is stale (§5.3 with the conflict hint)
        if pr.state is ProgressState.SNAPSHOT or m.reject_index <= pr.match_index:
            return
        if pr.state is ProgressState.PROBE and m.reject_index != pr.next_index - 1:
            return
        nxt = m.conflict_index
        if m.conflict_term:
            ours = self.log.last_index_of_term(m.conflict_term)
            if ours is not None:
                nxt = Index(ours + 1)
        pr.next_index = Index(max(pr.match_index + 1, min(nxt, m.reject_index)))
        pr.state = ProgressState.PROBE
        pr.probe_sent = False

    def _handle_snapshot_reply(self, m: InstallSnapshotReply) -> None:
        pr = self._progress.get(m.src)
        if self.role is not Role.LEADER or pr is None:
            return
        pr.last_active = self._now
        pr.match_index = Index(max(pr.match_index, m.match_index))
        pr.state = ProgressState.REPLICATE
        pr.next_index = Index(pr.match_index + 1)
        pr.probe_sent = False
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        match = {p: pr.match_index for p, pr in self._progress.items()}
        match[self.id] = self.log.stable_index
        n = quorum.committed_index(self.membership.voters, match)
        # §5.4.2: count replicas only for an entry of the current term
        if n > self.commit and self.log.term(n) == self.term:
            self.commit = n
            self._commit_dirty = True
            if self._reads_waiting and self.commit >= self._term_start:
                waiting, self._reads_waiting = self._reads_waiting, []
                for ctx in waiting:
                    self._queue_read(ctx)
            if self.id not in self.membership.ids and self.commit >= self.log.last_config_index():
                self._step_down_removed()

    def _step_down_removed(self) -> None:
        """Our removal is committed: hand over to the best voter and stop leading."""
        voters = sorted(self.membership.voters)
        if voters:
            best = max(voters, key=lambda v: self._progress[v].match_index if v in self._progress else -1)
            self._send(TimeoutNow(self.term, self.id, best))
        self._become_follower(self.term, None)

    def _maybe_send_timeout_now(self) -> None:
        to = self._transferee
        if to is None:
            return
        pr = self._progress.get(to)
        if pr is not None and pr.match_index >= self.log.last_index:
            self._send(TimeoutNow(self.term, self.id, to))

    def _queue_read(self, ctx: int) -> None:
        voters = self.membership.voters
        if voters <= {self.id}:
            self._reads_ready.append(ReadState(ctx, self.commit))
            return
        self._reads_pending.append(_PendingRead(ctx, self._read_seq + 1, self.commit))
        self._read_bcast = True

    def _confirm_reads(self) -> None:
        voters = self.membership.voters
        while self._reads_pending:
            r = self._reads_pending[0]
            acks = {p for p, pr in self._progress.items() if pr.acked_seq >= r.seq}
            if self.id in voters:
                acks.add(self.id)
            if not quorum.has_quorum(voters, acks):
                return
            self._reads_pending.popleft()
            self._reads_ready.append(ReadState(r.ctx, r.index))

    # ------------------------------------------------------------------ follower
    def _on_leader_contact(self, leader: NodeId) -> None:
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, leader)
        self.leader_id = leader
        self._election_elapsed = 0

    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        if m.prev_index > log.snapshot_index:
            t = log.term(m.prev_index)
            if t != m.prev_term:
                if t is None:
                    conflict_index, conflict_term = Index(log.last_index + 1), Term(0)
                else:
                    conflict_index, conflict_term = log.first_index_of_term(m.prev_index), t
                self._send(
                    AppendEntriesReply(
                        self.term, self.id, m.src, False, Index(0),
                        reject_index=m.prev_index, conflict_index=conflict_index,
                        conflict_term=conflict_term, seq=m.seq,
                    )
                )
                return
        # prev matches (anything at or below the snapshot is committed, hence matches)
        new: list[Entry] = []
        for i, e in enumerate(m.entries):
            if e.index <= log.snapshot_index:
                continue
            t = log.term(e.index)
            if t is None:
                new = list(m.entries[i:])
                break
            if t != e.term:
                assert e.index > self.commit, "a committed entry conflicts with the leader"
                log.truncate_from(e.index)
                new = list(m.entries[i:])
                break
        if new:
            log.append(new)
        last_new = Index(m.prev_index + len(m.entries))
        if m.leader_commit > self.commit:
            self.commit = Index(max(self.commit, min(m.leader_commit, last_new)))
        self._send(AppendEntriesReply(self.term, self.id, m.src, True, last_new, seq=m.seq))

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        if m.meta.index <= self.commit:
            self._send(InstallSnapshotReply(self.term, self.id, m.src, self.commit))
            return
        self.log.restore(m.meta)
        self.commit = m.meta.index
        self._pending_snapshot = Snapshot(m.meta, m.data)
        self._send(InstallSnapshotReply(self.term, self.id, m.src, m.meta.index))

    # ------------------------------------------------------------------ voting
    def _handle_vote(self, m: RequestVote) -> None:
        if m.pre_vote:
            can_vote = m.term > self.term or self.voted_for in (None, m.src) and self.leader_id is None
        else:
            can_vote = self.voted_for == m.src or (self.voted_for is None and self.leader_id is None)
        # A node with no configuration at all (started with --join, not added yet) has no
        # say: its empty log may be an amnesiac member's, and it is promoted only after it
        # has caught up, by then with a configuration (issue 10).
        has_config = bool(self.membership.members)
        grant = has_config and can_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term)
        if grant and not m.pre_vote:
            self.voted_for = m.src
            self._election_elapsed = 0
        reply_term = m.term if (grant and m.pre_vote) else self.term
        self._send(RequestVoteReply(reply_term, self.id, m.src, grant, m.pre_vote))

    def _handle_vote_reply(self, m: RequestVoteReply) -> None:
        expected = Role.PRE_CANDIDATE if m.pre_vote else Role.CANDIDATE
        if self.role is not expected:
            return
        if m.pre_vote and m.term != self.term + 1 and m.granted:
            return
        self._votes.granted[m.src] = m.granted
        self._tally()

    # ------------------------------------------------------------------ plumbing
    def _send(self, m: Message) -> None:
        self._msgs.append(m)
