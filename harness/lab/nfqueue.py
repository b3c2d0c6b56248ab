"""The userspace slow-network mechanism: a netfilter queue handler in pure Python.

    python -m harness.lab.nfqueue --queue 213 --mark 0x2130001 --delay-ms 100 --jitter-ms 20

For kernels without netem (harness/lab/slownet.py picks it): the node's
firewall sends its outgoing peer packets to queue ``--queue``
(``-j NFQUEUE --queue-bypass``: with no handler bound they pass), and this
process, started inside the node's network namespace (queues are per
namespace), receives each one over nfnetlink_queue and plans when it leaves
(``harness.model.slow.Planner``: delay, jitter, duplication, reordering).

How a packet is held: the handler asks for a full copy of each packet, tells
the kernel to drop its own at once (NF_DROP), and at the planned time sends
its copy through a raw socket (IPPROTO_RAW: the IP header as received, the
checksums already final since the queue is not set up for GSO). The copies
carry firewall mark ``--mark``, which the queueing rule skips, so they are
not queued again; the other firewall rules (loss, partitions) still see
them. Dropping at once is what netem's orphaning does: the sender's socket
memory is freed while the packet waits, so TCP's small-queue limit does not
throttle a delayed connection to a few packets per delay. A packet that must
leave at once is accepted (NF_ACCEPT) without a copy; one whose copy is not
whole (truncated, or a checksum not yet filled in) is held in the kernel
and accepted when due (never duplicated).

Wire format (linux/netfilter/nfnetlink_queue.h): netlink messages of type
``NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_*``, each a ``nlmsghdr``, a
``nfgenmsg`` (family, version, queue number big-endian) and attributes.
The packing and parsing below are pure and unit-tested.

The queue is configured fail-open: when it is full, or our socket cannot
take another message, the kernel lets the packet pass instead of dropping
it. SIGTERM/SIGINT: every held packet is sent at once, then the process
exits 0 (stopping the handler never loses what it holds).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.model.slow import LIMIT, Planner, Shaping

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

NFNL_SUBSYS_QUEUE = 3
NFNETLINK_V0 = 0
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2

# attributes of a packet / verdict message
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_MARK = 1, 2, 3
NFQA_PAYLOAD, NFQA_CAP_LEN, NFQA_SKB_INFO = 10, 13, 14
NFQA_SKB_CSUMNOTREADY = 1

# attributes of a config message
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_NONE, NFQNL_COPY_META, NFQNL_COPY_PACKET = 0, 1, 2
NFQA_CFG_F_FAIL_OPEN = 1

NF_DROP, NF_ACCEPT = 0, 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
_NLATTR = struct.Struct("=HH")  # len, type (host order)
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big-endian)
_PACKET_HDR = struct.Struct("!IHB")  # packet_id, hw_protocol, hook (packed)
_VERDICT_HDR = struct.Struct("!II")  # verdict, id
_CONFIG_CMD = struct.Struct("!BBH")  # command, pad, pf
_CONFIG_PARAMS = struct.Struct("!IB")  # copy_range, copy_mode (packed, 5 bytes)
_BE32 = struct.Struct("!I")

COPY_RANGE = 0xFFFF


class QueueError(HarnessError):
    """The kernel refused a queue request (e.g. the queue is bound by another process)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


# -- packing and parsing (pure) ------------------------------------------------------------


def msg_type(msg: int) -> int:
    return (NFNL_SUBSYS_QUEUE << 8) | msg


def pack_attr(attr_type: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = _NLATTR.size + len(data)
    return _NLATTR.pack(length, attr_type) + data + b"\0" * (_align(length) - length)


def pack_message(msg: int, queue: int, attrs: bytes, *, seq: int = 0, flags: int = NLM_F_REQUEST) -> bytes:
    """A nfnetlink_queue message: nlmsghdr + nfgenmsg(AF_UNSPEC, v0, queue) + attributes."""
    body = _NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, queue) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type(msg), flags, seq, 0) + body


def config_bind(queue: int, seq: int) -> bytes:
    return pack_message(NFQNL_MSG_CONFIG, queue, pack_attr(NFQA_CFG_CMD, _CONFIG_CMD.pack(NFQNL_CFG_CMD_BIND, 0, 0)),
                        seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK)


