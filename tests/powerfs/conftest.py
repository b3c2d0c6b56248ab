"""Fixtures of the powerfs tests: one powerfs "disk" inside a private mount namespace.

The holder of the mount namespace and the daemon run in a network namespace
of an allocated slot (as a cluster's do), so that a crashed test run leaves
nothing the next run's clean-up does not remove. The test reads and writes
through ``/proc/<holder>/root/...``: the host's mount table never shows the
mount.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.lab import alloc, netns
from harness.lab.mountns import MountNamespace, PowerDisk
from harness.lab.process import NodeProcess, spawn
from harness.model import topology


class Disk:
    """A mounted powerfs and what a test does with it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        a = alloc.allocate(f"powerfs-{os.getpid()}", os.getpid(), ())
        self.topo = topology.Topology(a.slot, ())
        self.procs: list[NodeProcess] = []
        try:
            netns.create_netns(self.topo.switch_netns)
            self.ns = MountNamespace.start(self.topo.switch_netns, tmp / "mountns.log")
            self.pd = PowerDisk(self.ns, tmp / "store", tmp / "mnt", tmp / "powerfs.log", netns=self.topo.switch_netns)
            self.pd.mount()
        except BaseException:
            self.close()
            raise

    def path(self, name: str = "") -> Path:
        """A path on the disk, as this (outside) process reaches it."""
        return self.ns.view(self.pd.mountpoint) / name

    def store_data(self) -> Path:
        return self.pd.store / "data"

    def inside(self, name: str = "") -> Path:
        """The same path as a process inside the mount namespace names it."""
        return self.pd.mountpoint / name

    def spawn(self, argv: list[str], log: Path) -> NodeProcess:
        """A process inside the mount namespace (it sees the disk at ``inside()``)."""
        p = spawn(self.topo.switch_netns, argv, log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                  mntns=self.ns.path)
        self.procs.append(p)
        return p

    def cut(self) -> None:
        """Power cut and power on: kill the users, drop the daemon's memory, remount."""
        for p in self.procs:
            p.kill()
        self.pd.cut()
        self.pd.mount()

    def close(self) -> None:
        for p in self.procs:
            p.kill()
        if getattr(self, "pd", None) is not None:
            self.pd.cut()
        if getattr(self, "ns", None) is not None:
            self.ns.kill()
        netns.destroy_cluster_net(self.topo)
        alloc.release(self.topo.slot)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, sync: bool = False, offset: int | None = None, trunc: bool = True) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if trunc and offset is None else 0)
    fd = os.open(path, flags, 0o644)
    try:
        os.pwrite(fd, data, offset or 0)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def no_powerfs_on_host() -> bool:
    return "powerfs" not in Path("/proc/self/mountinfo").read_text()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    d = Disk(tmp_path)
    try:
        yield d
    finally:
        d.close()
    assert no_powerfs_on_host()
    assert not netns.netns_exists(d.topo.switch_netns)
    assert not d.ns.proc.is_alive() and d.pd.proc is not None and not d.pd.proc.is_alive()


PY = sys.executable
