"""Pure tests of the slow-network faults: durations, shapings and the choice
of mechanism (harness/model/slow.py), the userspace plan of each packet,
the nfnetlink_queue wire format and the handler's bookkeeping against a
fake queue and clock (harness/lab/nfqueue.py), the rendered iptables rules
and the netem calls (harness/lab/slownet.py), the CLI's three commands and
the nemesis kind. Nothing here touches the kernel."""

from __future__ import annotations

import random
import socket
import statistics
import struct
from collections.abc import Sequence
from typing import Any

import pytest

from harness import __main__ as cli
from harness.lab import nfqueue, slownet
from harness.lab.nfqueue import Handler, Packet, QueueError
from harness.model.slow import (
    LIMIT,
    REORDER_HOLD_MS,
    Mechanism,
    Planner,
    Shaping,
    ShapingError,
    choose,
    parse_duration,
)
from harness.orchestration import nemesis
from harness.orchestration.nemesis import SLOW_SHAPES, Fault, Kind, Shape

# -- durations and shapings ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "ms"), [("100ms", 100), ("0ms", 0), ("1.5s", 1500), ("2s", 2000), (" 20 ms ", 20),
                                          ("0.25s", 250), ("10000ms", 10_000)])
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(("text", "says"), [("100", "ms or s"), ("ms", "ms or s"), ("-5ms", "ms or s"),
                                            ("1e3ms", "ms or s"), ("100us", "ms or s"), ("1.5ms", "whole"),
                                            ("10001ms", "0..10000"), ("11s", "0..10000"), ("", "ms or s")])
def test_parse_duration_errors(text: str, says: str) -> None:
    with pytest.raises(ShapingError, match=says) as e:
        parse_duration(text)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_shaping_checks_its_values() -> None:
    assert not Shaping().active and Shaping(duplicate=1).active and Shaping(reorder=1).active
    assert Shaping(100, 100).jitter_ms == 100
    bad: list[tuple[dict[str, Any], str]] = [
        ({"delay_ms": -1}, "delay"), ({"delay_ms": 10, "jitter_ms": 11}, "exceeds"),
        ({"duplicate": 101}, "duplicate percent"), ({"reorder": -1}, "reorder percent"),
        ({"delay_ms": True}, "delay"), ({"duplicate": 2.5}, "duplicate")]
    for kw, says in bad:
        with pytest.raises(ShapingError, match=says):
            Shaping(**kw)


def test_shaping_describe_hold_and_json() -> None:
    s = Shaping(100, 20, 5, 10)
    assert s.describe("n2") == ["slow n2 100ms jitter 20ms", "duplicate n2 5%", "reorder n2 10%"]
    assert Shaping(50).describe("n1") == ["slow n1 50ms"]
    assert Shaping.from_json(s.to_json()) == s and Shaping.from_json({}) == Shaping()
    assert (s.hold_ms, Shaping(reorder=5).hold_ms, Shaping(duplicate=5).hold_ms) == (100, REORDER_HOLD_MS, 0)


@pytest.mark.parametrize(("forced", "netem", "nfq", "want"), [
    (None, True, True, Mechanism.NETEM), (None, True, False, Mechanism.NETEM), (None, False, True, Mechanism.NFQUEUE),
    ("nfqueue", True, True, Mechanism.NFQUEUE), ("netem", True, True, Mechanism.NETEM),
])
def test_choose(forced: str | None, netem: bool, nfq: bool, want: Mechanism) -> None:
    assert choose(forced, netem=netem, nfqueue=nfq) is want


@pytest.mark.parametrize(("forced", "netem", "nfq", "says"), [
    (None, False, False, "need tc netem or the netfilter queue"), ("netem", False, True, "netem requested"),
    ("nfqueue", True, False, "nfqueue requested"), ("tbf", True, True, "unknown slow-network mechanism 'tbf'"),
])
def test_choose_errors(forced: str | None, netem: bool, nfq: bool, says: str) -> None:
    with pytest.raises(ShapingError, match=says):
        choose(forced, netem=netem, nfqueue=nfq)


# -- the plan of each packet ---------------------------------------------------------------------


def plans(s: Shaping, n: int = 20_000, seed: int = 1) -> list[tuple[float, ...]]:
    p = Planner(s, random.Random(seed))
    return [p.plan() for _ in range(n)]


