"""A deterministic in-memory cluster of RaftCores for testing.

Virtual rounds replace time: each round every live node ticks once, the
network delivers what is due, clients submit work and every node drains its
Ready exactly as the real driver does (persist, send, apply, advance). The
network, driven by one seeded ``random.Random``, drops, delays, duplicates and
reorders messages and honours partitions; nodes crash (losing whatever was
not persisted, sometimes in the middle of a Ready) and restart from their
"disk". Membership changes (add a learner, promote it, remove a voter) run
through the same leader API the node uses.

After every round the simulator checks the safety properties; a violation
raises ``InvariantError`` naming the seed, so ``Sim(seed=...)`` replays it.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .core import CoreConfig, InitialState, RaftCore, Ready
from .errors import MembershipChangeError, NotLeaderError, ProposalDroppedError
from .messages import InstallSnapshot, Message
from .types import (
    Entry,
    EntryKind,
    HardState,
    Index,
    Member,
    Membership,
    NodeId,
    Role,
    SnapshotMeta,
    Term,
)


class InvariantError(AssertionError):
    pass


@dataclass
class Disk:
    """What survives a crash: hard state, snapshot, log and the applied state machine."""

    hard_state: HardState
    snapshot: SnapshotMeta
    snapshot_data: bytes
    entries: list[Entry]
    applied: Index
    sm: list[str]  # the state machine: the applied commands, in order


@dataclass
class SimNode:
    id: NodeId
    disk: Disk
    core: RaftCore | None = None
    sm: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    @property
    def alive(self) -> bool:
        return self.core is not None


@dataclass
class _Proposal:
    node: NodeId
    index: Index
    term: Term
    data: str


@dataclass
class _Read:
    node: NodeId
    term: Term
    floor: Index  # highest index of any write acknowledged before the read began


class Sim:
    def __init__(
        self,
        voters: int = 5,
        seed: int = 0,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        max_delay: int = 3,
        spares: int = 0,
        snapshot_every: int | None = None,
        config: CoreConfig | None = None,
        chaos: float = 1.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.loss = loss
        self.duplicate = duplicate
        self.max_delay = max_delay
        self.snapshot_every = snapshot_every
        self.chaos = chaos  # multiplies the nemesis' fault rates
        self.cfg = config or CoreConfig(election_ticks=(10, 20), heartbeat_ticks=2, max_append_bytes=4096)
        self.round = 0
        ids = [NodeId(f"n{i}") for i in range(1, voters + spares + 1)]
        initial = Membership.of([Member(i, f"sim:{i}") for i in ids[:voters]])
        self.nodes: dict[NodeId, SimNode] = {}
        for i in ids:
            boot = initial if i in initial.ids else Membership()
            disk = Disk(HardState(Term(0), None, Index(0)), SnapshotMeta(Index(0), Term(0), boot), b"[]", [],
                        Index(0), [])
            self.nodes[i] = SimNode(i, disk)
            self._start(i)
        self.net: list[tuple[int, int, Message]] = []
        self._seq = 0
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.snapshot_failures: list[tuple[NodeId, NodeId]] = []  # (leader, peer), reported next round
        self.leaders: dict[Term, NodeId] = {}
        self.committed: dict[Index, tuple[Term, str]] = {}
        self.acked: dict[str, Index] = {}
        self.max_acked = Index(0)
        self.proposals: list[_Proposal] = []
        self.reads: dict[int, _Read] = {}
        self.reads_served = 0
        self._ctx = 0
        self._client_n = 0

    # ------------------------------------------------------------- lifecycle
    def _start(self, nid: NodeId) -> None:
        n = self.nodes[nid]
        d = n.disk
        state = InitialState(d.hard_state, d.snapshot, tuple(d.entries), d.applied)
        n.core = RaftCore(nid, state, self.cfg, random.Random(self.rng.random()))
        n.sm = list(d.sm)
        n.seen = set(n.sm)

    def crash(self, nid: NodeId) -> None:
        self.nodes[nid].core = None

    def restart(self, nid: NodeId) -> None:
        if not self.nodes[nid].alive:
            self._start(nid)

    def partition(self, *groups: Iterable[str]) -> None:
        where = {n: gi for gi, g in enumerate(groups) for n in g}
        self.blocked = {
            (a, b) for a in self.nodes for b in self.nodes if a != b and where.get(a, -1) != where.get(b, -2)
        }

    def heal(self) -> None:
        self.blocked = set()

    # ------------------------------------------------------------- the loop
    def run(self, rounds: int, *, clients: bool = True, nemesis: bool = False, membership: bool = False) -> None:
        for _ in range(rounds):
            self.step(clients=clients, nemesis=nemesis, membership=membership)

    def step(self, *, clients: bool = True, nemesis: bool = False, membership: bool = False) -> None:
        self.round += 1
        if nemesis:
            self._nemesis()
        for n in self.nodes.values():
            if n.core is not None:
                n.core.tick()
        self._deliver()
        if clients:
            self._clients()
        if membership and self.round % 40 == 0:
            self._change_membership()
        for nid in self.nodes:
            self._drain(nid, may_crash=nemesis)
        self.check()

    def _deliver(self) -> None:
        # like the node's transport: a snapshot that could not be sent (a cut link refuses the
        # connection) is reported to its sender, later, as the driver's inbox would
        failures, self.snapshot_failures = self.snapshot_failures, []
        for src, dst in failures:
            sender = self.nodes[src].core
            if sender is not None:
                sender.report_snapshot_failed(dst)
        while self.net and self.net[0][0] <= self.round:
            _, _, m = heapq.heappop(self.net)
            n = self.nodes[m.dst]
            if n.core is not None:
                n.core.step(m)

    def _send(self, m: Message) -> None:
        if (m.src, m.dst) in self.blocked:
            if isinstance(m, InstallSnapshot):
                self.snapshot_failures.append((m.src, m.dst))
            return
        if self.rng.random() < self.loss:  # lost on the way: nobody notices
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            self._seq += 1
            heapq.heappush(self.net, (self.round + self.rng.randint(0, self.max_delay), self._seq, m))

    def _drain(self, nid: NodeId, may_crash: bool = False) -> None:
        n = self.nodes[nid]
        while n.core is not None and (rd := n.core.ready()) is not None:
            for m in rd.messages_now():  # like the node (§10.2.1): the core's rule, Ready.appends_early
                self._send(m)
            msgs = rd.messages_after()
            if may_crash and self.rng.random() < 0.002 * self.chaos:
                if self.rng.random() < 0.5:
                    self._persist(n, rd)  # durable, but the messages never left
                self.crash(nid)
                return
            self._persist(n, rd)
            for m in msgs:
                if isinstance(m, InstallSnapshot):
                    assert n.disk.snapshot.index == m.meta.index, "snapshot message and disk disagree"
                    m = replace(m, data=n.disk.snapshot_data)
                self._send(m)
            self._serve_reads(n, rd)
            n.core.advance(rd)
            self._ack(n, rd)
            self._maybe_snapshot(n)

    def _persist(self, n: SimNode, rd: Ready) -> None:
        d = n.disk
        if rd.snapshot is not None:
            d.snapshot = rd.snapshot.meta
            d.snapshot_data = rd.snapshot.data
            d.entries = []
            n.sm = json.loads(rd.snapshot.data)
            n.seen = set(n.sm)
            d.applied = rd.snapshot.meta.index
        if rd.entries:
            first = rd.entries[0].index
            d.entries = [e for e in d.entries if e.index < first] + list(rd.entries)
        if rd.hard_state is not None:
            d.hard_state = rd.hard_state
        for e in rd.committed:
            self._apply(n, e)
        d.sm = list(n.sm)
        d.applied = Index(max(d.applied, rd.committed[-1].index if rd.committed else 0))

    def _apply(self, n: SimNode, e: Entry) -> None:
        prev = self.committed.get(e.index)
        if prev is None:
            self.committed[e.index] = (e.term, e.data)
        elif prev != (e.term, e.data):
            self.fail(f"state machine safety: {n.id} applied {e} but {prev} was applied at {e.index}")
        if e.kind is EntryKind.NORMAL:
            if e.data in n.seen:
                self.fail(f"{n.id} applied {e.data} twice")
            n.seen.add(e.data)
            n.sm.append(e.data)

    def _ack(self, n: SimNode, rd: Ready) -> None:
        if not rd.committed:
            return
        applied_upto = rd.committed[-1].index
        keep = []
        for p in self.proposals:
            if p.node != n.id or p.index > applied_upto:
                keep.append(p)
                continue
            term = self.committed[p.index][0] if p.index in self.committed else None
            if term == p.term:
                self.acked[p.data] = p.index
                self.max_acked = Index(max(self.max_acked, p.index))
        self.proposals = keep

    def _serve_reads(self, n: SimNode, rd: Ready) -> None:
        for r in rd.reads:
            read = self.reads.pop(r.ctx, None)
            if read is None:
                continue
            if r.index < read.floor:
                self.fail(f"stale read on {n.id}: read index {r.index} < acknowledged write {read.floor}")
            self.reads_served += 1

    def _maybe_snapshot(self, n: SimNode) -> None:
        if self.snapshot_every is None or n.core is None:
            return
        core = n.core
        if core.applied - core.log.snapshot_index < self.snapshot_every or core.applied > core.log.stable_index:
            return
        meta = core.snapshot_meta_at(core.applied)
        start = core.compaction_start(meta.index)  # like the node: catch-up entries stay on disk
        n.disk.snapshot = meta
        n.disk.snapshot_data = json.dumps(n.sm).encode()
        n.disk.entries = [e for e in n.disk.entries if e.index >= start]
        core.compact(meta.index)

    # ------------------------------------------------------------- actors
    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        best_term = -1  # below every term
        for n in self.nodes.values():
            if n.core is not None and n.core.role is Role.LEADER and n.core.term > best_term:
                best, best_term = n, n.core.term
        return best

    def _clients(self) -> None:
        for _ in range(self.rng.randint(0, 3)):
            n = self.nodes[self.rng.choice(sorted(self.nodes))]
            if n.core is None:
                continue
            try:
                if self.rng.random() < 0.7:
                    self._client_n += 1
                    data = f"w{self._client_n}"
                    idx = n.core.propose(data)
                    self.proposals.append(_Proposal(n.id, idx, n.core.term, data))
                else:
                    self._ctx += 1
                    n.core.read_index(self._ctx)
                    self.reads[self._ctx] = _Read(n.id, n.core.term, self.max_acked)
            except (NotLeaderError, ProposalDroppedError):
                pass

    def _nemesis(self) -> None:
        r = self.rng.random() / self.chaos
        ids = sorted(self.nodes)
        if r < 0.01:
            self.rng.shuffle(ids)
            cut = self.rng.randint(1, len(ids) - 1)
            self.partition(ids[:cut], ids[cut:])
        elif r < 0.02:
            self.heal()
        elif r < 0.025:
            self.crash(self.rng.choice(ids))
        elif r < 0.04:
            self.restart(self.rng.choice(ids))
        elif r < 0.042:
            ld = self.leader()
            if ld is not None and ld.core is not None:
                try:
                    ld.core.transfer_leadership(None)
                except (MembershipChangeError, NotLeaderError):
                    pass

    def _change_membership(self) -> None:
        ld = self.leader()
        if ld is None or ld.core is None:
            return
        core = ld.core
        m = core.membership
        outside = [i for i in sorted(self.nodes) if i not in m.ids]
        learners = [x for x in m.members if not x.voter]
        try:
            if learners:
                x = learners[0]
                pr = core.progress(x.id)
                if pr is not None and pr.match_index >= core.commit:
                    core.propose_membership(m.with_member(Member(x.id, x.address, True)))
            elif outside and self.rng.random() < 0.5:
                core.propose_membership(m.with_member(Member(outside[0], f"sim:{outside[0]}", False)))
            elif len(m.voters) > 3:
                victim = self.rng.choice(sorted(m.voters))
                core.propose_membership(m.without(victim))
        except (ProposalDroppedError, MembershipChangeError, NotLeaderError):
            pass

    # ------------------------------------------------------------- checking
    def fail(self, what: str) -> None:
        raise InvariantError(f"seed={self.seed} round={self.round}: {what}")

    def check(self) -> None:
        """Election safety and leader completeness every round; log matching every 25."""
        for n in self.nodes.values():
            c = n.core
            if c is None:
                continue
            assert c.applied <= c.commit <= c.log.last_index, f"seed={self.seed}: {n.id} index order"
            if c.role is Role.LEADER:
                known = self.leaders.setdefault(c.term, n.id)
                if known != n.id:
                    self.fail(f"election safety: {known} and {n.id} both lead term {c.term}")
                if getattr(c, "_sim_checked_term", None) != c.term:
                    # the simulator's mark on this core object (a restarted node's new core is checked again)
                    c._sim_checked_term = c.term  # type: ignore[attr-defined]
                    self._check_completeness(n)
        if self.round % 25 == 0:
            self.check_log_matching()

    def _check_completeness(self, n: SimNode) -> None:
        c = n.core
        assert c is not None
        for idx, (term, _) in self.committed.items():
            if idx <= c.log.snapshot_index:
                continue
            if c.log.term(idx) != term:
                self.fail(f"leader completeness: {n.id} leads term {c.term} without committed entry {idx}")

    def check_log_matching(self) -> None:
        logs = [n.core.log for n in self.nodes.values() if n.core is not None]
        for i, a in enumerate(logs):
            for b in logs[i + 1 :]:
                lo = max(a.snapshot_index, b.snapshot_index) + 1
                hi = min(a.last_index, b.last_index)
                agree = False
                for idx in range(hi, lo - 1, -1):
                    ea, eb = a.entry(idx), b.entry(idx)
                    if agree or ea.term == eb.term:
                        if ea != eb:
                            self.fail(f"log matching: {ea} != {eb}")
                        agree = True

    def settle(self, rounds: int = 2000) -> None:
        """Heal, restart everyone, and run until all members agree (liveness)."""
        self.heal()
        for nid in self.nodes:
            self.restart(nid)
        for _ in range(rounds):
            self.step(clients=False)
            ld = self.leader()
            if ld is None or ld.core is None or ld.core.commit < ld.core.log.last_index:
                continue
            members = ld.core.membership.ids
            live = [self.nodes[m].core for m in members]
            if all(c is not None and c.applied == ld.core.commit for c in live):
                return
        self.fail("no convergence after healing")

    def assert_no_acked_write_lost(self) -> None:
        ld = self.leader()
        assert ld is not None and ld.core is not None
        for nid in ld.core.membership.ids:
            n = self.nodes[nid]
            missing = [d for d in self.acked if d not in n.seen]
            if missing:
                self.fail(f"{nid} lost acknowledged writes {missing[:5]}")
