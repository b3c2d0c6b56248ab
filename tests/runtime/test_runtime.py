"""The runtime's ordering rules and client outcomes, on in-memory doubles.

Each test builds a real ``Runtime`` from the doubles in ``doubles.py`` (a
storage whose save can be held open, a transport that records when each
message left, a manual clock) and drives it with Raft messages. Every bed's
event log is checked on exit by ``check_ordering``: nothing but a durable
leader's AppendEntries leaves before the write that covers it returns, and
nothing is applied past the durable log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from node.errors import IndeterminateError, NotLeaderError, UnavailableError
from node.raft import (
    AppendEntries,
    AppendEntriesReply,
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
    TimeoutNow,
)
from node.statemachine import KVStateMachine

from .doubles import Applied, Bed, SaveBegin, SaveEnd, Sent, check_ordering, entry, put, run

N2, N1 = NodeId("n2"), NodeId("n1")


# ---------------------------------------------------------------------- replies wait for the write


def _vote_request() -> RequestVote:
    return RequestVote(Term(1), N2, N1, Index(0), Term(0))


def _append_with_entries() -> AppendEntries:
    return AppendEntries(Term(1), N2, N1, Index(0), Term(0), (entry(1, 1), entry(2, 1, put("k", "v"))), Index(0))


def _append_committing() -> AppendEntries:
    return AppendEntries(Term(1), N2, N1, Index(0), Term(0), (entry(1, 1), entry(2, 1, put("k", "v"))), Index(2))


def _heartbeat_new_term() -> AppendEntries:
    return AppendEntries(Term(3), N2, N1, Index(0), Term(0), (), Index(0))


@pytest.mark.parametrize(
    ("inbound", "reply_type"),
    [
        pytest.param(_vote_request, RequestVoteReply, id="vote-granted"),
        pytest.param(_append_with_entries, AppendEntriesReply, id="append-entries"),
        pytest.param(_append_committing, AppendEntriesReply, id="append-and-commit"),
        pytest.param(_heartbeat_new_term, AppendEntriesReply, id="heartbeat-new-term"),
    ],
)
def test_follower_reply_waits_for_the_save_that_covers_it(inbound: Callable[[], Message],
                                                          reply_type: type[Message]) -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            bed.storage.save_gate.hold()
            bed.deliver(inbound())
            await bed.settle()
            assert bed.storage.saves_in_flight == 1
            assert not bed.transport.take(reply_type), "the reply left while its save was held open"
            assert bed.fsm.applied == 0, "applied before the entries were durable"
            bed.storage.save_gate.release()
            await bed.settle()
            (reply,) = bed.transport.take(reply_type)
            assert getattr(reply, "granted", getattr(reply, "success", None)) is True

    run(scenario())


def test_candidate_asks_for_votes_only_once_its_own_vote_is_durable() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            for _ in range(200):
                await bed.run_ticks(1)
                pre = bed.transport.take(RequestVote, pre_vote=True)
                if pre:
                    break
            assert pre, "no pre-vote"
            bed.storage.save_gate.hold()
            bed.deliver(*[RequestVoteReply(m.term, m.dst, m.src, True, pre_vote=True) for m in pre])
            await bed.settle()
            assert bed.core.role is Role.CANDIDATE and bed.core.term == 1
            assert not bed.transport.take(RequestVote), "RequestVote left before term and vote were durable"
            bed.storage.save_gate.release()
            await bed.settle()
            assert {m.dst for m in bed.transport.take(RequestVote)} == {"n2", "n3"}
            assert (bed.store.hard_state.term, bed.store.hard_state.voted_for) == (1, "n1")

    run(scenario())


def test_leader_replicates_while_its_own_write_is_held() -> None:
    """§10.2.1: a leader whose term and vote are durable sends AppendEntries before its own fsync."""

    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            bed.storage.save_gate.hold()
            write = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "v"}))
            await bed.settle()
            assert bed.storage.saves_in_flight == 1
            appends = [m for m in bed.transport.out if isinstance(m, AppendEntries) and m.entries]
            assert {m.dst for m in appends} == {"n2", "n3"}, "the leader waited for its own fsync"
            # both followers acknowledge: a majority without the leader's own copy commits it
            bed.ack("n2", "n3")
            await bed.settle()
            assert not write.done(), "answered before the leader's own write returned"
            bed.storage.save_gate.release()
            await bed.settle()
            assert (await write)["index"] == 2

    run(scenario())


def test_new_leader_whose_term_is_not_durable_sends_nothing_early() -> None:
    """A single voter wins in the same Ready that bumps its term: its AppendEntries to a
    learner must wait for the write of that term and vote."""

    async def scenario() -> None:
        async with Bed(voters=("n1",), learners=("n2",)) as bed:
            bed.storage.save_gate.hold()
            for _ in range(200):
                await bed.run_ticks(1)
                if bed.core.role is Role.LEADER:
                    break
            await bed.settle()
            assert bed.core.role is Role.LEADER and bed.store.hard_state.term == 0
            assert not bed.transport.take(AppendEntries), "AppendEntries left before the leader's term was durable"
            bed.storage.save_gate.release()
            await bed.settle()
            assert bed.transport.take(AppendEntries, dst="n2")

    run(scenario())


def test_timeout_now_waits_for_the_write_of_its_ready() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect()  # nobody has acknowledged the no-op yet
            await bed.settle()
            transfer = asyncio.ensure_future(bed.rt.transfer("n2"))
            await bed.settle()
            bed.storage.save_gate.hold()
            bed.ack("n2")  # n2 catches up: the same Ready commits (hard state) and sends TimeoutNow
            await bed.settle()
            assert bed.storage.saves_in_flight == 1
            assert not bed.transport.take(TimeoutNow), "TimeoutNow left before the write of its Ready returned"
            bed.storage.save_gate.release()
            await bed.settle()
            assert bed.transport.take(TimeoutNow, dst="n2")
            transfer.cancel()

    run(scenario())


@pytest.mark.parametrize("leader_commit", [2, 3, 4])
def test_a_follower_applies_in_the_write_of_the_entries_that_follow(leader_commit: int) -> None:
    """Entries 1-2 durable, 3-4 arriving with a commit index: nobody waits on a follower, so
    the committed entries are applied in the same write as 3-4 (one transaction), never
    before it returns and never past what it made durable."""

    async def scenario() -> None:
        async with Bed() as bed:
            bed.deliver(AppendEntries(Term(1), N2, N1, Index(0), Term(0),
                                      (entry(1, 1), entry(2, 1, put("a", "1"))), Index(0)))
            await bed.settle()
            bed.storage.save_gate.hold()
            bed.deliver(AppendEntries(Term(1), N2, N1, Index(2), Term(1),
                                      (entry(3, 1, put("b", "2")), entry(4, 1, put("c", "3"))), Index(leader_commit)))
            await bed.settle()
            assert bed.fsm.applied == 0
            bed.storage.save_gate.release()
            await bed.settle()
            assert bed.fsm.applied == leader_commit

    run(scenario())


def test_a_leader_answers_a_durable_committed_write_before_the_fsync_of_the_next() -> None:
    """Early apply: entry 2 is durable and committed in the Ready that carries entry 3; its
    client is answered while the write of 3 is held, and 3's client only after it returns."""

    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            first = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "1"}))
            await bed.settle()  # entry 2 written, its AppendEntries sent
            bed.storage.save_gate.hold()
            # one wake-up of the loop: the acks that commit 2, and the proposal of 3
            second = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "2"}))
            bed.ack("n2", "n3")
            await bed.settle()
            assert bed.storage.saves_in_flight == 1
            assert (await bed.outcome(first, "the write of entry 2"))["index"] == 2
            assert bed.fsm.applied == 2 and not second.done()
            bed.storage.save_gate.release()
            await bed.settle()
            bed.ack("n2", "n3")
            assert (await bed.outcome(second, "the write of entry 3"))["index"] == 3

    run(scenario())