def config_unbind(queue: int, seq: int) -> bytes:
    return pack_message(NFQNL_MSG_CONFIG, queue,
                        pack_attr(NFQA_CFG_CMD, _CONFIG_CMD.pack(NFQNL_CFG_CMD_UNBIND, 0, 0)),
                        seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK)


def config_params(queue: int, seq: int, copy_mode: int = NFQNL_COPY_PACKET, copy_range: int = COPY_RANGE) -> bytes:
    return pack_message(NFQNL_MSG_CONFIG, queue, pack_attr(NFQA_CFG_PARAMS, _CONFIG_PARAMS.pack(copy_range, copy_mode)),
                        seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK)


def config_maxlen(queue: int, seq: int, maxlen: int) -> bytes:
    return pack_message(NFQNL_MSG_CONFIG, queue, pack_attr(NFQA_CFG_QUEUE_MAXLEN, _BE32.pack(maxlen)),
                        seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK)


def config_flags(queue: int, seq: int, flags: int, mask: int) -> bytes:
    """The kernel takes NFQA_CFG_FLAGS only together with NFQA_CFG_MASK."""
    attrs = pack_attr(NFQA_CFG_FLAGS, _BE32.pack(flags)) + pack_attr(NFQA_CFG_MASK, _BE32.pack(mask))
    return pack_message(NFQNL_MSG_CONFIG, queue, attrs, seq=seq, flags=NLM_F_REQUEST | NLM_F_ACK)


def verdict_message(queue: int, packet_id: int, verdict: int) -> bytes:
    """NF_ACCEPT / NF_DROP for one packet (no ack asked: errors still come back)."""
    return pack_message(NFQNL_MSG_VERDICT, queue, pack_attr(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(verdict, packet_id)))


@dataclass(frozen=True)
class Message:
    type: int
    flags: int
    seq: int
    body: bytes  # after the nlmsghdr


