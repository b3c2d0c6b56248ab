"""Per-cluster slot allocation under a base dir, serialised by an fcntl lock.

A slot s in 0..254 gives a cluster its subnet (10.213.s.0/24) and every
name it uses (see ``topology``), so clusters of parallel pytest-xdist
workers and of several CLI users never collide. The allocation is written
*before* any namespace is created and removed *after* they are gone, so a
namespace carrying a slot with no allocation file is an orphan that
``cleanup`` may remove.

Layout::

    <base>/lock                  flock(2) taken for every read-modify-write
    <base>/clusters/<slot>.json  one allocation (see ``Allocation``)

The base dir is ``$RAFTNET_RUN_DIR`` or /run/raftnet. Nothing here needs
root: under a user + mount namespace /run may be a private tmpfs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psutil

from harness.errors import HarnessError
from harness.model import topology
from node.raft.types import NodeId

DEFAULT_RUN_DIR = Path("/run/raftnet")
NETNS_RUN_DIR = Path("/run/netns")
# Two create_time readings of one process agree exactly; allow float noise.
_CREATE_TIME_SLACK = 1e-3


class AllocationError(HarnessError):
    """No free slot, or a slot that is not allocated."""


@dataclass(frozen=True)
class Allocation:
    """One allocated slot, as recorded in ``<base>/clusters/<slot>.json``."""

    slot: int
    name: str
    owner_pid: int
    owner_create_time: float
    worker: str
    netns: tuple[str, ...]
    root_link: str
    created_at: float = field(default=0.0)

    @property
    def topology(self) -> topology.Topology:
        """The topology of the nodes recorded in ``netns`` (switch excluded)."""
        prefix = f"{topology.NAME_PREFIX}{self.slot}-"
        ids = [n[len(prefix) :] for n in self.netns if n != topology.switch_netns(self.slot)]
        return topology.Topology(self.slot, tuple(NodeId(i) for i in ids))

    def to_json(self) -> str:
        d = asdict(self)
        d["netns"] = list(self.netns)
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @staticmethod
    def from_json(text: str) -> Allocation:
        d = json.loads(text)
        return Allocation(
            slot=int(d["slot"]),
            name=str(d["name"]),
            owner_pid=int(d["owner_pid"]),
            owner_create_time=float(d["owner_create_time"]),
            worker=str(d["worker"]),
            netns=tuple(str(n) for n in d["netns"]),
            root_link=str(d["root_link"]),
            created_at=float(d.get("created_at", 0.0)),
        )


def run_dir(base_dir: str | os.PathLike[str] | None = None) -> Path:
    """The base dir: the argument, else $RAFTNET_RUN_DIR, else /run/raftnet."""
    if base_dir is not None:
        return Path(base_dir)
    return Path(os.environ.get("RAFTNET_RUN_DIR") or DEFAULT_RUN_DIR)


def worker_id() -> str:
    """The pytest-xdist worker id (gw0, gw1, ...) or "main"."""
    return os.environ.get("PYTEST_XDIST_WORKER") or "main"


def _clusters_dir(base: Path) -> Path:
    return base / "clusters"


def _path(base: Path, slot: int) -> Path:
    return _clusters_dir(base) / f"{topology.check_slot(slot)}.json"


@contextlib.contextmanager
def lock(base_dir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Hold the allocation lock of ``base_dir``; yields the base dir.

    Not re-entrant: do not call ``allocate``/``release``/``update`` inside.
    """
    base = run_dir(base_dir)
    _clusters_dir(base).mkdir(parents=True, exist_ok=True)
    fd = os.open(base / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield base
    finally:
        os.close(fd)  # releases the flock


def _read(base: Path, slot: int) -> Allocation | None:
    try:
        return Allocation.from_json(_path(base, slot).read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # A torn or foreign file: treat it as an allocation nobody owns.
        return Allocation(slot, "?", 0, 0.0, "?", (), topology.root_link(slot))


def _write(base: Path, alloc: Allocation) -> None:
    path = _path(base, alloc.slot)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(alloc.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_record(base: Path, slot: int) -> None:
    """Delete the allocation file of ``slot``; the caller holds ``lock(base)``."""
    with contextlib.suppress(FileNotFoundError):
        _path(base, slot).unlink()


def _slot_has_traces(slot: int) -> bool:
    """Whether a namespace or root link of ``slot`` exists (an allocation
    under another base dir, or an orphan that ``cleanup`` has not removed)."""
    prefix = f"{topology.NAME_PREFIX}{slot}-"
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        names = []
    if any(n.startswith(prefix) and topology.slot_of_name(n) == slot for n in names):
        return True
    try:
        socket.if_nametoindex(topology.root_link(slot))
    except OSError:
        return False
    return True


def process_create_time(pid: int) -> float | None:
    """psutil's create_time of ``pid``, or None when there is no such process."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def _netns_names(slot: int, node_ids: Iterable[str]) -> tuple[str, ...]:
    return (
        topology.switch_netns(slot),
        *(topology.node_netns(slot, n) for n in topology.sorted_nodes(node_ids)),
    )


def allocate(
    name: str,
    owner_pid: int | None = None,
    node_ids: Iterable[str] = (),
    base_dir: str | os.PathLike[str] | None = None,
) -> Allocation:
    """Take the lowest free slot for cluster ``name`` owned by ``owner_pid``
    (default: this process). Raises AllocationError when all 255 are taken."""
    pid = os.getpid() if owner_pid is None else owner_pid
    create_time = process_create_time(pid)
    if create_time is None:
        raise AllocationError(f"owner pid {pid} does not exist")
    nodes = topology.sorted_nodes(node_ids)
    with lock(base_dir) as base:
        for slot in range(topology.MAX_SLOT + 1):
            if _path(base, slot).exists() or _slot_has_traces(slot):
                continue
            alloc = Allocation(
                slot=slot,
                name=name,
                owner_pid=pid,
                owner_create_time=create_time,
                worker=worker_id(),
                netns=_netns_names(slot, nodes),
                root_link=topology.root_link(slot),
                created_at=time.time(),
            )
            _write(base, alloc)
            return alloc
    raise AllocationError(f"all {topology.MAX_SLOT + 1} cluster slots are in use; run `raftnet clean`")


def update(
    slot: int,
    *,
    owner_pid: int | None = None,
    node_ids: Iterable[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Allocation:
    """Hand the slot to a new owner and/or record its current node ids."""
    with lock(base_dir) as base:
        alloc = _read(base, slot)
        if alloc is None:
            raise AllocationError(f"slot {slot} is not allocated")
        if owner_pid is not None:
            create_time = process_create_time(owner_pid)
            if create_time is None:
                raise AllocationError(f"owner pid {owner_pid} does not exist")
            alloc = replace(alloc, owner_pid=owner_pid, owner_create_time=create_time)
        if node_ids is not None:
            alloc = replace(alloc, netns=_netns_names(slot, node_ids))
        _write(base, alloc)
        return alloc


def release(slot: int, base_dir: str | os.PathLike[str] | None = None) -> None:
    """Forget the allocation of ``slot`` (idempotent). Destroy its network first."""
    with lock(base_dir) as base:
        remove_record(base, slot)


def allocation(slot: int, base_dir: str | os.PathLike[str] | None = None) -> Allocation | None:
    """The allocation of ``slot``, or None."""
    return _read(run_dir(base_dir), slot)


def list_allocations(base_dir: str | os.PathLike[str] | None = None) -> list[Allocation]:
    """Every recorded allocation, by slot."""
    base = run_dir(base_dir)
    try:
        files = os.listdir(_clusters_dir(base))
    except FileNotFoundError:
        return []
    slots = sorted(int(f[: -len(".json")]) for f in files if f.endswith(".json") and f[: -len(".json")].isdigit())
    found = (_read(base, s) for s in slots if s <= topology.MAX_SLOT)
    return [a for a in found if a is not None]


def owner_alive(alloc: Allocation) -> bool:
    """Whether the owner is still the very process recorded (not a reused pid)."""
    if alloc.owner_pid <= 0:
        return False
    try:
        proc = psutil.Process(alloc.owner_pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return bool(abs(proc.create_time() - alloc.owner_create_time) < _CREATE_TIME_SLACK)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
