"""Thousands of seeded random schedules through the cluster simulator
(node/raft/sim.py): the simulator checks election safety, leader
completeness, log matching, state machine safety and stale reads every
round; after each schedule the cluster is healed and must converge without
losing an acknowledged write. Every failure names the family and the seed.
"""

from __future__ import annotations

import weakref

import pytest

from node.raft import (
    AppendEntries,
    AppendEntriesReply,
    CoreConfig,
    HardState,
    InstallSnapshot,
    Member,
    Message,
    NodeId,
    RaftCore,
    Ready,
    RequestVote,
    RequestVoteReply,
    Role,
)
from node.raft.sim import Sim

from .schedules import CLASSIC, FAMILIES, SIM_TIMING, Stats, assert_same_state_machines, core_of


def seeds(family: str) -> range:
    return range(FAMILIES[family].seeds)


# ------------------------------------------------------------------ the families


@pytest.mark.parametrize("seed", seeds("a"))
def test_full_mix(seed: int) -> None:  # loss, duplicates, snapshots, membership changes, nemesis
    FAMILIES["a"].check(seed)


@pytest.mark.parametrize("seed", seeds("b"))
def test_pre_vote_and_check_quorum_variants(seed: int) -> None:  # §9.6 off, alone, mixed
    FAMILIES["b"].check(seed)


@pytest.mark.parametrize("seed", seeds("c"))
def test_high_chaos_one_entry_per_append(seed: int) -> None:  # §5.4.2 territory
    FAMILIES["c"].check(seed)


@pytest.mark.parametrize("seed", seeds("d"))
def test_three_voters(seed: int) -> None:
    FAMILIES["d"].check(seed)


@pytest.mark.parametrize("seed", seeds("e"))
def test_leader_hunting_nemesis(seed: int) -> None:  # §5.4.2: leaders die with half-replicated entries
    FAMILIES["e"].check(seed)


@pytest.mark.parametrize("seed", seeds("f"))
def test_snapshots_with_catch_up_entries(seed: int) -> None:  # §7 with etcd's catch-up entries
    FAMILIES["f"].check(seed)


# ------------------------------------------------------------------ the simulator did something

SAMPLE = 12  # schedules per family


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_exercises_the_cluster(name: str) -> None:
    """A broken simulator (no delivery, no clients, no faults) must not pass silently."""
    family = FAMILIES[name]
    stats: list[Stats] = [family.check(seed) for seed in range(SAMPLE)]
    where = f"family {name}, seeds 0..{SAMPLE - 1}"
    assert sum(s.acked for s in stats) >= 5 * SAMPLE, f"{where}: too few acknowledged writes"
    assert sum(s.reads for s in stats) > 0, f"{where}: no read was served"
    assert sum(s.leaders - 1 for s in stats) >= SAMPLE, f"{where}: too few leader changes"
    if family.snapshot_every is not None:
        assert any(s.snapshots for s in stats), f"{where}: no snapshot was taken"
    if family.membership:
        assert any(s.membership_changed for s in stats), f"{where}: the membership never changed"