def test_nothing_means_at_once_and_once() -> None:
    assert set(plans(Shaping(), 1000)) == {(0.0,)}


def test_delay_without_jitter_is_exact() -> None:
    assert set(plans(Shaping(100), 1000)) == {(0.1,)}


def test_jitter_is_uniform_around_the_delay() -> None:
    waits = [w for p in plans(Shaping(100, 20)) for w in p]
    assert min(waits) >= 0.08 and max(waits) <= 0.12
    assert statistics.mean(waits) == pytest.approx(0.1, abs=0.001)
    assert statistics.pstdev(waits) == pytest.approx(0.04 / 12 ** 0.5, rel=0.05)  # uniform over 40 ms


def test_duplicate_sends_the_percentage_twice_each_with_its_own_wait() -> None:
    ps = plans(Shaping(100, 20, duplicate=20))
    twice = [p for p in ps if len(p) == 2]
    assert {len(p) for p in ps} == {1, 2}
    assert len(twice) / len(ps) == pytest.approx(0.2, abs=0.015)
    assert sum(p[0] != p[1] for p in twice) > 0.99 * len(twice)


@pytest.mark.parametrize(("delay", "hold"), [(0, REORDER_HOLD_MS / 1000), (50, 0.05)])
def test_reorder_sends_the_percentage_at_once_and_holds_the_rest(delay: int, hold: float) -> None:
    waits = [p[0] for p in plans(Shaping(delay, reorder=25))]
    assert set(waits) == {0.0, hold}
    assert waits.count(0.0) / len(waits) == pytest.approx(0.25, abs=0.015)


def test_same_seed_same_plan() -> None:
    s = Shaping(100, 30, 10, 10)
    assert plans(s, 500, seed=3) == plans(s, 500, seed=3) != plans(s, 500, seed=4)


# -- the nfnetlink_queue wire format -----------------------------------------------------------------


def test_config_bind_bytes() -> None:
    msg = nfqueue.config_bind(213, seq=7)
    # nlmsghdr: len 28, type NFNL_SUBSYS_QUEUE<<8 | NFQNL_MSG_CONFIG, flags REQUEST|ACK, seq 7, pid 0
    assert len(msg) == 28 and msg[:16] == struct.pack("=IHHII", 28, 0x0302, 0x0005, 7, 0)
    assert msg[16:20] == bytes([socket.AF_UNSPEC, 0, 0, 213])  # nfgenmsg, queue big-endian
    assert msg[20:] == struct.pack("=HH", 8, 1) + bytes([1, 0, 0, 0])  # NFQA_CFG_CMD: BIND, pad, pf 0


def test_config_params_maxlen_and_flags() -> None:
    params = nfqueue.parse_attrs(nfqueue.config_params(5, seq=1)[20:])
    assert params == {2: struct.pack("!IB", 0xFFFF, 2)}  # copy_range, NFQNL_COPY_PACKET (5 bytes, packed)
    msg = nfqueue.config_params(5, seq=1)
    # the attribute says 9 bytes; the message counts its padding (as libmnl's attribute puts do)
    assert msg[20:24] == struct.pack("=HH", 9, 2) and msg[:4] == struct.pack("=I", 32) and len(msg) == 32
    assert nfqueue.parse_attrs(nfqueue.config_maxlen(5, 2, 1000)[20:]) == {3: struct.pack("!I", 1000)}
    assert nfqueue.parse_attrs(nfqueue.config_flags(5, 3, 1, 1)[20:]) == {5: b"\0\0\0\1", 4: b"\0\0\0\1"}


def test_verdict_message() -> None:
    msg = nfqueue.verdict_message(213, 0xDEADBEEF, nfqueue.NF_ACCEPT)
    (m,) = nfqueue.parse_messages(msg)
    assert (m.type, m.flags, m.seq) == (0x0301, 1, 0)
    assert m.body[:4] == bytes([0, 0, 0, 213])
    assert nfqueue.parse_attrs(m.body[4:]) == {2: struct.pack("!II", 1, 0xDEADBEEF)}


