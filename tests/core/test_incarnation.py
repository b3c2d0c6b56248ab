"""Issue 10: a wiped node that comes back under the same id must not vote twice
in one term. The double vote itself, scripted on cores, with and without the
peer endpoint's incarnation check (node/incarnation.py, applied by
Runtime.admit before a batch is stepped); the check's rules; the member
record on the wire; and no vote from a node that has no configuration yet."""

from __future__ import annotations

import dataclasses

import pytest

from node import incarnation as inc
from node.raft import (
    CoreConfig,
    Index,
    InstallSnapshot,
    Member,
    Membership,
    Message,
    NodeId,
    RequestVote,
    RequestVoteReply,
    Role,
    SnapshotMeta,
    Term,
)
from node.wire import decode, encode
from tests.core.helpers import ELECTION_MAX, ELECTION_MIN, HEARTBEAT, Net, make_core, of_type, tick_until

CFG = CoreConfig(election_ticks=(ELECTION_MIN, ELECTION_MAX), heartbeat_ticks=HEARTBEAT, pre_vote=False)
OLD, NEW = "a1b2c3", "ffee00"  # n3's incarnation before and after its data dir was wiped


def with_incarnations(m: Membership, incs: dict[str, str]) -> Membership:
    return Membership.of([dataclasses.replace(x, incarnation=incs.get(x.id)) for x in m.members])


class Gate:
    """The receiving side of the peer endpoint: what Runtime.admit does, without I/O."""

    def __init__(self, recorded: dict[str, dict[str, str]], presented: dict[str, str]) -> None:
        self.recorded = recorded  # receiver -> {peer: incarnation}
        self.presented = presented  # sender -> the incarnation its batches carry
        self.refused: list[Message] = []

    def admit(self, net: Net, m: Message) -> bool:
        table = self.recorded.setdefault(m.dst, {})
        v = inc.judge(self.presented[m.src], net[m.dst].membership.get(m.src), table.get(m.src))
        if v is inc.Verdict.REFUSE:
            self.refused.append(m)
            return False
        if v in (inc.Verdict.RECORD, inc.Verdict.SYNC):
            table[m.src] = self.presented[m.src]
        return True


def deliver(net: Net, gate: Gate | None, *msgs: Message) -> None:
    for m in msgs:
        net.queue.remove(m)
        if gate is None or gate.admit(net, m):
            net[m.dst].step(m)


def double_vote_scenario(config: Membership | None, recorded_by_n2: dict[str, str],
                         gated: bool) -> tuple[Net, Gate]:
    """n3 votes for n1 in term 1 (n2 hears nothing), n3's data dir is wiped, and n2 asks
    the new n3 for a vote in the same term 1."""
    snap = SnapshotMeta(Index(0), Term(0), config) if config is not None else None
    net = Net({n: make_core(n, config=CFG, seed=i, snapshot=snap) for i, n in enumerate(("n1", "n2", "n3"))})
    gate = Gate({"n2": dict(recorded_by_n2)}, {"n1": "i1", "n2": "i2", "n3": OLD})
    g = gate if gated else None

    tick_until(net["n1"], lambda c: c.role is Role.CANDIDATE, limit=10 * ELECTION_MAX)
    net.flush()
    asks = of_type(net.queue, RequestVote)
    net.drop(lambda m: m.dst == "n2")  # n2 is cut off: it hears nothing of term 1
    deliver(net, g, *[m for m in asks if m.dst == "n3"])
    net.flush("n3")
    deliver(net, g, *of_type(net.queue, RequestVoteReply))
    net.flush("n1")
    assert net["n1"].role is Role.LEADER and net["n1"].term == 1
    net.drop()

    # n3's data dir is wiped: a fresh core, term 0, no vote, under a new incarnation
    net.cores["n3"] = make_core("n3", config=CFG, seed=7)
    gate.presented["n3"] = NEW
    net.down.add("n1")  # n1 is cut off from now on

    tick_until(net["n2"], lambda c: c.role is Role.CANDIDATE, limit=10 * ELECTION_MAX)
    net.flush("n2")
    assert net["n2"].term == 1  # the same term n3 already voted in
    deliver(net, g, *[m for m in of_type(net.queue, RequestVote) if m.dst == "n3"])
    net.flush("n3")
    deliver(net, g, *[m for m in of_type(net.queue, RequestVoteReply) if m.dst == "n2"])
    net.flush("n2")
    return net, gate


def test_without_the_check_a_wiped_node_votes_twice_in_one_term() -> None:
    """The hazard itself: two leaders in term 1, both counting n3's vote."""
    net, _ = double_vote_scenario(None, {}, gated=False)
    assert net["n2"].role is Role.LEADER and net["n2"].term == 1
    assert net["n1"].role is Role.LEADER and net["n1"].term == 1


@pytest.mark.parametrize("how", ["configuration", "recorded"])
def test_the_wiped_node_vote_is_refused_and_never_counted(how: str) -> None:
    """n2 knows n3's old incarnation: from the replicated configuration (even though it never
    heard from n3), or from its own record (it heard from n3 before)."""
    m = make_core("n1").membership
    if how == "configuration":
        config, recorded = with_incarnations(m, {"n1": "i1", "n2": "i2", "n3": OLD}), {}
    else:
        config, recorded = None, {"n3": OLD}
    net, gate = double_vote_scenario(config, recorded, gated=True)
    granted = [r for r in gate.refused if isinstance(r, RequestVoteReply) and r.granted]
    assert granted and all(r.src == "n3" and r.dst == "n2" for r in granted)
    assert net["n2"].role is Role.CANDIDATE and net["n2"].term == 1  # one leader in term 1: n1
    assert gate.recorded["n2"].get("n3", OLD) == OLD


