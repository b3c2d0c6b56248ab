"""Pure description of one cluster's network: ids, addresses, names, grudges.

Nothing here touches the system. ``Topology`` answers every naming question
the acting modules (``netns``, ``firewall``, ``cleanup``) need, so that the
naming scheme lives in one place:

    reserved range      10.213.0.0/16 (documented; nothing else may use it)
    cluster slot s      10.213.s.0/24, s in 0..254
    control address     10.213.s.1 (root side of the control veth)
    node nk             10.213.s.(10+k), k in 1..244
    netns               rn{s}-{id} per node, rn{s}-sw for the switch
    links               rn{s}c in the root namespace (control path),
                        rn{s}-{id} and rn{s}-ctl in the switch namespace,
                        eth0 inside each node namespace, br0 the bridge
    nft table           inet raftnet_{s}; iptables chains raftnet_{s}_in/_out
    node port           TCP 7000 on every node; peers and the harness connect to it

A *grudge* ``{dst: {src, ...}}`` means dst drops what src sends it (the
word is Jepsen's). ``partition_grudge`` and friends turn the fault
vocabulary of CONTRACT.md section 3 into grudges; ``firewall`` turns a
grudge into rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.errors import HarnessError
from node.raft.types import NodeId

RESERVED_RANGE = "10.213.0.0/16"
MAX_SLOT = 254
MAX_NODE_NUMBER = 244
CONTROL_HOST = 1
NODE_HOST_OFFSET = 10
PREFIX_LEN = 24
NAME_PREFIX = "rn"
NODE_LINK = "eth0"
# Every node listens here; a node talks to a peer only over a connection it
# opens to this port, which is what the firewall's drops rely on.
NODE_PORT = 7000
BRIDGE_LINK = "br0"

Grudge = dict[NodeId, frozenset[NodeId]]

_NODE_ID = re.compile(r"n([1-9][0-9]*)")
# Every netns or link name this module hands out, with the slot as group 1.
_OUR_NAME = re.compile(r"rn([0-9]{1,3})(?:c|-sw|-ctl|-n[1-9][0-9]*)")


class TopologyError(HarnessError, ValueError):
    """A node id, slot or fault description that does not fit the plan."""


def node_number(node: str) -> int:
    """The k of node id ``nk``; raises TopologyError for anything else."""
    m = _NODE_ID.fullmatch(node)
    if m is None or int(m.group(1)) > MAX_NODE_NUMBER:
        raise TopologyError(f"bad node id {node!r}: expected n1..n{MAX_NODE_NUMBER}")
    return int(m.group(1))


def node_ids(count: int) -> tuple[NodeId, ...]:
    """The ids n1..n{count}."""
    if not 1 <= count <= MAX_NODE_NUMBER:
        raise TopologyError(f"node count {count} out of range 1..{MAX_NODE_NUMBER}")
    return tuple(NodeId(f"n{k}") for k in range(1, count + 1))


def sorted_nodes(nodes: Iterable[str]) -> tuple[NodeId, ...]:
    """Node ids in numeric order (n2 before n10), duplicates removed."""
    return tuple(NodeId(n) for n in sorted(set(nodes), key=node_number))


def slot_of_name(name: str) -> int | None:
    """The slot of a netns or link name we create (``rn3-n1`` -> 3), else None."""
    m = _OUR_NAME.fullmatch(name)
    if m is None:
        return None
    slot = int(m.group(1))
    return slot if slot <= MAX_SLOT and str(slot) == m.group(1) else None


def check_slot(slot: int) -> int:
    if not 0 <= slot <= MAX_SLOT:
        raise TopologyError(f"slot {slot} out of range 0..{MAX_SLOT}")
    return slot


def subnet(slot: int) -> str:
    return f"10.213.{check_slot(slot)}.0/{PREFIX_LEN}"


def control_address(slot: int) -> str:
    return f"10.213.{check_slot(slot)}.{CONTROL_HOST}"


def node_address(slot: int, node: str) -> str:
    return f"10.213.{check_slot(slot)}.{NODE_HOST_OFFSET + node_number(node)}"


def node_mac(slot: int, node: str) -> str:
    """The MAC address of ``node``'s eth0: fixed by its IPv4 address (locally administered, unicast).

    A node removed and added back under its id gets the same MAC, so the neighbour caches of the
    control path and of its peers stay right. With a random MAC they would keep the old one: an
    entry confirmed in the last second ignores the new node's ARP (the kernel's locktime) and stays
    REACHABLE for 15-45 s, and everything sent to the node in that time goes nowhere."""
    octets = [int(o) for o in node_address(slot, node).split(".")]
    return "02:72:" + ":".join(f"{o:02x}" for o in octets)


def node_netns(slot: int, node: str) -> str:
    node_number(node)
    return f"{NAME_PREFIX}{check_slot(slot)}-{node}"


def switch_netns(slot: int) -> str:
    return f"{NAME_PREFIX}{check_slot(slot)}-sw"


def root_link(slot: int) -> str:
    """Root-namespace end of the control veth."""
    return f"{NAME_PREFIX}{check_slot(slot)}c"


def switch_link(slot: int, node: str) -> str:
    """Switch-namespace end of a node's veth (its other end is eth0 in the node)."""
    node_number(node)
    return f"{NAME_PREFIX}{check_slot(slot)}-{node}"


