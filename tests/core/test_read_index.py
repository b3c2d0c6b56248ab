"""Linearizable reads with ReadIndex (§6.4): the leader records its commit
index, confirms it still leads with a round of heartbeats answered by a
majority, and only then hands out a ReadState."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from node.raft import (
    AppendEntries,
    AppendEntriesReply,
    Index,
    NotLeaderError,
    RaftCore,
    ReadState,
    RequestVote,
    Role,
    Term,
)

from .helpers import (
    CLASSIC,
    ELECTION_MAX,
    HEARTBEAT,
    Net,
    both,
    cluster,
    drain,
    drain_all,
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


def reads(net: Net, name: str) -> list[ReadState]:
    return [r for rd in net.readies[name] for r in rd.reads]


def test_read_needs_a_majority_to_answer_a_heartbeat_sent_after_it() -> None:  # §6.4 step 3
    net = leader_cluster()
    n1 = net["n1"]
    net.tick("n1", n=HEARTBEAT)
    earlier = of_type(net.flush("n1"), AppendEntries)  # a heartbeat round sent before the read
    net.deliver()
    earlier_replies = of_type(net.flush("n2", "n3"), AppendEntriesReply)
    net.drop()

    n1.read_index(7)
    later = of_type(net.flush("n1"), AppendEntries)
    assert {m.dst for m in later} == {"n2", "n3"}  # the read starts its own round at once
    assert min(m.seq for m in later) > max(m.seq for m in earlier)
    for r in earlier_replies:  # answers to the older round confirm nothing about the read
        n1.step(r)
    net.flush("n1")
    assert reads(net, "n1") == []

    net.deliver(to("n2"))
    net.flush("n2")
    net.deliver(to("n1"))
    net.flush("n1")
    assert reads(net, "n1") == [ReadState(7, n1.commit)]  # leader + n2 is a majority of 3


def test_read_index_is_the_commit_index_when_the_read_arrived() -> None:  # §6.4 step 1
    net = leader_cluster()
    n1 = net["n1"]
    n1.propose("a")
    net.settle()
    n1.propose("b")  # not yet committed when the read arrives
    n1.read_index(1)
    net.settle()
    assert n1.commit == 3
    assert reads(net, "n1") == [ReadState(1, Index(2))]


def test_reads_registered_together_share_one_round() -> None:  # §6.4 batching
    net = leader_cluster()
    n1 = net["n1"]
    n1.read_index(1)
    n1.read_index(2)
    sent = of_type(net.flush("n1"), AppendEntries)
    assert len(sent) == 2
    net.settle()
    assert [r.ctx for r in reads(net, "n1")] == [1, 2]


def test_read_after_a_round_waits_for_the_next_round() -> None:  # §6.4
    net = leader_cluster()
    n1 = net["n1"]
    n1.read_index(1)
    first = net.flush("n1")
    n1.read_index(2)
    net.flush("n1")
    net.deliver(lambda m: m in first)
    net.flush("n2", "n3")
    net.deliver(to("n1"))
    net.flush("n1")
    assert [r.ctx for r in reads(net, "n1")] == [1]
    net.settle()
    assert [r.ctx for r in reads(net, "n1")] == [1, 2]


def test_no_read_before_the_leader_committed_an_entry_of_its_term() -> None:  # §6.4 step 1, §8
    # n1 has entries of term 1 the others lack; they answer its first probes (so it does
    # lead), but its no-op is not committed until they caught up
    net = Net({
        "n1": make_core("n1", term=1, log=log_of(1, 1, 1), commit=1, applied=1, seed=1),
        "n2": make_core("n2", term=1, log=log_of(1), commit=1, applied=1, seed=2),
        "n3": make_core("n3", term=1, log=log_of(1), commit=1, applied=1, seed=3),
    })
    n1 = net["n1"]
    tick_until(n1, lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    while n1.role is not Role.LEADER:
        net.flush()
        net.deliver()
    assert n1.term == 2 and n1.last_index == 4
    n1.read_index(5)
    net.flush("n1")
    net.deliver()
    rejections = of_type(net.flush("n2", "n3"), AppendEntriesReply)
    assert [r.success for r in rejections] == [False, False]
    net.deliver()
    net.flush("n1")
    assert n1.commit == 1 and reads(net, "n1") == []  # both answered, yet no read: no-op not committed
    net.settle()
    assert n1.commit == 4
    assert reads(net, "n1") == [ReadState(5, Index(4))]


def test_isolated_leader_never_confirms_a_read() -> None:  # §6.4; CheckQuorum off keeps it leading
    net = leader_cluster(config=CLASSIC)
    n1 = net["n1"]
    n1.read_index(1)
    for _ in range(5 * ELECTION_MAX):
        n1.tick()
        net.flush("n1")
        net.drop()
    assert n1.role is Role.LEADER
    assert reads(net, "n1") == []


StepDown = Callable[[Net], None]


def by_newer_append(net: Net) -> None:
    net["n1"].step(AppendEntries(Term(2), nid("n2"), nid("n1"), Index(1), Term(1), (), Index(1)))


def by_transfer_vote(net: Net) -> None:
    net["n1"].step(RequestVote(Term(2), nid("n3"), nid("n1"), Index(1), Term(1), transfer=True))


def by_check_quorum(net: Net) -> None:
    tick_until(net["n1"], lambda c: c.role is not Role.LEADER, limit=2 * ELECTION_MAX)


@pytest.mark.parametrize("step_down", [by_newer_append, by_transfer_vote, by_check_quorum])
def test_reads_of_a_leader_that_steps_down_never_come_out(step_down: StepDown) -> None:  # §6.4
    net = leader_cluster()
    n1 = net["n1"]
    n1.read_index(1)
    net.flush("n1")  # the confirmation round is in flight...
    step_down(net)  # ...when the leader loses its leadership
    assert n1.role is not Role.LEADER
    net.deliver()
    net.flush("n2", "n3")
    net.deliver(to("n1"))  # the answers of the old term arrive too late
    for _ in range(3):
        net.flush()
        net.deliver()
    assert reads(net, "n1") == []
    with pytest.raises(NotLeaderError):
        n1.read_index(2)


def test_single_node_cluster_serves_reads_at_once() -> None:  # §6.4: a majority of one
    core = make_core("n1", voters=("n1",))
    tick_until(core, lambda c: c.role is Role.LEADER, limit=ELECTION_MAX)
    core.read_index(1)  # the no-op is not durable yet: the read waits for it
    readies = drain_all(core)
    assert core.commit == 1
    assert [r for rd in readies for r in rd.reads] == [ReadState(1, Index(1))]
    core.propose("a")
    drain_all(core)
    core.read_index(2)
    rd = drain(core)
    assert rd.reads == (ReadState(2, Index(2)),) and rd.messages == ()


def test_learner_answers_do_not_confirm_reads() -> None:  # §6.4 with learners (§4.2.1)
    net = leader_cluster(learners=("n4",))
    n1 = net["n1"]
    n1.read_index(1)
    net.flush("n1")
    net.deliver(to("n4"))
    net.flush("n4")
    net.deliver(both(frm("n4"), kind(AppendEntriesReply)))
    net.flush("n1")
    assert reads(net, "n1") == []
    net.settle()
    assert [r.ctx for r in reads(net, "n1")] == [1]


def test_read_index_on_a_follower_raises_not_leader_with_a_hint() -> None:  # §6.4, §8 (redirect)
    net = leader_cluster()
    with pytest.raises(NotLeaderError) as err:
        net["n2"].read_index(1)
    assert err.value.leader_id == "n1"


def test_read_index_on_a_fresh_node_has_no_hint() -> None:
    core: RaftCore = make_core("n2")
    with pytest.raises(NotLeaderError) as err:
        core.read_index(1)
    assert err.value.leader_id is None


def test_reads_flow_through_a_cluster_under_load() -> None:  # §6.4
    net = cluster(("n1", "n2", "n3", "n4", "n5"))
    tick_until(net["n1"], lambda c: c.role is not Role.FOLLOWER, limit=ELECTION_MAX)
    net.settle()
    n1 = net["n1"]
    for i in range(10):
        n1.propose(f"w{i}")
        n1.read_index(i)
        net.flush()
        net.deliver(lambda m: m.dst in ("n1", "n2", "n3"))  # n4, n5 are down
        net.drop()
    net.settle(pred=lambda m: m.dst in ("n1", "n2", "n3"))
    got = reads(net, "n1")
    assert [r.ctx for r in got] == list(range(10))
    assert [r.index for r in got] == sorted(r.index for r in got)
