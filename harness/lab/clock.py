"""Skewed clocks: libfaketime preloaded into a node process, steered through a control file.

A node whose cluster arms clocks starts with ``LD_PRELOAD`` naming
libfaketime (Debian: libfaketime, the thread-safe ``libfaketimeMT.so.1``)
and ``FAKETIME_TIMESTAMP_FILE`` naming its control file, re-read at every
clock call (``FAKETIME_NO_CACHE=1``: about 1.5 us per call), so the clock
changes while the process runs, no restart. The file holds one line
``"+OFFSET xRATE"`` (harness/model/clock.py says which, and why a rate
change never steps the clock back). libfaketime fakes the wall clock and
CLOCK_MONOTONIC alike and scales the timeouts of sleeps, poll and
epoll_wait by 1/RATE: an asyncio loop's timers (raftnet's election and
heartbeat ticks) run RATE times as fast. Not scaled: timed waits through
``sem_clockwait`` (Python threads' timeouts) run in real time.

It reaches programs that read the clock through libc. A Go program (etcd)
reads it through the vDSO directly: libfaketime does not reach it, so such
a system does not declare ``Feature.CLOCK`` and the clock nemesis leaves it
out.

Each file is replaced atomically (a half-written line would stop the
process: libfaketime exits on a line it cannot parse). It is written with
its access time before its modification time, so the first read by the
process shows (relatime) as an access time at or after the modification
time: ``wait_read`` tells when the process picked the line up.
"""

from __future__ import annotations

import glob
import os
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path

from harness.model.clock import ClockLine

ENV_LIBRARY = "RAFTNET_LIBFAKETIME"  # a libfaketime .so to use instead of the one found
NAMES = ("libfaketimeMT.so.1", "libfaketime.so.1")  # the MT one serializes its clock calls
INSTALL_HINT = "apt-get install faketime libfaketime, or sudo make setup"
SHM = Path("/dev/shm")


def library() -> str | None:
    """The libfaketime shared object to preload, or None when it is not installed."""
    if env := os.environ.get(ENV_LIBRARY):
        return env if os.path.isfile(env) else None
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [f"/usr/lib/{arch}/faketime" if arch else "", "/usr/lib/faketime", "/usr/lib64/faketime",
            "/usr/local/lib/faketime", "/usr/local/lib", *sorted(glob.glob("/usr/lib/*/faketime"))]
    for name in NAMES:
        for d in dict.fromkeys(d for d in dirs if d):
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
    return None


def unavailable_reason() -> str | None:
    """Why clocks cannot be skewed here (one line), or None when they can."""
    if os.environ.get(ENV_LIBRARY) and library() is None:
        return f"{ENV_LIBRARY}={os.environ[ENV_LIBRARY]} is not a file"
    if library() is None:
        return f"clock faults need libfaketime ({INSTALL_HINT})"
    return None


def env(base: Mapping[str, str], control: Path, lib: str) -> dict[str, str]:
    """``base`` plus what makes the process's clock follow ``control``. Any FAKETIME* of ``base``
    goes (FAKETIME itself would override the file)."""
    out = {k: v for k, v in base.items() if not k.startswith("FAKETIME") and k != "DONT_FAKE_MONOTONIC"}
    pre = out.get("LD_PRELOAD", "").strip()
    out["LD_PRELOAD"] = f"{lib} {pre}" if pre else lib
    out["FAKETIME_TIMESTAMP_FILE"] = str(control)
    out["FAKETIME_NO_CACHE"] = "1"
    return out


def write(control: Path, line: ClockLine) -> None:
    """Replace the control file with ``line`` (atomically), marked as not read yet."""
    tmp = control.with_name(control.name + ".tmp")
    tmp.write_text(line.spec() + "\n")
    st = os.stat(tmp)
    os.utime(tmp, ns=(st.st_mtime_ns - 1_000_000_000, st.st_mtime_ns))
    os.replace(tmp, control)


def was_read(control: Path) -> bool:
    """Whether a process read ``control`` since it was last written (relatime or strictatime)."""
    try:
        st = os.stat(control)
    except OSError:
        return False
    return st.st_atime_ns >= st.st_mtime_ns


def wait_read(control: Path, timeout: float = 1.0) -> float | None:
    """Wait until a process read ``control``; the seconds that took, or None (not within ``timeout``,
    or a file system mounted noatime)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        if was_read(control):
            return time.monotonic() - t0
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.002)


def forget(pid: int) -> None:
    """Remove the shared memory libfaketime left for ``pid`` (it cleans up on exit, not on SIGKILL)."""
    for name in (f"faketime_shm_{pid}", f"sem.faketime_sem_{pid}"):
        try:
            (SHM / name).unlink()
        except OSError:
            pass
