"""powerfs on a real FUSE mount: a power cut keeps exactly what was synced.

Each test gets a fresh disk (tests/powerfs/conftest.py); ``disk.cut()`` is a
power cut followed by a fresh mount of the same store.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from harness.lab.process import NodeProcess
from harness.orchestration.local import wait_for

from .conftest import Disk, fsync_path, write

pytestmark = [pytest.mark.netns, pytest.mark.fuse]

WRITER = Path(__file__).with_name("sqlite_writer.py")


def test_unsynced_write_is_lost_synced_write_survives(disk: Disk) -> None:
    write(disk.path("a"), b"durable", sync=True)
    fsync_path(disk.path())
    write(disk.path("a"), b"DURABLE!", offset=0)  # overwritten in place, never synced
    write(disk.path("b"), b"new", sync=True)  # synced, but its directory entry is not
    assert disk.path("a").read_bytes() == b"DURABLE!"
    disk.cut()
    assert disk.path("a").read_bytes() == b"durable"
    assert not disk.path("b").exists()


def test_sigkill_of_the_user_alone_loses_nothing(disk: Disk) -> None:
    log = disk.tmp / "w.log"
    p = disk.spawn([sys.executable, "-c", f"open({str(disk.inside('f'))!r}, 'w').write('cached')"], log)
    wait_for(lambda: not p.is_alive(), 10, what="writer done")
    p.kill()
    assert disk.path("f").read_text() == "cached"  # the daemon kept it: like an OS page cache


def test_new_file_needs_its_directory_synced(disk: Disk) -> None:
    os.mkdir(disk.path("d"))
    fsync_path(disk.path())
    write(disk.path("d/kept"), b"k", sync=True)
    fsync_path(disk.path("d"))
    write(disk.path("d/lost"), b"l", sync=True)
    disk.cut()
    assert sorted(os.listdir(disk.path("d"))) == ["kept"]
    assert disk.path("d/kept").read_bytes() == b"k"


def test_mkdir_without_parent_sync_is_lost(disk: Disk) -> None:
    os.mkdir(disk.path("d"))
    write(disk.path("d/f"), b"x", sync=True)
    fsync_path(disk.path("d"))
    disk.cut()
    assert os.listdir(disk.path()) == []
    assert os.listdir(disk.store_data()) == []  # nothing left in the store either


def test_truncate(disk: Disk) -> None:
    write(disk.path("t"), b"A" * 3 * 4096 + b"A" * 10, sync=True)
    fsync_path(disk.path())
    os.truncate(disk.path("t"), 100)
    write(disk.path("t"), b"B", offset=8192, trunc=False)  # grows again: the gap reads as zeros
    want = b"A" * 100 + bytes(8092) + b"B"
    assert disk.path("t").read_bytes() == want
    disk.cut()
    assert disk.path("t").read_bytes() == b"A" * (3 * 4096 + 10)  # the truncate was never synced
    os.truncate(disk.path("t"), 100)
    write(disk.path("t"), b"B", offset=8192, trunc=False, sync=True)
    disk.cut()
    assert disk.path("t").read_bytes() == want
    assert os.path.getsize(disk.pd.store / "data" / str(os.stat(disk.path("t")).st_ino)) == len(want)


def test_open_with_o_trunc_truncates(disk: Disk) -> None:
    """libfuse3 passes O_TRUNC to open (atomic_o_trunc): an "w" open of a longer file empties it."""
    p = disk.path("o")
    write(p, b"hello world, long content", sync=True)
    fsync_path(disk.path())
    with open(p, "wb") as f:  # O_WRONLY | O_CREAT | O_TRUNC
        f.write(b"hi")
    assert p.read_bytes() == b"hi"
    disk.cut()
    assert p.read_bytes() == b"hello world, long content"  # the truncating open was never synced
    write(p, b"hi", sync=True)
    disk.cut()
    assert p.read_bytes() == b"hi"


def test_rename(disk: Disk) -> None:
    write(disk.path("old"), b"v1", sync=True)
    fsync_path(disk.path())
    os.rename(disk.path("old"), disk.path("new"))
    disk.cut()
    assert os.listdir(disk.path()) == ["old"]  # the rename was never synced
    write(disk.path("tmp"), b"v2", sync=True)
    os.rename(disk.path("tmp"), disk.path("old"))  # the atomic-replace idiom
    fsync_path(disk.path())
    disk.cut()
    assert os.listdir(disk.path()) == ["old"] and disk.path("old").read_bytes() == b"v2"


def test_unlink(disk: Disk) -> None:
    write(disk.path("a"), b"a", sync=True)
    write(disk.path("b"), b"b", sync=True)
    fsync_path(disk.path())
    fd = os.open(disk.path("b"), os.O_RDWR)
    os.unlink(disk.path("a"))
    os.unlink(disk.path("b"))
    os.pwrite(fd, b"still open", 0)  # an unlinked, open file keeps working
    assert os.pread(fd, 100, 0) == b"still open"  # (fstat: ESTALE, a limit of the path-based libfuse API)
    os.fsync(fd)
    os.close(fd)
    disk.cut()
    assert sorted(os.listdir(disk.path())) == ["a", "b"]  # the unlinks were never synced
    os.unlink(disk.path("a"))
    fsync_path(disk.path())
    disk.cut()
    assert os.listdir(disk.path()) == ["b"]
    assert len(os.listdir(disk.store_data())) == 1  # a's data file is gone from the store


def _acked(log: Path) -> int:
    lines = [ln for ln in log.read_text().splitlines() if ln.isdigit()]
    return int(lines[-1]) if lines else 0


def _acked_or_dead(log: Path, target: int, p: NodeProcess) -> bool:
    return _acked(log) >= target or not p.is_alive()


def _rows(disk: Disk, log: Path) -> tuple[int, str]:
    """Rows and integrity_check of the database, read by SQLite inside the mount namespace."""
    p = disk.spawn([sys.executable, str(WRITER), str(disk.inside("db.sqlite")), "count"], log)
    assert p.wait(30), "reader hangs"
    rows, ok = log.read_text().split()[-2:]
    return int(rows), ok


def _sqlite_cycles(disk: Disk, sync: str, cycles: int, seed: int) -> list[tuple[int, int]]:
    """Per cycle: (acknowledged so far, rows after the cut). Fails on a corrupt database."""
    rng = random.Random(seed)
    out = []
    acked = 0
    for i in range(cycles):
        log = disk.tmp / f"writer{i}.log"
        p = disk.spawn([sys.executable, str(WRITER), str(disk.inside("db.sqlite")), sync], log)
        target = acked + rng.randint(1, 60)
        wait_for(partial(_acked_or_dead, log, target, p), 30, what=f"{target} commits")
        assert p.is_alive(), log.read_text()
        disk.cut()
        acked = max(acked, _acked(log))
        rows, ok = _rows(disk, disk.tmp / f"reader{i}.log")
        assert ok in ("ok", "no-database"), f"cycle {i}: integrity_check: {ok}"
        out.append((acked, rows))
        acked = rows  # a new writer continues from what survived
    return out


def test_sqlite_wal_full_keeps_every_commit_across_20_cuts(disk: Disk) -> None:
    for i, (acked, rows) in enumerate(_sqlite_cycles(disk, "FULL", 20, seed=1)):
        assert rows >= acked, f"cycle {i}: {acked} transactions acknowledged, {rows} after the power cut"


def test_sqlite_synchronous_off_loses_commits(disk: Disk) -> None:
    """The fault bites: without fsync, a power cut loses acknowledged transactions."""
    res = _sqlite_cycles(disk, "OFF", 3, seed=2)
    assert any(rows < acked for acked, rows in res), res


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "harness.lab.powerfs", "--store", str(tmp_path / "s"),
                        str(tmp_path / "missing")], check=False, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "harness.lab.powerfs", str(tmp_path)], check=False, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--store" in r.stderr, r.stderr