def kernel_packet(queue: int, packet_id: int, payload: bytes, *, cap_len: int | None = None, info: int = 0,
                  nested_flag: bool = False) -> bytes:
    """A NFQNL_MSG_PACKET as the kernel sends it (attributes in its order)."""
    attrs = nfqueue.pack_attr(1, struct.pack("!IHB", packet_id, 0x0800, 3))  # LOCAL_OUT
    attrs += nfqueue.pack_attr(3, struct.pack("!I", 0x42))
    attrs += nfqueue.pack_attr(6, struct.pack("!I", 2))  # outdev
    if cap_len is not None:
        attrs += nfqueue.pack_attr(13, struct.pack("!I", cap_len))
    if info:
        attrs += nfqueue.pack_attr(14, struct.pack("!I", info))
    attrs += nfqueue.pack_attr(10 | (0x4000 if nested_flag else 0), payload)
    return nfqueue.pack_message(nfqueue.NFQNL_MSG_PACKET, queue, attrs, flags=0)


def ipv4(dst: str = "10.213.3.11", size: int = 41) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0x4000, 64, 6, 0, socket.inet_aton("10.213.3.12"),
                         socket.inet_aton(dst))
    return header + bytes(size - len(header))


def test_parse_packet_from_two_messages_in_one_datagram() -> None:
    data = kernel_packet(213, 9, ipv4(size=43)) + kernel_packet(213, 10, ipv4(), cap_len=3000, nested_flag=True)
    a, b = (nfqueue.parse_packet(m.body) for m in nfqueue.parse_messages(data))
    assert (a.queue, a.packet_id, a.hook, a.mark, a.cap_len, len(a.payload)) == (213, 9, 3, 0x42, None, 43)
    assert a.whole and a.destination == "10.213.3.11"
    assert b.packet_id == 10 and b.cap_len == 3000 and not b.whole


def test_what_is_not_whole() -> None:
    assert not Packet(1, 1, 3, ipv4(), skb_info=nfqueue.NFQA_SKB_CSUMNOTREADY).whole
    assert not Packet(1, 1, 3, b"").whole
    assert not Packet(1, 1, 3, b"\x60" + bytes(39)).whole  # IPv6
    assert Packet(1, 1, 3, ipv4(), skb_info=2).whole  # NFQA_SKB_GSO alone: segmented before us


def test_errors_and_acks() -> None:
    ack = struct.pack("=IHHII", 36, nfqueue.NLMSG_ERROR, 0, 4, 0) + struct.pack("=i", 0) + bytes(16)
    busy = struct.pack("=IHHII", 36, nfqueue.NLMSG_ERROR, 0, 5, 0) + struct.pack("=i", -16) + bytes(16)
    a, b = nfqueue.parse_messages(ack + busy)
    assert (a.seq, nfqueue.parse_error(a.body)) == (4, 0)
    assert (b.seq, nfqueue.parse_error(b.body)) == (5, 16)  # EBUSY


@pytest.mark.parametrize("bad", [struct.pack("=IHHII", 8, 0, 0, 0, 0), struct.pack("=IHHII", 400, 0, 0, 0, 0)])
def test_malformed_messages_raise(bad: bytes) -> None:
    with pytest.raises(QueueError, match="malformed"):
        list(nfqueue.parse_messages(bad))
    with pytest.raises(QueueError, match="malformed"):
        nfqueue.parse_attrs(struct.pack("=HH", 40, 1))


# -- the handler's bookkeeping ---------------------------------------------------------------------


class FakeQueue:
    def __init__(self) -> None:
        self.verdicts: list[tuple[int, int]] = []

    def verdict(self, packet_id: int, verdict: int) -> None:
        self.verdicts.append((packet_id, verdict))


class FakeRaw:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.fail = fail

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.fail:
            raise PermissionError("dropped by a rule")
        self.sent.append((data, addr))


class FixedPlanner(Planner):
    def __init__(self, waits: Sequence[tuple[float, ...]]) -> None:
        super().__init__(Shaping(), random.Random(0))
        self.waits = list(waits)

    def plan(self) -> tuple[float, ...]:
        return self.waits.pop(0)


def handler(waits: Sequence[tuple[float, ...]], *, limit: int = LIMIT, fail: bool = False
            ) -> tuple[Handler, FakeQueue, FakeRaw, list[float]]:
    now = [100.0]
    q, raw = FakeQueue(), FakeRaw(fail)
    h = Handler(q, raw, FixedPlanner(waits), clock=lambda: now[0], limit=limit)  # type: ignore[arg-type]
    return h, q, raw, now