def control_switch_link(slot: int) -> str:
    """Switch-namespace end of the control veth."""
    return f"{NAME_PREFIX}{check_slot(slot)}-ctl"


def nft_table(slot: int) -> str:
    return f"raftnet_{check_slot(slot)}"


def iptables_chains(slot: int) -> tuple[str, str]:
    """(input chain, output chain) of the iptables backend."""
    return f"raftnet_{check_slot(slot)}_in", f"raftnet_{check_slot(slot)}_out"


@dataclass(frozen=True)
class Topology:
    """One cluster's network: a slot and its current node ids (numeric order)."""

    slot: int
    nodes: tuple[NodeId, ...]

    def __post_init__(self) -> None:
        check_slot(self.slot)
        ordered = sorted_nodes(self.nodes)
        if len(ordered) != len(self.nodes):
            raise TopologyError(f"duplicate node ids in {self.nodes}")
        object.__setattr__(self, "nodes", ordered)

    @staticmethod
    def of(slot: int, count: int) -> Topology:
        """Slot ``slot`` with nodes n1..n{count}."""
        return Topology(slot, node_ids(count))

    @property
    def subnet(self) -> str:
        return subnet(self.slot)

    @property
    def control_address(self) -> str:
        return control_address(self.slot)

    @property
    def switch_netns(self) -> str:
        return switch_netns(self.slot)

    @property
    def root_link(self) -> str:
        return root_link(self.slot)

    @property
    def control_switch_link(self) -> str:
        return control_switch_link(self.slot)

    @property
    def nft_table(self) -> str:
        return nft_table(self.slot)

    @property
    def iptables_chains(self) -> tuple[str, str]:
        return iptables_chains(self.slot)

    @property
    def all_netns(self) -> tuple[str, ...]:
        """The switch namespace, then one per node."""
        return (self.switch_netns, *(self.netns(n) for n in self.nodes))

    def check_node(self, node: str) -> NodeId:
        if node not in self.nodes:
            raise TopologyError(f"unknown node {node!r} (nodes: {', '.join(self.nodes)})")
        return NodeId(node)

    def address(self, node: str) -> str:
        return node_address(self.slot, node)

    def netns(self, node: str) -> str:
        return node_netns(self.slot, node)

    def switch_link(self, node: str) -> str:
        return switch_link(self.slot, node)

    def node_at(self, address: str) -> NodeId | None:
        """The node whose address is ``address``, if any."""
        for n in self.nodes:
            if self.address(n) == address:
                return n
        return None

    def peers(self, node: str) -> tuple[NodeId, ...]:
        return tuple(n for n in self.nodes if n != node)

    def with_node(self, node: str) -> Topology:
        node_number(node)
        if node in self.nodes:
            raise TopologyError(f"node {node!r} already exists")
        return Topology(self.slot, (*self.nodes, NodeId(node)))

    def without_node(self, node: str) -> Topology:
        self.check_node(node)
        return Topology(self.slot, tuple(n for n in self.nodes if n != node))

    def next_node_id(self) -> NodeId:
        """The lowest unused id above every current one (n{max+1})."""
        top = max((node_number(n) for n in self.nodes), default=0)
        return NodeId(f"n{top + 1}")