def test_a_leaders_appends_leave_before_its_own_write_starts() -> None:
    """The real transport writes from a task per peer: the drive loop lets those run before
    it starts its own write, which would otherwise hold the loop or contend with it for the
    GIL, and the followers' fsyncs (on the clients' path) would start later."""

    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            bed.transport.writes_later = True
            bed.storage.save_gate.hold()
            asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "v"}))
            await bed.settle()
            begin = next(i for i, ev in enumerate(bed.events) if isinstance(ev, SaveBegin) and ev.rd.entries
                         and ev.rd.entries[-1].index == 2)
            sent = [i for i, ev in enumerate(bed.events)
                    if isinstance(ev, Sent) and isinstance(ev.msg, AppendEntries) and ev.msg.entries
                    and ev.msg.entries[-1].index == 2]
            assert len(sent) == 2, "the appends of entry 2 never left"
            assert max(sent) < begin, "the leader's own write started before its appends were written"

    run(scenario())


def test_an_idle_leader_wakes_once_per_heartbeat_and_still_sends_each_one() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            hb = bed.core.cfg.heartbeat_ticks
            assert hb >= 2, "the default configuration has two ticks per heartbeat"
            await bed.run_ticks(2 * hb)  # the ticker has switched to the leader's period
            bed.ack("n2", "n3")
            wakes = 0
            real = bed.rt._on_tick

            def counting() -> None:
                nonlocal wakes
                wakes += 1
                real()
            bed.rt._ticker.cancel()  # type: ignore[union-attr]
            bed.rt._ticker = bed.clock.call_later(bed.cfg.tick_s * hb, counting)
            bed.rt._on_tick = counting  # type: ignore[method-assign]
            beats = 0
            for _ in range(10):  # ten heartbeat intervals; the followers answer each heartbeat
                await bed.run_ticks(hb)
                beats += len([m for m in bed.transport.out if isinstance(m, AppendEntries) and m.dst == "n2"])
                bed.ack("n2", "n3")
                await bed.settle()
            assert bed.core.role is Role.LEADER
            assert wakes == 10, f"{wakes} wake-ups in 10 heartbeat intervals"
            assert beats == 10, f"{beats} heartbeats to n2 in 10 heartbeat intervals"

    run(scenario())


