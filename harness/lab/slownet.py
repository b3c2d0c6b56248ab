"""Slow networks in a node's namespace: delay with jitter, duplication and
reordering of the packets the node sends to its peers (the model is
harness/model/slow.py).

Which packets: TCP and UDP packets leaving by eth0 with a peer port (the
system's ``peer_ports``) as source or destination port, except those to the
control address. So both the connections the node opens to its peers and
the replies on the ones they open to it are slowed, and every connection
between the node and a peer gets the delay added to its round trip; the
harness's own traffic (control path) never is.

The selection is one iptables chain ``raftnet_{s}_slow`` in the *mangle*
table, jumped to from OUTPUT (the firewall's drops live in the filter table
or in nft's ``inet raftnet_{s}``: they still apply, after us). It is
rendered (pure), replaced in one ``iptables-restore --noflush`` and read
back with ``iptables-save`` to verify. Its target depends on the mechanism:

* netem (the kernel has sch_netem): ``-j MARK`` with ``NETEM_MARK``; the
  node's eth0 gets a ``prio`` root qdisc whose extra band 4 holds a netem
  qdisc, and an ``fw`` filter steers the marked packets into it (unmarked
  packets keep the usual three bands). Built with pyroute2 (``netem_calls``
  is the pure plan of those calls).
* nfqueue (no netem, e.g. this lab's kernel): ``-j NFQUEUE --queue-num
  QUEUE --queue-bypass`` (through nft_compat: nft's own ``queue`` need not
  be built in), with the handler of harness/lab/nfqueue.py started inside
  the node's namespace before the rules go in; its own copies carry
  ``OWN_MARK``, which the chain's first rule returns. With no handler bound
  (``--queue-bypass``) packets pass untouched.

``choose`` probes the kernel: a netem qdisc tree on the namespace's
loopback, built and deleted at once, else a queue bound and released.
$RAFTNET_SLOW=netem|nfqueue forces one. Handlers are processes inside the
node's namespace, so tearing a cluster down (``raftnet clean`` after a
crash included) kills them with the nodes.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from harness.errors import HarnessError
from harness.lab import netns
from harness.lab.process import NodeProcess, spawn
from harness.model import topology
from harness.model.slow import LIMIT, Mechanism, Shaping, ShapingError
from harness.model.slow import choose as choose_mechanism
from harness.model.topology import Topology

QUEUE = 213  # the netfilter queue of a node's namespace (queues are per namespace)
PROBE_QUEUE = 214  # bound for a moment by the probe
OWN_MARK = 0x2130001  # the nfqueue handler's own copies: never queued again
NETEM_MARK = 0x2130002  # peer packets for the netem band
PRIO_HANDLE = 0x2130000  # 213:
NETEM_CLASS = 0x2130004  # 213:4, the band only marked packets reach
NETEM_HANDLE = 0x2140000  # 214:
PRIOMAP = (1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)  # the kernel's default: bands 0..2 only
ETH_P_IP = 0x0800
TC_H_ROOT = 0xFFFFFFFF
MAX_PORTS = 15  # -m multiport

_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class SlowNetError(HarnessError):
    """A slow-network fault could not be set up or removed."""


def chain(slot: int) -> str:
    return f"raftnet_{topology.check_slot(slot)}_slow"


# -- rules (pure) ----------------------------------------------------------------------------


def rule_lines(slot: int, mechanism: Mechanism, control: str, ports: Sequence[int]) -> tuple[str, ...]:
    """Our chain's rules, written as ``iptables-save`` prints them (so the read-back compares as text)."""
    ports = sorted(set(ports))
    if not ports or len(ports) > MAX_PORTS or not all(isinstance(p, int) and 1 <= p <= 65535 for p in ports):
        raise SlowNetError(f"peer ports must be 1..{MAX_PORTS} ports in 1..65535, not {ports!r}")
    c = chain(slot)
    if mechanism is Mechanism.NFQUEUE:
        target = f"-j NFQUEUE --queue-num {QUEUE} --queue-bypass"
        lines = [f"-A {c} -m mark --mark {OWN_MARK:#x} -j RETURN"]
    else:
        target = f"-j MARK --set-xmark {NETEM_MARK:#x}/0xffffffff"
        lines = []
    listed = ",".join(map(str, ports))
    for proto in ("tcp", "udp"):
        lines.append(f"-A {c} ! -d {control}/32 -o {topology.NODE_LINK} -p {proto} -m multiport --ports {listed} "
                     f"{target}")
    return tuple(lines)


