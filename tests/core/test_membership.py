"""Cluster membership changes, one server at a time (§4.1 of the thesis, §6 of
the paper), learners (§4.2.1) and removing the leader (§4.2.2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from node.raft import (
    AppendEntries,
    Entry,
    EntryKind,
    Index,
    Member,
    Membership,
    MembershipChangeError,
    ProposalDroppedError,
    RequestVote,
    RequestVoteReply,
    Role,
    Term,
    TimeoutNow,
)

from .helpers import (
    CFG,
    CLASSIC,
    ELECTION_MAX,
    HEARTBEAT,
    Net,
    between,
    cluster,
    drain,
    elect,
    leader_cluster,
    log_of,
    make_core,
    membership,
    nid,
    of_type,
    tick_until,
    to,
)

VOTERS = ("n1", "n2", "n3")
BASE = membership(VOTERS)


def promoted(m: Membership, name: str) -> Membership:
    return m.with_member(Member(nid(name), f"addr-{name}", voter=True))


def learner(m: Membership, name: str) -> Membership:
    return m.with_member(Member(nid(name), f"addr-{name}", voter=False))


CHANGES = [
    # (new configuration, accepted, why)
    (learner(BASE, "n4"), True, "add a learner"),
    (promoted(BASE, "n4"), True, "add a voter directly"),
    (BASE.without("n3"), True, "remove a voter"),
    (learner(BASE, "n3"), True, "demote a voter"),
    (BASE.with_member(Member(nid("n2"), "elsewhere")), True, "move a member"),
    (learner(learner(BASE, "n4"), "n5"), False, "add two learners"),
    (promoted(BASE, "n4").without("n3"), False, "add one voter and remove another"),
    (BASE.without("n2").without("n3"), False, "remove two voters"),
    (learner(BASE.without("n3"), "n4"), False, "remove one, add another"),
]


@pytest.mark.parametrize(("new", "accepted", "why"), CHANGES, ids=[c[2] for c in CHANGES])
def test_only_single_server_changes_are_accepted(new: Membership, accepted: bool, why: str) -> None:  # §4.1
    net = leader_cluster()
    n1 = net["n1"]
    if accepted:
        idx = n1.propose_membership(new)
        assert n1.log.entry(idx).kind is EntryKind.CONFIG
        assert n1.membership == new, why
    else:
        with pytest.raises(MembershipChangeError):
            n1.propose_membership(new)
        assert n1.membership == BASE and n1.last_index == 1


def test_a_configuration_needs_a_voter() -> None:  # §4.1
    net = leader_cluster(("n1",))
    with pytest.raises(MembershipChangeError):
        net["n1"].propose_membership(membership((), learners=("n1",)))


def test_only_one_uncommitted_change_at_a_time() -> None:  # §4.1: wait for the previous change to commit
    net = leader_cluster()
    n1 = net["n1"]
    first = learner(BASE, "n4")
    n1.propose_membership(first)
    with pytest.raises(ProposalDroppedError):
        n1.propose_membership(first.without("n3"))
    net.settle()  # n4 does not exist: the change commits with the three voters
    assert n1.commit == n1.last_index == 2
    n1.propose_membership(first.without("n3"))  # now allowed
    assert n1.membership.ids == {"n1", "n2", "n4"}


def test_no_change_before_the_leader_committed_its_first_entry() -> None:  # §4.1 (the "bug in single-server changes")
    net = cluster()
    n1 = net["n1"]
    tick_until(n1, lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    while n1.role is not Role.LEADER:
        net.flush()
        net.deliver()
    assert n1.commit < n1.last_index
    with pytest.raises(ProposalDroppedError):
        n1.propose_membership(learner(BASE, "n4"))
    net.settle()
    n1.propose_membership(learner(BASE, "n4"))


def test_configuration_takes_effect_when_appended_not_when_committed() -> None:  # §4.1
    net = leader_cluster()
    n1, n2 = net["n1"], net["n2"]
    idx = n1.propose_membership(learner(BASE, "n4"))
    assert n1.membership.ids == {"n1", "n2", "n3", "n4"} and n1.commit < idx
    assert n1.progress(nid("n4")) is not None  # the leader replicates to n4 at once
    net.flush("n1")
    net.deliver(to("n2"))
    assert n2.log.last_index == idx and n2.commit < idx
    assert n2.membership.ids == {"n1", "n2", "n3", "n4"}


def test_configuration_is_reverted_when_its_entry_is_truncated() -> None:  # §4.1
    grown = promoted(BASE, "n4")
    log = (*log_of(1), Entry(Index(2), Term(1), EntryKind.CONFIG, grown.to_json()))
    f = make_core("n2", term=1, log=log, commit=1, applied=1)
    assert f.membership == grown
    f.step(AppendEntries(Term(2), nid("n3"), nid("n2"), Index(1), Term(1),
                         (Entry(Index(2), Term(2), EntryKind.NOOP),), Index(1)))
    drain(f)
    assert f.membership == BASE and f.log.last_config_index() == 0


def test_node_removed_by_an_uncommitted_entry_stops_campaigning_until_truncation() -> None:  # §4.1
    removed = BASE.without("n2")
    log = (*log_of(1), Entry(Index(2), Term(1), EntryKind.CONFIG, removed.to_json()))
    f = make_core("n2", term=1, log=log, commit=1, applied=1)
    for _ in range(3 * ELECTION_MAX):
        f.tick()
    assert f.role is Role.FOLLOWER and not f.is_voter()
    f.step(AppendEntries(Term(2), nid("n3"), nid("n2"), Index(1), Term(1),
                         (Entry(Index(2), Term(2), EntryKind.NOOP),), Index(1)))
    assert f.is_voter()
    tick_until(f, lambda c: c.role is not Role.FOLLOWER, limit=2 * ELECTION_MAX)


def test_learner_gets_entries_but_does_not_count_for_commit() -> None:  # §4.2.1
    net = leader_cluster(learners=("n4",))
    n1 = net["n1"]
    n1.propose("a")
    net.settle()
    assert net["n4"].log.entries == n1.log.entries and net["n4"].commit == 2
    assert net.committed("n4") == ["a"]
    net.crash("n2")
    net.crash("n3")
    n1.propose("b")
    net.settle()
    assert net["n4"].last_index == 3
    assert n1.commit == 2  # the leader and a learner are not a majority of {n1, n2, n3}


# Two learners at once: with 3 voters of which 2 are down, the leader and TWO healthy
# learners are 3 of the 5 members, a majority if learners were (wrongly) counted; one
# learner (3 of 4 is not reached by 2) could not tell the difference.
def _commit_needs_voters(net: Net) -> None:
    n1 = net["n1"]
    n1.propose("b")
    net.settle()
    assert net["n4"].last_index == net["n5"].last_index == 3  # the learners have it
    assert n1.commit == 2 and net.committed("n1") == ["a"]


def _read_needs_voters(net: Net) -> None:
    n1 = net["n1"]
    n1.read_index(7)
    net.settle()  # both learners answer the heartbeat round
    assert n1.role is Role.LEADER and [r for rd in net.readies["n1"] for r in rd.reads] == []


def _lease_needs_voters(net: Net) -> None:  # CheckQuorum: learners do not keep a leader leading
    n1 = net["n1"]
    for _ in range(ELECTION_MAX + HEARTBEAT):
        net.tick("n1", "n4", "n5")
        net.settle()
    assert n1.role is Role.FOLLOWER


TWO_LEARNER_CASES = [
    (_commit_needs_voters, "commit"),
    (_read_needs_voters, "read"),
    (_lease_needs_voters, "check-quorum"),
]


@pytest.mark.parametrize(("scenario", "what"), TWO_LEARNER_CASES, ids=[c[1] for c in TWO_LEARNER_CASES])
def test_two_healthy_learners_never_stand_in_for_two_lost_voters(  # §4.2.1
        scenario: Callable[[Net], None], what: str) -> None:
    net = leader_cluster(learners=("n4", "n5"))
    net["n1"].propose("a")
    net.settle()
    assert net["n1"].commit == 2 and net["n4"].commit == net["n5"].commit == 2
    net.crash("n2")
    net.crash("n3")
    scenario(net)


def test_votes_of_two_learners_do_not_elect() -> None:  # §4.2.1: learners do not vote
    net = cluster(VOTERS, learners=("n4", "n5"), config=CLASSIC)
    n1 = net["n1"]
    tick_until(n1, lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    assert {m.dst for m in of_type(net.flush("n1"), RequestVote)} == {"n2", "n3"}
    for name in ("n4", "n5"):  # n1 + n4 + n5 would be 3 of 5 members
        n1.step(RequestVoteReply(n1.term, nid(name), nid("n1"), True))
    assert n1.role is Role.CANDIDATE
    n1.step(RequestVoteReply(n1.term, nid("n2"), nid("n1"), True))
    assert n1.role is Role.LEADER  # a voter's vote does


def test_learner_promotion_makes_it_count() -> None:  # §4.2.1
    net = leader_cluster(learners=("n4",))
    n1 = net["n1"]
    n1.propose_membership(promoted(n1.membership, "n4"))
    net.settle()
    assert {frozenset(net[n].membership.voters) for n in net.cores} == {frozenset({"n1", "n2", "n3", "n4"})}
    assert net["n4"].is_voter()
    net.crash("n3")
    net.crash("n2")
    n1.propose("x")
    net.settle()
    assert n1.commit == 2  # n1 + n4 is not a majority of 4
    net.restart("n2")
    net.tick("n1", n=HEARTBEAT)
    net.settle()
    assert n1.commit == 3  # n1, n2, n4: 3 of 4, so n4 counts


def test_new_node_joins_as_learner_and_catches_up() -> None:  # §4.2.1
    net = leader_cluster()
    n1 = net["n1"]
    for i in range(5):
        n1.propose(f"v{i}")
    net.settle()
    net.cores["n4"] = make_core("n4", voters=(), seed=4)  # an empty node that knows nobody
    net.readies["n4"] = []
    assert net["n4"].membership == Membership()
    n1.propose_membership(learner(n1.membership, "n4"))
    net.settle()
    n1.propose_membership(promoted(n1.membership, "n4"))
    net.settle()
    net.tick("n1", n=HEARTBEAT)
    net.settle()
    n4 = net["n4"]
    assert n4.log.entries == n1.log.entries and n4.commit == n1.commit
    assert n4.is_voter() and net.committed("n4") == [f"v{i}" for i in range(5)]


def test_removing_the_leader_hands_over_with_timeout_now() -> None:  # §4.2.2
    net = leader_cluster()
    n1 = net["n1"]
    idx = n1.propose_membership(BASE.without("n1"))
    # it leads the change to its end without being a voter, and takes no new commands
    assert n1.role is Role.LEADER
    with pytest.raises(ProposalDroppedError):
        n1.propose("x")
    net.flush("n1")
    net.deliver()
    net.flush("n2", "n3")
    net.deliver()  # n2 and n3 (the new majority) have it: committed, and n1 steps down
    assert n1.commit == idx and n1.role is Role.FOLLOWER
    timeout_now = of_type(net.flush("n1"), TimeoutNow)
    assert len(timeout_now) == 1 and timeout_now[0].dst in ("n2", "n3")
    net.settle()
    new = net.leader()
    assert new == timeout_now[0].dst and net[new].term == 2
    assert not n1.is_voter()
    for _ in range(3 * ELECTION_MAX):  # the removed node does not campaign
        n1.tick()
    assert n1.role is Role.FOLLOWER and n1.term == 1 and drain(n1).messages == ()
    net[new].propose("after")
    net.settle()
    assert net[new].commit == net[new].last_index
    assert net[new].progress(nid("n1")) is None


def test_removed_node_that_keeps_campaigning_does_not_disrupt() -> None:  # §4.2.3
    net = leader_cluster(config=replace(CFG, pre_vote=False))  # only the lease protects the cluster
    n1 = net["n1"]
    n1.propose_membership(BASE.without("n3"))
    for _ in range(3):
        net.flush()
        net.deliver(between("n1", "n2"))  # n3 never learns it was removed
        net.drop()
    assert n1.commit == n1.last_index == 2 and net["n3"].is_voter()
    campaigns: list[RequestVote] = []
    for _ in range(5 * ELECTION_MAX):
        net.tick()
        sent = net.flush()
        campaigns += [m for m in of_type(sent, RequestVote) if m.src == "n3"]
        net.deliver()  # everything n3 says is delivered
        net.drop()
    assert campaigns and net["n3"].term > 2  # it kept trying, in ever newer terms...
    assert n1.role is Role.LEADER and n1.term == 1  # ...and nobody listened
    assert net["n2"].term == 1 and net["n2"].leader_id == "n1"


def test_leader_keeps_replicating_to_a_majority_of_the_new_configuration() -> None:  # §4.1
    net = leader_cluster(("n1", "n2", "n3", "n4", "n5"))
    n1 = net["n1"]
    n1.propose_membership(membership(("n1", "n2", "n3", "n4")))
    net.crash("n5")
    net.crash("n4")
    net.settle()  # n1, n2, n3 are 3 of the new 4
    assert n1.commit == 2
    n1.propose("x")
    net.settle()
    assert n1.commit == 3


def test_net_helper_allows_nodes_added_later() -> None:
    net = Net({"n1": make_core("n1", voters=("n1",))})
    elect(net, "n1")
    assert net.leader() == "n1"
