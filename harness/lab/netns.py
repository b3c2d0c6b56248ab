"""Network namespaces, the switch and the veths of one cluster (pyroute2 netlink).

Layout of slot s (names from ``topology``)::

    root (current) netns          switch netns rn{s}-sw            node netns rn{s}-nk
    rn{s}c 10.213.s.1/24 ===veth=== rn{s}-ctl --+
                                                 br0
                                   rn{s}-nk ----+ ===veth=== eth0 10.213.s.(10+k)/24

No namespace gets a default route: the only routes are the connected /24
routes the kernel adds with each address, so nothing can leave the
cluster's subnet (loopback aside).

Entering a namespace never changes the calling thread: a short-lived
helper thread ``setns(2)``s itself into the namespace and there opens a
netlink socket, bind-mounts a new namespace, or forks a child with
``subprocess.Popen`` (a network namespace is a per-thread attribute, and
a child inherits the one of the thread that forked it). So there is no
``preexec_fn``, no fork of the Python process, and no ``ip`` binary.

Only CAP_NET_ADMIN/CAP_SYS_ADMIN over the namespaces we create is assumed
(true for root, and for the mapped root of a user namespace whose /run is
a private tmpfs).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from harness.errors import HarnessError
from harness.model import topology
from harness.model.topology import Topology
from node.raft.types import NodeId

NETNS_RUN_DIR = Path("/run/netns")

_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SHARED = 1 << 20
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_T = TypeVar("_T")

# Stdio argument of subprocess.Popen.
Stdio = int | IO[Any] | None


class NetnsError(HarnessError):
    """A namespace or link operation failed."""


def _oserror(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def netns_path(netns: str) -> str:
    """The nsfs file of ``netns``: a name under /run/netns, or a path as is
    (e.g. /proc/PID/ns/net of a holder process)."""
    return netns if "/" in netns else str(NETNS_RUN_DIR / netns)


def _enter(netns: str) -> None:
    """setns(2) the calling thread into ``netns``."""
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            raise _oserror(f"setns {netns}")
    finally:
        os.close(fd)


def _in_thread(fn: Callable[[], _T]) -> _T:
    """Run ``fn`` in a fresh thread (which may leave our netns and then dies)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="raftnet-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


_CLONE_NEWNS = 0x00020000
_CLONE_FS = 0x00000200


def enter_mntns(mntns: str) -> None:
    """setns(2) the calling thread into the mount namespace ``mntns`` (a /proc/PID/ns/mnt path).

    A thread shares its root and cwd (CLONE_FS) with the other threads, and
    the kernel refuses to move such a thread to another mount namespace: it
    first takes a private copy (unshare CLONE_FS). Its cwd becomes that
    namespace's root, so a child should be given its cwd explicitly.
    """
    if _libc.unshare(_CLONE_FS) != 0:
        raise _oserror("unshare CLONE_FS")
    fd = os.open(mntns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNS) != 0:
            raise _oserror(f"setns {mntns}")
    finally:
        os.close(fd)


def in_netns(netns: str | None, fn: Callable[[], _T], mntns: str | None = None) -> _T:
    """Call ``fn`` in a helper thread that has entered ``netns`` (None: ours) and,
    if given, the mount namespace ``mntns``; return its value.

    Sockets created by ``fn`` stay in ``netns``; so do children it forks.
    """

    def entered() -> _T:
        if netns is not None:
            _enter(netns)
        if mntns is not None:
            enter_mntns(mntns)
        return fn()

    return _in_thread(entered)


# -- namespaces -----------------------------------------------------------------


