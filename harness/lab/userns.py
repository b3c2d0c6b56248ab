"""Rootless mode: the harness inside a private user + network + mount namespace.

An ordinary Linux user may own a user namespace and, inside it, network
namespaces, veth pairs, bridges and nftables rules. When the harness needs
namespaces and we are not root, the command (pytest, or ``raftnet``) runs
again inside such a private world, where it is root over what it creates,
and runs exactly the same topology, faults and processes. Nothing in the
harness forks into a rootless flavour: one code path, entered differently.

    unshare --user --map-root-user --net --mount --propagation private \\
        --pid --fork --mount-proc --kill-child python -m harness.lab.userns -- CMD...

``python -m harness.lab.userns`` sets the private world up (a tmpfs on /run for
/run/netns and /run/raftnet, the loopback up) and then runs CMD as the init
of the world's PID namespace. When CMD ends, however it ends (a SIGKILLed
pytest worker included), the kernel kills every process left in the PID
namespace and removes the namespaces and everything in them: links, rules,
bridges. /run is a private tmpfs that vanishes too; files go to the user's
own temp dirs.

A long-lived world for the CLI is a holder process (``--hold``): ``raftnet
up`` starts one, and later ``raftnet`` commands enter its namespaces with
``nsenter``; ``raftnet down`` ends it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ENV_INSIDE = "RAFTNET_USERNS"  # set inside the private world
ENV_DISABLE = "RAFTNET_USERNS_DISABLE"  # "1": behave as if user namespaces were blocked (tests)
FALLBACK = "`sudo make test-partitions` or the Vagrant VM (vagrant/) still work"

_SYSCTLS = (
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=0"),
    ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces=0"),
    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
     "kernel.apparmor_restrict_unprivileged_userns=1 (AppArmor)"),
)


@dataclass(frozen=True)
class Status:
    available: bool
    reason: str = ""  # when not available: which setting blocks it


def inside() -> bool:
    return os.environ.get(ENV_INSIDE) == "1"


def status(probe: bool = True) -> Status:
    """Can this (non-root) process own a user namespace with a network namespace?"""
    if os.environ.get(ENV_DISABLE) == "1":
        return Status(False, f"user namespaces disabled by {ENV_DISABLE}=1")
    for path, bad, text in _SYSCTLS:
        try:
            if Path(path).read_text().strip() == bad:
                return Status(False, f"user namespaces are blocked by {text}")
        except OSError:
            pass
    if shutil.which("unshare") is None:
        return Status(False, "unshare (util-linux) is not installed")
    if probe:
        r = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "--mount", "true"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            first = (r.stderr.strip().splitlines() or ["unknown error"])[0]
            return Status(False, f"cannot create a user namespace: {first}")
    return Status(True)


def skip_reason(st: Status) -> str:
    return f"needs network namespaces: {st.reason}; {FALLBACK}"


def wrap(argv: list[str]) -> list[str]:
    """``argv`` run inside a new private world (see the module docstring).

    The world has its own PID namespace whose init is ``harness.lab.userns``: when ``argv``
    ends, however it ends, the kernel kills every process left in it (nodes included).
    """
    return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--propagation", "private",
            "--pid", "--fork", "--mount-proc", "--kill-child",
            "--", sys.executable, "-m", "harness.lab.userns", "--", *argv]


def wrap_hold(ready_file: str) -> list[str]:
    """A holder process: a private world that stays up; its pid goes to ``ready_file``."""
    return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--propagation", "private",
            "--kill-child", "--", sys.executable, "-m", "harness.lab.userns", "--hold", ready_file]


def enter(pid: int, argv: list[str]) -> list[str]:
    """``argv`` run inside the private world held by process ``pid``."""
    return ["nsenter", "--target", str(pid), "--user", "--net", "--mount", "--preserve-credentials", "--",
            "env", f"{ENV_INSIDE}=1", *argv]


def _mount_tmpfs(target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0, b"mode=0755") != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {target}: {os.strerror(err)}")


def setup() -> None:
    """Inside a fresh user+net+mount namespace: private /run, loopback up."""
    _mount_tmpfs("/run")
    for d in ("/run/netns", "/run/raftnet"):
        os.makedirs(d, exist_ok=True)
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname="lo")
        if idx:
            ipr.link("set", index=idx[0], state="up")
    os.environ[ENV_INSIDE] = "1"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    hold = False
    if args and args[0] == "--hold":
        hold, args = True, args[1:]
    if args and args[0] == "--":
        args = args[1:]
    try:
        setup()
    except OSError as e:
        print(f"raftnet: cannot set up the private namespace: {e}", file=sys.stderr)
        return 1
    if hold:
        ready = args[0] if args else None
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        if ready:
            Path(ready).write_text(str(os.getpid()))
        while True:
            signal.pause()
    if not args:
        print("usage: python -m harness.lab.userns [--hold READY_FILE] -- CMD...", file=sys.stderr)
        return 2
    if os.getpid() != 1:
        os.execvp(args[0], args)
    return _init(args)


def _init(argv: list[str]) -> int:
    """PID 1 of the private world: run ``argv``, forward termination, reap orphans.

    When ``argv`` exits we exit with its code, and the kernel then kills whatever is
    left in the PID namespace: nothing outlives the run. SIGINT is not forwarded: a
    terminal's Ctrl-C reaches the whole process group already.
    """
    child = subprocess.Popen(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            code = child.returncode
            return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
