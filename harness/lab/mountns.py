"""A cluster's private mount namespace and the powerfs "disks" mounted inside it.

    python -m harness.lab.mountns      # the holder: alone in a new, private mount namespace

A cluster with power faults starts one holder process: it unshares its mount
namespace, makes every mount in it private (MS_REC|MS_PRIVATE: nothing it
mounts propagates to the host, nothing the host mounts later reaches it) and
waits. Each node's powerfs daemon and the node itself are started inside
that namespace (``setns`` in the spawn path, see ``netns.enter_mntns``), so
the node's data dir is a powerfs mount that the host's mount table never
shows. The harness reads inside through ``/proc/<holder>/root/...``.

The holder runs in the cluster's switch network namespace and the daemons
in their node's one, so that tearing the cluster's namespaces down (also
``raftnet clean`` after a crash) kills them all; when the last process in
the mount namespace is gone, the kernel drops it and every mount in it.

A power cut of a node (``PowerDisk.cut``): the node was SIGKILLed already;
SIGKILL the daemon (its memory, the disk's cache, is lost), lazily unmount
the dead mount; ``PowerDisk.mount`` then starts a fresh daemon on the same
store, which sees exactly the durable state.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.lab import netns as _netns
from harness.lab.process import NodeProcess, ProcessGoneError, spawn

_CLONE_NEWNS = 0x00020000
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


class MountError(HarnessError, RuntimeError):
    """A mount namespace or powerfs mount could not be set up."""


def _wait(done: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not done():
        if time.monotonic() > deadline:
            raise MountError(f"{what}: not done after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class MountNamespace:
    """The holder process of one private mount namespace."""

    def __init__(self, proc: NodeProcess) -> None:
        self.proc = proc

    @classmethod
    def start(cls, netns: str | None, log: Path, timeout: float = 10.0) -> MountNamespace:
        proc = spawn(netns, [sys.executable, "-m", "harness.lab.mountns"], log)
        ns = cls(proc)
        mine = os.readlink("/proc/self/ns/mnt")

        def ready() -> bool:
            if not proc.is_alive():
                raise MountError(f"mount namespace holder exited: {_tail(log)}")
            try:
                return os.readlink(f"/proc/{proc.pid}/ns/mnt") != mine and "ready" in log.read_text()
            except OSError:
                return False

        try:
            _wait(ready, timeout, "private mount namespace")
        except BaseException:
            proc.kill()
            raise
        return ns

    @classmethod
    def attach(cls, record: dict[str, Any]) -> MountNamespace | None:
        try:
            return cls(NodeProcess.attach(record))
        except ProcessGoneError:
            return None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def path(self) -> str:
        """The nsfs file to setns into."""
        return f"/proc/{self.pid}/ns/mnt"

    def view(self, path: str | os.PathLike[str]) -> Path:
        """``path`` as seen inside the namespace, reachable from outside."""
        return Path(f"/proc/{self.pid}/root") / Path(os.path.abspath(path)).relative_to("/")

    def mounts(self) -> list[str]:
        """Mount points inside the namespace (from its mountinfo)."""
        try:
            text = Path(f"/proc/{self.pid}/mountinfo").read_text()
        except OSError:
            return []
        return [line.split()[4].replace("\\040", " ") for line in text.splitlines()]

    def is_mounted(self, path: str | os.PathLike[str]) -> bool:
        return os.path.abspath(path) in self.mounts()

    def umount(self, path: str | os.PathLike[str]) -> None:
        """Lazily unmount ``path`` inside the namespace (a dead FUSE mount included); idempotent."""
        target = os.path.abspath(path).encode()

        def detach() -> None:
            while _libc.umount2(target, _MNT_DETACH) == 0:
                pass  # stacked mounts: peel them all
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                raise OSError(err, f"umount {target.decode()}: {os.strerror(err)}")

        _netns.in_netns(None, detach, mntns=self.path)

    def kill(self) -> None:
        self.proc.kill()

    def record(self) -> dict[str, Any]:
        return self.proc.record()


class PowerDisk:
    """One node's disk: a powerfs daemon on ``store`` mounted at ``mountpoint`` inside ``ns``."""

    def __init__(self, ns: MountNamespace, store: Path, mountpoint: Path, log: Path,
                 netns: str | None = None, proc: NodeProcess | None = None) -> None:
        self.ns = ns
        self.store = Path(store).absolute()
        self.mountpoint = Path(mountpoint).absolute()
        self.log = Path(log).absolute()
        self.netns = netns
        self.proc = proc

    @property
    def ready_file(self) -> Path:
        return self.log.with_suffix(".ready")

    def is_up(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def mount(self, timeout: float = 20.0) -> None:
        """Start a fresh daemon on the store (after a cut: exactly the durable state); wait for it."""
        self.start()
        self.wait_mounted(timeout)

    def start(self) -> None:
        """Start the daemon, without waiting (``wait_mounted``): disks of many nodes mount in parallel."""
        if self.is_up():
            return
        self.ns.umount(self.mountpoint)  # a dead mount of a cut daemon, if any
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.store.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "harness.lab.powerfs", "--store", str(self.store),
                "--ready", str(self.ready_file), str(self.mountpoint)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = spawn(self.netns, argv, self.log, env=env, mntns=self.ns.path)

    def wait_mounted(self, timeout: float = 20.0) -> None:
        proc = self.proc
        assert proc is not None, "start() first"

        def ready() -> bool:
            if not proc.is_alive():
                raise MountError(f"powerfs on {self.mountpoint} exited ({proc.exit_code}): {_tail(self.log)}")
            return self.ready_file.exists()

        try:
            _wait(ready, timeout, f"powerfs mount on {self.mountpoint}")
        except BaseException:
            self.cut()
            raise

    def cut(self) -> None:
        """The power goes: SIGKILL the daemon (the disk cache is lost), detach the dead mount.

        Kill the processes that use the mount first (they would see ENOTCONN).
        """
        if self.proc is not None:
            try:
                self.proc.resume()
            except (ProcessGoneError, TimeoutError):
                pass
            self.proc.kill()
        if self.ns.proc.is_alive():
            self.ns.umount(self.mountpoint)

    def record(self) -> dict[str, Any] | None:
        return self.proc.record() if self.proc is not None else None


def main() -> int:
    """The holder: a new private mount namespace, then wait to be killed."""
    if _libc.unshare(_CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        print(f"mountns: unshare(CLONE_NEWNS): {os.strerror(err)}", file=sys.stderr)
        return 2
    if _libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        print(f"mountns: make / rprivate: {os.strerror(err)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(f"mountns: ready, pid {os.getpid()}", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
