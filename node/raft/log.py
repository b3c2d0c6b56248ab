"""The Raft log as the core sees it: a compacted prefix (the snapshot) and the
entries after it, all in memory; the part not yet handed to storage is
"unstable".

Invariants:
  entries[i].index == snapshot_index + 1 + i
  snapshot_index < unstable_from <= last_index + 1
  every entry below unstable_from is durable in storage
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import Entry, EntryKind, Index, Membership, SnapshotMeta, Term


class RaftLog:
    def __init__(self, snapshot: SnapshotMeta, entries: Sequence[Entry] = ()) -> None:
        self.snapshot_index: Index = snapshot.index
        self.snapshot_term: Term = snapshot.term
        self.snapshot_membership: Membership = snapshot.membership
        self.entries: list[Entry] = list(entries)
        for i, e in enumerate(self.entries):
            assert e.index == self.snapshot_index + 1 + i, "log has a gap"
        self.unstable_from: Index = Index(self.last_index + 1)  # loaded entries are durable
        # (index, membership) for every config entry above the snapshot, ascending
        self.configs: list[tuple[Index, Membership]] = [
            (e.index, Membership.from_json(e.data)) for e in self.entries if e.kind is EntryKind.CONFIG
        ]

    # -- queries ---------------------------------------------------------------
    @property
    def last_index(self) -> Index:
        return Index(self.snapshot_index + len(self.entries))

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
        if index < self.snapshot_index or index > self.last_index:
            return None
        return self.entries[index - self.snapshot_index - 1].term

    def entry(self, index: int) -> Entry:
        assert self.snapshot_index < index <= self.last_index, f"no entry {index}"
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries lo..hi inclusive (at least one if any, then up to max_bytes)."""
        lo = max(lo, self.snapshot_index + 1)
        hi = min(hi, self.last_index)
        if lo > hi:
            return []
        out = self.entries[lo - self.snapshot_index - 1 : hi - self.snapshot_index]
        if max_bytes is not None:
            size = 0
            for n, e in enumerate(out):
                size += e.size()
                if size > max_bytes and n > 0:
                    return out[:n]
        return out

    def unstable(self) -> list[Entry]:
        return self.entries[self.unstable_from - self.snapshot_index - 1 :]

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
        del self.entries[index - self.snapshot_index - 1 :]
        self.unstable_from = Index(min(self.unstable_from, index))
        while self.configs and self.configs[-1][0] >= index:
            self.configs.pop()

    def stable_to(self, index: int, term: int) -> None:
        """Storage has made entries up to (index, term) durable."""
        if self.term(index) == term and index >= self.unstable_from:
            self.unstable_from = Index(index + 1)

    def compact(self, index: int) -> None:
        """Forget entries up to ``index``: a snapshot now covers them."""
        assert self.snapshot_index <= index <= self.stable_index, "compacting beyond durable log"
        if index == self.snapshot_index:
            return
        term = self.term(index)
        assert term is not None
        self.snapshot_membership = self.membership_at(index)
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = Index(index), term
        self.configs = [(i, c) for i, c in self.configs if i > index]

    def restore(self, meta: SnapshotMeta) -> None:
        """Install a snapshot; keep the suffix after it only when it matches (§7)."""
        keep: list[Entry] = []
        if self.term(meta.index) == meta.term and meta.index <= self.last_index:
            keep = self.slice(meta.index + 1, self.last_index)
        self.snapshot_index, self.snapshot_term = meta.index, meta.term
        self.snapshot_membership = meta.membership
        self.entries = []
        self.configs = []
        self.unstable_from = Index(meta.index + 1)  # storage rewrites the kept suffix too
        self.append(keep)
