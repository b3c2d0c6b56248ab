"""Pure tests of harness.model.topology: ids, addresses, names, grudges."""

from __future__ import annotations

import pytest

from harness.model import topology
from harness.model.topology import Topology, TopologyError
from node.raft.types import NodeId


def ids(*names: str) -> frozenset[NodeId]:
    return frozenset(NodeId(n) for n in names)


def test_node_ids_and_numbers() -> None:
    assert topology.node_ids(3) == ("n1", "n2", "n3")
    assert topology.node_number("n12") == 12
    for bad in ("n0", "n01", "x1", "n", "n245", "N1", " n1"):
        with pytest.raises(TopologyError):
            topology.node_number(bad)
    with pytest.raises(TopologyError):
        topology.node_ids(0)


def test_addresses_of_slot() -> None:
    topo = Topology.of(7, 5)
    assert topo.subnet == "10.213.7.0/24"
    assert topo.control_address == "10.213.7.1"
    assert [topo.address(n) for n in topo.nodes] == [f"10.213.7.{10 + k}" for k in range(1, 6)]
    assert topology.node_address(254, "n244") == "10.213.254.254"
    assert topo.node_at("10.213.7.13") == "n3"
    assert topo.node_at("10.213.7.1") is None
    with pytest.raises(TopologyError):
        Topology.of(255, 3)
    with pytest.raises(TopologyError):
        Topology.of(-1, 3)


def test_node_macs_are_fixed_unique_and_locally_administered() -> None:
    macs = {topology.node_mac(s, f"n{i}") for s in (0, 1, 250) for i in range(1, 16)}
    assert len(macs) == 3 * 15  # one per node and slot
    assert topology.node_mac(3, "n2") == topology.node_mac(3, "n2") == "02:72:0a:d5:03:0c"  # 10.213.3.12
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0b10 and not first & 0b01  # locally administered, unicast


def test_names_are_short_and_slot_unique() -> None:
    topo = Topology(254, (NodeId("n244"), NodeId("n1")))
    assert topo.nodes == ("n1", "n244")  # numeric order
    names = [topo.root_link, topo.switch_netns, topo.control_switch_link]
    names += [f(n) for n in topo.nodes for f in (topo.netns, topo.switch_link)]
    assert all(len(name) <= 15 for name in names)
    assert topo.root_link == "rn254c"
    assert topo.switch_netns == "rn254-sw"
    assert topo.netns("n1") == "rn254-n1"
    assert topo.switch_link("n244") == "rn254-n244"
    assert topo.nft_table == "raftnet_254"
    assert topo.iptables_chains == ("raftnet_254_in", "raftnet_254_out")
    assert topo.all_netns == ("rn254-sw", "rn254-n1", "rn254-n244")


@pytest.mark.parametrize(
    ("name", "slot"),
    [
        ("rn0c", 0),
        ("rn12-sw", 12),
        ("rn12-ctl", 12),
        ("rn3-n17", 3),
        ("rn254-n1", 254),
        ("rn255-n1", None),
        ("rn03-n1", None),
        ("rn3-x1", None),
        ("rn3", None),
        ("eth0", None),
        ("rn3c2", None),
    ],
)
def test_slot_of_name(name: str, slot: int | None) -> None:
    assert topology.slot_of_name(name) == slot


def test_slot_of_name_recognises_every_generated_name() -> None:
    topo = Topology.of(42, 4)
    for name in (topo.root_link, topo.control_switch_link, *topo.all_netns, *map(topo.switch_link, topo.nodes)):
        assert topology.slot_of_name(name) == 42


def test_membership_changes() -> None:
    topo = Topology.of(1, 3)
    assert topo.next_node_id() == "n4"
    grown = topo.with_node("n4")
    assert grown.nodes == ("n1", "n2", "n3", "n4")
    assert grown.without_node("n2").nodes == ("n1", "n3", "n4")
    assert grown.without_node("n2").next_node_id() == "n5"
    with pytest.raises(TopologyError):
        topo.with_node("n2")
    with pytest.raises(TopologyError):
        topo.without_node("n9")
    with pytest.raises(TopologyError):
        Topology(1, (NodeId("n1"), NodeId("n1")))
    assert topo.peers("n2") == ("n1", "n3")


