"""Deterministic log entries for the storage tests: the entry at (index, term)
is always the same, so a reader can tell a stored entry from a torn one."""

from __future__ import annotations

import json
import random
from typing import Any

from node.raft import Entry, EntryKind, Index, Member, Membership, NodeId, Term

MEMBERSHIP = Membership.of([Member(NodeId(f"n{i}"), f"127.0.0.1:{7000 + i}") for i in (1, 2, 3)])


def command(index: int, term: int) -> dict[str, Any]:
    r = random.Random(index * 1_000_003 + term)
    key = f"k{r.randrange(12)}"
    x = r.random()
    if x < 0.55:
        cmd: dict[str, Any] = {"op": "put", "key": key, "value": f"{index}/{term}/" + "x" * r.randrange(3000)}
    elif x < 0.7:
        cmd = {"op": "delete", "key": key}
    else:
        expect = None if r.random() < 0.5 else f"{index - r.randrange(1, 4)}/{term}/"
        cmd = {"op": "cas", "key": key, "expect": expect, "value": f"cas {index}/{term} é😀"}
    if r.random() < 0.4:
        cmd["client"] = f"c{r.randrange(3)}"
        cmd["seq"] = max(1, index - (r.randrange(1, 6) if r.random() < 0.2 else 0))  # sometimes a retry
    return cmd


def entry(index: int, term: int) -> Entry:
    r = random.Random(index * 31 + term * 7)
    x = r.random()
    if x < 0.05:
        return Entry(Index(index), Term(term), EntryKind.NOOP, "")
    if x < 0.08:
        return Entry(Index(index), Term(term), EntryKind.CONFIG, MEMBERSHIP.to_json())
    return Entry(Index(index), Term(term), EntryKind.NORMAL, json.dumps(command(index, term), separators=(",", ":")))