# ---------------------------------------------------------------------- the checker itself


def test_check_ordering_catches_a_reply_sent_before_its_write() -> None:
    """The rule checker must fail on the bug it exists for (else the tests above prove nothing)."""
    from node.raft import HardState, Ready

    reply = RequestVoteReply(Term(1), N1, N2, True)
    rd = Ready(HardState(Term(1), N2, Index(0)), (), None, (reply,), (), ())
    durable = HardState(Term(0), None, Index(0))
    with pytest.raises(AssertionError, match="left before the write"):
        check_ordering([SaveBegin(rd), Sent(reply, durable), SaveEnd(rd)])
    early = AppendEntries(Term(2), N1, N2, Index(0), Term(0), (), Index(0))
    rd2 = Ready(HardState(Term(2), N1, Index(0)), (), None, (early,), (), (), appends_early=True)
    with pytest.raises(AssertionError, match="early AppendEntries"):
        check_ordering([SaveBegin(rd2), Sent(early, durable), SaveEnd(rd2)])
    with pytest.raises(AssertionError, match="durable only to"):
        check_ordering([Applied((entry(3, 1),), Index(2))])
    check_ordering([SaveBegin(rd), SaveEnd(rd), Sent(reply, durable)])


# ---------------------------------------------------------------------- client outcomes (CONTRACT §2)


def test_committed_write_answers_200_with_its_index() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            write = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "v"}))
            await bed.settle()
            bed.ack("n2")
            await bed.settle()
            assert await write == {"index": 2}
            assert bed.fsm.get("k") == ("v", 2)

    run(scenario())


def test_write_not_confirmed_in_time_is_504() -> None:
    async def scenario() -> None:
        async with Bed(request_timeout_s=1.0) as bed:
            await bed.elect_and_commit()
            write = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "v"}))
            await bed.settle()
            bed.clock.advance(1.01)  # no follower answers
            await bed.settle()
            with pytest.raises(IndeterminateError) as e:
                await write
            assert e.value.status == 504

    run(scenario())