def test_held_copies_leave_when_due_and_the_kernel_drops_its_own() -> None:
    h, q, raw, now = handler([(0.1,), (0.05,), (0.2, 0.07)])
    for i, dst in enumerate(["10.213.3.11", "10.213.3.13", "10.213.3.14"], 1):
        h.take(Packet(213, i, 3, ipv4(dst)))
    assert q.verdicts == [(1, nfqueue.NF_DROP), (2, nfqueue.NF_DROP), (3, nfqueue.NF_DROP)]
    assert h.timeout() == pytest.approx(0.05)
    now[0] += 0.06
    h.release(now[0])
    assert [a for _, a in raw.sent] == [("10.213.3.13", 0)]
    now[0] += 0.2
    h.release(now[0])
    assert [a[0] for _, a in raw.sent] == ["10.213.3.13", "10.213.3.14", "10.213.3.11", "10.213.3.14"]
    assert raw.sent[1][0] == ipv4("10.213.3.14") and not h.held
    assert (h.stats.packets, h.stats.sent, h.stats.duplicates) == (3, 4, 1)


def test_at_once_is_an_accept_and_a_late_copy_still_follows() -> None:
    h, q, raw, now = handler([(0.0,), (0.0, 0.03)])
    h.take(Packet(213, 1, 3, ipv4()))
    h.take(Packet(213, 2, 3, ipv4()))
    assert q.verdicts == [(1, nfqueue.NF_ACCEPT), (2, nfqueue.NF_ACCEPT)] and len(h.held) == 1
    h.release(now[0] + 0.03)
    assert len(raw.sent) == 1 and h.stats.accepted == 2


def test_a_packet_we_cannot_copy_is_held_in_the_kernel_and_never_duplicated() -> None:
    h, q, raw, now = handler([(0.1, 0.2)])
    h.take(Packet(213, 7, 3, ipv4()[:20], cap_len=1500))
    assert q.verdicts == [] and len(h.held) == 1
    h.release(now[0] + 1)
    assert q.verdicts == [(7, nfqueue.NF_ACCEPT)] and raw.sent == []


def test_over_the_limit_copies_are_dropped_and_flush_sends_the_rest() -> None:
    h, q, raw, now = handler([(5.0,)] * 4, limit=2)
    for i in range(4):
        h.take(Packet(213, i, 3, ipv4()))
    assert len(h.held) == 2 and h.stats.over_limit == 2
    h.release()  # stopping: everything held leaves at once
    assert len(raw.sent) == 2 and not h.held


def test_a_refused_send_is_counted_not_raised() -> None:
    h, _, _, now = handler([(0.01,)], fail=True)
    h.take(Packet(213, 1, 3, ipv4()))
    h.release(now[0] + 1)
    assert h.stats.send_errors == 1 and not h.held


def test_handle_dispatches_packets_and_counts_kernel_errors() -> None:
    h, q, _, _ = handler([(0.0,)])
    err = struct.pack("=IHHII", 36, nfqueue.NLMSG_ERROR, 0, 0, 0) + struct.pack("=i", -2) + bytes(16)
    h.handle(list(nfqueue.parse_messages(kernel_packet(213, 3, ipv4()) + err)))
    assert q.verdicts == [(3, nfqueue.NF_ACCEPT)] and h.stats.kernel_errors == 1


# -- rules and netem calls -------------------------------------------------------------------------


def test_nfqueue_rules_as_iptables_save_prints_them() -> None:
    assert slownet.rule_lines(3, Mechanism.NFQUEUE, "10.213.3.1", [7000]) == (
        "-A raftnet_3_slow -m mark --mark 0x2130001 -j RETURN",
        "-A raftnet_3_slow ! -d 10.213.3.1/32 -o eth0 -p tcp -m multiport --ports 7000 "
        "-j NFQUEUE --queue-num 213 --queue-bypass",
        "-A raftnet_3_slow ! -d 10.213.3.1/32 -o eth0 -p udp -m multiport --ports 7000 "
        "-j NFQUEUE --queue-num 213 --queue-bypass",
    )


def test_netem_rules_mark() -> None:
    lines = slownet.rule_lines(0, Mechanism.NETEM, "10.213.0.1", (2380, 2379, 2380))
    assert lines == tuple(f"-A raftnet_0_slow ! -d 10.213.0.1/32 -o eth0 -p {p} -m multiport --ports 2379,2380 "
                          f"-j MARK --set-xmark 0x2130002/0xffffffff" for p in ("tcp", "udp"))