def test_catch_up_entries_and_snapshots_both_bring_followers_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Family f uses both ways: appends that start below the sender's snapshot (catch-up
    entries), and InstallSnapshot for followers further behind."""
    counts = {"catch-up appends": 0, "snapshots": 0}
    real_send = Sim._send

    def counting_send(self: Sim, m: Message) -> None:
        src = self.nodes[m.src].core
        if isinstance(m, InstallSnapshot):
            counts["snapshots"] += 1
        elif isinstance(m, AppendEntries) and m.entries and src is not None and m.prev_index < src.log.snapshot_index:
            counts["catch-up appends"] += 1
        real_send(self, m)

    monkeypatch.setattr(Sim, "_send", counting_send)
    for seed in range(SAMPLE):
        FAMILIES["f"].run(seed)
    assert all(counts.values()), counts


# ------------------------------------------------------------------ targeted schedules


def run_until_leader(sim: Sim, limit: int = 300) -> NodeId:
    for _ in range(limit):
        sim.step()
        ld = sim.leader()
        if ld is not None and ld.core is not None and ld.core.commit >= 1:
            return ld.id
    raise AssertionError(f"seed={sim.seed}: no leader after {limit} rounds")


@pytest.mark.parametrize("config", [SIM_TIMING, CLASSIC], ids=["check-quorum", "classic"])
@pytest.mark.parametrize("seed", range(8))
def test_partitioned_minority_never_commits(seed: int, config: CoreConfig) -> None:  # §5.2, §5.3
    sim = Sim(5, seed, config=config)
    old = run_until_leader(sim)
    others = sorted(n for n in sim.nodes if n != old)
    minority, majority = [old, others[0]], others[1:]
    sim.partition(minority, majority)
    for _ in range(sim.max_delay + 1):  # what was already in flight lands
        sim.step()
    # the follower may still learn the old leader's commit index, but nothing beyond it
    ceiling = max(core_of(sim, n).commit for n in minority)
    for _ in range(300):  # clients keep writing to every node, the old leader included
        sim.step()
        now = {n: core_of(sim, n).commit for n in minority}
        assert max(now.values()) <= ceiling, f"seed={seed} round={sim.round}: the minority committed {now}"
    new = sim.leader()
    assert new is not None and new.id in majority and new.core is not None, f"seed={seed}"
    assert new.core.commit > ceiling, f"seed={seed}: the majority made no progress"
    old_core = sim.nodes[old].core
    assert old_core is not None
    if not config.check_quorum:  # the deposed leader went on accepting writes it can never commit
        assert old_core.role is Role.LEADER and old_core.last_index > old_core.commit, f"seed={seed}"
    sim.settle()
    sim.assert_no_acked_write_lost()
    assert_same_state_machines(sim)


@pytest.mark.parametrize("config", [SIM_TIMING, CLASSIC], ids=["check-quorum", "classic"])
@pytest.mark.parametrize("seed", range(6))
def test_two_learners_do_not_replace_two_lost_voters(seed: int, config: CoreConfig) -> None:  # §4.2.1
    # 3 voters + 2 learners: with 2 voters down, the leader and both learners are 3 of 5
    # members, so counting learners in any quorum (commit, ReadIndex, CheckQuorum, votes)
    # would let writes commit or reads be served. Nothing may be.
    sim = Sim(3, seed, spares=2, config=config)
    leader = run_until_leader(sim)
    for name in ("n4", "n5"):
        core = core_of(sim, leader)
        idx = core.propose_membership(core.membership.with_member(Member(NodeId(name), f"sim:{name}", voter=False)))
        for _ in range(200):
            sim.step()
            if core_of(sim, leader).commit >= idx and core_of(sim, name).commit >= idx:
                break
        else:
            raise AssertionError(f"seed={seed}: {name} was not added as a learner")
    m = core_of(sim, leader).membership
    assert (m.voters, m.ids - m.voters) == ({"n1", "n2", "n3"}, {"n4", "n5"}), f"seed={seed}"
    for name in sorted(m.voters - {leader}):
        sim.crash(name)
    for _ in range(sim.max_delay + 1):  # what was already in flight lands
        sim.step()
    ceiling = max(core_of(sim, n).commit for n in (leader, "n4", "n5"))
    reads, acked = sim.reads_served, len(sim.acked)
    for _ in range(300):  # clients keep writing and reading at every live node
        sim.step()
        now = {n: core_of(sim, n).commit for n in (leader, "n4", "n5")}
        assert max(now.values()) <= ceiling, f"seed={seed} round={sim.round}: committed {now} without a majority"
    assert (sim.reads_served, len(sim.acked)) == (reads, acked), f"seed={seed}: served a read or acked a write"
    if config.check_quorum:  # learners' heartbeat replies do not keep it leading
        assert core_of(sim, leader).role is not Role.LEADER, f"seed={seed}: still leading with only learners"
    else:  # it went on appending; the learners got the entries, which never commit
        assert core_of(sim, "n4").last_index > ceiling, f"seed={seed}"
    sim.settle()
    sim.assert_no_acked_write_lost()
    assert_same_state_machines(sim)


@pytest.mark.parametrize("seed", range(20))
def test_after_heal_all_applied_sequences_are_identical(seed: int) -> None:  # §5.4.3 state machine safety
    sim = Sim(5, seed, loss=0.1, duplicate=0.05, snapshot_every=25)
    sim.run(300, nemesis=True)
    ids = sorted(sim.nodes)
    sim.partition(ids[:2], ids[2:])  # end on a split brain before healing
    sim.run(100)
    sim.settle()
    sim.check_log_matching()
    # every node applied exactly the client commands committed, in log order
    expected = [data for _, (_, data) in sorted(sim.committed.items()) if data.startswith("w")]
    leader = sim.leader()
    assert leader is not None and leader.core is not None, f"seed={seed}"
    for nid, node in sim.nodes.items():
        assert node.sm == expected, f"seed={seed}: {nid} applied another sequence"
        assert core_of(sim, nid).applied == leader.core.commit, f"seed={seed}: {nid} is behind"
    assert set(sim.acked) <= set(expected), f"seed={seed}"


@pytest.mark.parametrize("seed", range(10))
def test_whole_cluster_crash_loses_no_acknowledged_write(seed: int) -> None:  # §5.1 durability
    sim = Sim(3, seed, loss=0.05)
    sim.run(150)
    acked = len(sim.acked)
    assert acked > 0, f"seed={seed}"
    for nid in sorted(sim.nodes):
        sim.crash(nid)
    sim.run(5, clients=False)
    sim.settle()  # restarts everyone from disk
    sim.assert_no_acked_write_lost()
    assert_same_state_machines(sim)


@pytest.mark.parametrize("family", ["a", "b", "c"])
def test_has_ready_announces_every_ready_under_random_schedules(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # the driver contract: a driver may sleep until has_ready()
    real_ready = RaftCore.ready

    def checked_ready(self: RaftCore) -> Ready | None:
        announced = self.has_ready()
        rd = real_ready(self)
        assert rd is None or announced, f"{self.id} ({self.role.value}): ready() had output, has_ready() said no: {rd}"
        return rd

    monkeypatch.setattr(RaftCore, "ready", checked_ready)
    for seed in range(8):
        FAMILIES[family].check(seed)


@pytest.mark.parametrize("family", ["a", "b", "c"])
def test_messages_leave_only_after_what_they_promise_is_durable(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # §5.1 / Figure 2: "respond to RPCs only after updating stable storage"
    real_ready = RaftCore.ready
    durable: weakref.WeakKeyDictionary[RaftCore, HardState] = weakref.WeakKeyDictionary()  # on disk after this Ready

    def checked_ready(self: RaftCore) -> Ready | None:
        before = durable.get(self, self._prev_hard_state)  # noqa: SLF001 (what the core knows is on disk)
        rd = real_ready(self)
        if rd is None:
            return rd
        hs = rd.hard_state or before
        durable[self] = hs
        last_durable = max(
            self.log.stable_index,
            rd.entries[-1].index if rd.entries else 0,
            rd.snapshot.meta.index if rd.snapshot else 0,
        )
        for m in rd.messages:
            where = f"{self.id}: {m} with durable {hs}"
            if isinstance(m, (RequestVote, RequestVoteReply)) and m.pre_vote:
                continue  # promises nothing (§9.6)
            assert m.term <= hs.term, where
            if m.term < hs.term:
                continue  # about an older term: this node can never act in it again
            if isinstance(m, RequestVote):
                assert hs.voted_for == self.id, where  # a candidate's own vote
            elif isinstance(m, RequestVoteReply) and m.granted:
                assert hs.voted_for == m.dst, where  # one vote per term
            elif isinstance(m, AppendEntriesReply) and m.success:
                assert m.match_index <= last_durable, where  # acknowledged entries are on disk
        return rd

    monkeypatch.setattr(RaftCore, "ready", checked_ready)
    for seed in range(8):
        FAMILIES[family].check(seed)


@pytest.mark.parametrize("name", ["a", "e"])
def test_a_seed_replays_the_same_schedule(name: str) -> None:  # what makes "seed=N" in a failure useful
    first, second = FAMILIES[name].run(3), FAMILIES[name].run(3)
    assert first.round == second.round and first.leaders == second.leaders
    assert first.committed == second.committed and first.acked == second.acked
    assert {n: s.sm for n, s in first.nodes.items()} == {n: s.sm for n, s in second.nodes.items()}