def list_netns() -> list[str]:
    """Names under /run/netns."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if not n.startswith("."))
    except FileNotFoundError:
        return []


def netns_exists(netns: str) -> bool:
    return os.path.exists(netns_path(netns))


def _prepare_run_dir() -> None:
    """Make /run/netns a shared mount point, as ``ip netns add`` does, so that
    namespace mounts propagate to (and unmounts from) other mount namespaces."""
    NETNS_RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    dfd = os.open(NETNS_RUN_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)  # no two workers stack bind mounts
        d = str(NETNS_RUN_DIR).encode()
        if _libc.mount(b"none", d, None, _MS_SHARED | _MS_REC, None) == 0:
            return
        if ctypes.get_errno() != errno.EINVAL:
            raise _oserror("mount --make-rshared /run/netns")
        if _libc.mount(d, d, b"none", _MS_BIND | _MS_REC, None) != 0:
            raise _oserror("mount --rbind /run/netns")
        if _libc.mount(b"none", d, None, _MS_SHARED | _MS_REC, None) != 0:
            raise _oserror("mount --make-rshared /run/netns")
    finally:
        os.close(dfd)


def create_netns(name: str) -> None:
    """Create the named namespace (raises FileExistsError if it exists)."""
    if "/" in name or not name or name.startswith("."):
        raise NetnsError(f"bad netns name {name!r}")
    _prepare_run_dir()
    path = netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))

    def bind_new_netns() -> None:
        if _libc.unshare(_CLONE_NEWNET) != 0:
            raise _oserror(f"unshare netns {name}")
        src = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        if _libc.mount(src, path.encode(), b"none", _MS_BIND, None) != 0:
            raise _oserror(f"bind netns {name}")

    try:
        _in_thread(bind_new_netns)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def remove_netns(name: str) -> None:
    """Unmount and delete the named namespace (idempotent). The namespace
    itself lives on while a process is still inside it."""
    path = netns_path(name)
    _libc.umount2(path.encode(), _MNT_DETACH)  # EINVAL/ENOENT: not mounted
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _nsfs_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def netns_pids(names: Iterable[str]) -> dict[str, list[int]]:
    """The pids whose network namespace is each of ``names`` (by nsfs inode).

    Zombies have no namespace any more and are not listed.
    """
    wanted: dict[tuple[int, int], str] = {}
    for n in names:
        ident = _nsfs_id(netns_path(n))
        if ident is not None:
            wanted[ident] = n
    found: dict[str, list[int]] = {n: [] for n in names}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        ident = _nsfs_id(f"/proc/{entry.name}/ns/net")
        if ident in wanted:
            found[wanted[ident]].append(int(entry.name))
    return found


def kill_netns_processes(names: Iterable[str], timeout: float = 10.0) -> list[int]:
    """SIGKILL every process inside ``names``; wait (polling) until none is left.

    Returns the pids killed. Our own children among them stay zombies
    until their Popen is polled; they are no longer inside a namespace.
    """
    names = list(names)
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        pids = sorted({p for ps in netns_pids(names).values() for p in ps})
        if not pids:
            return killed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {pids} still inside {names} after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# -- netlink ----------------------------------------------------------------


@contextlib.contextmanager
def iproute(netns: str | None = None) -> Iterator[IPRoute]:
    """An IPRoute bound to ``netns`` (None: the caller's namespace), closed on exit."""
    if netns is None:
        ipr = IPRoute()
    else:
        sock = in_netns(netns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE))
        try:
            ipr = IPRoute(use_socket=sock)
        except BaseException:
            sock.close()
            raise
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _require_index(ipr: IPRoute, ifname: str) -> int:
    idx = _index(ipr, ifname)
    if idx is None:
        raise NetnsError(f"no link {ifname!r}")
    return idx


def link_exists(ifname: str, netns: str | None = None) -> bool:
    if netns is None:
        try:
            socket.if_nametoindex(ifname)
        except OSError:
            return False
        return True
    with iproute(netns) as ipr:
        return _index(ipr, ifname) is not None


def _delete_link(ipr: IPRoute, ifname: str) -> bool:
    idx = _index(ipr, ifname)
    if idx is None:
        return False
    try:
        ipr.link("del", index=idx)
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise
        return False
    return True