@pytest.mark.parametrize("ports", [[], [0], [70000], list(range(1, 17))])
def test_bad_ports(ports: list[int]) -> None:
    with pytest.raises(slownet.SlowNetError, match="peer ports"):
        slownet.rule_lines(0, Mechanism.NFQUEUE, "10.213.0.1", ports)


SAVED = """# Generated by iptables-save v1.8.9 (nf_tables) on Wed Dec  2 18:20:20 2026
*filter
:raftnet_3_slow - [0:0]
-A OUTPUT -j raftnet_3_slow
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:raftnet_3_slow - [0:0]
:raftnet_4_slow - [0:0]
-A OUTPUT -j raftnet_3_slow
-A OUTPUT -j raftnet_4_slow
-A raftnet_3_slow -m mark --mark 0x2130001 -j RETURN
-A raftnet_4_slow -j ACCEPT
COMMIT
"""


def test_parse_save_reads_only_our_chain_in_mangle() -> None:
    got = slownet.parse_save(SAVED, 3)
    assert got == slownet.Installed(True, 1, ("-A raftnet_3_slow -m mark --mark 0x2130001 -j RETURN",))
    assert slownet.parse_save("*mangle\nCOMMIT\n", 3).empty


def test_render_rules_and_clear() -> None:
    lines = slownet.rule_lines(3, Mechanism.NFQUEUE, "10.213.3.1", [7000])
    text = slownet.render_rules(3, lines, jump=True)
    assert text.splitlines() == ["*mangle", ":raftnet_3_slow - [0:0]", *lines, "-A OUTPUT -j raftnet_3_slow", "COMMIT"]
    assert "-A OUTPUT" not in slownet.render_rules(3, lines, jump=False)
    assert slownet.render_clear(3, slownet.Installed(False, 0, ())) is None
    assert slownet.render_clear(3, slownet.Installed(True, 2, ())) == (
        "*mangle\n:raftnet_3_slow - [0:0]\n-D OUTPUT -j raftnet_3_slow\n-D OUTPUT -j raftnet_3_slow\n"
        "-X raftnet_3_slow\nCOMMIT\n")


def test_netem_calls() -> None:
    calls = slownet.netem_calls(4, Shaping(100, 20, 5, 10))
    assert [(c.command, c.kind) for c in calls] == [("add", "prio"), ("add", "netem"), ("add-filter", "fw")]
    prio, netem, fw = (dict(c.kwargs) for c in calls)
    assert prio == {"index": 4, "handle": 0x2130000, "bands": 4,
                    "priomap": [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]}
    assert max(prio["priomap"]) < 3  # unmarked packets never reach the netem band
    assert netem == {"index": 4, "handle": 0x2140000, "parent": 0x2130004, "delay": 100_000, "jitter": 20_000,
                     "limit": LIMIT, "duplicate": 5, "prob_reorder": 10, "gap": 1}
    assert fw == {"index": 4, "parent": 0x2130000, "handle": 0x2130002, "classid": 0x2130004, "prio": 1,
                  "protocol": 0x0800}


def test_netem_options_for_reorder_alone_hold_the_rest() -> None:
    assert slownet.netem_options(Shaping(reorder=25)) == {"delay": REORDER_HOLD_MS * 1000, "jitter": 0,
                                                          "limit": LIMIT, "prob_reorder": 25, "gap": 1}
    assert slownet.netem_options(Shaping(duplicate=5)) == {"delay": 0, "jitter": 0, "limit": LIMIT, "duplicate": 5}


def test_netem_calls_encode_with_pyroute2() -> None:
    """pyroute2's own plugins accept the keywords (a typo would only show on a netem kernel)."""
    from pyroute2.netlink.rtnl.tcmsg import plugins

    for c in slownet.netem_calls(4, Shaping(100, 20, 5, 10)):
        kw = {k: v for k, v in c.kwargs.items() if k not in ("index", "handle", "parent")}
        plugin = plugins[c.kind]
        opts = plugin.get_parameters(dict(kw))
        assert isinstance(opts, dict)
        if c.kind == "netem":
            assert opts["attrs"] == [["TCA_NETEM_REORDER", {"prob_reorder": 0x19999999, "corr_reorder": 0}]]
            assert opts["duplicate"] == 0x0CCCCCCC and opts["gap"] == 1 and opts["limit"] == LIMIT


