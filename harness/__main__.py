"""``raftnet`` (``python -m harness``): clusters in network namespaces from the shell.

Each command acts on the cluster named by ``--name`` (default ``default``);
its state lives in ``$RAFTNET_HOME/<name>/state.json`` (default home
``/tmp/raftnet-<uid>``), so commands from different shells work on the same
cluster. Exit code 0 on success; otherwise non-zero and one line saying why.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.config import ClusterFile
    from harness.orchestration.cluster import Cluster

PROG = "raftnet"


class CliError(HarnessError):
    """Exit 1 (or ``code``) with this one-line reason."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{PROG} --help`)", 2)


def home() -> Path:
    return Path(os.environ.get("RAFTNET_HOME", f"/tmp/raftnet-{os.getuid()}"))


def _nodes(text: str) -> list[str]:
    return [n for n in (p.strip() for p in text.split(",")) if n]


EPILOG = """\
examples:
  sudo raftnet up --nodes 5                  start 5 nodes, print the node table
  sudo raftnet partition n1,n2 n3,n4,n5      split the network; `raftnet heal` ends it
  sudo raftnet clock n2 --rate 2.0           n2's clock runs twice as fast (an `up --clock` cluster)
  raftnet status                             who leads, in which term, and the active faults
  sudo raftnet down                          stop the cluster, remove its namespaces
  sudo raftnet check --nemesis all           a whole randomized run; the last line is the verdict

`raftnet COMMAND --help` for each command. Exit code 0 on success, otherwise one line saying why
(2: bad arguments). State: $RAFTNET_HOME/NAME (default /tmp/raftnet-UID/NAME).
"""

CHECK_EPILOG = """\
examples:
  sudo raftnet check                                 5 nodes, 60 s, every nemesis that can run here
  sudo raftnet check --time 30 --nemesis partition,clock --seed 7
  raftnet check --loopback --nemesis kill,pause      no root: 127.0.0.1, process faults only
  sudo raftnet check --system etcd --nodes 3

Without --out the run goes to runs/check-DATE-seedSEED and runs/latest links to it (history,
event log, node logs, report.html). A [check] table in the cluster file replaces the defaults
above. Exit code 0 only when the history is linearizable and no acknowledged write was lost.
"""

CLOCK_EPILOG = """\
examples:
  sudo raftnet clock n2 --rate 3        n2's clock runs 3x as fast: its timeouts come 3x sooner
  sudo raftnet clock n2 --rate 0.5      half as fast
  sudo raftnet clock n2 --offset 5s     jump 5 s ahead; --offset -200ms jumps back
  sudo raftnet clock n2 reset           the real rate again, from where the clock is
  sudo raftnet clock n2                 show n2's clock

Needs a cluster started with `raftnet up --clock` (libfaketime preloaded into every node). A rate
change never steps a node's clock back; only a negative offset does. Systems written in Go (etcd)
read the clock without libc: libfaketime cannot reach them.
"""


def _duration(text: str) -> int:
    from harness.model.slow import ShapingError, parse_duration

    try:
        return parse_duration(text)
    except ShapingError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _percent(text: str) -> int:
    if not text.strip().isdigit() or int(text) > 100:
        raise argparse.ArgumentTypeError(f"bad percent {text!r}: expected an integer 0..100")
    return int(text)