def render_rules(slot: int, lines: Sequence[str], *, jump: bool) -> str:
    """One ``iptables-restore --noflush`` transaction: (re)declare our chain, which flushes it,
    fill it, and jump to it from OUTPUT if ``jump`` (False when the jump is there already)."""
    out = ["*mangle", f":{chain(slot)} - [0:0]", *lines]
    if jump:
        out.append(f"-A OUTPUT -j {chain(slot)}")
    out.append("COMMIT")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Installed:
    """What ``iptables-save -t mangle`` shows of ours."""

    chain: bool
    jumps: int
    lines: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.chain and not self.jumps


def render_clear(slot: int, state: Installed) -> str | None:
    """The transaction that removes our chain and its jumps; None when there is none."""
    if state.empty:
        return None
    c = chain(slot)
    return "\n".join(["*mangle", f":{c} - [0:0]", *[f"-D OUTPUT -j {c}"] * state.jumps, f"-X {c}", "COMMIT"]) + "\n"


def parse_save(text: str, slot: int) -> Installed:
    c = chain(slot)
    table = None
    has_chain, jumps, lines = False, 0, []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
        elif table != "mangle":
            continue
        elif line.startswith(":"):
            has_chain = has_chain or line[1:].split()[0] == c
        elif line == f"-A OUTPUT -j {c}":
            jumps += 1
        elif line.startswith(f"-A {c} "):
            lines.append(line)
    return Installed(has_chain, jumps, tuple(lines))


# -- netem (the plan is pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class TcCall:
    """One ``IPRoute.tc(command, kind, **kwargs)``."""

    command: str
    kind: str
    kwargs: Mapping[str, Any]


def netem_options(s: Shaping) -> dict[str, Any]:
    """pyroute2's netem keywords (times in microseconds, percentages) for ``s``."""
    opts: dict[str, Any] = {"delay": s.hold_ms * 1000, "jitter": s.jitter_ms * 1000, "limit": LIMIT}
    if s.duplicate:
        opts["duplicate"] = s.duplicate
    if s.reorder:  # netem: these go at once, the others wait the delay
        opts["prob_reorder"] = s.reorder
        opts["gap"] = 1
    return opts


def netem_calls(index: int, s: Shaping) -> list[TcCall]:
    """prio root 213: with a fourth band 213:4 -> netem 214:, and an fw filter mark -> 213:4."""
    return [
        TcCall("add", "prio", {"index": index, "handle": PRIO_HANDLE, "bands": 4, "priomap": list(PRIOMAP)}),
        TcCall("add", "netem", {"index": index, "handle": NETEM_HANDLE, "parent": NETEM_CLASS, **netem_options(s)}),
        TcCall("add-filter", "fw", {"index": index, "parent": PRIO_HANDLE, "handle": NETEM_MARK,
                                    "classid": NETEM_CLASS, "prio": 1, "protocol": ETH_P_IP}),
    ]


def _tc_run(ipr: Any, calls: Sequence[TcCall]) -> None:
    for c in calls:
        ipr.tc(c.command, c.kind, **c.kwargs)


def _tc_clear(ipr: Any, index: int) -> None:
    try:
        ipr.tc("del", index=index, handle=PRIO_HANDLE, parent=TC_H_ROOT)
    except NetlinkError as e:
        if e.code not in (errno.ENOENT, errno.EINVAL):
            raise