def test_the_window_before_an_incarnation_is_known() -> None:
    """The limit, written down: a member that has no record of n3, and no configuration entry
    with n3's incarnation, trusts the first incarnation it hears (the leader adopts each
    member's incarnation into the configuration right after it first hears from it)."""
    net, gate = double_vote_scenario(None, {}, gated=True)
    assert gate.recorded["n2"]["n3"] == NEW and net["n2"].role is Role.LEADER


# ---------------------------------------------------------------- the rules
M3 = Member(NodeId("n3"), "h:3")


@pytest.mark.parametrize("presented, member, recorded, verdict", [
    (NEW, dataclasses.replace(M3, incarnation=OLD), None, inc.Verdict.REFUSE),
    (NEW, dataclasses.replace(M3, incarnation=OLD), NEW, inc.Verdict.REFUSE),  # the configuration wins
    (OLD, dataclasses.replace(M3, incarnation=OLD), OLD, inc.Verdict.ADMIT),
    (OLD, dataclasses.replace(M3, incarnation=OLD), None, inc.Verdict.SYNC),
    (NEW, dataclasses.replace(M3, incarnation=NEW), OLD, inc.Verdict.SYNC),  # re-added: stale record replaced
    (NEW, M3, None, inc.Verdict.RECORD),  # first use
    (NEW, M3, NEW, inc.Verdict.ADMIT),
    (NEW, M3, OLD, inc.Verdict.REFUSE),
    (NEW, None, OLD, inc.Verdict.ADMIT),  # not a member (yet, or any more): no say, no record
    (None, dataclasses.replace(M3, incarnation=OLD), OLD, inc.Verdict.ADMIT),  # an older node: cannot tell
])
def test_judge(presented: str | None, member: Member | None, recorded: str | None, verdict: inc.Verdict) -> None:
    assert inc.judge(presented, member, recorded) is verdict


def test_a_join_conflicts_only_with_a_member_of_another_known_incarnation() -> None:
    assert inc.conflicts(NEW, dataclasses.replace(M3, incarnation=OLD), None)
    assert inc.conflicts(NEW, M3, OLD)
    assert not inc.conflicts(OLD, dataclasses.replace(M3, incarnation=OLD), None)  # a retried join: 200
    assert not inc.conflicts(NEW, M3, None)  # nobody knows better: first use
    assert not inc.conflicts(NEW, None, OLD)  # removed: a stale record does not count
    assert not inc.conflicts(None, M3, OLD)


def test_the_leader_adopts_one_known_incarnation_at_a_time() -> None:
    m = Membership.of([Member(NodeId(i), f"h:{i}") for i in ("n1", "n2", "n3")])
    known = {"n3": OLD}
    assert inc.to_adopt(m, known.get, "n1", "i1") == Member(NodeId("n1"), "h:n1", incarnation="i1")
    m = with_incarnations(m, {"n1": "i1"})
    assert inc.to_adopt(m, known.get, "n1", "i1") == Member(NodeId("n3"), "h:n3", incarnation=OLD)
    m = with_incarnations(m, {"n1": "i1", "n3": OLD})
    assert inc.to_adopt(m, known.get, "n1", "i1") is None  # n2's is unknown yet


def test_the_refusal_tells_the_operator_what_to_do() -> None:
    text = inc.refusal("n2")
    assert text == ("this data dir is a new incarnation of n2 (the old one was wiped?); "
                    "remove n2 from the cluster and add it back with --join")
    assert "remove n3 from the cluster first" in inc.member_exists("n3") and "--join" in inc.member_exists("n3")


def test_the_member_record_carries_the_incarnation_and_reads_old_records() -> None:
    m = Membership.of([dataclasses.replace(M3, incarnation=OLD), Member(NodeId("n1"), "h:1")])
    assert Membership.from_json(m.to_json()) == m
    assert '"incarnation"' not in Membership.of([M3]).to_json()  # absent, not null: old nodes read it
    assert Membership.from_json('[{"id":"n3","address":"h:3","voter":true}]') == Membership.of([M3])
    msg = InstallSnapshot(Term(2), NodeId("n1"), NodeId("n2"), SnapshotMeta(Index(5), Term(2), m), b"x")
    got = decode(encode(msg))
    assert isinstance(got, InstallSnapshot) and got.meta.membership == m


# ---------------------------------------------------------------- no configuration, no vote
@pytest.mark.parametrize("pre_vote", [False, True])
def test_a_node_without_a_configuration_grants_no_vote(pre_vote: bool) -> None:
    """Started with --join and an empty data dir: not a member yet, so no say (its empty
    log may well be an amnesiac member's)."""
    core = make_core("n3", voters=())
    assert not core.membership.members
    core.step(RequestVote(Term(1), NodeId("n1"), NodeId("n3"), Index(0), Term(0), pre_vote))
    rd = core.ready()
    assert rd is not None
    replies = of_type(rd.messages, RequestVoteReply)
    assert len(replies) == 1 and not replies[0].granted
    assert core.voted_for is None