def parser() -> argparse.ArgumentParser:
    from node.version import version

    raw = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog=PROG, description="Run a raftnet cluster (or another system's) in network namespaces and "
                "break it:\npartitions, packet loss, crashes, pauses, power cuts, skewed clocks.", epilog=EPILOG,
                formatter_class=raw)
    p.add_argument("--version", action="version", version=f"{PROG} {version()}", help="print the version and exit")
    p.add_argument("--name", default="default", help="cluster name (default: %(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", parser_class=_Parser)
    up = sub.add_parser("up", help="start a cluster; prints the node table",
                        description="Start a cluster of NODES nodes, each in its own network namespace.")
    up.add_argument("--nodes", type=int, default=3, metavar="N", help="how many nodes, 1-50 (default: %(default)s)")
    _system_args(up)
    up.add_argument("--secret", help="shared secret the raftnet nodes require from clients and peers "
                    "(default: none)")
    up.add_argument("--power", action="store_true",
                    help="each data dir on a powerfs disk (needs /dev/fuse), so that power-cut works "
                    "(default: off)")
    up.add_argument("--clock", action="store_true",
                    help="preload libfaketime into every node, so that `raftnet clock` can skew its clock "
                    "(default: off)")
    st = sub.add_parser("status", help="per-node state and the active faults")
    st.add_argument("--json", action="store_true", help="one JSON object instead of a table (default: a table)")
    pa = sub.add_parser("partition", help="split into groups: partition n1,n2 n3,n4,n5")
    pa.add_argument("groups", nargs="+", type=_nodes, help="groups of comma-separated node ids, e.g. n1,n2 n3,n4,n5")
    for name, help_ in (("isolate", "NODE alone, both directions"),
                        ("bridge", "NODE sees both halves; the halves do not see each other"),
                        ("link-down", "unplug NODE (clients lose it too)"), ("link-up", "replug NODE"),
                        ("kill", "SIGKILL NODE"), ("restart", "restart NODE with the same data dir"),
                        ("pause", "SIGSTOP NODE"), ("resume", "SIGCONT NODE"),
                        ("remove", "remove NODE from the membership and the network")):
        sp = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        sp.add_argument("node", help="a node id: n1, n2, ...")
    pc = sub.add_parser("power-cut", help="power failure of NODE or all: SIGKILL and lose unsynced writes "
                        "(an `up --power` cluster; `restart NODE` brings one back, all come back at once)")
    pc.add_argument("node", help="a node id, or all")
    cut = sub.add_parser("cut", help="one-way: cut SRC DST drops SRC -> DST")
    cut.add_argument("src", help="the node whose packets to DST are dropped")
    cut.add_argument("dst", help="the node that stops hearing from SRC (it still reaches SRC)")
    loss = sub.add_parser("loss", help="drop PERCENT%% of NODE's packets to and from peers")
    loss.add_argument("node", help="a node id")
    loss.add_argument("percent", type=int, help="0-100, in percent of packets")
    cl = sub.add_parser("clock", help="skew NODE's clock: --rate 2.0, --offset 5s or reset",
                        description="Make NODE's clock run fast or slow, jump it, or reset it, while the node "
                        "runs.", epilog=CLOCK_EPILOG, formatter_class=raw)
    cl.add_argument("node", metavar="NODE", help="a node id")
    cl.add_argument("action", nargs="?", choices=["reset"], metavar="reset",
                    help="the real rate again, from where the clock is (default: none; with no action and no "
                    "option: show the clock)")
    how = cl.add_mutually_exclusive_group()
    how.add_argument("--rate", type=_clock_rate, metavar="X",
                     help="clock speed as a multiple of real time, 0.01-100: 2.0 twice as fast, 0.5 half "
                     "(default: 1, real time)")
    how.add_argument("--offset", type=_clock_offset, metavar="DURATION",
                     help="jump the clock by a duration with a unit: 5s, 1.5s, -200ms (back), 2m (default: 0)")
    sl = sub.add_parser("slow", help="delay NODE's packets to its peers: slow n2 100ms [--jitter 20ms]")
    sl.add_argument("node", help="a node id")
    sl.add_argument("delay", type=_duration, help="added to every packet NODE sends a peer, with a unit: 100ms, 1.5s")
    sl.add_argument("--jitter", type=_duration, default=0, metavar="DURATION",
                    help="each packet waits DELAY ± JITTER, with a unit (default: 0ms)")
    for name, help_ in (("duplicate", "send PERCENT%% of NODE's packets to its peers twice"),
                        ("reorder", "send PERCENT%% of NODE's packets to its peers ahead of the others")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("node", help="a node id")
        sp.add_argument("percent", type=_percent, help="0-100, in percent of packets")
    sub.add_parser("heal", help="remove every network fault")
    add = sub.add_parser("add", help="add a node through the leader")
    add.add_argument("--id", help="the new node's id (default: the next free one, e.g. n4)")
    sub.add_parser("down", help="stop the cluster and remove its namespaces")
    sub.add_parser("clean", help="remove everything left by crashed runs")
    ck = sub.add_parser("check", help="a whole randomized nemesis run; the last line is the verdict",
                        description="A whole randomized nemesis run on its own cluster: clients, faults, "
                        "heal, then the checker.", epilog=CHECK_EPILOG, formatter_class=raw)
    ck.add_argument("--nodes", type=int, metavar="N", help="cluster size, 3-15 (default: 5)")
    ck.add_argument("--time", type=float, metavar="SECONDS", help="seconds of faults and traffic (default: 60)")
    ck.add_argument("--clients", type=int, metavar="N", help="concurrent clients (default: 10)")
    ck.add_argument("--keys", type=int, metavar="N", help="keys they share (default: 5)")
    ck.add_argument("--nemesis", metavar="KINDS", help=f"comma-separated fault kinds: {','.join(_kinds())}, "
                    "or all (default: all that can run here)")
    _system_args(ck)
    ck.add_argument("--seed", type=int, help="seed of the fault schedule and the clients (default: random, "
                    "printed)")
    ck.add_argument("--loopback", action="store_true",
                    help="on 127.0.0.1 without namespaces (no root needed): process faults only (kill, pause) "
                    "(default: off)")
    ck.add_argument("--out", type=Path, metavar="DIR",
                    help="the run folder (default: runs/check-DATE-seedSEED, linked as runs/latest)")
    an = sub.add_parser("analyze", help="check a stored history (a run's history.jsonl, a Jepsen log or EDN "
                        "history) again and write its report; the last line is the verdict")
    an.add_argument("file", type=Path, metavar="FILE", help="the history to check")
    an.add_argument("--out", type=Path, metavar="HTML",
                    help="where to write the report (default: ./FILE-STEM.report.html)")
    an.add_argument("--timeout", type=float, default=120.0, metavar="S",
                    help="seconds the checker may take before the verdict is 'unknown' (default: 120)")
    for sp in sub.choices.values():  # `raftnet up --name x` as CONTRACT.md writes it, too
        sp.add_argument("--name", default=argparse.SUPPRESS, help="cluster name (default: default)")
    return p


def _kinds() -> tuple[str, ...]:
    from harness.model.nemesis import KINDS

    return KINDS


def _clock_rate(text: str) -> float:
    from harness.model.clock import ClockError, parse_rate

    try:
        return parse_rate(text)
    except ClockError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _clock_offset(text: str) -> float:
    from harness.model.clock import ClockError, parse_duration

    try:
        return parse_duration(text)
    except ClockError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _system_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--system", help="raftnet, etcd, etcd-serializable, or package.module:Class (default: "
                    "./raftnet.toml if present, else raftnet)")
    sp.add_argument("--config", type=Path, metavar="FILE", help="a cluster file naming the system and its "
                    "parameters (default: ./raftnet.toml when present)")


def _cluster_file(a: argparse.Namespace) -> ClusterFile:
    from harness.config import resolve

    try:
        return resolve(a.system, a.config)
    except HarnessError as e:
        raise CliError(str(e), 2) from None


def _need_root() -> None:
    """Root, or the mapped root of our private user namespace (rootless mode)."""
    if os.geteuid() != 0:
        raise CliError("needs root for network namespaces (run with sudo, or use the Vagrant VM)", 1)


def _rootless(a: argparse.Namespace, argv: list[str]) -> int | None:
    """Not root: run the command inside a private user namespace, or say why we cannot.

    ``check`` gets a world of its own for its lifetime; ``up`` starts a holder
    process that keeps a world alive, and every later command enters it.
    Returns None when the command needs no namespaces (or we are root already).
    """
    from harness.lab import userns

    if os.geteuid() == 0 or userns.inside() or a.cmd == "status" and not _holder_pid(a.name):
        return None
    me = [sys.executable, "-m", "harness", *argv]
    if a.cmd in ("clean", "analyze") or a.cmd == "check" and a.loopback:
        return None
    os.environ["RAFTNET_HOME"] = str(home())  # inside, our uid reads 0: keep the real user's folder
    st = userns.status()
    if not st.available:
        raise CliError(f"needs root for network namespaces, and {st.reason}; use sudo or the Vagrant VM")
    if a.cmd == "check":
        return subprocess.call(userns.wrap(me))
    if a.cmd == "up":
        wd = _workdir(a.name)
        wd.mkdir(parents=True, exist_ok=True)
        ready = wd / "holder.ready"
        ready.unlink(missing_ok=True)
        subprocess.Popen(userns.wrap_hold(str(ready)), start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from harness.orchestration.local import wait_for

        holder = int(wait_for(lambda: ready.read_text() if ready.exists() else None, 10, what="the namespace holder"))
        code = subprocess.call(userns.enter(holder, me), env={**os.environ, "RAFTNET_HOLDER_PID": str(holder)})
        if code != 0:
            os.kill(holder, 15)
        return code
    pid = _holder_pid(a.name)
    if pid is None:
        raise CliError(f"no such cluster: {a.name} (start one with `{PROG} up --name {a.name}`)")
    code = subprocess.call(userns.enter(pid, me))
    if a.cmd == "down":
        try:
            os.kill(pid, 15)
        except OSError:
            pass
    return code


def _holder_pid(name: str) -> int | None:
    try:
        pid = int((_workdir(name) / "holder.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _workdir(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise CliError(f"bad cluster name {name!r}", 2)
    return home() / name


def _attach(name: str) -> Cluster:
    from harness.orchestration.cluster import Cluster, ClusterError

    wd = _workdir(name)
    if not (wd / "state.json").exists():
        raise CliError(f"no such cluster: {name} (start one with `{PROG} up --name {name}`)")
    try:
        return Cluster.attach(wd)
    except ClusterError as e:
        raise CliError(str(e)) from None


def _table(rows: list[dict[str, object]], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _status_rows(c: Cluster) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n in c.nodes:
        p = c.procs.get(n)
        alive = p is not None and p.is_alive()
        paused = p is not None and alive and p.is_paused()
        st = c.node_status(n, timeout=0.5) if alive and not paused and n not in c.links_down else None
        rows.append({
            "id": n, "address": c.address(n), "pid": p.pid if p else None, "alive": alive, "paused": paused,
            "role": st.role if st else None, "term": st.term if st else None,
            "leader_id": st.leader if st else None, "commit_index": st.commit_index if st else None,
            "last_applied": st.applied_index if st else None,
            "link": "down" if n in c.links_down else "up",
        })
    return rows


def cmd_up(a: argparse.Namespace) -> int:
    from harness.lab import alloc
    from harness.orchestration.cluster import Cluster

    cf = _cluster_file(a)
    from harness.systems.raftnet import RaftnetSystem

    if a.secret and not isinstance(cf.system, RaftnetSystem):
        raise CliError("--secret is for the raftnet system", 2)
    _need_root()
    wd = _workdir(a.name)
    from harness.lab import cleanup, powerfs

    if a.clock:
        from harness.lab import clock as lab_clock
        from harness.systems.base import Feature

        if Feature.CLOCK not in cf.system.features:
            raise CliError(f"--clock: libfaketime cannot reach {cf.system.name}'s clock (a Go runtime such as "
                           "etcd's reads it without libc)", 2)
        if reason := lab_clock.unavailable_reason():
            raise CliError(reason)
    if a.power and (reason := powerfs.unavailable_reason()):
        raise CliError(reason)
    cleanup.clean(sweep_orphans=False)  # what crashed runs left (dead owners only)
    if (wd / "state.json").exists():
        try:
            old = _attach(a.name)
            if any(p.is_alive() for p in old.procs.values()):
                raise CliError(f"cluster {a.name} is already up (`{PROG} --name {a.name} down` first)")
        except CliError as e:
            if "already up" in str(e):
                raise
        shutil.rmtree(wd, ignore_errors=True)
    if a.nodes < 1 or a.nodes > 50:
        raise CliError("--nodes must be between 1 and 50", 2)
    wd.mkdir(parents=True, exist_ok=True)
    held = os.environ.get("RAFTNET_HOLDER_PID")  # rootless: the holder of our private world
    holder = None
    if held:
        owner = int(held)
    else:
        holder = subprocess.Popen([sys.executable, "-m", "harness.lab.holder"], start_new_session=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        owner = holder.pid
    (wd / "holder.pid").write_text(str(owner))
    system = None if isinstance(cf.system, RaftnetSystem) and a.secret else cf.system
    c = Cluster(a.nodes, workdir=wd, name=a.name, secret=a.secret if system is None else None, owner_pid=owner,
                power=a.power, system=system, clock=a.clock)
    try:
        c.start()
        if c.knows_leader:
            c.leader(timeout=30)
    except BaseException:
        if holder is not None:
            holder.kill()
            holder.wait()
        raise
    assert c.topo is not None  # built by start()
    alloc.update(c.topo.slot, owner_pid=owner)
    _detach(c)
    if holder is not None:
        holder.returncode = 0  # it lives on; do not reap (no ResourceWarning)
    print(_table(_status_rows(c), ["id", "address", "pid", "role", "term", "leader_id"]))
    print(f"cluster {a.name} is up: slot {c.topo.slot}, subnet {c.topo.subnet}, logs and data in {wd}")
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    c = _attach(a.name)
    rows = _status_rows(c)
    if a.json:
        print(json.dumps({"name": a.name, "nodes": rows, "faults": c.faults(),
                          "slow_mechanism": c.slow_mechanism.value if c.slow_mechanism else None}))
    else:
        print(_table(rows, ["id", "address", "pid", "alive", "paused", "role", "term", "leader_id",
                            "commit_index", "last_applied", "link"]))
        slow = c.slow_mechanism or f"unavailable ({c.slow_unavailable or 'not probed'})"
        print(f"slow networks: {slow}")
        print("faults: " + ("; ".join(c.faults()) or "none"))
    return 0


def _act(a: argparse.Namespace) -> int:
    from harness.lab.firewall import FirewallError
    from harness.orchestration.cluster import ClusterError

    if a.cmd == "slow" and a.jitter > a.delay:
        raise CliError(f"--jitter {a.jitter}ms exceeds the delay {a.delay}ms", 2)
    _need_root()
    c = _attach(a.name)
    try:
        if a.cmd == "partition":
            c.partition(*a.groups)
        elif a.cmd == "isolate":
            c.isolate(a.node)
        elif a.cmd == "bridge":
            c.bridge(a.node)
        elif a.cmd == "cut":
            c.cut(a.src, a.dst)
        elif a.cmd == "loss":
            c.loss(a.node, a.percent)
        elif a.cmd == "slow":
            c.slow(a.node, a.delay, a.jitter)
        elif a.cmd == "duplicate":
            c.duplicate(a.node, a.percent)
        elif a.cmd == "reorder":
            c.reorder(a.node, a.percent)
        elif a.cmd == "heal":
            c.heal()
        elif a.cmd == "link-down":
            c.link_down(a.node)
        elif a.cmd == "link-up":
            c.link_up(a.node)
        elif a.cmd == "kill":
            c.kill(a.node)
        elif a.cmd == "restart":
            c.restart(a.node)
        elif a.cmd == "pause":
            c.pause(a.node)
        elif a.cmd == "resume":
            c.resume(a.node)
        elif a.cmd == "add":
            print(f"added {c.add(a.id)}")
        elif a.cmd == "remove":
            c.remove(a.node)
        elif a.cmd == "power-cut" and a.node == "all":
            c.power_cut_all()
            c.start_all()  # the power comes back: every node restarts from its durable state
        elif a.cmd == "power-cut":
            c.power_cut(a.node)
        elif a.cmd == "clock":
            if _clock(c, a):
                return 0
    except (ClusterError, FirewallError, ValueError, TimeoutError) as e:
        raise CliError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    finally:
        _detach(c)
    print(f"{a.cmd}: done; faults now: " + ("; ".join(c.faults()) or "none"))
    return 0


def _clock(c: Cluster, a: argparse.Namespace) -> bool:
    """``raftnet clock``; True when it only showed the clock (nothing changed)."""
    import time

    if a.action == "reset" and (a.rate is not None or a.offset is not None):
        raise CliError("clock: reset takes no --rate or --offset", 2)
    if a.action == "reset":
        c.clock_reset(a.node)
    elif a.rate is not None:
        c.clock_rate(a.node, a.rate)
    elif a.offset is not None:
        c.clock_offset(a.node, a.offset)
    else:
        print(f"{a.node}: {c.clock_state(a.node).describe(time.monotonic())}")
        return True
    return False


def _detach(c: Cluster) -> None:
    """Leave the cluster's processes running after this command exits (nodes, disks, mount holder)."""
    for p in [*c.procs.values(), *c.shapers.values()]:
        p.detach()
    for d in c.disks.values():
        if d.proc is not None:
            d.proc.detach()
    if c.mntns is not None:
        c.mntns.proc.detach()


def cmd_down(a: argparse.Namespace) -> int:
    _need_root()
    wd = _workdir(a.name)
    c = _attach(a.name)
    c.destroy()
    try:
        pid = int((wd / "holder.pid").read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    shutil.rmtree(wd, ignore_errors=True)
    print(f"cluster {a.name} is down")
    return 0


def cmd_clean(a: argparse.Namespace) -> int:
    """Remove what crashed runs left: (as root) their namespaces, links, rules, processes and
    allocations; and the state folders of CLI clusters whose holder is gone."""
    from harness.lab import cleanup

    stale = 0
    for state in sorted(home().glob("*/state.json")):
        if _holder_pid(state.parent.name) is None:
            shutil.rmtree(state.parent, ignore_errors=True)
            stale += 1
    if os.geteuid() == 0:
        print(cleanup.clean().summary() + f", {stale} stale cluster state(s)")
    else:
        print(f"rootless: private namespaces vanish with their holder; {stale} stale cluster state(s) removed")
    return 0


_CHECK_DEFAULTS: dict[str, object] = {"nodes": 5, "time": 60.0, "clients": 10, "keys": 5, "nemesis": "all"}


def cmd_check(a: argparse.Namespace) -> int:
    import random

    from harness.orchestration.check import CheckConfig, default_out, link_latest, run_check
    from harness.orchestration.nemesis import NemesisError, parse_kinds

    cf = _cluster_file(a)
    for k in ("nodes", "time", "clients", "keys", "nemesis", "seed"):
        if getattr(a, k) is None:
            setattr(a, k, cf.check.get(k, _CHECK_DEFAULTS.get(k)))
    if not a.loopback:
        _need_root()
    try:
        kinds = parse_kinds(a.nemesis)
    except NemesisError as e:
        raise CliError(str(e), 2) from None
    from harness.orchestration.nemesis import unsupported

    for kind, why in unsupported(cf.system, kinds).items():
        if kind in _nodes(a.nemesis):
            raise CliError(f"nemesis {kind}: {why}", 2)
    if a.nodes < 3 or a.nodes > 15:
        raise CliError("--nodes must be between 3 and 15", 2)
    if a.time <= 0 or a.clients < 1 or a.keys < 1:
        raise CliError("--time, --clients and --keys must be positive", 2)
    from harness.lab import cleanup, powerfs

    if "power" in kinds and (reason := powerfs.unavailable_reason()):
        if "power" in _nodes(a.nemesis):
            raise CliError(reason)
        kinds = tuple(k for k in kinds if k != "power")  # "all" means all that can run here
        print(f"nemesis power left out: {reason}")
    from harness.lab import clock as lab_clock

    if "clock" in kinds and "clock" not in unsupported(cf.system, kinds) and (
            reason := lab_clock.unavailable_reason()):
        if "clock" in _nodes(a.nemesis):
            raise CliError(reason)
        kinds = tuple(k for k in kinds if k != "clock")
        print(f"nemesis clock left out: {reason}")
    if os.geteuid() == 0:
        cleanup.clean(sweep_orphans=False)  # what crashed runs left (dead owners only)
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    out = a.out
    if out is None:
        out = default_out(seed)
        try:
            link_latest(out)
        except OSError as e:
            print(f"runs/latest not updated: {e.strerror or e}")
    # raftnet without node flags of its own: with check's (frequent snapshots)
    from harness.systems.raftnet import RaftnetSystem

    plain = isinstance(cf.system, RaftnetSystem) and not cf.system.node_args
    power = "power" in kinds and "power" not in unsupported(cf.system, kinds)
    r = run_check(CheckConfig(nodes=a.nodes, time=float(a.time), clients=a.clients, keys=a.keys, kinds=kinds,
                              seed=seed, out=out, power=power,
                              system=None if plain else cf.system, loopback=a.loopback))
    return 0 if r.ok else 1


def cmd_analyze(a: argparse.Namespace) -> int:
    """Exit 0: linearizable; 1: not (or undecided); 2: not a history."""
    from harness.orchestration.analyze import AnalyzeError, analyze

    if a.timeout <= 0:
        raise CliError("--timeout must be positive", 2)
    try:
        r = analyze(a.file, a.out, a.timeout)
    except AnalyzeError as e:
        raise CliError(str(e), 2) from None
    if not r.ok:
        print(r.result.explain())
    print(f"report: {r.report}")
    print(r.verdict)
    return 0 if r.ok else 1


def _glue_negative(args: list[str]) -> list[str]:
    """``--offset -200ms`` as ``--offset=-200ms``: argparse would take -200ms for an option."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--offset" and i + 1 < len(args) and args[i + 1].startswith("-") and args[i + 1][1:2].isdigit():
            out.append(f"--offset={args[i + 1]}")
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = _glue_negative(list(sys.argv[1:] if argv is None else argv))
    try:
        a = parser().parse_args(args)
        code = _rootless(a, list(args))
        if code is not None:
            return code
        if a.cmd == "up":
            return cmd_up(a)
        if a.cmd == "status":
            return cmd_status(a)
        if a.cmd == "down":
            return cmd_down(a)
        if a.cmd == "clean":
            return cmd_clean(a)
        if a.cmd == "check":
            return cmd_check(a)
        if a.cmd == "analyze":
            return cmd_analyze(a)
        return _act(a)
    except CliError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line, not a traceback (RAFTNET_DEBUG=1 shows it)
        from harness.orchestration.cluster import NodeStartError

        if isinstance(e, NodeStartError):  # the system's command or port: a configuration error
            print(f"{PROG}: {e}", file=sys.stderr)
            return 2
        if os.environ.get("RAFTNET_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"{PROG}: {type(e).__name__}: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
