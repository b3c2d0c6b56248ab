"""Faults as typed values.

``Scope`` says what a fault acts on and what ends it: a network fault ends
with ``heal``, a link with ``link_up``, a process fault with the node's
restart or resume, a removal when a member is added again, a skewed clock with
its reset. An ``Active``
fault is one the cluster has started and not yet ended: its scope, the node
it concerns (None: the network or every node) and the words of the event log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scope(enum.StrEnum):
    NET = "net"  # firewall rules: partitions, one-way cuts, bridges, rings, loss
    LINK = "link"  # a node's cable unplugged
    PROC = "proc"  # a process killed, paused, stopped, or its power cut
    MEMBER = "member"  # a member removed
    CLOCK = "clock"  # a node's clock runs fast or slow, or jumped (libfaketime); ended by its reset


@dataclass(frozen=True)
class Active:
    scope: Scope
    node: str | None  # None: the network, or every node (a power cut of all)
    text: str

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.node or 'all'}" if self.scope is not Scope.NET else f"net:{self.text}"

    @classmethod
    def from_key(cls, key: str, text: str = "") -> Active:
        scope, _, rest = key.partition(":")
        if scope in ("net", "loss"):  # "loss:n2" from an older state file
            return cls(Scope.NET, None, text or rest)
        return cls(Scope(scope), None if rest == "all" else rest, text)

    def ended_by_heal(self) -> bool:
        return self.scope is Scope.NET