def parse_messages(data: bytes) -> Iterator[Message]:
    """The netlink messages in one datagram."""
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, mtype, flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > len(data):
            raise QueueError(f"malformed netlink message (length {length} at {off} of {len(data)})")
        yield Message(mtype, flags, seq, data[off + _NLMSGHDR.size:off + length])
        off += _align(length)


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attribute type -> value (the flag bits of the type dropped)."""
    out: dict[int, bytes] = {}
    off = 0
    while off + _NLATTR.size <= len(data):
        length, atype = _NLATTR.unpack_from(data, off)
        if length < _NLATTR.size or off + length > len(data):
            raise QueueError(f"malformed netlink attribute (length {length} at {off} of {len(data)})")
        out[atype & NLA_TYPE_MASK] = data[off + _NLATTR.size:off + length]
        off += _align(length)
    return out


def parse_error(body: bytes) -> int:
    """The errno of an NLMSG_ERROR message (0: an ack)."""
    (code,) = struct.unpack_from("=i", body)
    return -code


@dataclass(frozen=True)
class Packet:
    queue: int
    packet_id: int
    hook: int
    payload: bytes
    cap_len: int | None = None  # the original length, when the copy was truncated
    skb_info: int = 0
    mark: int = 0

    @property
    def whole(self) -> bool:
        """A copy we may send ourselves: complete, an IPv4 packet, checksums filled in."""
        return (self.cap_len is None and not self.skb_info & NFQA_SKB_CSUMNOTREADY
                and len(self.payload) >= 20 and self.payload[0] >> 4 == 4)

    @property
    def destination(self) -> str:
        return socket.inet_ntoa(self.payload[16:20])


def parse_packet(body: bytes) -> Packet:
    """A NFQNL_MSG_PACKET body (nfgenmsg + attributes)."""
    _family, _version, queue = _NFGENMSG.unpack_from(body)
    attrs = parse_attrs(body[_NFGENMSG.size:])
    if NFQA_PACKET_HDR not in attrs:
        raise QueueError("packet message without NFQA_PACKET_HDR")
    packet_id, _hw, hook = _PACKET_HDR.unpack_from(attrs[NFQA_PACKET_HDR])
    cap = _BE32.unpack(attrs[NFQA_CAP_LEN])[0] if NFQA_CAP_LEN in attrs else None
    info = _BE32.unpack(attrs[NFQA_SKB_INFO])[0] if NFQA_SKB_INFO in attrs else 0
    mark = _BE32.unpack(attrs[NFQA_MARK])[0] if NFQA_MARK in attrs else 0
    return Packet(queue, packet_id, hook, attrs.get(NFQA_PAYLOAD, b""), cap, info, mark)


# -- the socket ----------------------------------------------------------------------------


class Queue:
    """Queue ``num`` of the calling thread's network namespace, bound to a netlink socket."""

    def __init__(self, num: int, *, maxlen: int = LIMIT, rcvbuf: int = 8 << 20) -> None:
        self.num = num
        self.seq = 0
        self.backlog: list[Message] = []  # packets that arrived while we waited for an ack
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.bind((0, 0))
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:  # no CAP_NET_ADMIN over the initial namespace (rootless)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            self._request(config_bind(num, self._next()))
            self._request(config_params(num, self._next()))
            self._request(config_maxlen(num, self._next(), maxlen))
            self._request(config_flags(num, self._next(), NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN))
        except BaseException:
            self.sock.close()
            raise

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _request(self, msg: bytes) -> None:
        """Send a config message and wait for its ack; raise QueueError with the kernel's errno."""
        seq = _NLMSGHDR.unpack_from(msg)[3]
        self.sock.send(msg)
        self.sock.settimeout(5.0)
        try:
            while True:
                for m in parse_messages(self.sock.recv(1 << 17)):
                    if m.type == NLMSG_ERROR and m.seq == seq:
                        code = parse_error(m.body)
                        if code:
                            raise QueueError(f"nfnetlink_queue refused a request for queue {self.num}: "
                                             f"{errno.errorcode.get(code, code)} ({os.strerror(code)})")
                        return
                    self.backlog.append(m)
        except TimeoutError:
            raise QueueError(f"nfnetlink_queue did not answer for queue {self.num}") from None
        finally:
            self.sock.settimeout(None)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, budget: int = 256) -> list[Message]:
        """The messages waiting now (non-blocking), at most ``budget`` datagrams."""
        out, self.backlog = self.backlog, []
        for _ in range(budget):
            try:
                data = self.sock.recv(1 << 17, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # messages lost; fail-open let their packets pass
                    continue
                raise
            out.extend(parse_messages(data))
        return out

    def verdict(self, packet_id: int, verdict: int) -> None:
        self.sock.send(verdict_message(self.num, packet_id, verdict))

    def close(self) -> None:
        """Unbind (the kernel drops what it still holds for us) and close."""
        with contextlib.suppress(OSError, QueueError):
            self._request(config_unbind(self.num, self._next()))
        self.sock.close()


def probe(num: int) -> str | None:
    """None if queue ``num`` of the calling thread's namespace can be bound, else why not."""
    try:
        Queue(num, maxlen=16, rcvbuf=1 << 16).close()
    except (OSError, QueueError) as e:
        return str(e)
    return None


# -- the handler ---------------------------------------------------------------------------


@dataclass
class Stats:
    packets: int = 0  # received from the kernel
    sent: int = 0  # copies sent through the raw socket
    duplicates: int = 0  # second copies planned
    accepted: int = 0  # verdicts NF_ACCEPT (sent at once, or held in the kernel)
    over_limit: int = 0  # copies dropped because LIMIT were held
    send_errors: int = 0  # a copy the raw socket refused (e.g. a loss rule dropped it)
    kernel_errors: int = 0  # error messages about our verdicts

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.__dict__.items())


@dataclass(order=True)
class _Held:
    due: float
    seq: int
    payload: bytes = field(compare=False)  # our copy to send, or b"" to accept packet_id
    packet_id: int = field(compare=False, default=0)
    destination: str = field(compare=False, default="")


