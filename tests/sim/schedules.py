"""Families of seeded random schedules for the cluster simulator, shared by
the schedule tests and the mutation checks.

A family fixes the network and fault parameters; the seed picks everything
else (timeouts, losses, partitions, crashes, client load, membership
changes). ``Family.check(seed)`` replays one schedule and raises with the
family and the seed in the message, so any failure can be replayed with
``FAMILIES[name].check(seed)`` (or stepped through from ``FAMILIES[name].make(seed)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from node.raft import CoreConfig, NodeId, RaftCore
from node.raft.sim import Sim

# The simulator's own timing (it ticks once per round); variants only change flags.
SIM_TIMING = CoreConfig(election_ticks=(10, 20), heartbeat_ticks=2, max_append_bytes=4096)
CLASSIC = replace(SIM_TIMING, pre_vote=False, check_quorum=False)
PRE_VOTE_ONLY = replace(SIM_TIMING, check_quorum=False)
CHECK_QUORUM_ONLY = replace(SIM_TIMING, pre_vote=False)
ONE_ENTRY_PER_APPEND = replace(SIM_TIMING, max_append_bytes=1)
CATCHUP = replace(SIM_TIMING, snapshot_catchup_entries=12)  # compaction keeps 12 entries below the snapshot

ConfigFor = Callable[[int, NodeId], CoreConfig]  # (seed, node) -> its configuration


class MixedSim(Sim):
    """A Sim whose nodes may run different CoreConfigs (same timing, other flags)."""

    def __init__(self, voters: int, seed: int, *, config_for: Callable[[NodeId], CoreConfig], **kwargs: Any) -> None:
        self._config_for = config_for
        super().__init__(voters, seed, **kwargs)

    def _start(self, nid: NodeId) -> None:
        super()._start(nid)
        core = self.nodes[nid].core
        assert core is not None
        cfg = self._config_for(nid)
        assert cfg.election_ticks == core.cfg.election_ticks, "variants must keep the simulator's timing"
        core.cfg = cfg


class LeaderHuntSim(Sim):
    """A Sim whose nemesis also goes after the current leader: each round, with
    probability ``hunt``, the leader crashes or is isolated, and a crashed node
    restarts. Leaders then die with old-term entries half replicated, which is
    the ground Figure 8 (§5.4.2) grows on."""

    def __init__(self, voters: int, seed: int, *, hunt: float, **kwargs: Any) -> None:
        self.hunt = hunt
        super().__init__(voters, seed, **kwargs)

    def _nemesis(self) -> None:
        super()._nemesis()
        if self.rng.random() < self.hunt:
            ld = self.leader()
            if ld is not None:
                if self.rng.random() < 0.5:
                    self.crash(ld.id)
                else:
                    self.partition([ld.id], [n for n in sorted(self.nodes) if n != ld.id])
        if self.rng.random() < self.hunt:
            down = [n for n in sorted(self.nodes) if not self.nodes[n].alive]
            if down:
                self.restart(down[0])
        if self.rng.random() < self.hunt / 3:
            self.heal()


def flag_variants(seed: int, node: NodeId) -> CoreConfig:
    """Seed % 4: PreVote and CheckQuorum both off, only PreVote, only CheckQuorum, or mixed per node."""
    variant = seed % 4
    if variant < 3:
        return (CLASSIC, PRE_VOTE_ONLY, CHECK_QUORUM_ONLY)[variant]
    cycle = (CLASSIC, SIM_TIMING, PRE_VOTE_ONLY, CHECK_QUORUM_ONLY)
    return cycle[(int(node[1:]) + seed // 4) % len(cycle)]


@dataclass(frozen=True)
class Stats:
    acked: int
    reads: int
    leaders: int
    snapshots: int
    membership_changed: bool


@dataclass(frozen=True)
class Family:
    name: str
    seeds: int
    voters: int | Callable[[int], int] = 5
    spares: int = 0
    loss: float = 0.0
    duplicate: float = 0.0
    max_delay: int = 3
    chaos: float = 1.0
    snapshot_every: int | None = None
    membership: bool = False
    rounds: int = 600
    config: CoreConfig = SIM_TIMING
    config_for: ConfigFor | None = field(default=None)
    hunt: float = 0.0  # > 0: a LeaderHuntSim

    def voters_for(self, seed: int) -> int:
        return self.voters(seed) if callable(self.voters) else self.voters

    def make(self, seed: int) -> Sim:
        kwargs: dict[str, Any] = dict(
            loss=self.loss,
            duplicate=self.duplicate,
            max_delay=self.max_delay,
            spares=self.spares,
            snapshot_every=self.snapshot_every,
            config=self.config,
            chaos=self.chaos,
        )
        if self.hunt:
            assert self.config_for is None
            return LeaderHuntSim(self.voters_for(seed), seed, hunt=self.hunt, **kwargs)
        if self.config_for is None:
            return Sim(self.voters_for(seed), seed, **kwargs)
        pick = self.config_for
        return MixedSim(self.voters_for(seed), seed, config_for=lambda n: pick(seed, n), **kwargs)

    def run(self, seed: int) -> Sim:
        sim = self.make(seed)
        sim.run(self.rounds, nemesis=True, membership=self.membership)
        return sim

    def check(self, seed: int) -> Stats:
        """Run one schedule, heal, and check every safety property; the error names the seed."""
        sim: Sim | None = None
        try:
            sim = self.run(seed)
            sim.settle()
            sim.assert_no_acked_write_lost()
            assert_same_state_machines(sim)
        except AssertionError as e:
            where = f"family {self.name} seed={seed} round={sim.round if sim else 0}"
            raise type(e)(f"[{where}; replay: FAMILIES[{self.name!r}].check({seed})] {e}") from e
        return stats(sim, self.voters_for(seed))


def core_of(sim: Sim, nid: str) -> RaftCore:
    core = sim.nodes[NodeId(nid)].core
    assert core is not None, f"seed={sim.seed}: {nid} is down"
    return core


def assert_same_state_machines(sim: Sim) -> None:
    """After settle(): every member applied the same commands in the same order."""
    ld = sim.leader()
    assert ld is not None and ld.core is not None, "no leader after settle"
    members = sorted(ld.core.membership.ids)
    states = {m: tuple(sim.nodes[m].sm) for m in members}
    assert len(set(states.values())) == 1, f"state machines differ: { {m: len(s) for m, s in states.items()} }"
    applied = {m: core_of(sim, m).applied for m in members}
    assert set(applied.values()) == {ld.core.commit}, f"applied indexes differ: {applied}"


def stats(sim: Sim, voters: int) -> Stats:
    initial = {NodeId(f"n{i}") for i in range(1, voters + 1)}
    ld = sim.leader()
    final = ld.core.membership.voters if ld is not None and ld.core is not None else initial
    return Stats(
        acked=len(sim.acked),
        reads=sim.reads_served,
        leaders=len(sim.leaders),
        snapshots=sum(1 for n in sim.nodes.values() if n.core is not None and n.core.log.snapshot_index > 0),
        membership_changed=final != initial,
    )


FAMILIES: dict[str, Family] = {
    # (a) the full mix: 5 voters + 1 spare, loss, duplicates, snapshots, membership changes, nemesis
    "a": Family("a", seeds=400, voters=5, spares=1, loss=0.05, duplicate=0.02, snapshot_every=30, membership=True),
    # (b) PreVote / CheckQuorum off, alone and mixed per node
    "b": Family("b", seeds=300, voters=5, spares=1, loss=0.05, duplicate=0.02, snapshot_every=30, membership=True,
                config_for=flag_variants),
    # (c) high chaos, one entry per AppendEntries (old-term entries travel alone: Figure 8 territory)
    "c": Family("c", seeds=600, voters=lambda seed: 3 if seed % 2 == 0 else 5, loss=0.15, duplicate=0.02,
                max_delay=6, chaos=6, config=ONE_ENTRY_PER_APPEND),
    # (d) 3 voters (+1 spare that joins and leaves), snapshots
    "d": Family("d", seeds=400, voters=3, spares=1, loss=0.05, duplicate=0.02, snapshot_every=30, membership=True),
    # (e) like (c) with 3 voters, and a nemesis that hunts the leader: the Figure 8 detector
    "e": Family("e", seeds=300, voters=3, loss=0.15, duplicate=0.02, max_delay=6,
                config=ONE_ENTRY_PER_APPEND, hunt=0.1),
    # (f) like (a), compacting often but keeping catch-up entries: a follower a little behind
    # gets AppendEntries from below the leader's snapshot, one further behind a snapshot
    "f": Family("f", seeds=200, voters=5, spares=1, loss=0.05, duplicate=0.02, snapshot_every=20,
                membership=True, config=CATCHUP),
}