def qdiscs(ns: str, ifname: str = topology.NODE_LINK) -> list[tuple[str, int, int]]:
    """(kind, handle, parent) of every qdisc on ``ifname`` in ``ns``."""
    with netns.iproute(ns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        return [(str(q.get_attr("TCA_KIND")), int(q["handle"]), int(q["parent"])) for q in ipr.get_qdiscs(index=idx)]


def _netem_replace(ns: str, s: Shaping) -> None:
    with netns.iproute(ns) as ipr:
        idx = ipr.link_lookup(ifname=topology.NODE_LINK)[0]
        _tc_clear(ipr, idx)
        try:
            _tc_run(ipr, netem_calls(idx, s))
        except NetlinkError as e:
            _tc_clear(ipr, idx)
            raise SlowNetError(f"netem on {topology.NODE_LINK} in {ns}: {e}") from None
    got = {(k, h, p) for k, h, p in qdiscs(ns)}
    if ("prio", PRIO_HANDLE, TC_H_ROOT) not in got or ("netem", NETEM_HANDLE, NETEM_CLASS) not in got:
        raise SlowNetError(f"netem in {ns}: installed qdiscs {sorted(got)} are not the ones built")


def _netem_clear(ns: str) -> None:
    with netns.iproute(ns) as ipr:
        _tc_clear(ipr, ipr.link_lookup(ifname=topology.NODE_LINK)[0])


# -- probes and the choice -------------------------------------------------------------------


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def unavailable_reason() -> str | None:
    """Why no slow-network fault can run here (both mechanisms select packets with iptables)."""
    missing = [b for b in ("iptables-restore", "iptables-save") if _which(b) is None]
    if missing:
        return f"slow networks need iptables ({', '.join(missing)} not found; install iptables)"
    return None


def probe_netem(ns: str) -> bool:
    """Whether the kernel builds our netem tree (prio + netem + fw), tried on ``ns``'s loopback."""
    try:
        with netns.iproute(ns) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            try:
                _tc_run(ipr, netem_calls(lo, Shaping(delay_ms=1)))
                return True
            except NetlinkError:
                return False
            finally:
                _tc_clear(ipr, lo)
    except Exception:  # whatever the kernel or pyroute2 says: no netem tree here
        return False


def probe_nfqueue(ns: str) -> bool:
    """Whether a netfilter queue can be bound inside ``ns``."""
    from harness.lab import nfqueue

    try:
        return netns.in_netns(ns, lambda: nfqueue.probe(PROBE_QUEUE)) is None
    except OSError:
        return False


def choose(ns: str) -> Mechanism:
    """The mechanism for this kernel (probed in namespace ``ns``), or $RAFTNET_SLOW's.
    Raises ShapingError when none can run."""
    if reason := unavailable_reason():
        raise ShapingError(reason)
    forced = os.environ.get("RAFTNET_SLOW") or None
    netem = forced != Mechanism.NFQUEUE and probe_netem(ns)
    nfq = forced != Mechanism.NETEM and probe_nfqueue(ns)
    return choose_mechanism(forced, netem=netem, nfqueue=nfq)


# -- acting --------------------------------------------------------------------------------------


def _iptables(ns: str, argv: list[str], script: str | None = None) -> str:
    exe = _which(argv[0])
    if exe is None:
        raise SlowNetError(unavailable_reason() or f"{argv[0]} not found")
    r = netns.run_in_netns(ns, [exe, *argv[1:]], input=script.encode() if script is not None else None, timeout=30)
    if r.returncode != 0:
        raise SlowNetError(f"`{' '.join(argv)}` failed in netns {ns} (exit {r.returncode}): "
                           f"{r.stderr.decode(errors='replace').strip()}")
    return r.stdout.decode()


def installed(topo: Topology, node: str) -> Installed:
    """Our chain in ``node``'s namespace, read back."""
    ns = topo.netns(topo.check_node(node))
    return parse_save(_iptables(ns, ["iptables-save", "-t", "mangle"]), topo.slot)


def _install_rules(topo: Topology, node: str, lines: tuple[str, ...]) -> None:
    ns = topo.netns(node)
    state = installed(topo, node)
    if state.jumps > 1:
        _clear_rules(topo, node)
        state = Installed(False, 0, ())
    _iptables(ns, ["iptables-restore", "--noflush", "--wait"], render_rules(topo.slot, lines, jump=not state.jumps))
    got = installed(topo, node)
    if got.lines != lines or got.jumps != 1:
        raise SlowNetError(f"slow-network rules in {ns} differ from what was rendered:\n"
                           f"  rendered:  {'; '.join(lines)}\n  installed: {'; '.join(got.lines) or '(none)'}"
                           f" ({got.jumps} jumps)")


def _clear_rules(topo: Topology, node: str) -> None:
    ns = topo.netns(node)
    script = render_clear(topo.slot, installed(topo, node))
    if script is not None:
        _iptables(ns, ["iptables-restore", "--noflush", "--wait"], script)
    if not installed(topo, node).empty:
        raise SlowNetError(f"slow-network rules in {ns} are still there after removing them")


def handler_argv(s: Shaping, seed: int | None = None) -> list[str]:
    argv = [sys.executable, "-m", "harness.lab.nfqueue", "--queue", str(QUEUE), "--mark", f"{OWN_MARK:#x}",
            "--delay-ms", str(s.delay_ms), "--jitter-ms", str(s.jitter_ms), "--duplicate", str(s.duplicate),
            "--reorder", str(s.reorder)]
    return argv + (["--seed", str(seed)] if seed is not None else [])


def start_handler(ns: str, s: Shaping, log: Path, seed: int | None = None, timeout: float = 10.0) -> NodeProcess:
    """The nfqueue handler inside ``ns``; returns once it has bound the queue."""
    log = Path(log)
    start = log.stat().st_size if log.exists() else 0
    proc = spawn(ns, handler_argv(s, seed), log, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def said() -> str:
        try:
            with open(log, "rb") as f:
                f.seek(start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    deadline = time.monotonic() + timeout
    delay = 0.002
    while "nfqueue: ready" not in said():
        if not proc.is_alive() or time.monotonic() > deadline:
            proc.kill()
            last = " | ".join(line for line in said().strip().splitlines()[-3:])
            raise SlowNetError(f"the nfqueue handler in {ns} did not start: {last or 'no output'}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return proc


def stop_handler(proc: NodeProcess | None) -> None:
    """SIGTERM (it sends what it holds, then exits), SIGKILL after 5 s."""
    if proc is not None:
        proc.stop(timeout=5.0)


def apply(topo: Topology, node: str, mechanism: Mechanism, s: Shaping, *, ports: int | Sequence[int],
          handler: NodeProcess | None, log: Path, seed: int | None = None) -> NodeProcess | None:
    """Make ``node``'s peer traffic suffer ``s`` (replacing what it suffered: ``handler`` is the
    running one, stopped here); returns the new handler (nfqueue) or None (netem)."""
    ns = topo.netns(topo.check_node(node))
    lines = rule_lines(topo.slot, mechanism, topo.control_address, (ports,) if isinstance(ports, int) else ports)
    if not s.active:
        clear(topo, node, mechanism, handler)
        return None
    if mechanism is Mechanism.NETEM:
        stop_handler(handler)
        _netem_replace(ns, s)
        _install_rules(topo, node, lines)
        return None
    stop_handler(handler)  # packets pass (--queue-bypass) until the new one has bound the queue
    proc = start_handler(ns, s, log, seed)
    try:
        _install_rules(topo, node, lines)
    except BaseException:
        stop_handler(proc)
        raise
    return proc


def clear(topo: Topology, node: str, mechanism: Mechanism | None, handler: NodeProcess | None) -> None:
    """Remove every slow-network fault of ``node``: rules first (nothing new is held), then the
    netem tree or the handler (which sends what it still holds)."""
    ns = topo.netns(topo.check_node(node))
    _clear_rules(topo, node)
    if mechanism is Mechanism.NETEM:
        _netem_clear(ns)
    stop_handler(handler)
