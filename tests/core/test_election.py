"""Leader election (§5.2), the voting restriction (§5.4.1), PreVote (§9.6)
and CheckQuorum with the leader lease (§6.2 / §9.6 of the thesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from node.raft import (
    AppendEntries,
    CoreConfig,
    EntryKind,
    Index,
    NotLeaderError,
    RequestVote,
    RequestVoteReply,
    Role,
    Term,
)

from .helpers import (
    CFG,
    CLASSIC,
    ELECTION_MAX,
    ELECTION_MIN,
    HEARTBEAT,
    Net,
    between,
    cluster,
    drain,
    frm,
    kind,
    leader_cluster,
    log_of,
    make_core,
    nid,
    of_type,
    tick_until,
    to,
)


def rv(term: int, src: str, dst: str, last_index: int, last_term: int, *, pre_vote: bool = False,
       transfer: bool = False) -> RequestVote:
    return RequestVote(Term(term), nid(src), nid(dst), Index(last_index), Term(last_term), pre_vote, transfer)


# ------------------------------------------------------------------ §5.2 timeouts


@pytest.mark.parametrize("seed", range(40))
def test_follower_starts_pre_election_within_randomised_timeout(seed: int) -> None:  # §5.2, §9.6
    core = make_core("n1", seed=seed)
    ticks = tick_until(core, lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    rd = drain(core)
    assert ELECTION_MIN <= ticks < ELECTION_MAX
    assert core.role is Role.PRE_CANDIDATE
    assert (core.term, core.voted_for) == (0, None)  # §9.6: a pre-candidate keeps its term
    assert rd.hard_state is None
    votes = of_type(rd.messages, RequestVote)
    assert {(m.dst, m.term, m.pre_vote) for m in votes} == {("n2", 1, True), ("n3", 1, True)}


def test_election_timeouts_are_randomised() -> None:  # §5.2: split votes are rare because timeouts differ
    ticks = {
        tick_until(make_core("n1", seed=s), lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
        for s in range(40)
    }
    assert len(ticks) >= 5
    assert min(ticks) >= ELECTION_MIN and max(ticks) < ELECTION_MAX


@pytest.mark.parametrize("seed", range(10))
def test_classic_candidate_persists_term_and_vote_in_the_ready_with_request_vote(seed: int) -> None:  # §5.2
    core = make_core("n1", seed=seed, config=CLASSIC)
    ticks = tick_until(core, lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    rd = drain(core)
    assert core.role is Role.CANDIDATE and ELECTION_MIN <= ticks < ELECTION_MAX
    # durable before send: the hard state travels in the same Ready as the RequestVotes
    assert rd.hard_state is not None
    assert (rd.hard_state.term, rd.hard_state.voted_for) == (1, "n1")
    assert {(m.dst, m.term, m.pre_vote) for m in of_type(rd.messages, RequestVote)} == {
        ("n2", 1, False),
        ("n3", 1, False),
    }


def test_follower_that_hears_from_the_leader_does_not_campaign() -> None:  # §5.2
    net = leader_cluster()
    for _ in range(10 * ELECTION_MAX):
        net.tick()
        net.settle()
    assert [net[n].role for n in ("n1", "n2", "n3")] == [Role.LEADER, Role.FOLLOWER, Role.FOLLOWER]
    assert {net[n].term for n in net.cores} == {1}


# ------------------------------------------------------------------ §5.2 winning


def test_candidate_with_majority_becomes_leader_and_appends_noop() -> None:  # §5.2, §8
    net = cluster(config=CLASSIC)
    n1 = net["n1"]
    tick_until(n1, lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    net.flush("n1")
    net.deliver(to("n2"))  # only n2 hears about it: n1 + n2 is a majority of 3
    net.drop()
    net.flush("n2")
    (reply_ready,) = [rd for rd in net.readies["n2"] if rd.messages]
    # the vote is durable before the reply leaves (§5.2, Figure 2 "respond after persisting")
    assert reply_ready.hard_state is not None
    assert (reply_ready.hard_state.term, reply_ready.hard_state.voted_for) == (1, "n1")
    (reply,) = of_type(reply_ready.messages, RequestVoteReply)
    assert reply.granted and reply.term == 1
    net.deliver(to("n1"))
    assert n1.role is Role.LEADER and n1.leader_id == "n1"
    last = n1.log.entry(n1.last_index)
    assert (last.index, last.term, last.kind) == (1, 1, EntryKind.NOOP)  # §8: a no-op of its term
    rd = drain(n1)
    assert rd.entries == (last,)
    assert {m.dst for m in of_type(rd.messages, AppendEntries)} == {"n2", "n3"}


def test_pre_candidate_becomes_candidate_then_leader() -> None:  # §9.6
    net = cluster()
    n1 = net["n1"]
    tick_until(n1, lambda c: c.role is Role.PRE_CANDIDATE, limit=ELECTION_MAX)
    net.flush("n1")
    net.deliver()
    net.flush("n2", "n3")
    assert net["n2"].term == 0 and net["n3"].term == 0  # the voters did not move either
    net.deliver()
    assert n1.role is Role.CANDIDATE and (n1.term, n1.voted_for) == (1, "n1")
    net.settle()
    assert n1.role is Role.LEADER and n1.term == 1


def test_one_vote_per_term() -> None:  # §5.2: each server votes for at most one candidate per term
    voter = make_core("n3", config=CLASSIC)
    voter.step(rv(1, "n1", "n3", 0, 0))
    voter.step(rv(1, "n2", "n3", 0, 0))
    voter.step(rv(1, "n1", "n3", 0, 0))  # a retransmission from the one it voted for
    rd = drain(voter)
    assert [(m.dst, m.granted) for m in of_type(rd.messages, RequestVoteReply)] == [
        ("n1", True),
        ("n2", False),
        ("n1", True),
    ]
    assert rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.voted_for) == (1, "n1")
    # and the vote survives a restart: it was in the Ready before the replies
    restarted = make_core("n3", config=CLASSIC, term=1, voted_for="n1")
    restarted.step(rv(1, "n2", "n3", 0, 0))
    (reply,) = of_type(drain(restarted).messages, RequestVoteReply)
    assert not reply.granted


def test_vote_request_of_an_older_term_is_not_granted() -> None:  # §5.1
    voter = make_core("n3", config=CLASSIC, term=5)
    voter.step(rv(4, "n1", "n3", 0, 0))
    rd = drain(voter)
    assert not any(m.granted for m in of_type(rd.messages, RequestVoteReply))
    assert voter.voted_for is None and voter.term == 5


# Voter's log: terms 1 1 2 (last index 3, last term 2).
UP_TO_DATE_CASES = [
    # (candidate last index, candidate last term, granted, why)
    (1, 3, True, "higher last term wins even with a shorter log"),
    (4, 2, True, "same last term, longer log"),
    (3, 2, True, "same last term, same length"),
    (2, 2, False, "same last term, shorter log"),
    (10, 1, False, "lower last term loses even with a longer log"),
    (0, 0, False, "empty log"),
]


@pytest.mark.parametrize("pre_vote", [False, True], ids=["vote", "pre-vote"])
@pytest.mark.parametrize(("last_index", "last_term", "granted", "why"), UP_TO_DATE_CASES,
                         ids=[c[3] for c in UP_TO_DATE_CASES])
def test_vote_refused_to_a_less_up_to_date_log(
    last_index: int, last_term: int, granted: bool, why: str, pre_vote: bool
) -> None:  # §5.4.1
    voter = make_core("n3", term=2, log=log_of(1, 1, 2), commit=1)
    voter.step(rv(3, "n1", "n3", last_index, last_term, pre_vote=pre_vote))
    rd = drain(voter)
    (reply,) = of_type(rd.messages, RequestVoteReply)
    assert reply.granted is granted, why
    assert reply.pre_vote is pre_vote
    if pre_vote:
        assert (voter.term, voter.voted_for) == (2, None) and rd.hard_state is None
    else:
        assert (voter.term, voter.voted_for) == (3, "n1" if granted else None)


def test_split_vote_then_retry_with_a_new_term() -> None:  # §5.2
    net = cluster(("n1", "n2", "n3", "n4"), config=CLASSIC)
    for n in ("n1", "n2"):
        tick_until(net[n], lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    net.flush()
    # n3 hears n1 first, n4 hears n2 first: 2 votes each, 3 needed
    net.deliver(lambda m: (m.src, m.dst) in {("n1", "n3"), ("n2", "n4"), ("n1", "n2"), ("n2", "n1")})
    net.deliver()
    net.flush()
    net.deliver()
    assert net.leader() is None
    assert all(net[n].term == 1 for n in net.cores)
    # a candidate that cannot win any more goes back to follower and tries again later, in a new term
    tick_until(net["n1"], lambda c: c.role is Role.CANDIDATE, limit=2 * ELECTION_MAX)
    assert net["n1"].term == 2
    net.settle()
    assert net.leader() == "n1" and net["n1"].term == 2


def test_candidate_steps_down_on_append_from_leader_of_its_term() -> None:  # §5.2
    cand = make_core("n2", config=CLASSIC)
    tick_until(cand, lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    cand.step(AppendEntries(Term(1), nid("n1"), nid("n2"), Index(0), Term(0), (), Index(0)))
    assert cand.role is Role.FOLLOWER and cand.leader_id == "n1" and cand.term == 1


# ------------------------------------------------------------------ §9.6 PreVote


def test_pre_vote_changes_neither_the_voter_nor_the_candidate() -> None:  # §9.6
    voter = make_core("n3", term=3, voted_for="n1", log=log_of(1, 3), commit=1)
    voter.step(rv(4, "n2", "n3", 2, 3, pre_vote=True))
    rd = drain(voter)
    (reply,) = of_type(rd.messages, RequestVoteReply)
    assert reply.granted and reply.pre_vote and reply.term == 4
    assert (voter.term, voter.voted_for) == (3, "n1") and rd.hard_state is None

    cand = make_core("n2", term=3, voted_for="n1", log=log_of(1, 3), commit=1)
    tick_until(cand, lambda c: c.role is Role.PRE_CANDIDATE, limit=ELECTION_MAX)
    rd = drain(cand)
    assert (cand.term, cand.voted_for) == (3, "n1") and rd.hard_state is None
    cand.step(reply)
    # only a won pre-vote starts the real election, in term+1
    assert cand.role is Role.CANDIDATE and (cand.term, cand.voted_for) == (4, "n2")


def test_lost_pre_vote_leaves_the_term_alone() -> None:  # §9.6
    cand = make_core("n2", term=3, log=log_of(1), commit=1)
    tick_until(cand, lambda c: c.role is Role.PRE_CANDIDATE, limit=ELECTION_MAX)
    drain(cand)
    for voter in ("n1", "n3"):
        cand.step(RequestVoteReply(Term(3), nid(voter), nid("n2"), False, pre_vote=True))
    assert cand.role is Role.FOLLOWER and cand.term == 3 and cand.voted_for is None


def isolate(net: Net, name: str, rounds: int) -> None:
    """Run ``rounds`` ticks during which ``name`` can neither send nor receive."""
    others = tuple(n for n in net.cores if n != name)
    for _ in range(rounds):
        net.tick()
        net.flush()
        net.deliver(between(*others))
        net.drop()


@pytest.mark.parametrize(
    "config",
    [CFG, replace(CFG, check_quorum=False)],
    ids=["pre-vote+check-quorum", "pre-vote-only"],
)
def test_rejoining_partitioned_node_does_not_disrupt_the_leader(config: CoreConfig) -> None:  # §9.6
    net = leader_cluster(config=config)
    isolate(net, "n3", 2)
    net["n1"].propose("while-n3-was-away")  # the majority moves on without n3
    isolate(net, "n3", 10 * ELECTION_MAX)
    assert net["n3"].term == 1  # many pre-elections, none got anywhere, term unchanged
    assert net["n3"].role in (Role.FOLLOWER, Role.PRE_CANDIDATE)
    for _ in range(3 * HEARTBEAT):  # heal
        net.tick()
        net.settle()
    assert net.leader() == "n1"
    assert {net[n].term for n in net.cores} == {1}
    assert net["n3"].leader_id == "n1" and net["n3"].last_index == net["n1"].last_index


def test_without_pre_vote_a_rejoining_node_disrupts_the_leader() -> None:  # §9.6: the problem PreVote solves
    net = leader_cluster(config=CLASSIC)
    isolate(net, "n3", 10 * ELECTION_MAX)
    assert net["n3"].term > 3  # it kept bumping its term while alone
    net.tick()
    net.settle()
    assert net["n1"].term == net["n3"].term and net["n1"].role is Role.FOLLOWER


# ------------------------------------------------------------------ CheckQuorum and the lease


def test_leader_cut_from_the_majority_steps_down_within_an_election_timeout() -> None:  # §6.2, CheckQuorum
    net = leader_cluster()
    n1 = net["n1"]
    ticks = 0
    while n1.role is Role.LEADER:
        n1.tick()
        net.flush("n1")
        net.drop()  # nothing reaches anybody
        ticks += 1
        assert ticks <= ELECTION_MIN + HEARTBEAT, "still leading a minority after an election timeout"
    assert ticks >= ELECTION_MIN - HEARTBEAT
    assert n1.role is Role.FOLLOWER and n1.term == 1 and n1.leader_id is None
    with pytest.raises(NotLeaderError):
        n1.propose("x")
    with pytest.raises(NotLeaderError):
        n1.read_index(1)


def test_leader_in_contact_with_a_majority_keeps_leading() -> None:  # CheckQuorum
    net = leader_cluster(("n1", "n2", "n3", "n4", "n5"))
    for _ in range(5 * ELECTION_MAX):
        net.tick()
        net.flush()
        net.deliver(between("n1", "n2", "n3"))  # n4 and n5 are cut off
        net.drop()
    assert net["n1"].role is Role.LEADER and net["n1"].term == 1


def test_leader_without_check_quorum_keeps_leading_alone() -> None:  # contrast: CheckQuorum off
    net = leader_cluster(config=CLASSIC)
    for _ in range(5 * ELECTION_MAX):
        net["n1"].tick()
        net.flush("n1")
        net.drop()
    assert net["n1"].role is Role.LEADER


@pytest.mark.parametrize("pre_vote", [False, True], ids=["vote", "pre-vote"])
def test_voter_inside_the_lease_ignores_request_vote(pre_vote: bool) -> None:  # §4.2.3 / §9.6
    net = leader_cluster()
    n2 = net["n2"]
    n2.step(rv(2, "n3", "n2", net["n3"].last_index, 1, pre_vote=pre_vote))
    rd = drain(n2)
    assert rd.messages == () and rd.hard_state is None
    assert (n2.term, n2.voted_for, n2.leader_id) == (1, "n1", "n1")
    # the leader ignores it as well
    net["n1"].step(rv(2, "n3", "n1", net["n3"].last_index, 1, pre_vote=pre_vote))
    assert net["n1"].role is Role.LEADER and net["n1"].term == 1


def test_transfer_vote_overrides_the_lease() -> None:  # §3.10
    net = leader_cluster()
    n2 = net["n2"]
    n2.step(rv(2, "n3", "n2", net["n3"].last_index, 1, transfer=True))
    rd = drain(n2)
    (reply,) = of_type(rd.messages, RequestVoteReply)
    assert reply.granted and (n2.term, n2.voted_for) == (2, "n3")
    assert rd.hard_state is not None and rd.hard_state.voted_for == "n3"


def test_lease_expires_after_the_minimum_election_timeout() -> None:  # CheckQuorum lease
    net = leader_cluster()
    n2 = net["n2"]
    for _ in range(ELECTION_MIN):  # n2 stops hearing from the leader (it may start a pre-vote: same term)
        n2.tick()
    assert n2.term == 1
    n2.step(rv(2, "n3", "n2", net["n3"].last_index, 1))
    (reply,) = of_type(drain(n2).messages, RequestVoteReply)
    assert reply.granted and (n2.term, n2.voted_for) == (2, "n3")


def test_rejected_vote_reply_with_a_newer_term_makes_the_candidate_follow() -> None:  # §5.1
    net = cluster(config=CLASSIC)
    n1 = net["n1"]
    tick_until(n1, lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    n1.step(RequestVoteReply(Term(7), nid("n2"), nid("n1"), False))
    assert n1.role is Role.FOLLOWER and n1.term == 7 and n1.voted_for is None


def test_messages_for_another_node_are_ignored() -> None:
    core = make_core("n1")
    core.step(rv(5, "n2", "n3", 0, 0))
    assert core.term == 0 and drain(core).messages == ()


def test_votes_from_learners_do_not_count() -> None:  # §4.2.1: learners do not vote
    net = cluster(("n1", "n2", "n3"), learners=("n4",), config=CLASSIC)
    n1 = net["n1"]
    tick_until(n1, lambda c: c.role is Role.CANDIDATE, limit=ELECTION_MAX)
    sent = net.flush("n1")
    assert {m.dst for m in of_type(sent, RequestVote)} == {"n2", "n3"}
    n1.step(RequestVoteReply(Term(1), nid("n4"), nid("n1"), True))
    assert n1.role is Role.CANDIDATE
    # a learner never campaigns
    n4 = net["n4"]
    for _ in range(5 * ELECTION_MAX):
        n4.tick()
    assert n4.role is Role.FOLLOWER and drain(n4).messages == ()


def test_scripted_network_predicates() -> None:
    # sanity check of the helper network used by all the core tests
    net = cluster()
    tick_until(net["n1"], lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    sent = net.flush()
    assert net.pending(frm("n1")) == sent and net.pending(kind(RequestVote)) == sent
    assert net.drop(to("n2")) == [m for m in sent if m.dst == "n2"]
