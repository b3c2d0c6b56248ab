"""The process: flags and data dirs that cannot work exit 2 with one line on
stderr; SIGTERM stops a node with exit code 0 and it restarts with its data
(of a cluster member: test_failover.py)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.node.conftest import kv
from tests.node.localcluster import ROOT, LocalCluster, MakeCluster, free_port


def run_node(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``python -m node`` to completion (killed by subprocess.run if it outlives ``timeout``)."""
    return subprocess.run([sys.executable, "-m", "node", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def assert_exit_2_with_one_line(p: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got:\n{p.stderr}"
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def base(tmp_path: Path, node_id: str = "n1", port: int | None = None) -> list[str]:
    return ["--id", node_id, "--listen", f"127.0.0.1:{port or free_port()}", "--data-dir", str(tmp_path / "data")]


@pytest.mark.parametrize("args", [
    pytest.param(["--bogus"], id="unknown-flag"),
    pytest.param(["--listen", "127.0.0.1"], id="listen-without-port"),
    pytest.param(["--listen", "127.0.0.1:70000"], id="listen-port-out-of-range"),
    pytest.param(["--listen", "192.0.2.1:7000"], id="listen-not-on-this-host"),
    pytest.param(["--peers", "n2=127.0.0.1:7001,n3=127.0.0.1:7002"], id="peers-without-self"),
    pytest.param(["--peers", "n1"], id="peers-malformed"),
    pytest.param(["--join", "127.0.0.1:7001", "--peers", "n1=127.0.0.1:7000"], id="peers-and-join"),
    pytest.param(["--election-timeout-ms", "600:300"], id="election-min-over-max"),
    pytest.param(["--election-timeout-ms", "soon"], id="election-not-a-number"),
    pytest.param(["--heartbeat-ms", "400"], id="heartbeat-over-election"),
    pytest.param(["--snapshot-every", "-1"], id="snapshot-negative"),
    pytest.param(["--snapshot-catchup-entries", "-1"], id="snapshot-catchup-negative"),
    pytest.param(["--secret-file", "/nonexistent/secret"], id="secret-file-missing"),
])
def test_a_bad_flag_exits_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    argv = base(tmp_path)
    for i in range(0, len(args), 2):  # replace a flag of the base, or add it
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i:i + 2]
    assert_exit_2_with_one_line(run_node(argv))


@pytest.mark.parametrize("missing", ["--id", "--data-dir"])
def test_a_missing_required_flag_exits_2_with_one_line(tmp_path: Path, missing: str) -> None:
    argv = base(tmp_path)
    i = argv.index(missing)
    del argv[i:i + 2]
    assert_exit_2_with_one_line(run_node(argv), missing)


@pytest.mark.parametrize("bad_id", ["n/1", "x" * 65])
def test_a_bad_node_id_exits_2(tmp_path: Path, bad_id: str) -> None:
    argv = base(tmp_path)
    argv[1] = bad_id
    assert_exit_2_with_one_line(run_node(argv))


def test_an_empty_secret_file_exits_2(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("  \n")
    assert_exit_2_with_one_line(run_node(base(tmp_path) + ["--secret-file", str(secret)]), "secret")


def test_a_data_dir_that_is_a_regular_file_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_text("not a directory")
    assert_exit_2_with_one_line(run_node(base(tmp_path)), str(f))
    assert f.read_text() == "not a directory"


@pytest.mark.parametrize("damage", ["garbage", "schema"])
def test_a_corrupt_data_dir_exits_2(tmp_path: Path, damage: str) -> None:
    d = tmp_path / "data"
    d.mkdir()
    db = d / "raft.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a SQLite database" * 100)
    else:
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema', '999'), ('node_id', 'n1')")
        conn.commit()
        conn.close()
    assert_exit_2_with_one_line(run_node(base(tmp_path)))


def test_data_dir_ownership_locking_address_in_use_and_sigterm(local_cluster: MakeCluster, tmp_path: Path) -> None:
    c: LocalCluster = local_cluster(1)
    n1 = c.nodes["n1"]
    assert c.put("k", "v", timeout=20).status == 200
    # the data dir is locked while n1 runs
    p = run_node(["--id", "n1", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(n1.data_dir)])
    assert_exit_2_with_one_line(p, str(n1.data_dir))
    # its address is in use
    p = run_node(["--id", "n9", "--listen", n1.address, "--data-dir", str(tmp_path / "other")])
    assert_exit_2_with_one_line(p, n1.address)
    # n1 did not notice
    assert n1.request("GET", "/v1/health").status == 200
    assert c.call("GET", kv("k")).body["value"] == "v"
    # SIGTERM: exit code 0, promptly
    t0 = time.monotonic()
    assert c.terminate("n1", timeout=10) == 0
    assert time.monotonic() - t0 < 10
    # the data dir belongs to n1: n2 may not use it, and does not damage it
    p = run_node(["--id", "n2", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(n1.data_dir)])
    assert_exit_2_with_one_line(p, "n1")
    # n1 restarts with its data; membership flags are ignored on a restart: still a cluster of one
    i = n1.args.index("--peers")
    n1.args[i + 1] += f",n2=127.0.0.1:{free_port()}"
    c.start("n1")
    assert n1.stale("k").body["value"] == "v"
    assert c.call("GET", kv("k"), timeout=20).body["value"] == "v"
    assert c.put("k2", "v2", timeout=20).status == 200
    assert [m["id"] for m in n1.request("GET", "/v1/members").body["members"]] == ["n1"]


def test_address_in_use_by_another_program_exits_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run_node(base(tmp_path, port=port))
    assert_exit_2_with_one_line(p, "in use")
