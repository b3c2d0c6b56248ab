"""Ready.appends_early: the one rule for sending before the write (§10.2.1), decided by
the core and used by both the runtime and the simulator."""

from __future__ import annotations

from node.raft import AppendEntries, AppendEntriesReply, Index, RequestVote, RequestVoteReply, Role, Term

from .helpers import CLASSIC, drain, make_core, nid, of_type, tick_until


def test_follower_and_candidate_send_nothing_early() -> None:
    core = make_core("n1", config=CLASSIC)
    tick_until(core, lambda c: c.role is Role.CANDIDATE, limit=100)
    rd = core.ready()
    assert rd is not None and of_type(rd.messages, RequestVote)
    assert not rd.appends_early and rd.messages_now() == () and rd.messages_after() == rd.messages
    f = make_core("n2", config=CLASSIC)
    f.step(AppendEntries(Term(1), nid("n1"), nid("n2"), Index(0), Term(0), (), Index(0)))
    rd = f.ready()
    assert rd is not None and of_type(rd.messages, AppendEntriesReply) and not rd.appends_early


def test_leader_elected_in_a_durable_term_sends_appends_early_and_the_rest_after() -> None:
    core = make_core("n1", config=CLASSIC)
    tick_until(core, lambda c: c.role is Role.CANDIDATE, limit=100)
    drain(core)  # term 1 and the vote for n1 are now durable
    core.step(RequestVoteReply(Term(1), nid("n2"), nid("n1"), True))
    rd = core.ready()
    assert core.role is Role.LEADER and rd is not None and rd.hard_state is None
    assert rd.appends_early
    assert {m.dst for m in rd.messages_now()} == {"n2", "n3"}
    assert all(isinstance(m, AppendEntries) for m in rd.messages_now())
    assert not any(isinstance(m, AppendEntries) for m in rd.messages_after())
    assert set(map(id, rd.messages_now())) | set(map(id, rd.messages_after())) == set(map(id, rd.messages))


def test_leader_whose_term_and_vote_are_not_yet_durable_sends_nothing_early() -> None:
    core = make_core("n1", config=CLASSIC)
    tick_until(core, lambda c: c.role is Role.CANDIDATE, limit=100)
    core.step(RequestVoteReply(Term(1), nid("n2"), nid("n1"), True))  # won before the vote was written
    rd = core.ready()
    assert core.role is Role.LEADER and rd is not None and rd.hard_state is not None
    assert of_type(rd.messages, AppendEntries) and not rd.appends_early
    assert rd.messages_now() == ()