# -- grudges ------------------------------------------------------------------


def _normal(grudge: Mapping[NodeId, Iterable[NodeId]]) -> Grudge:
    """Drop empty entries and self-grudges; freeze the sets."""
    out: Grudge = {}
    for dst in sorted_nodes(grudge):
        srcs = frozenset(s for s in grudge[dst] if s != dst)
        if srcs:
            out[dst] = srcs
    return out


def partition_grudge(groups: Sequence[Iterable[str]]) -> Grudge:
    """Each node drops everything from nodes of the other groups.

    Groups must be disjoint and non-empty. Nodes in no group are left alone
    (they keep talking to everyone), as with Jepsen's complete-grudge.
    """
    frozen = [sorted_nodes(g) for g in groups]
    seen: set[str] = set()
    for g in frozen:
        if not g:
            raise TopologyError("a partition group is empty")
        if seen & set(g):
            raise TopologyError(f"node(s) {sorted(seen & set(g))} in more than one group")
        seen |= set(g)
    if len(frozen) < 2:
        raise TopologyError("a partition needs at least two groups")
    grudge: dict[NodeId, set[NodeId]] = {}
    for i, g in enumerate(frozen):
        others = {n for j, h in enumerate(frozen) if j != i for n in h}
        for n in g:
            grudge[n] = set(others)
    return _normal(grudge)


def isolation_grudge(node: str, nodes: Iterable[str]) -> Grudge:
    """``node`` alone on one side, every other node on the other."""
    node_number(node)
    others = [n for n in sorted_nodes(nodes) if n != node]
    if not others:
        raise TopologyError(f"cannot isolate {node!r}: no other node")
    return partition_grudge([[node], others])


def bridge_halves(node: str, nodes: Iterable[str]) -> tuple[tuple[NodeId, ...], tuple[NodeId, ...]]:
    """The two halves ``bridge_grudge`` separates: the other nodes in numeric
    order, split at the middle (the first half is the smaller one)."""
    all_nodes = sorted_nodes(nodes)
    if node not in all_nodes:
        raise TopologyError(f"bridge node {node!r} is not among {all_nodes}")
    others = tuple(n for n in all_nodes if n != node)
    if len(others) < 2:
        raise TopologyError("a bridge needs at least three nodes")
    mid = len(others) // 2
    return others[:mid], others[mid:]


def bridge_grudge(node: str, nodes: Iterable[str]) -> Grudge:
    """The halves do not see each other; ``node`` sees (and is seen by) both."""
    left, right = bridge_halves(node, nodes)
    return partition_grudge([left, right])


def cut_grudge(src: str, dst: str) -> Grudge:
    """One-way: what ``src`` sends ``dst`` is dropped; ``dst`` -> ``src`` passes."""
    node_number(src)
    node_number(dst)
    if src == dst:
        raise TopologyError(f"cannot cut {src!r} from itself")
    return {NodeId(dst): frozenset({NodeId(src)})}


def union_grudge(*grudges: Mapping[NodeId, Iterable[NodeId]]) -> Grudge:
    """Every drop of every grudge (faults compose by adding drops)."""
    acc: dict[NodeId, set[NodeId]] = {}
    for g in grudges:
        for dst, srcs in g.items():
            acc.setdefault(dst, set()).update(srcs)
    return _normal(acc)


def grudge_pairs(grudge: Mapping[NodeId, Iterable[NodeId]]) -> list[tuple[NodeId, NodeId]]:
    """The grudge as sorted (src, dst) pairs: "src -> dst is dropped"."""
    pairs = [(src, dst) for dst, srcs in grudge.items() for src in srcs if src != dst]
    return sorted(pairs, key=lambda p: (node_number(p[0]), node_number(p[1])))


def reachable(grudge: Mapping[NodeId, Iterable[NodeId]], src: str, dst: str) -> bool:
    """Whether a connection that ``src`` opens to ``dst`` works under ``grudge``
    (its packets reach dst, and dst's replies come back)."""
    return src not in frozenset(grudge.get(NodeId(dst), ()))
