"""Known-broken variants of RaftCore behaviour, applied with monkeypatch, to
prove the simulator's checks can fail (a checker that never fails proves
nothing). Each mutant names the rule it breaks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from node.raft import RaftCore, ReadState, quorum
from node.raft.log import RaftLog


def commit_by_counting_old_terms(self: RaftCore) -> None:
    """_maybe_commit without the §5.4.2 "entry of the current term" check."""
    match = {p: pr.match_index for p, pr in self._progress.items()}
    match[self.id] = self.log.stable_index
    n = quorum.committed_index(self.membership.voters, match)
    if n > self.commit:  # BROKEN: should also require self.log.term(n) == self.term
        self.commit = n
        self._commit_dirty = True
        if self._reads_waiting and self.commit >= self._term_start:
            waiting, self._reads_waiting = self._reads_waiting, []
            for ctx in waiting:
                self._queue_read(ctx)
        if self.id not in self.membership.ids and self.commit >= self.log.last_config_index():
            self._step_down_removed()


def read_without_confirmation(self: RaftCore, ctx: int) -> None:
    """_queue_read that serves at once, without a heartbeat round (§6.4 step 3 skipped)."""
    self._reads_ready.append(ReadState(ctx, self.commit))


def vote_for_any_log(self: RaftLog, last_index: int, last_term: int) -> bool:
    """is_up_to_date that always says yes (§5.4.1 election restriction dropped)."""
    return True


@dataclass(frozen=True)
class Mutant:
    target: type
    attribute: str
    replacement: Callable[..., object]
    breaks: str


MUTANTS: dict[str, Mutant] = {
    "commit_old_terms": Mutant(RaftCore, "_maybe_commit", commit_by_counting_old_terms, "§5.4.2 commit rule"),
    "read_unconfirmed": Mutant(RaftCore, "_queue_read", read_without_confirmation, "§6.4 ReadIndex"),
    "vote_any_log": Mutant(RaftLog, "is_up_to_date", vote_for_any_log, "§5.4.1 election restriction"),
}


def find_catching_seeds(mutant: str, family: str, seeds: int) -> list[int]:
    """The seeds of ``family`` whose schedule raises InvariantError under ``mutant``.

    Run it again when a change to the core reshuffles the schedules:
    ``.venv/bin/python -m tests.sim.mutants commit_old_terms e 400``
    """
    from node.raft.sim import InvariantError

    from .schedules import FAMILIES

    m = MUTANTS[mutant]
    original = m.target.__dict__[m.attribute]
    setattr(m.target, m.attribute, m.replacement)
    found = []
    try:
        for seed in range(seeds):
            try:
                FAMILIES[family].check(seed)
            except InvariantError:
                found.append(seed)
    finally:
        setattr(m.target, m.attribute, original)
    return found


if __name__ == "__main__":
    import sys

    print(find_catching_seeds(sys.argv[1], sys.argv[2], int(sys.argv[3])))