def _veth_into(ipr: IPRoute, ifname: str, peer_ifname: str, peer_netns: str) -> int:
    """Add a veth ``ifname`` in ``ipr``'s namespace whose peer ``peer_ifname``
    is created directly inside ``peer_netns``; returns ``ifname``'s index."""
    fd = os.open(netns_path(peer_netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        ipr.link("add", ifname=ifname, kind="veth", peer={"ifname": peer_ifname, "net_ns_fd": fd})
    finally:
        os.close(fd)
    return _require_index(ipr, ifname)


def _plug_node(topo: Topology, node: NodeId) -> None:
    """Create the node's namespace and its veth into the switch."""
    ns = topo.netns(node)
    create_netns(ns)
    with iproute(topo.switch_netns) as sw:
        bridge = _require_index(sw, topology.BRIDGE_LINK)
        idx = _veth_into(sw, topo.switch_link(node), topology.NODE_LINK, ns)
        sw.link("set", index=idx, master=bridge)
        sw.link("set", index=idx, state="up")
    with iproute(ns) as ipr:
        ipr.link("set", index=_require_index(ipr, "lo"), state="up")
        eth = _require_index(ipr, topology.NODE_LINK)
        ipr.link("set", index=eth, address=topology.node_mac(topo.slot, node))  # the same after a re-add
        ipr.addr("add", index=eth, address=topo.address(node), prefixlen=topology.PREFIX_LEN)
        ipr.link("set", index=eth, state="up")


def create_cluster_net(topo: Topology) -> None:
    """Build the switch, one namespace per node, and the control path.

    Refuses (NetnsError) when anything named for the slot exists already;
    on any later failure whatever was built is destroyed before re-raising.
    """
    leftovers = slot_netns(topo.slot) + ([topo.root_link] if link_exists(topo.root_link) else [])
    if leftovers:
        raise NetnsError(f"slot {topo.slot} is not free ({', '.join(leftovers)} exist); run `raftnet clean`")
    try:
        create_netns(topo.switch_netns)
        with iproute(topo.switch_netns) as sw:
            sw.link("set", index=_require_index(sw, "lo"), state="up")
            sw.link("add", ifname=topology.BRIDGE_LINK, kind="bridge")
            sw.link("set", index=_require_index(sw, topology.BRIDGE_LINK), state="up")
        for node in topo.nodes:
            _plug_node(topo, node)
        with iproute() as root:
            idx = _veth_into(root, topo.root_link, topo.control_switch_link, topo.switch_netns)
            root.addr("add", index=idx, address=topo.control_address, prefixlen=topology.PREFIX_LEN)
            root.link("set", index=idx, state="up")
        with iproute(topo.switch_netns) as sw:
            ctl = _require_index(sw, topo.control_switch_link)
            sw.link("set", index=ctl, master=_require_index(sw, topology.BRIDGE_LINK))
            sw.link("set", index=ctl, state="up")
    except BaseException:
        destroy_cluster_net(topo)
        raise


def add_node(topo: Topology, node: str) -> Topology:
    """Plug a new node (namespace, veth, address) into a running topology."""
    grown = topo.with_node(node)
    if netns_exists(grown.netns(node)):
        raise NetnsError(f"netns {grown.netns(node)} exists already")
    try:
        _plug_node(grown, NodeId(node))
    except BaseException:
        _unplug_node(grown, NodeId(node))
        raise
    return grown


def _unplug_node(topo: Topology, node: NodeId) -> None:
    ns = topo.netns(node)
    kill_netns_processes([ns])
    if netns_exists(topo.switch_netns):
        with iproute(topo.switch_netns) as sw:
            _delete_link(sw, topo.switch_link(node))
    remove_netns(ns)


def remove_node(topo: Topology, node: str) -> Topology:
    """Kill what runs in the node's namespace, unplug and delete it."""
    shrunk = topo.without_node(node)
    _unplug_node(topo, NodeId(node))
    return shrunk


def _set_switch_port(topo: Topology, node: str, state: str) -> None:
    topo.check_node(node)
    with iproute(topo.switch_netns) as sw:
        sw.link("set", index=_require_index(sw, topo.switch_link(node)), state=state)


def link_down(topo: Topology, node: str) -> None:
    """Unplug ``node``: its switch port goes down (eth0 loses carrier), so it is
    unreachable from peers and from the control path alike."""
    _set_switch_port(topo, node, "down")


def link_up(topo: Topology, node: str) -> None:
    """Replug ``node``'s switch port."""
    _set_switch_port(topo, node, "up")


def link_is_up(topo: Topology, node: str) -> bool:
    """Whether ``node``'s switch port is administratively up."""
    topo.check_node(node)
    with iproute(topo.switch_netns) as sw:
        links = sw.link("get", index=_require_index(sw, topo.switch_link(node)))
        return bool(links[0]["flags"] & 1)  # IFF_UP


def slot_netns(slot: int) -> list[str]:
    """Every namespace under /run/netns that carries ``slot`` in its name."""
    return [n for n in list_netns() if topology.slot_of_name(n) == slot]


@dataclass(frozen=True)
class Teardown:
    """What ``destroy_cluster_net`` removed."""

    netns: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    pids: tuple[int, ...] = ()


def destroy_cluster_net(topo: Topology) -> Teardown:
    """Remove everything of ``topo.slot``: processes inside its namespaces
    (SIGKILL), the root-side control link and the namespaces (their rules,
    bridge and veths go with them). Idempotent; namespaces are found by
    name, so ``topo.nodes`` may be stale or empty."""
    names = sorted(set(slot_netns(topo.slot)) | {n for n in topo.all_netns if netns_exists(n)})
    pids = kill_netns_processes(names)
    with iproute() as root:
        links = (topo.root_link,) if _delete_link(root, topo.root_link) else ()
    for n in names:
        remove_netns(n)
    return Teardown(tuple(names), links, tuple(pids))


def root_links() -> list[str]:
    """Links in our (root) namespace that carry one of our names."""
    with iproute() as root:
        names = [link.get("ifname") for link in root.get_links()]
    return sorted(n for n in names if n and topology.slot_of_name(n) is not None)


# -- processes in a namespace ------------------------------------------------


def spawn_in_netns(
    netns: str | None,
    argv: Sequence[str],
    *,
    stdin: Stdio = subprocess.DEVNULL,
    stdout: Stdio = None,
    stderr: Stdio = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    new_session: bool = False,
    mntns: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside ``netns`` (name or nsfs path; None: ours); like subprocess.Popen.

    ``env`` None inherits ours. ``new_session`` puts the child in its own
    session and process group (a Ctrl-C of ours does not reach it).
    ``mntns`` (a /proc/PID/ns/mnt path) starts it in that mount namespace too.
    """
    argv = list(argv)
    if mntns is not None and cwd is None:
        cwd = os.getcwd()  # entering a mount namespace moves the thread to its root
    return in_netns(
        netns,
        lambda: subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=new_session,
            close_fds=True,
        ),
        mntns,
    )


def run_in_netns(
    netns: str,
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` inside ``netns`` to completion, capturing stdout and stderr.

    Raises subprocess.TimeoutExpired (after killing and reaping the child).
    """
    proc = spawn_in_netns(
        netns,
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    with proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
