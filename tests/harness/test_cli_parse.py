"""Pure tests of the ``raftnet`` CLI (harness.__main__): argument parsing
of every command, exit code 2 with one line on a usage error, and the
one-line reasons for not root / no such cluster. Nothing here touches the
network: the commands stop before doing anything (state under a private
RAFTNET_HOME). "Not root" is simulated (os.geteuid) with rootless mode
switched off (RAFTNET_USERNS_DISABLE=1), so no user namespace is made."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness import __main__ as cli


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("RAFTNET_HOME", str(home))
    monkeypatch.delenv("RAFTNET_DEBUG", raising=False)
    monkeypatch.delenv("RAFTNET_USERNS", raising=False)  # never "inside" a private world here
    monkeypatch.delenv("RAFTNET_HOLDER_PID", raising=False)
    return home


def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ordinary user on a machine where user namespaces are blocked."""
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("RAFTNET_USERNS_DISABLE", "1")


def parse(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(list(argv))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"want one line on stderr, got {err!r}"
    assert lines[0].startswith("raftnet: "), lines[0]
    return lines[0]


# -- parsing --------------------------------------------------------------------------------


def test_every_command_parses() -> None:
    assert parse("up").cmd == "up" and parse("up").nodes == 3 and parse("up").name == "default"
    a = parse("--name", "lab", "up", "--nodes", "5", "--secret", "s3")
    assert (a.name, a.cmd, a.nodes, a.secret) == ("lab", "up", 5, "s3")
    assert parse("status").json is False and parse("status", "--json").json is True
    assert parse("partition", "n1,n2", "n3,n4,n5").groups == [["n1", "n2"], ["n3", "n4", "n5"]]
    assert parse("partition", " n1, ,n2,", "n3").groups == [["n1", "n2"], ["n3"]]
    assert parse("partition", "n1", "n2", "n3").groups == [["n1"], ["n2"], ["n3"]]
    for cmd in ("isolate", "bridge", "link-down", "link-up", "kill", "restart", "pause", "resume", "remove"):
        a = parse(cmd, "n3")
        assert (a.cmd, a.node) == (cmd, "n3")
    a = parse("cut", "n1", "n2")
    assert (a.cmd, a.src, a.dst) == ("cut", "n1", "n2")
    a = parse("loss", "n2", "30")
    assert (a.cmd, a.node, a.percent) == ("loss", "n2", 30)
    assert parse("heal").cmd == "heal"
    assert parse("add").id is None and parse("add", "--id", "n7").id == "n7"
    assert parse("down").cmd == "down" and parse("clean").cmd == "clean"
    assert parse("up").power is False and parse("up", "--power").power is True
    assert (parse("power-cut", "n2").cmd, parse("power-cut", "n2").node) == ("power-cut", "n2")
    assert parse("power-cut", "all").node == "all"


def test_check_defaults_and_options() -> None:
    a = parse("check")  # unset: filled from the cluster file's [check], else 5 nodes, 60 s, 10 clients, 5 keys, all
    assert (a.nodes, a.time, a.clients, a.keys, a.nemesis, a.seed, a.out) == (None,) * 7
    assert (a.system, a.config) == (None, None)
    a = parse("check", "--system", "etcd")
    assert a.system == "etcd"
    a = parse("up", "--config", "x.toml")
    assert a.config == Path("x.toml")
    a = parse("check", "--nodes", "3", "--time", "15", "--nemesis", "kill,partition", "--seed", "7", "--out", "/x/y",
              "--clients", "4", "--keys", "2")
    assert (a.nodes, a.time, a.nemesis, a.seed, a.out, a.clients, a.keys) == (
        3, 15.0, "kill,partition", 7, Path("/x/y"), 4, 2)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("up", "status", "partition", "isolate", "bridge", "cut", "loss", "heal", "link-down", "link-up",
                "kill", "restart", "pause", "resume", "add", "remove", "down", "clean", "check", "power-cut"):
        assert f" {cmd} " in out or f"{{{cmd}," in out or f",{cmd}," in out or f" {cmd}\n" in out, cmd


def test_name_after_the_command_as_the_contract_writes_it() -> None:
    a = parse("up", "--nodes", "3", "--name", "lab")
    assert (a.cmd, a.nodes, a.name) == ("up", 3, "lab")


# -- usage errors: exit 2, one line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["partition"], "required: groups"),
        (["isolate"], "required: node"),
        (["kill", "n1", "n2"], "unrecognized arguments: n2"),
        (["cut", "n1"], "required: dst"),
        (["loss", "n2"], "required: percent"),
        (["loss", "n2", "thirty"], "invalid int value: 'thirty'"),
        (["up", "--nodes", "three"], "invalid int value: 'three'"),
        (["up", "--bogus"], "unrecognized arguments: --bogus"),
        (["status", "--yaml"], "unrecognized arguments: --yaml"),
        (["check", "--time", "soon"], "invalid float value: 'soon'"),
        (["check", "--seed", "x"], "invalid int value: 'x'"),
        (["--name"], "expected one argument"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    line = one_line(err)
    assert says in line and "raftnet --help" in line
    assert out == ""


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", ""])
def test_bad_cluster_name(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, _, err = run(capsys, "--name", name, "status")
    assert code == 2
    assert "bad cluster name" in one_line(err)


# -- root, and clusters that do not exist ---------------------------------------------------

ROOT_COMMANDS = [
    ["up"], ["up", "--nodes", "5"], ["partition", "n1", "n2,n3"], ["isolate", "n1"], ["bridge", "n2"],
    ["cut", "n1", "n2"], ["loss", "n1", "20"], ["heal"], ["link-down", "n1"], ["link-up", "n1"], ["kill", "n1"],
    ["restart", "n1"], ["pause", "n1"], ["resume", "n1"], ["add"], ["remove", "n2"], ["down"],
    ["check", "--time", "5"], ["up", "--power"], ["power-cut", "n1"], ["power-cut", "all"],
    ["check", "--nemesis", "power"],
]


@pytest.mark.parametrize("argv", ROOT_COMMANDS, ids=lambda a: " ".join(a))
def test_not_root_gives_one_line_and_does_nothing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                  private_home: Path, argv: list[str]) -> None:
    not_root(monkeypatch)
    code, out, err = run(capsys, "--name", "lab", *argv)
    assert code != 0
    line = one_line(err)
    assert "needs root" in line and "RAFTNET_USERNS_DISABLE" in line  # says what blocks the rootless way
    assert out == ""
    assert not private_home.exists()  # nothing was created


def test_clean_without_root_removes_only_stale_cli_state(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch, private_home: Path) -> None:
    not_root(monkeypatch)
    (private_home / "stale").mkdir(parents=True)
    (private_home / "stale" / "state.json").write_text("{}")
    (private_home / "stale" / "holder.pid").write_text("999999999")  # no such process
    (private_home / "other").mkdir()  # not a cluster folder: left alone
    code, out, err = run(capsys, "clean")
    assert code == 0 and err == ""
    assert "1 stale cluster state(s)" in out
    assert not (private_home / "stale").exists() and (private_home / "other").exists()


def test_status_needs_no_root_but_a_cluster(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    not_root(monkeypatch)
    for argv in (["status"], ["status", "--json"]):
        code, out, err = run(capsys, "--name", "nosuch", *argv)
        assert code == 1 and out == ""
        assert "no such cluster: nosuch" in one_line(err)


@pytest.mark.parametrize("argv", [a for a in ROOT_COMMANDS if a[0] not in ("up", "check")],
                         ids=lambda a: " ".join(a))
def test_no_such_cluster(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    code, out, err = run(capsys, "--name", "ghost", *argv)
    assert code == 1 and out == ""
    assert "no such cluster: ghost" in one_line(err)


def test_unreadable_state_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                      private_home: Path) -> None:
    (private_home / "broken").mkdir(parents=True)
    (private_home / "broken" / "state.json").write_text("{not json")
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    for argv in (["status"], ["kill", "n1"]):
        code, _, err = run(capsys, "--name", "broken", *argv)
        assert code == 1
        assert "no cluster state" in one_line(err)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["check", "--nemesis", "bogus"], "unknown nemesis bogus"),
        (["check", "--nemesis", ""], "empty --nemesis"),
        (["check", "--nodes", "2"], "--nodes must be between 3 and 15"),
        (["check", "--nodes", "16"], "--nodes must be between 3 and 15"),
        (["check", "--time", "0"], "must be positive"),
        (["check", "--clients", "0"], "must be positive"),
        (["check", "--keys", "-1"], "must be positive"),
        (["up", "--nodes", "0"], "--nodes must be between 1 and 50"),
        (["up", "--nodes", "51"], "--nodes must be between 1 and 50"),
    ],
)
def test_bad_values_exit_2_before_doing_anything(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                 private_home: Path, argv: list[str], says: str) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    code, out, err = run(capsys, "--name", "lab", *argv)
    assert code == 2 and out == ""
    assert says in one_line(err)
    assert not (private_home / "lab").exists()