def test_handler_argv() -> None:
    argv = slownet.handler_argv(Shaping(100, 20, 5, 10), seed=9)
    assert argv[1:] == ["-m", "harness.lab.nfqueue", "--queue", "213", "--mark", "0x2130001", "--delay-ms", "100",
                        "--jitter-ms", "20", "--duplicate", "5", "--reorder", "10", "--seed", "9"]


# -- the CLI -----------------------------------------------------------------------------------------


def test_cli_parses_the_three_commands() -> None:
    a = cli.parser().parse_args(["slow", "n2", "100ms", "--jitter", "20ms"])
    assert (a.cmd, a.node, a.delay, a.jitter) == ("slow", "n2", 100, 20)
    assert cli.parser().parse_args(["slow", "n2", "1.5s"]).jitter == 0
    a = cli.parser().parse_args(["duplicate", "n2", "5"])
    assert (a.cmd, a.node, a.percent) == ("duplicate", "n2", 5)
    assert cli.parser().parse_args(["reorder", "n3", "100"]).percent == 100


@pytest.mark.parametrize(("argv", "says"), [
    (["slow", "n2", "100"], "expected a number with ms or s"), (["slow", "n2"], "required: delay"),
    (["slow", "n2", "fast"], "bad duration 'fast'"), (["slow", "n2", "100ms", "--jitter", "x"], "bad duration 'x'"),
    (["slow", "n2", "20s"], "0..10000"), (["duplicate", "n2", "101"], "0..100"), (["reorder", "n2", "-1"], "0..100"),
    (["duplicate", "n2"], "required: percent"), (["reorder", "n2", "ten"], "bad percent 'ten'"),
    (["slow", "n2", "10ms", "--jitter", "20ms"], "--jitter 20ms exceeds the delay 10ms"),
])
def test_cli_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Any, argv: list[str], says: str) -> None:
    monkeypatch.setenv("RAFTNET_HOME", str(tmp_path))
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)  # the checks come before anything needs root
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("raftnet: ") and says in lines[0], err


# -- the nemesis kind --------------------------------------------------------------------------------

NODES5 = [f"n{i}" for i in range(1, 6)]


def test_slow_is_a_kind_of_all() -> None:
    assert "slow" in nemesis.parse_kinds("all") and nemesis.parse_kinds("slow") == ("slow",)


def test_slow_plans_have_every_shape_and_name_nodes_or_the_leader() -> None:
    plan = nemesis.schedule(3, 3000, ("slow",), NODES5)
    assert {f.shape for f in plan} == set(SLOW_SHAPES)
    assert {f.params["node"] for f in plan} == {*NODES5, "leader"}
    for f in plan:
        if f.shape == "slow":
            assert f.params["delay_ms"] in (50, 100, 200) and 0 <= f.params["jitter_ms"] <= f.params["delay_ms"] // 5
            Shaping(f.params["delay_ms"], f.params["jitter_ms"])
        else:
            assert 0 < f.params["percent"] <= 50


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def members(self) -> list[str]:
        return list(NODES5)

    knows_leader = True

    def leader(self, timeout: float = 10.0) -> str:
        return "n4"

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, args))


@pytest.mark.parametrize(("fault", "call", "text"), [
    (Fault(1, 3, Kind.SLOW, Shape.SLOW, {"node": "leader", "delay_ms": 100, "jitter_ms": 20}),
     ("slow", ("n4", 100, 20)), "slow n4 100ms jitter 20ms"),
    (Fault(1, 3, Kind.SLOW, Shape.SLOW, {"node": "n2", "delay_ms": 50, "jitter_ms": 0}),
     ("slow", ("n2", 50, 0)), "slow n2 50ms"),
    (Fault(1, 3, Kind.SLOW, Shape.DUPLICATE, {"node": "n3", "percent": 10}), ("duplicate", ("n3", 10)),
     "duplicate n3 10%"),
    (Fault(1, 3, Kind.SLOW, Shape.REORDER, {"node": "leader", "percent": 25}), ("reorder", ("n4", 25)),
     "reorder n4 25%"),
])
def test_apply_and_undo_slow_shapes(fault: Fault, call: tuple[str, tuple[Any, ...]], text: str) -> None:
    t = Recorder()
    applied = nemesis.apply(t, fault)
    assert t.calls == [call] and applied.text == text
    t.calls.clear()
    assert nemesis.undo(t, applied) == "heal"
    assert t.calls == [("heal", ())]
