"""powerfs: a FUSE filesystem that forgets what was never synced when the power goes.

    python -m harness.lab.powerfs --store DIR [--ready FILE] MOUNTPOINT

Every crash a SIGKILL makes keeps the kernel's page cache, so a node that
skipped its fsyncs would survive it. powerfs keeps written-but-unsynced data
apart, in the memory of this daemon, and a power cut (SIGKILL of the node,
then of this daemon, then a lazy unmount and a fresh daemon on the same
store) throws exactly that away: what fsync/fdatasync/fsyncdir made durable
survives, nothing else, per file and per directory (strict POSIX: a file
created and fsynced whose directory was never fsynced is gone).

Theory of operation (inode-based):

- The store DIR holds ONLY durable state: ``DIR/data/<ino>`` is the durable
  content of inode ``ino``, ``DIR/meta.json`` the durable directory tables
  and inode attributes (written tmp + fsync + rename + dir fsync).
- In memory each file inode has its current ``size``, an overlay of dirty
  pages (``PAGE`` bytes, page number -> bytearray) over the durable bytes,
  and ``visible``: how much of the durable file still shows through (a
  truncate hides the durable tail, even if the file grows again).
  Invariant: visible <= size; overlay bytes at or beyond ``size`` are zero.
- read merges overlay pages over the visible durable bytes, up to size;
  write and truncate change only the overlay and size; fsync writes the
  overlay into data/<ino>, truncates it to size, fsyncs, clears the overlay.
- Each directory has its current entries (in memory) and its durable
  entries (meta.json); create, mkdir, unlink, rmdir and rename change only
  the current ones; fsyncdir makes that one directory's table durable.
- An inode no durable table, no current table and no open handle refers to
  is garbage: its data file goes (when that becomes true, and at mount).

A SIGKILL of only the node loses nothing: this daemon keeps its memory, as
an OS keeps its page cache. Locks (fcntl) are left to the kernel. Hard and
symbolic links are not supported (EPERM). One lock guards the model.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

PAGE = 4096
ROOT = 1
FUSE_DEVICE = "/dev/fuse"


def unavailable_reason() -> str | None:
    """Why powerfs cannot mount here (one line), or None when it can."""
    try:
        fd = os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        try:
            st = os.stat(FUSE_DEVICE)
            what = f"mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid}"
        except OSError:
            what = "missing"
        return f"powerfs needs {FUSE_DEVICE} ({what}): {e.strerror}; run as root with the fuse module"
    os.close(fd)
    import ctypes.util

    if ctypes.util.find_library("fuse3") is None:
        return "powerfs needs libfuse3 (Debian: libfuse3-3; sudo make setup installs it)"
    try:
        import mfusepy  # noqa: F401
    except ImportError as e:  # pragma: no cover - a dependency of the project
        return f"powerfs needs the mfusepy package: {e}"
    return None


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class Inode:
    """One file or directory as the running system sees it now."""

    __slots__ = ("ctime", "durable_len", "entries", "fd", "gid", "ino", "is_dir", "mode", "mtime", "nlink",
                 "opens", "pages", "size", "uid", "visible")

    def __init__(self, ino: int, mode: int, uid: int = 0, gid: int = 0, mtime: int | None = None) -> None:
        self.ino = ino
        self.is_dir = stat.S_ISDIR(mode)
        self.mode = mode
        self.uid, self.gid = uid, gid
        self.mtime = self.ctime = mtime if mtime is not None else time.time_ns()
        self.nlink = 0  # current directory entries naming it (files)
        self.size = 0  # current length
        self.visible = 0  # durable bytes [0, visible) show through; Invariant: visible <= size
        self.durable_len = 0  # length of data/<ino>
        self.pages: dict[int, bytearray] = {}  # dirty pages, each PAGE bytes long
        self.entries: dict[str, int] = {}  # directories: current name -> ino
        self.opens = 0  # open file handles
        self.fd: int | None = None  # data/<ino>, opened on demand

    def attrs(self) -> dict[str, Any]:
        return {"mode": self.mode, "uid": self.uid, "gid": self.gid, "mtime": self.mtime}


class Model:
    """The filesystem model (no FUSE in here: the tests may drive it directly)."""

    def __init__(self, store: str | os.PathLike[str]) -> None:
        self.store = Path(store)
        self.data = self.store / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.inodes: dict[int, Inode] = {}
        self.durable_dirs: dict[int, dict[str, int]] = {}
        self.handles: dict[int, int] = {}  # fh -> ino
        self.next_fh = 1
        self._load()

    # ------------------------------------------------------------------ durable state
    def _load(self) -> None:
        """Mount: exactly the durable state, then drop unreachable data files."""
        with contextlib.suppress(FileNotFoundError):
            (self.store / "meta.json.tmp").unlink()
        try:
            meta = json.loads((self.store / "meta.json").read_text())
        except FileNotFoundError:
            meta = {"inodes": {}, "dirs": {}, "next_ino": ROOT + 1}
        attrs = {int(k): v for k, v in meta["inodes"].items()}
        self.durable_dirs = {int(d): {n: int(i) for n, i in t.items()} for d, t in meta["dirs"].items()}
        attrs.setdefault(ROOT, {"mode": stat.S_IFDIR | 0o755, "uid": 0, "gid": 0, "mtime": None})
        reachable = self._durable_reachable()
        for ino in reachable:
            a = attrs[ino]
            node = Inode(ino, a["mode"], a["uid"], a["gid"], a["mtime"])
            if node.is_dir:
                node.entries = dict(self.durable_dirs.get(ino, {}))
            else:
                with contextlib.suppress(FileNotFoundError):
                    node.size = node.visible = node.durable_len = (self.data / str(ino)).stat().st_size
            self.inodes[ino] = node
        for node in self.inodes.values():
            for child in node.entries.values():
                self.inodes[child].nlink += 1
        existing = [int(n) for n in os.listdir(self.data) if n.isdigit()]
        self.next_ino = max([meta["next_ino"], *existing, *reachable]) + 1
        for ino in existing:
            if ino not in reachable:
                os.unlink(self.data / str(ino))

    def _durable_reachable(self) -> set[int]:
        seen, todo = {ROOT}, [ROOT]
        while todo:
            for child in self.durable_dirs.get(todo.pop(), {}).values():
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    def _current_reachable(self) -> set[int]:
        seen, todo = {ROOT}, [ROOT]
        while todo:
            for child in self.inodes[todo.pop()].entries.values():
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    def _write_meta(self) -> None:
        durable = self._durable_reachable()
        meta = {
            "next_ino": self.next_ino,
            "inodes": {str(i): self.inodes[i].attrs() for i in sorted(durable)},
            "dirs": {str(d): t for d, t in sorted(self.durable_dirs.items()) if d in durable},
        }
        tmp = self.store / "meta.json.tmp"
        with open(tmp, "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.store / "meta.json")
        _fsync_dir(self.store)

    def _collect(self) -> None:
        """Forget inodes nothing refers to any more, and their data files."""
        keep = self._durable_reachable() | self._current_reachable()
        for ino in [i for i, n in self.inodes.items() if i not in keep and n.opens == 0]:
            node = self.inodes.pop(ino)
            if node.fd is not None:
                os.close(node.fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.data / str(ino))

    # ------------------------------------------------------------------ lookups
    def lookup(self, path: str) -> Inode:
        node = self.inodes[ROOT]
        for part in [p for p in path.split("/") if p]:
            if not node.is_dir:
                raise _err(errno.ENOTDIR)
            ino = node.entries.get(part)
            if ino is None:
                raise _err(errno.ENOENT)
            node = self.inodes[ino]
        return node

    def _parent(self, path: str) -> tuple[Inode, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self.lookup(head or "/")
        if not parent.is_dir:
            raise _err(errno.ENOTDIR)
        if not name or len(name.encode()) > 255:
            raise _err(errno.EINVAL if not name else errno.ENAMETOOLONG)
        return parent, name

    def node(self, path: str | None, fh: int | None) -> Inode:
        if fh is not None and fh in self.handles:
            return self.inodes[self.handles[fh]]
        if path is None:
            raise _err(errno.EBADF)
        return self.lookup(path)

    # ------------------------------------------------------------------ file content
    def _durable_page(self, node: Inode, page: int) -> bytearray:
        """Page ``page`` as the durable file shows it (bytes at or past ``visible`` are zero)."""
        buf = bytearray(PAGE)
        start = page * PAGE
        n = min(PAGE, node.visible - start)
        if n > 0:
            fd = self._fd(node, create=False)
            if fd is not None:
                got = os.pread(fd, n, start)
                buf[: len(got)] = got
        return buf

    def _fd(self, node: Inode, create: bool) -> int | None:
        if node.fd is None:
            path = self.data / str(node.ino)
            try:
                node.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
            except FileNotFoundError:
                return None
            if create and node.durable_len == 0:
                _fsync_dir(self.data)
        return node.fd

    def read(self, node: Inode, size: int, offset: int) -> bytes:
        end = min(offset + size, node.size)
        out = bytearray()
        pos = offset
        while pos < end:
            page, off = divmod(pos, PAGE)
            buf = node.pages.get(page)
            if buf is None:
                buf = self._durable_page(node, page)
            take = min(PAGE - off, end - pos)
            out += buf[off: off + take]
            pos += take
        return bytes(out)

    def write(self, node: Inode, data: bytes, offset: int) -> int:
        pos, i = offset, 0
        while i < len(data):
            page, off = divmod(pos, PAGE)
            buf = node.pages.get(page)
            if buf is None:
                buf = node.pages[page] = self._durable_page(node, page)
            take = min(PAGE - off, len(data) - i)
            buf[off: off + take] = data[i: i + take]
            pos += take
            i += take
        node.size = max(node.size, offset + len(data))
        node.mtime = time.time_ns()
        return len(data)

    def truncate(self, node: Inode, length: int) -> None:
        if node.is_dir:
            raise _err(errno.EISDIR)
        if length < node.size:
            for page in [p for p in node.pages if p * PAGE >= length]:
                del node.pages[page]
            edge = node.pages.get(length // PAGE)
            if edge is not None:
                off = length % PAGE
                edge[off:] = bytes(PAGE - off)
            node.visible = min(node.visible, length)
        node.size = length
        node.mtime = time.time_ns()

    def fsync(self, node: Inode) -> None:
        """Make the file's content durable (fsync and fdatasync alike)."""
        if node.is_dir:
            return self.fsyncdir(node)
        if not node.pages and node.visible == node.durable_len == node.size:
            return None
        fd = self._fd(node, create=True)
        assert fd is not None
        if node.visible < node.durable_len:
            os.ftruncate(fd, node.visible)
        for page, buf in sorted(node.pages.items()):
            start = page * PAGE
            if start < node.size:
                os.pwrite(fd, bytes(buf[: min(PAGE, node.size - start)]), start)
        os.ftruncate(fd, node.size)
        os.fsync(fd)
        node.pages.clear()
        node.visible = node.durable_len = node.size
        return None

    def fsyncdir(self, node: Inode) -> None:
        """Make this directory's current table durable (with the attributes of what it names)."""
        if not node.is_dir:
            raise _err(errno.ENOTDIR)
        if self.durable_dirs.get(node.ino, {}) == node.entries and node.ino in self.durable_dirs:
            return
        self.durable_dirs[node.ino] = dict(node.entries)
        self._write_meta()
        self._collect()

    # ------------------------------------------------------------------ names
    def create(self, path: str, mode: int) -> Inode:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise _err(errno.EEXIST)
        node = Inode(self.next_ino, mode, os.getuid(), os.getgid())
        self.next_ino += 1
        self.inodes[node.ino] = node
        parent.entries[name] = node.ino
        node.nlink = 1
        parent.mtime = time.time_ns()
        return node

    def unlink(self, path: str) -> None:
        parent, name = self._parent(path)
        ino = parent.entries.get(name)
        if ino is None:
            raise _err(errno.ENOENT)
        if self.inodes[ino].is_dir:
            raise _err(errno.EISDIR)
        del parent.entries[name]
        self.inodes[ino].nlink -= 1
        parent.mtime = time.time_ns()
        self._collect()

    def rmdir(self, path: str) -> None:
        parent, name = self._parent(path)
        ino = parent.entries.get(name)
        if ino is None:
            raise _err(errno.ENOENT)
        node = self.inodes[ino]
        if not node.is_dir:
            raise _err(errno.ENOTDIR)
        if node.entries:
            raise _err(errno.ENOTEMPTY)
        del parent.entries[name]
        parent.mtime = time.time_ns()
        self._collect()

    def rename(self, old: str, new: str) -> None:
        src_dir, src_name = self._parent(old)
        dst_dir, dst_name = self._parent(new)
        ino = src_dir.entries.get(src_name)
        if ino is None:
            raise _err(errno.ENOENT)
        moving = self.inodes[ino]
        if moving.is_dir and (new.rstrip("/") + "/").startswith(old.rstrip("/") + "/"):
            raise _err(errno.EINVAL)  # into itself
        victim = dst_dir.entries.get(dst_name)
        if victim == ino:
            return
        if victim is not None:
            v = self.inodes[victim]
            if v.is_dir and not moving.is_dir:
                raise _err(errno.EISDIR)
            if moving.is_dir and not v.is_dir:
                raise _err(errno.ENOTDIR)
            if v.is_dir and v.entries:
                raise _err(errno.ENOTEMPTY)
            v.nlink -= 1
        del src_dir.entries[src_name]
        dst_dir.entries[dst_name] = ino
        src_dir.mtime = dst_dir.mtime = time.time_ns()
        self._collect()

    def open_handle(self, node: Inode) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node.ino
        node.opens += 1
        return fh

    def release(self, fh: int) -> None:
        ino = self.handles.pop(fh, None)
        if ino is not None and ino in self.inodes:
            self.inodes[ino].opens -= 1
            self._collect()

    def stat(self, node: Inode) -> dict[str, Any]:
        return {
            "st_mode": node.mode, "st_ino": node.ino, "st_uid": node.uid, "st_gid": node.gid,
            "st_nlink": 2 if node.is_dir else node.nlink, "st_size": node.size,
            "st_blocks": (node.size + 511) // 512, "st_blksize": PAGE,
            "st_atime": node.mtime, "st_mtime": node.mtime, "st_ctime": node.ctime,
        }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_operations(model: Model, ready: str | None) -> Any:
    """The mfusepy Operations over ``model`` (path-based API; handles carry the inode)."""
    import mfusepy

    class PowerOps(mfusepy.Operations):
        use_ns = True

        def init(self, path: str) -> None:
            # The kernel's INIT request: the mount is in place and answers from now on.
            if ready:
                Path(ready).write_text(str(os.getpid()))
            print(f"powerfs: {model.store} mounted, pid {os.getpid()}", flush=True)

        def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
            with model.lock:
                return model.stat(model.node(path, fh))

        def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
            # st_ino must be set: with use_ino, an entry with inode 0 is one readdir(3) skips.
            with model.lock:
                d = model.node(path, fh)
                out = [(".", {"st_mode": d.mode, "st_ino": d.ino}, 0),
                       ("..", {"st_mode": stat.S_IFDIR, "st_ino": ROOT}, 0)]
                for name, ino in d.entries.items():
                    out.append((name, {"st_mode": model.inodes[ino].mode, "st_ino": ino}, 0))
                return out

        def opendir(self, path: str) -> int:
            with model.lock:
                node = model.lookup(path)
                if not node.is_dir:
                    raise _err(errno.ENOTDIR)
                return model.open_handle(node)

        def releasedir(self, path: str | None, fh: int) -> int:
            with model.lock:
                model.release(fh)
            return 0

        def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
            with model.lock:
                model.fsyncdir(model.node(path, fh))
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            with model.lock:
                model.create(path, stat.S_IFDIR | (mode & 0o7777))
            return 0

        def mknod(self, path: str, mode: int, dev: int) -> int:
            if not stat.S_ISREG(mode):
                raise _err(errno.EPERM)
            with model.lock:
                model.create(path, mode)
            return 0

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            with model.lock:
                return model.open_handle(model.create(path, stat.S_IFREG | (mode & 0o7777)))

        def open(self, path: str, flags: int) -> int:
            with model.lock:
                node = model.lookup(path)
                if node.is_dir:
                    raise _err(errno.EISDIR)
                if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
                    # libfuse3 asks for atomic_o_trunc: the kernel leaves O_TRUNC to open
                    model.truncate(node, 0)
                return model.open_handle(node)

        def release(self, path: str | None, fh: int) -> int:
            with model.lock:
                model.release(fh)
            return 0

        def flush(self, path: str | None, fh: int) -> int:
            return 0

        def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
            with model.lock:
                return model.read(model.node(path, fh), size, offset)

        def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
            with model.lock:
                return model.write(model.node(path, fh), data, offset)

        def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
            with model.lock:
                model.truncate(model.node(path, fh), length)
            return 0

        def fsync(self, path: str | None, datasync: int, fh: int) -> int:
            with model.lock:
                model.fsync(model.node(path, fh))
            return 0

        def unlink(self, path: str) -> int:
            with model.lock:
                model.unlink(path)
            return 0

        def rmdir(self, path: str) -> int:
            with model.lock:
                model.rmdir(path)
            return 0

        def rename(self, old: str, new: str) -> int:
            with model.lock:
                model.rename(old, new)
            return 0

        def link(self, target: str, source: str) -> int:
            raise _err(errno.EPERM)

        def symlink(self, target: str, source: str) -> int:
            raise _err(errno.EPERM)

        def chmod(self, path: str | None, mode: int) -> int:
            with model.lock:
                node = model.lookup(path or "")
                node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
                node.ctime = time.time_ns()
            return 0

        def chown(self, path: str | None, uid: int, gid: int) -> int:
            with model.lock:
                node = model.lookup(path or "")
                if uid not in (-1, 0xFFFFFFFF):  # -1: leave as is
                    node.uid = uid
                if gid not in (-1, 0xFFFFFFFF):
                    node.gid = gid
            return 0

        def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
            with model.lock:
                node = model.lookup(path or "")
                node.mtime = times[1] if times else time.time_ns()
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            return {"f_bsize": PAGE, "f_frsize": PAGE, "f_blocks": 1 << 24, "f_bfree": 1 << 23,
                    "f_bavail": 1 << 23, "f_files": 1 << 20, "f_ffree": 1 << 19, "f_namemax": 255}

    return PowerOps()


