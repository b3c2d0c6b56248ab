"""Leadership transfer (§3.10 of the thesis): catch the target up, send it
TimeoutNow, and refuse new commands meanwhile."""

from __future__ import annotations

import pytest

from node.raft import (
    AppendEntries,
    MembershipChangeError,
    ProposalDroppedError,
    RequestVote,
    Role,
    Term,
    TimeoutNow,
)

from .helpers import (
    ELECTION_MIN,
    HEARTBEAT,
    Net,
    both,
    kind,
    leader_cluster,
    nid,
    of_type,
    progress_of,
    to,
)


def lagging(net: Net, name: str, proposals: int = 3) -> None:
    """Let ``name`` miss ``proposals`` committed entries."""
    net.crash(name)
    for i in range(proposals):
        net["n1"].propose(f"v{i}")
    net.settle()
    net.restart(name)


def test_timeout_now_is_sent_once_the_target_caught_up() -> None:  # §3.10 steps 2 and 3
    net = leader_cluster()
    n1 = net["n1"]
    lagging(net, "n2")
    n2 = net["n2"]  # restarted: a new core
    assert n1.transfer_leadership(nid("n2")) == "n2" and n1.transferring
    caught_up_when_sent: list[bool] = []
    for _ in range(10):
        net.tick("n1", n=HEARTBEAT)
        for _ in range(4):
            sent = net.flush()
            pr = n1.progress(nid("n2"))
            if of_type(sent, TimeoutNow):
                caught_up_when_sent.append(pr is not None and pr.match_index == n1.last_index)
            net.deliver(lambda m: not isinstance(m, TimeoutNow))
        if caught_up_when_sent:
            break
    assert caught_up_when_sent and all(caught_up_when_sent)
    assert n2.log.entries == n1.log.entries
    # TimeoutNow makes n2 campaign at once, skipping PreVote, with a vote that overrides the lease
    net.deliver(kind(TimeoutNow))
    assert n2.role is Role.CANDIDATE and n2.term == 2
    votes = of_type(net.flush("n2"), RequestVote)
    assert votes and all(v.transfer and not v.pre_vote for v in votes)
    net.settle()
    assert net.leader() == "n2" and n2.term == 2
    assert n1.role is Role.FOLLOWER and not n1.transferring


def test_proposals_are_refused_while_transferring() -> None:  # §3.10 step 1
    net = leader_cluster()
    n1 = net["n1"]
    lagging(net, "n2")
    n1.transfer_leadership(nid("n2"))
    with pytest.raises(ProposalDroppedError):
        n1.propose("x")
    with pytest.raises(ProposalDroppedError):
        n1.propose_membership(n1.membership.without("n3"))
    n1.read_index(1)  # reads are still served by the current leader
    net.settle()
    assert [r.ctx for rd in net.readies["n1"] for r in rd.reads] == [1]


def test_transfer_aborts_after_an_election_timeout_when_the_target_is_down() -> None:  # §3.10
    net = leader_cluster()
    n1 = net["n1"]
    net.crash("n2")
    n1.transfer_leadership(nid("n2"))
    for _ in range(ELECTION_MIN - 1):
        net.tick("n1")
        net.settle()
    assert n1.transferring
    net.tick("n1")
    assert not n1.transferring and n1.role is Role.LEADER
    n1.propose("after")  # accepted again
    net.settle()
    assert n1.commit == n1.last_index == 2


def test_transfer_to_none_picks_the_most_up_to_date_voter() -> None:  # §3.10
    net = leader_cluster(("n1", "n2", "n3", "n4", "n5"))
    n1 = net["n1"]
    for n in ("n2", "n3", "n4"):
        net.crash(n)
    n1.propose("only-n5-has-it")
    net.settle()
    assert progress_of(n1, "n5").match_index == 2
    assert n1.transfer_leadership(None) == "n5"
    assert of_type(net.flush("n1"), TimeoutNow)[0].dst == "n5"


def test_transfer_to_self_is_a_no_op() -> None:  # §3.10
    net = leader_cluster()
    assert net["n1"].transfer_leadership(nid("n1")) == "n1"
    assert not net["n1"].transferring
    net["n1"].propose("x")


@pytest.mark.parametrize("target", ["n4", "n9"], ids=["learner", "stranger"])
def test_transfer_only_to_a_voter(target: str) -> None:  # §3.10
    net = leader_cluster(learners=("n4",))
    with pytest.raises(MembershipChangeError):
        net["n1"].transfer_leadership(nid(target))
    assert not net["n1"].transferring


def test_timeout_now_is_ignored_by_a_learner_and_a_stale_term() -> None:  # §3.10
    net = leader_cluster(learners=("n4",))
    net["n4"].step(TimeoutNow(net["n1"].term, nid("n1"), nid("n4")))
    assert net["n4"].role is Role.FOLLOWER
    net["n2"].step(AppendEntries(Term(net["n1"].term + 1), nid("n3"), nid("n2"), net["n2"].last_index,
                                 net["n2"].log.last_term, (), net["n2"].commit))
    net["n2"].step(TimeoutNow(net["n1"].term, nid("n1"), nid("n2")))
    assert net["n2"].role is Role.FOLLOWER and net["n2"].term == 2


def test_target_that_is_already_up_to_date_gets_timeout_now_at_once() -> None:  # §3.10
    net = leader_cluster()
    n1 = net["n1"]
    n1.transfer_leadership(nid("n3"))
    sent = net.flush("n1")
    assert [m.dst for m in of_type(sent, TimeoutNow)] == ["n3"]
    net.deliver(both(to("n3"), kind(TimeoutNow)))
    net.settle()
    assert net.leader() == "n3"
