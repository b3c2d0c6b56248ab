"""``python -m node``: flags -> Config -> a running node.

Exit code 2 with a one-line reason on a bad flag, an unusable data dir, a
data dir of another node, an address in use, or a --join the cluster refuses
for good (the id is a member of another incarnation: a wiped data dir). SIGTERM/SIGINT stop it
gracefully; SIGKILL at any instant is safe (see node/storage.py).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


def _without_ca_bundle() -> dict[str, str | None]:
    """The node opens no TLS connection, but importing aiohttp's client builds two TLS contexts
    that each parse the system's CA bundle: 40 ms of a restart's 200, on its catch-up path
    (issue 11). Point them at nothing while aiohttp is imported; ``_restore`` puts it back."""
    saved = {k: os.environ.get(k) for k in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    os.environ["SSL_CERT_FILE"] = os.devnull
    os.environ["SSL_CERT_DIR"] = os.devnull
    return saved


def _restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_saved_env = _without_ca_bundle()
from aiohttp import web  # noqa: E402

from .config import Config, ConfigError, parse_election, parse_host_port, parse_peers, valid_id  # noqa: E402
from .raft import Member, Membership, NodeId  # noqa: E402
from .runtime import JoinRefusedError, Runtime  # noqa: E402
from .server import make_app  # noqa: E402
from .statemachine import KVStateMachine  # noqa: E402
from .storage import LoadedState, SqliteStorage, StorageError, ThreadedStorage, fsync_dir  # noqa: E402
from .version import version  # noqa: E402

_restore(_saved_env)

PROG = "raftnet-node"


class StartupError(Exception):
    """Exit 2 with this one-line reason."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise StartupError(message)


EPILOG = """\
examples:
  python -m node --id n1 --listen 127.0.0.1:7001 --data-dir data/n1 \\
      --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
  python -m node --id n4 --listen 127.0.0.1:7004 --data-dir data/n4 --join 127.0.0.1:7001

exit code 2 and one line on stderr: a bad flag, an unusable data dir, a data dir of another
node, an address in use, or a --join the cluster refuses. SIGTERM stops it gracefully.
"""


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m node", description="One raftnet Raft member: the client API and the Raft RPCs on "
                "one HTTP address,\nits log, snapshots and state in one SQLite database in its data dir.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s (raftnet) {version()}",
                   help="print the version and exit")
    p.add_argument("--id", required=True, help="this node's id, e.g. n1: letters, digits, '-', '_', '.' "
                   "(required; no default)")
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="address of the client API and the Raft RPCs (required; no default)")
    p.add_argument("--data-dir", required=True, type=Path, metavar="DIR",
                   help="the node's own folder (its SQLite database), created if missing (required; no default)")
    p.add_argument("--peers", metavar="ID=HOST:PORT,...",
                   help="every initial member, this node included, the same list on each (default: none, a "
                   "cluster of one unless --join); ignored once the data dir holds state")
    p.add_argument("--join", metavar="HOST:PORT",
                   help="start empty and ask the member at HOST:PORT to add this node (default: none)")
    p.add_argument("--heartbeat-ms", type=int, default=50, metavar="MS",
                   help="leader heartbeat interval, in milliseconds (default: %(default)s)")
    p.add_argument("--election-timeout-ms", default="300:600", metavar="MIN:MAX",
                   help="randomized election timeout range, in milliseconds (default: %(default)s)")
    p.add_argument("--snapshot-every", type=int, default=10_000, metavar="N",
                   help="snapshot after this many applied entries, 0 never (default: %(default)s entries)")
    p.add_argument("--snapshot-catchup-entries", type=int, default=5_000, metavar="N",
                   help="log entries kept below a snapshot for lagging followers (default: %(default)s entries)")
    p.add_argument("--secret-file", type=Path, metavar="FILE",
                   help="file holding the cluster secret that clients and peers must present as a bearer "
                   "token (default: none, no secret)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log verbosity on stderr (default: %(default)s)")
    p.add_argument("--request-timeout-ms", type=int, default=5000, help=argparse.SUPPRESS)
    return p


