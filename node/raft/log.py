"""The Raft log as the core sees it: a compacted prefix (the snapshot) and the
entries after it, all in memory; the part not yet handed to storage is
"unstable".

Compaction may keep some entries the snapshot already covers ("catch-up
entries", like etcd's): a follower a little behind then gets them by
AppendEntries instead of a whole snapshot. So the log's start (the index
before its first entry, whose term is still known) is separate from the
snapshot index. Storage keeps the entry at ``start`` too, as the anchor that
gives its term after a restart (see ``__init__``).

Invariants:
  entries[i].index == start + 1 + i
  start <= snapshot_index <= last_index
  term(start) is known (start_term): an append may begin at first_index
  snapshot_index < unstable_from <= last_index + 1
  every entry below unstable_from is durable in storage
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import Entry, EntryKind, Index, Membership, SnapshotMeta, Term


class RaftLog:
    def __init__(self, snapshot: SnapshotMeta, entries: Sequence[Entry] = ()) -> None:
        """``entries`` may begin at or below the snapshot index (catch-up entries kept by
        compaction): then the first one is the anchor, known only for its term."""
        self.snapshot_index: Index = snapshot.index
        self.snapshot_term: Term = snapshot.term
        self.snapshot_membership: Membership = snapshot.membership
        self.entries: list[Entry] = list(entries)
        self.start: Index = snapshot.index
        self.start_term: Term = snapshot.term
        if self.entries and self.entries[0].index <= snapshot.index:
            anchor = self.entries.pop(0)
            self.start, self.start_term = anchor.index, anchor.term
        for i, e in enumerate(self.entries):
            assert e.index == self.start + 1 + i, "log has a gap"
        assert self.last_index >= self.snapshot_index, "the log ends before the snapshot"
        assert self.start == self.snapshot_index or self.entry(self.snapshot_index).term == self.snapshot_term, (
            "the log disagrees with the snapshot")
        self.unstable_from: Index = Index(self.last_index + 1)  # loaded entries are durable
        # (index, membership) for every config entry above the snapshot, ascending
        self.configs: list[tuple[Index, Membership]] = [
            (e.index, Membership.from_json(e.data))
            for e in self.entries
            if e.kind is EntryKind.CONFIG and e.index > self.snapshot_index
        ]

    # -- queries ---------------------------------------------------------------
    @property
    def last_index(self) -> Index:
        return Index(self.start + len(self.entries))

    @property
    def first_index(self) -> Index:
        """The first entry that can be sent in an AppendEntries (its predecessor's term is known)."""
        return Index(self.start + 1)

    @property
    def last_term(self) -> Term:
        return self.entries[-1].term if self.entries else self.snapshot_term

    @property
    def stable_index(self) -> Index:
        return Index(self.unstable_from - 1)

    def term(self, index: int) -> Term | None:
        """Term of the entry at ``index``; None when compacted away or beyond the end."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index == self.start:
            return self.start_term
        if index < self.start or index > self.last_index:
            return None
        return self.entries[index - self.start - 1].term

    def entry(self, index: int) -> Entry:
        assert self.start < index <= self.last_index, f"no entry {index}"
        return self.entries[index - self.start - 1]

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries lo..hi inclusive (at least one if any, then up to max_bytes)."""
        lo = max(lo, self.start + 1)
        hi = min(hi, self.last_index)
        if lo > hi:
            return []
        out = self.entries[lo - self.start - 1 : hi - self.start]
        if max_bytes is not None:
            size = 0
            for n, e in enumerate(out):
                size += e.size()
                if size > max_bytes and n > 0:
                    return out[:n]
        return out

    def unstable(self) -> list[Entry]:
        return self.entries[self.unstable_from - self.start - 1 :]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: is a log ending at (last_term, last_index) at least as up to date as ours?"""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def first_index_of_term(self, index: int) -> Index:
        """Smallest index i <= index with the same term as entry ``index`` (stops at the snapshot)."""
        t = self.term(index)
        i = index
        while i - 1 > self.snapshot_index and self.term(i - 1) == t:
            i -= 1
        return Index(i)

    def last_index_of_term(self, term: int) -> Index | None:
        """Largest index whose entry has ``term``, if any (scans back from the end)."""
        for e in reversed(self.entries):
            if e.term == term:
                return e.index
            if e.term < term:
                return None
        return None

    def membership(self) -> Membership:
        """The latest configuration in the log: it takes effect once appended (§4.1)."""
        return self.configs[-1][1] if self.configs else self.snapshot_membership

    def membership_at(self, index: int) -> Membership:
        m = self.snapshot_membership
        for i, c in self.configs:
            if i > index:
                break
            m = c
        return m

    def last_config_index(self) -> Index:
        return self.configs[-1][0] if self.configs else self.snapshot_index

    # -- changes ---------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        for e in entries:
            assert e.index == self.last_index + 1, f"append at {e.index} after {self.last_index}"
            self.entries.append(e)
            if e.kind is EntryKind.CONFIG:
                self.configs.append((e.index, Membership.from_json(e.data)))

    def truncate_from(self, index: int) -> None:
        """Drop entries >= index (never committed ones: the caller checks)."""
        assert index > self.snapshot_index
        del self.entries[index - self.start - 1 :]
        self.unstable_from = Index(min(self.unstable_from, index))
        while self.configs and self.configs[-1][0] >= index:
            self.configs.pop()

    def stable_to(self, index: int, term: int) -> None:
        """Storage has made entries up to (index, term) durable."""
        if self.term(index) == term and index >= self.unstable_from:
            self.unstable_from = Index(index + 1)

    def start_after_compact(self, index: int, keep: int) -> Index:
        """The log's start once ``compact(index, keep)`` ran: storage keeps the rows from there."""
        return Index(max(self.start, index - max(0, keep)))

    def compact(self, index: int, keep: int = 0) -> None:
        """A snapshot now covers entries up to ``index``: forget them, except the last
        ``keep`` of them (catch-up entries for followers a little behind)."""
        assert self.snapshot_index <= index <= self.stable_index, "compacting beyond durable log"
        term = self.term(index)
        assert term is not None
        self.snapshot_membership = self.membership_at(index)
        self.snapshot_index, self.snapshot_term = Index(index), term
        self.configs = [(i, c) for i, c in self.configs if i > index]
        start = self.start_after_compact(index, keep)
        if start > self.start:
            start_term = self.term(start)
            assert start_term is not None
            del self.entries[: start - self.start]
            self.start, self.start_term = start, start_term

    def restore(self, meta: SnapshotMeta) -> None:
        """Install a snapshot; keep the suffix after it only when it matches (§7)."""
        keep: list[Entry] = []
        if self.term(meta.index) == meta.term and meta.index <= self.last_index:
            keep = self.slice(meta.index + 1, self.last_index)
        self.snapshot_index, self.snapshot_term = meta.index, meta.term
        self.snapshot_membership = meta.membership
        self.start, self.start_term = meta.index, meta.term
        self.entries = []
        self.configs = []
        self.unstable_from = Index(meta.index + 1)  # storage rewrites the kept suffix too
        self.append(keep)