def test_partition_grudge_cuts_between_groups_only() -> None:
    g = topology.partition_grudge([["n1", "n2"], ["n3", "n4", "n5"]])
    assert g == {
        "n1": ids("n3", "n4", "n5"),
        "n2": ids("n3", "n4", "n5"),
        "n3": ids("n1", "n2"),
        "n4": ids("n1", "n2"),
        "n5": ids("n1", "n2"),
    }
    assert topology.reachable(g, "n1", "n2")
    assert not topology.reachable(g, "n1", "n3")
    assert not topology.reachable(g, "n3", "n1")


def test_partition_grudge_leaves_unlisted_nodes_alone() -> None:
    g = topology.partition_grudge([["n1"], ["n2"]])
    assert g == {"n1": ids("n2"), "n2": ids("n1")}
    assert "n3" not in g


@pytest.mark.parametrize("groups", [[["n1"]], [["n1", "n2"], ["n2", "n3"]], [["n1"], []], [["n1"], ["x"]]])
def test_partition_grudge_rejects_bad_groups(groups: list[list[str]]) -> None:
    with pytest.raises(TopologyError):
        topology.partition_grudge(groups)


def test_isolation_grudge() -> None:
    g = topology.isolation_grudge("n3", topology.node_ids(5))
    assert g == {
        "n3": ids("n1", "n2", "n4", "n5"),
        "n1": ids("n3"),
        "n2": ids("n3"),
        "n4": ids("n3"),
        "n5": ids("n3"),
    }
    with pytest.raises(TopologyError):
        topology.isolation_grudge("n1", ["n1"])


def test_bridge_grudge_keeps_the_bridge_connected() -> None:
    nodes = topology.node_ids(5)
    assert topology.bridge_halves("n3", nodes) == (("n1", "n2"), ("n4", "n5"))
    g = topology.bridge_grudge("n3", nodes)
    assert "n3" not in g and all("n3" not in srcs for srcs in g.values())
    assert g == {"n1": ids("n4", "n5"), "n2": ids("n4", "n5"), "n4": ids("n1", "n2"), "n5": ids("n1", "n2")}
    for other in ("n1", "n2", "n4", "n5"):
        assert topology.reachable(g, "n3", other) and topology.reachable(g, other, "n3")


def test_bridge_halves_odd_and_small() -> None:
    assert topology.bridge_halves("n1", topology.node_ids(4)) == (("n2",), ("n3", "n4"))
    assert topology.bridge_halves("n2", topology.node_ids(3)) == (("n1",), ("n3",))
    with pytest.raises(TopologyError):
        topology.bridge_grudge("n1", topology.node_ids(2))
    with pytest.raises(TopologyError):
        topology.bridge_grudge("n9", topology.node_ids(5))


def test_cut_grudge_is_one_way() -> None:
    g = topology.cut_grudge("n1", "n2")
    assert g == {"n2": ids("n1")}
    assert not topology.reachable(g, "n1", "n2")
    assert topology.reachable(g, "n2", "n1")
    with pytest.raises(TopologyError):
        topology.cut_grudge("n1", "n1")


def test_union_grudge_and_pairs() -> None:
    a = topology.cut_grudge("n1", "n2")
    b = topology.cut_grudge("n2", "n1")
    both = topology.union_grudge(a, b)
    assert both == topology.partition_grudge([["n1"], ["n2"]])
    assert topology.grudge_pairs(both) == [("n1", "n2"), ("n2", "n1")]
    assert topology.union_grudge() == {}
    assert topology.union_grudge({NodeId("n1"): {NodeId("n1")}}) == {}
    g = topology.union_grudge(topology.cut_grudge("n10", "n2"), topology.cut_grudge("n9", "n2"))
    assert topology.grudge_pairs(g) == [("n9", "n2"), ("n10", "n2")]