def parse_args(argv: list[str]) -> Config:
    p = parser()
    a = p.parse_args(argv)
    try:
        if not valid_id(a.id):
            raise ConfigError(f"--id: {a.id!r} is not a valid node id (letters, digits, '-', '_', '.')")
        host, port = parse_host_port(a.listen, "--listen")
        peers = parse_peers(a.peers) if a.peers else None
        if peers is not None and a.id not in peers:
            raise ConfigError(f"--peers must list this node ({a.id}) too")
        if peers is not None and a.join:
            raise ConfigError("--peers and --join exclude each other")
        if a.join:
            parse_host_port(a.join, "--join")
        election = parse_election(a.election_timeout_ms)
        if a.heartbeat_ms <= 0 or a.heartbeat_ms >= election[0]:
            raise ConfigError("--heartbeat-ms must be positive and below the minimum election timeout")
        if a.snapshot_every < 0:
            raise ConfigError("--snapshot-every must be >= 0 (0 disables snapshots)")
        if a.snapshot_catchup_entries < 0:
            raise ConfigError("--snapshot-catchup-entries must be >= 0")
        if a.request_timeout_ms <= 0:
            raise ConfigError("--request-timeout-ms must be positive")
        secret = None
        if a.secret_file:
            try:
                secret = a.secret_file.read_text().strip()
            except OSError as e:
                raise ConfigError(f"--secret-file: cannot read {a.secret_file}: {e.strerror}") from None
            if not secret:
                raise ConfigError(f"--secret-file: {a.secret_file} is empty")
    except ConfigError as e:
        raise StartupError(str(e)) from None
    return Config(
        id=a.id, host=host, port=port, data_dir=a.data_dir, peers=peers, join=a.join,
        heartbeat_ms=a.heartbeat_ms, election_ms=election, snapshot_every=a.snapshot_every,
        snapshot_catchup_entries=a.snapshot_catchup_entries,
        secret=secret, log_level=a.log_level, request_timeout_s=a.request_timeout_ms / 1000,
    )