def _mount(model: Model, mountpoint: str, ready: str | None) -> None:
    import mfusepy

    class _FUSE(mfusepy.FUSE):
        # mfusepy drops the file handle of ftruncate (libfuse 3 passes it to truncate):
        # keep it, so that an open but unlinked file can be truncated.
        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            fh = fip.contents.fh if fip else None
            return self.operations.truncate(None if path is None else path.decode(), length, fh)

    _FUSE(make_operations(model, ready), mountpoint, foreground=True, fsname="powerfs",
          subtype="powerfs", hard_remove=True, use_ino=True, max_threads=16)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        print(f"powerfs: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="python -m harness.lab.powerfs",
                 description="a FUSE filesystem whose unsynced data a power cut loses")
    ap.add_argument("--store", required=True, help="backing dir: the durable state only")
    ap.add_argument("--ready", help="file written (with our pid) once the mount answers")
    ap.add_argument("mountpoint")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) and 2
    if not os.path.isdir(args.mountpoint):
        print(f"powerfs: mount point {args.mountpoint} is not a directory", file=sys.stderr)
        return 2
    reason = unavailable_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    try:
        model = Model(args.store)
    except (OSError, ValueError, KeyError) as e:
        print(f"powerfs: cannot use store {args.store}: {e}", file=sys.stderr)
        return 2
    try:
        _mount(model, os.path.abspath(args.mountpoint), args.ready)
    except RuntimeError as e:
        print(f"powerfs: mount on {args.mountpoint} failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