def test_write_whose_index_another_leader_filled_is_503() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            write = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "mine"}))
            await bed.settle()
            assert not write.done()
            # n2 won term 2 without our entry 2 and committed its own no-op there
            bed.deliver(AppendEntries(Term(2), N2, N1, Index(1), Term(1), (entry(2, 2),), Index(2)))
            await bed.settle()
            with pytest.raises(UnavailableError) as e:
                await write
            assert e.value.status == 503
            assert bed.fsm.get("k") is None

    run(scenario())


def test_write_covered_by_an_installed_snapshot_is_504() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            write = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "v"}))
            await bed.settle()
            image = KVStateMachine()
            image.apply(None, [entry(1, 1), entry(2, 1, put("k", "v")), entry(3, 2), entry(4, 2), entry(5, 2)])
            members = Membership.of([Member(NodeId(n), f"{n}:7000") for n in ("n1", "n2", "n3")])
            bed.deliver(InstallSnapshot(Term(2), N2, N1, SnapshotMeta(Index(5), Term(2), members), image.serialize()))
            await bed.settle()
            with pytest.raises(IndeterminateError, match="covered by a snapshot") as e:
                await write
            assert e.value.status == 504
            assert bed.fsm.applied == 5 and bed.fsm.get("k") == ("v", 2)

    run(scenario())


def test_read_pending_when_the_leader_steps_down_is_503() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            read = asyncio.ensure_future(bed.rt.read_barrier())
            await bed.settle()
            assert not read.done()
            bed.deliver(AppendEntries(Term(2), N2, N1, Index(1), Term(1), (), Index(1)))
            await bed.settle()
            with pytest.raises(UnavailableError) as e:
                await read
            assert e.value.status == 503

    run(scenario())


def test_read_confirmed_by_a_majority_is_served() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            read = asyncio.ensure_future(bed.rt.read_barrier())
            await bed.settle()
            bed.ack("n3")
            await bed.settle()
            assert read.done() and read.exception() is None

    run(scenario())


@pytest.mark.parametrize("reading", [False, True], ids=["no-read", "read-pending"])
def test_commit_notices_may_linger_unless_a_read_waits_for_its_round(reading: bool) -> None:
    """The appends that only carry a new commit index are sent lazily (the transport may hold
    them a moment for the next append); a pending ReadIndex read needs its round at once."""

    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            write = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "v"}))
            await bed.settle()
            read = asyncio.ensure_future(bed.rt.read_barrier()) if reading else None
            await bed.settle()
            bed.transport.lazy.clear()
            bed.ack("n2")  # commits the write: its notice goes to n2 and n3
            assert (await bed.outcome(write, "the write"))["index"] == 2
            notices = [m for m in bed.transport.out if isinstance(m, AppendEntries) and m.leader_commit == 2]
            assert notices
            if reading:
                assert not bed.transport.lazy
                assert read is not None and (await bed.outcome(read, "the read")) is None
            else:
                assert bed.transport.lazy == notices

    run(scenario())


def test_write_on_a_follower_names_the_leader_or_is_503() -> None:
    async def scenario() -> None:
        async with Bed() as bed:
            with pytest.raises(UnavailableError):
                await bed.rt.write({"op": "put", "key": "k", "value": "v"})
            bed.deliver(AppendEntries(Term(1), N2, N1, Index(0), Term(0), (), Index(0)))
            await bed.settle()
            with pytest.raises(NotLeaderError) as e:
                await bed.rt.write({"op": "put", "key": "k", "value": "v"})
            assert e.value.status == 307

    run(scenario())


# ---------------------------------------------------------------------- stalls and snapshots


def test_leader_survives_a_stall_of_its_drive_loop() -> None:
    """A slow fsync stalls the loop for two election timeouts while the followers' replies
    queue: they must count before the tick backlog, so CheckQuorum keeps the leader."""

    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            term = bed.core.term
            bed.storage.save_gate.hold()
            write = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "k", "value": "v"}))
            await bed.settle()
            for _ in range(2 * bed.now_ticks(600)):  # the clock runs, the loop is stuck in save
                bed.clock.advance(bed.cfg.tick_s)
                await bed.settle(2)
                bed.ack("n2", "n3")  # the followers answer every heartbeat, replies queue
            bed.storage.save_gate.release()
            await bed.settle()
            assert bed.core.role is Role.LEADER and bed.core.term == term, "a healthy leader stepped down"
            assert (await write)["index"] == 2

    run(scenario())