class Handler:
    """Plans every queued packet and sends it when due."""

    def __init__(self, queue: Queue, raw: socket.socket, planner: Planner, *,
                 clock: Callable[[], float] = time.monotonic, limit: int = LIMIT) -> None:
        self.queue = queue
        self.raw = raw
        self.planner = planner
        self.clock = clock
        self.limit = limit
        self.held: list[_Held] = []
        self.stats = Stats()
        self._seq = 0

    def _hold(self, entry: _Held) -> None:
        heapq.heappush(self.held, entry)

    def take(self, pkt: Packet) -> None:
        """Plan one packet from the kernel."""
        self.stats.packets += 1
        now = self.clock()
        waits = self.planner.plan()
        self.stats.duplicates += len(waits) - 1
        if not pkt.whole:  # held in the kernel; one copy only
            self._seq += 1
            self._hold(_Held(now + waits[0], self._seq, b"", pkt.packet_id))
            return
        if waits[0] == 0.0:
            self._accept(pkt.packet_id)
            waits = waits[1:]
        else:
            self.queue.verdict(pkt.packet_id, NF_DROP)
        for w in waits:
            if len(self.held) >= self.limit:
                self.stats.over_limit += 1
                continue
            self._seq += 1
            self._hold(_Held(now + w, self._seq, pkt.payload, 0, pkt.destination))

    def _accept(self, packet_id: int) -> None:
        self.queue.verdict(packet_id, NF_ACCEPT)
        self.stats.accepted += 1

    def release(self, until: float | None = None) -> None:
        """Send everything due by ``until`` (None: everything held), in due order."""
        while self.held and (until is None or self.held[0].due <= until):
            h = heapq.heappop(self.held)
            if not h.payload:
                self._accept(h.packet_id)
                continue
            try:
                self.raw.sendto(h.payload, (h.destination, 0))
                self.stats.sent += 1
            except OSError:
                self.stats.send_errors += 1

    def handle(self, messages: list[Message]) -> None:
        for m in messages:
            if m.type == msg_type(NFQNL_MSG_PACKET):
                self.take(parse_packet(m.body))
            elif m.type == NLMSG_ERROR and parse_error(m.body):
                self.stats.kernel_errors += 1

    def timeout(self, cap: float = 1.0) -> float:
        if not self.held:
            return cap
        return min(cap, max(0.0, self.held[0].due - self.clock()))

    def run(self, wake: int, stopping: Callable[[], bool]) -> None:
        """Until ``stopping()`` (checked whenever ``wake`` becomes readable)."""
        q = self.queue.fileno()
        while not stopping():
            ready, _, _ = select.select([q, wake], [], [], self.timeout())
            if wake in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 64)
            if q in ready:
                self.handle(self.queue.receive())
            self.release(self.clock())
        self.handle(self.queue.receive())
        self.release()


def raw_socket(mark: int) -> socket.socket:
    """IPPROTO_RAW (IP_HDRINCL implied) with firewall mark ``mark``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    return s


def _int(text: str) -> int:
    return int(text, 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.lab.nfqueue",
                                description="hold the packets of a netfilter queue (raftnet's slow networks)")
    p.add_argument("--queue", type=_int, required=True, help="queue number (of this network namespace)")
    p.add_argument("--mark", type=_int, required=True, help="firewall mark of the copies we send")
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--jitter-ms", type=int, default=0)
    p.add_argument("--duplicate", type=int, default=0, help="percent")
    p.add_argument("--reorder", type=int, default=0, help="percent")
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args(argv)
    try:
        shaping = Shaping(a.delay_ms, a.jitter_ms, a.duplicate, a.reorder)
    except ValueError as e:
        print(f"nfqueue: {e}", file=sys.stderr)
        return 2
    rd, wr = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.set_wakeup_fd(wr, warn_on_full_buffer=False)
    try:
        queue = Queue(a.queue)
    except (OSError, QueueError) as e:
        print(f"nfqueue: cannot bind queue {a.queue}: {e}", file=sys.stderr, flush=True)
        return 2
    raw = raw_socket(a.mark)
    h = Handler(queue, raw, Planner(shaping, random.Random(a.seed)))
    print(f"nfqueue: ready, queue {a.queue}, pid {os.getpid()}, {shaping}", flush=True)
    try:
        h.run(rd, lambda: stop)
    finally:
        queue.close()
        raw.close()
        print(f"nfqueue: stopped: {h.stats.line()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