NO_FUSE = "powerfs needs /dev/fuse (mode crw-------, owner uid 0): Permission denied; run as root"


@pytest.mark.parametrize("argv", [["up", "--power"], ["check", "--nemesis", "kill,power", "--time", "5"]],
                         ids=lambda a: " ".join(a))
def test_power_without_fuse_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                        private_home: Path, argv: list[str]) -> None:
    from harness.lab import powerfs

    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(powerfs, "unavailable_reason", lambda: NO_FUSE)
    code, out, err = run(capsys, "--name", "lab", *argv)
    assert code == 1 and out == ""
    assert "/dev/fuse" in one_line(err)
    assert not (private_home / "lab").exists()


def test_unexpected_errors_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(a: argparse.Namespace) -> int:
        raise RuntimeError("disk on fire\nsecond line\nthird")

    monkeypatch.setattr(cli, "cmd_status", boom)
    code, _, err = run(capsys, "status")
    assert code == 1
    assert one_line(err) == "raftnet: RuntimeError: disk on fire"
    monkeypatch.setenv("RAFTNET_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["status"])


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(a: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_status", interrupted)
    code, _, err = run(capsys, "status")
    assert code == 130
    assert one_line(err) == "raftnet: interrupted"


def test_home_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cli.home() == tmp_path / "home"
    monkeypatch.delenv("RAFTNET_HOME")
    assert cli.home() == Path(f"/tmp/raftnet-{cli.os.getuid()}")