def test_heartbeats_keep_leaving_while_a_snapshot_is_written() -> None:
    async def scenario() -> None:
        async with Bed(snapshot_every=3) as bed:
            await bed.elect_and_commit()
            bed.storage.snapshot_gate.hold()  # the snapshot write hangs, as on a slow disk
            for i in range(3):
                w = asyncio.ensure_future(bed.rt.write({"op": "put", "key": f"k{i}", "value": "v"}))
                await bed.settle()
                bed.ack("n2", "n3")
                await bed.outcome(w, f"write k{i}")
            await bed.until(lambda: bed.rt._snapshot_task is not None, "the snapshot to start")
            bed.transport.take(AppendEntries)
            await bed.run_ticks(3 * bed.core.cfg.heartbeat_ticks)
            beats = bed.transport.take(AppendEntries, dst="n2")
            assert len(beats) >= 2, "no heartbeat left while the snapshot was being written"
            w = asyncio.ensure_future(bed.rt.write({"op": "put", "key": "late", "value": "v"}))
            await bed.settle()
            bed.ack("n2", "n3")
            assert (await bed.outcome(w, "a write during the snapshot"))["index"] == 5
            assert bed.store.snap.meta.index == 0
            bed.storage.snapshot_gate.release()
            await bed.until(lambda: bed.core.log.snapshot_index >= 3, "the log to be compacted")
            snap = bed.store.snap.meta.index
            assert snap >= 3 and bed.core.log.snapshot_index == snap
            restored = KVStateMachine()
            restored.restore(None, bed.store.snap.data, snap)
            assert restored.applied == snap and restored.get("k0") == ("v", 2) and restored.get("k1") == ("v", 3)

    run(scenario())


def test_outcomes_are_json_results() -> None:
    """A cas that fails is an ordinary committed result (409 at the HTTP layer), not an error."""

    async def scenario() -> None:
        async with Bed() as bed:
            await bed.elect_and_commit()
            w = asyncio.ensure_future(bed.rt.write({"op": "cas", "key": "k", "expect": "x", "value": "y"}))
            await bed.settle()
            bed.ack("n2")
            await bed.settle()
            assert await w == {"error": "cas_failed", "current": None}
            assert json.loads(json.dumps(await w)) == {"error": "cas_failed", "current": None}

    run(scenario())


# ---------------------------------------------------------------------- incarnations (node/incarnation.py)


def test_a_removed_members_record_is_forgotten_even_when_it_returns_in_the_same_batch() -> None:
    """n1 heard from n3's first life; n3 is removed and added back (a new data dir) in one
    batch of entries: n1 must admit the new incarnation, and as a leader never adopt the old one."""
    import dataclasses

    from node import incarnation as inc
    from node.raft import Entry, EntryKind

    def config(index: int, m: Membership) -> Entry:
        return Entry(Index(index), Term(1), EntryKind.CONFIG, m.to_json())

    async def scenario() -> None:
        async with Bed() as bed:
            bed.store.peers["n3"] = "incn3"  # heard from n3 in its first life
            m = bed.core.membership
            removed = m.without("n3")
            n3 = m.get("n3")
            assert n3 is not None
            back = removed.with_member(dataclasses.replace(n3, voter=False, incarnation=None))
            bed.deliver(AppendEntries(Term(1), N2, N1, Index(0), Term(0),
                                      (entry(1, 1), config(2, removed), config(3, back)), Index(3)))
            await bed.settle()
            assert bed.core.membership == back
            assert bed.store.peer_incarnation("n3") is None
            await bed.rt.admit("n3", "fresh3")  # the new life is admitted (and recorded)
            assert bed.store.peer_incarnation("n3") == "fresh3"
            adopt = inc.to_adopt(bed.core.membership, bed.store.peer_incarnation, "n1", "incn1")
            assert adopt is None or adopt.incarnation == "fresh3"

    run(scenario())
