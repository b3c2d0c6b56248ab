"""Node processes: spawn inside a namespace, signal, watch, re-attach.

A ``NodeProcess`` is identified by (pid, create_time), so that a later
process (a CLI command from another shell) can re-attach by pid and know
it is the same process and not a reused pid. Each node runs in its own
session and process group (a Ctrl-C aimed at the harness does not reach
it); signals go to that group while the node still leads it.

Waiting is polling against a deadline, never a fixed sleep. Our own
children are reaped through their Popen; re-attached processes (not our
children) are watched through psutil.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from harness.errors import HarnessError
from harness.lab import netns as _netns

_CREATE_TIME_SLACK = 1e-3


class ProcessGoneError(HarnessError):
    """The recorded process no longer exists (or its pid now names another)."""


def _poll_until(done: Callable[[], bool], timeout: float) -> bool:
    """Poll ``done`` with a growing interval until true or the deadline passes."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)


class NodeProcess:
    """One spawned (or re-attached) process, by pid + create_time."""

    def __init__(
        self,
        pid: int,
        create_time: float,
        netns: str,
        argv: Sequence[str],
        log_path: Path | None = None,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.pid = pid
        self.create_time = create_time
        self.netns = netns
        self.argv = tuple(argv)
        self.log_path = log_path
        self._popen = popen

    def __repr__(self) -> str:
        return f"NodeProcess(pid={self.pid}, netns={self.netns!r}, argv={list(self.argv)!r})"

    # -- records -----------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """What a state file keeps to re-attach later (JSON-ready)."""
        return {
            "pid": self.pid,
            "create_time": self.create_time,
            "netns": self.netns,
            "argv": list(self.argv),
            "log_path": str(self.log_path) if self.log_path is not None else None,
        }

    @staticmethod
    def attach(record: Mapping[str, Any]) -> NodeProcess:
        """Re-attach to a recorded process; raises ProcessGoneError if it has
        exited or its pid is now another process."""
        log = record.get("log_path")
        proc = NodeProcess(
            pid=int(record["pid"]),
            create_time=float(record["create_time"]),
            netns=str(record["netns"]),
            argv=[str(a) for a in record.get("argv", ())],
            log_path=Path(log) if log else None,
        )
        if not proc.is_alive():
            raise ProcessGoneError(f"process {proc.pid} ({proc.netns}) is gone")
        return proc

    # -- questions ---------------------------------------------------------------

    @property
    def is_child(self) -> bool:
        """Whether we spawned it (and so reap it)."""
        return self._popen is not None

    @property
    def exit_code(self) -> int | None:
        """The exit status of our own child once it has exited (negative:
        killed by that signal); None while running or when not our child."""
        if self._popen is None:
            return None
        return self._popen.poll()

    def _psutil(self) -> psutil.Process | None:
        """The psutil handle if this is still our process, else None."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.create_time) >= _CREATE_TIME_SLACK:
                return None
            return p
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None

    def is_alive(self) -> bool:
        """Running or paused; False once exited (zombie included) or pid reused."""
        if self._popen is not None and self._popen.poll() is not None:
            return False
        p = self._psutil()
        if p is None:
            return False
        try:
            return bool(p.status() != psutil.STATUS_ZOMBIE)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False

    def is_paused(self) -> bool:
        """Stopped by SIGSTOP (psutil status "stopped")."""
        p = self._psutil()
        if p is None:
            return False
        try:
            return bool(p.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False

    # -- actions -----------------------------------------------------------------

    def _signal(self, sig: int) -> bool:
        """Send ``sig`` to the node's process group (to the pid alone if it no
        longer leads its group). False when the process is already gone."""
        if not self.is_alive():
            return False
        try:
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float) -> bool:
        """Wait until it has exited (reaping our child); False on timeout."""
        if self._popen is not None:
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        return _poll_until(lambda: not self.is_alive(), timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL and reap. Raises TimeoutError if it still exists afterwards."""
        self._signal(signal.SIGKILL)
        if not self.wait(timeout):
            raise TimeoutError(f"process {self.pid} survived SIGKILL for {timeout}s")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (and SIGCONT, in case it is paused), wait up to ``timeout``,
        then SIGKILL. Returns the exit status when it was our child."""
        if self._signal(signal.SIGTERM):
            self._signal(signal.SIGCONT)
            if not self.wait(timeout):
                self.kill()
        elif self._popen is not None:
            self._popen.wait(timeout=timeout)
        return self.exit_code

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP; returns once the kernel reports it stopped."""
        if not self._signal(signal.SIGSTOP):
            raise ProcessGoneError(f"process {self.pid} ({self.netns}) is not running")
        if not _poll_until(lambda: self.is_paused() or not self.is_alive(), timeout):
            raise TimeoutError(f"process {self.pid} not stopped after {timeout}s")

    def resume(self, timeout: float = 5.0) -> None:
        """SIGCONT; returns once it is no longer stopped."""
        if not self._signal(signal.SIGCONT):
            raise ProcessGoneError(f"process {self.pid} ({self.netns}) is not running")
        if not _poll_until(lambda: not self.is_paused(), timeout):
            raise TimeoutError(f"process {self.pid} still stopped after {timeout}s")

    def detach(self) -> None:
        """Stop treating the process as our child (it keeps running): e.g. a
        CLI ``up`` that exits and leaves its nodes to a holder. Afterwards it
        is watched through psutil, like a re-attached process."""
        popen, self._popen = self._popen, None
        if popen is not None:
            # Dropping a Popen whose child runs warns (ResourceWarning); here
            # that is the point. subprocess reaps it later if it exits first.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                del popen


def spawn(
    netns: str | None,
    argv: Sequence[str],
    log_path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    mntns: str | None = None,
) -> NodeProcess:
    """Start ``argv`` inside ``netns`` (name or nsfs path; None: ours) in a new session, stdout and stderr
    appended to ``log_path``. ``env`` None inherits ours. ``mntns``: also inside that
    mount namespace (a /proc/PID/ns/mnt path; see harness/lab/mountns.py)."""
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = _netns.spawn_in_netns(
            netns,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            new_session=True,
            mntns=mntns,
        )
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:  # exited at once (zombie included); still ours to reap
        create_time = 0.0
    return NodeProcess(popen.pid, create_time, netns or "", argv, log, popen)


def kill_all(procs: Sequence[NodeProcess], timeout: float = 10.0) -> None:
    """SIGKILL every process first, then reap them all."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p._signal(signal.SIGKILL)
    for p in procs:
        if not p.wait(timeout):
            raise TimeoutError(f"process {p.pid} survived SIGKILL for {timeout}s")


def node_processes(workdir: str | os.PathLike[str]) -> list[int]:
    """Live (not zombie) processes running ``-m node`` with an argument under ``workdir``:
    what a "nothing left behind" check looks for."""
    where = str(workdir)
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if p.info["status"] != psutil.STATUS_ZOMBIE and "-m" in cmd and "node" in cmd and any(
                where in a for a in cmd):
            out.append(p.pid)
    return out