def open_data_dir(cfg: Config) -> tuple[SqliteStorage, KVStateMachine, LoadedState, int]:
    d = cfg.data_dir
    try:
        created = not d.exists()
        d.mkdir(parents=True, exist_ok=True)
        if created:
            fsync_dir(d.parent)  # the new data dir's own entry survives a power cut
        lock_fd = os.open(d / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StartupError(f"data dir {d} is not usable: {e.strerror}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise StartupError(f"data dir {d} is in use by another process") from None
    if not os.access(d, os.R_OK | os.W_OK | os.X_OK):
        raise StartupError(f"data dir {d} is not readable and writable")
    try:
        storage = SqliteStorage(d / "raft.db")
        fsm = KVStateMachine()
        state = storage.load(fsm)
    except (StorageError, OSError, Exception) as e:  # sqlite3.DatabaseError and friends
        raise StartupError(f"data dir {d} cannot be opened: {e}") from None
    if state.empty:
        if cfg.join:
            storage.bootstrap(cfg.id, None, Membership())
        else:
            peers = cfg.peers or {cfg.id: cfg.address}
            lived = lived_before(cfg, peers)
            if lived is not None:
                storage.close()
                raise StartupError(lived)
            storage.bootstrap(cfg.id, cfg.cluster_id(),
                              Membership.of([Member(NodeId(i), a) for i, a in peers.items()]))
        state = storage.load(fsm)
    elif state.node_id != cfg.id:
        raise StartupError(f"data dir {d} belongs to node {state.node_id}, not {cfg.id}")
    return storage, fsm, state, lock_fd


PROBE_TIMEOUT_S = 1.0


def lived_before(cfg: Config, peers: dict[str, str]) -> str | None:
    """Before bootstrapping an empty data dir from --peers, ask the peers whether this id has
    lived before: a reachable member of our cluster whose configuration already records an
    incarnation for us (node/incarnation.py) knows a data dir of ours that is gone. Then we
    refuse to start (the reason, one line): bootstrapping again would vote with amnesia. A
    peer that does not answer within PROBE_TIMEOUT_S says nothing (a brand-new cluster whose
    members start in any order; the incarnation checks guard the rest)."""
    import concurrent.futures
    import json
    import urllib.request

    headers = {"Authorization": f"Bearer {cfg.secret}"} if cfg.secret else {}

    def ask(node_id: str, address: str) -> str | None:
        req = urllib.request.Request(f"http://{address}/v1/status", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S) as r:
                st = json.loads(r.read(1 << 20))
        except (OSError, ValueError):
            return None
        if not isinstance(st, dict) or st.get("cluster_id") != cfg.cluster_id():
            return None
        incs = st.get("incarnations")
        if isinstance(incs, dict) and incs.get(cfg.id):
            return (f"data dir {cfg.data_dir} is empty but {cfg.id} already lived in this cluster "
                    f"({node_id} at {address} knows it, term {st.get('term')}): its data is lost; remove {cfg.id} "
                    f"(DELETE /v1/members/{cfg.id}) and start it with --join")
        return None

    others = {i: a for i, a in peers.items() if i != cfg.id}
    if not others:
        return None
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(others)) as pool:
        for found in pool.map(lambda kv: ask(*kv), sorted(others.items())):
            if found:
                return found
    return None


def bind(cfg: Config) -> socket.socket:
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((cfg.host, cfg.port))
    except OSError as e:
        s.close()
        reason = "address in use" if e.errno == errno.EADDRINUSE else e.strerror
        raise StartupError(f"cannot listen on {cfg.address}: {reason}") from None
    s.listen(1024)
    s.setblocking(False)
    return s


async def serve(cfg: Config, storage: SqliteStorage, fsm: KVStateMachine, state: LoadedState,
                sock: socket.socket) -> int:
    runtime = Runtime(cfg, ThreadedStorage(storage, fsm), fsm, state)
    app = make_app(runtime, cfg)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await runtime.start()
    site = web.SockSite(runner, sock)
    await site.start()
    logging.getLogger("raftnet").info("node %s serving on %s (cluster %s)", cfg.id, cfg.address, runtime.cluster_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    drive = runtime.done
    assert drive is not None
    waiter = asyncio.create_task(stop.wait())
    watched = {waiter, drive}
    join = runtime.joining
    refused: JoinRefusedError | None = None
    while True:
        done, _ = await asyncio.wait(watched | ({join} if join is not None else set()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if join is not None and join in done:
            failure = None if join.cancelled() else join.exception()
            if isinstance(failure, JoinRefusedError):
                refused = failure
                break
            if not join.cancelled() and join.exception() is not None:
                logging.getLogger("raftnet").error("join failed: %r", join.exception())
            join = None  # joined (or gave up): keep serving
            continue
        break
    waiter.cancel()
    code = 0
    if drive.done() and not drive.cancelled() and drive.exception() is not None:
        code = 1
    await runtime.stop()
    await runner.cleanup()
    if refused is not None:
        logging.getLogger("raftnet").error("%s", refused)
        print(f"{PROG}: error: {refused}", file=sys.stderr)
        return 2
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv)
        logging.basicConfig(
            level=cfg.log_level.upper(), stream=sys.stderr,
            format=f"%(asctime)s {cfg.id} %(levelname)s %(name)s: %(message)s",
        )
        sock = bind(cfg)
        storage, fsm, state, _lock = open_data_dir(cfg)
    except StartupError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    # Everything alive now (modules, aiohttp, the state loaded from disk) lives as long as the
    # process: out of the collector's sight, a full collection walks only what came since. Its
    # pauses were the tail of the latency (issue 11, 64 clients: write p99 22 -> 12 ms,
    # linearizable read p99 16 -> 6.5 ms). No gc.collect() first: it would cost the restart ~10 ms.
    gc.freeze()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve(cfg, storage, fsm, state, sock))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a dependency on Linux; a quarter less CPU per
    request than asyncio's own), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    sys.exit(main())
