"""The CLI as people expect it: every option of ``raftnet`` (every subcommand) and of ``python -m
node`` says what it does and its default (or is a flag), ``--version`` prints the package version,
``--help`` ends with examples, ``raftnet clock`` parses rates and durations (bad ones: exit 2, one
line), and ``runs/latest`` names the newest run."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import __main__ as cli
from harness.orchestration import check
from node import __main__ as node_cli
from node.version import version

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
         argparse._CountAction)


def parsers(p: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def undocumented(p: argparse.ArgumentParser, path: str) -> list[str]:
    """The options (and arguments) of ``p`` whose help is empty, or names no default though it is not a flag."""
    bad = []
    for action in p._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        name = "/".join(action.option_strings) or action.dest
        text = (action.help or "").strip()
        if not text:
            bad.append(f"{path}: {name} has no help")
        elif action.option_strings and not isinstance(action, (*FLAGS, argparse._VersionAction)) and (
                "default" not in text):
            bad.append(f"{path}: {name}: its help names no default: {text!r}")
    return bad


def test_every_raftnet_option_says_what_it_does_and_its_default() -> None:
    found = list(parsers(cli.parser(), "raftnet"))
    assert {"raftnet up", "raftnet check", "raftnet clock", "raftnet status"} <= {path for path, _ in found}
    problems = [b for path, p in found for b in undocumented(p, path)]
    assert not problems, "\n".join(problems)


def test_every_node_flag_says_what_it_does_and_its_default() -> None:
    assert not undocumented(node_cli.parser(), "python -m node")
    text = " ".join(node_cli.parser().format_help().split())  # and the units of the timing flags
    assert "in milliseconds (default: 50)" in text and "in milliseconds (default: 300:600)" in text


def test_defaults_in_the_help_are_the_real_defaults() -> None:
    up = cli.parser().parse_args(["up"])
    text = " ".join(_sub("up").format_help().split())
    assert f"(default: {up.nodes})" in text
    assert f"(default: {cli._CHECK_DEFAULTS['nodes']})" in " ".join(_sub("check").format_help().split())
    node_defaults = node_cli.parser().parse_args(["--id", "n1", "--listen", "h:1", "--data-dir", "d"])
    node_help = " ".join(node_cli.parser().format_help().split())
    for v in (node_defaults.heartbeat_ms, node_defaults.election_timeout_ms, node_defaults.snapshot_every,
              node_defaults.log_level):
        assert f"(default: {v}" in node_help


def _sub(name: str) -> argparse.ArgumentParser:
    return dict(parsers(cli.parser(), "raftnet"))[f"raftnet {name}"]


@pytest.mark.parametrize("argv", [
    [sys.executable, "-m", "harness", "--version"],
    [sys.executable, "-m", "node", "--version"],
])
def test_version(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(version()) and r.stdout.count("\n") == 1
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", version())


def test_help_ends_with_examples() -> None:
    for p in (cli.parser(), _sub("check"), _sub("clock"), node_cli.parser()):
        epilog = p.epilog or ""
        assert epilog.startswith("examples:\n") and epilog.count("\n  ") >= 2, p.prog
    assert "raftnet check" in _sub("check").format_help().split("examples:")[1]


# -- raftnet clock ------------------------------------------------------------------------------


def test_clock_arguments() -> None:
    p = cli.parser()
    a = p.parse_args(["clock", "n2", "--rate", "2.0"])
    assert (a.cmd, a.node, a.rate, a.offset, a.action) == ("clock", "n2", 2.0, None, None)
    assert p.parse_args(["clock", "n2", "--offset", "5s"]).offset == 5.0
    assert p.parse_args(cli._glue_negative(["clock", "n2", "--offset", "-200ms"])).offset == pytest.approx(-0.2)
    assert p.parse_args(["clock", "n2", "--offset=-1.5s"]).offset == -1.5
    assert p.parse_args(["clock", "n2", "reset"]).action == "reset"
    assert p.parse_args(["clock", "n2"]).action is None
    assert cli._glue_negative(["partition", "-x"]) == ["partition", "-x"]


@pytest.mark.parametrize(("argv", "words"), [
    (["clock", "n2", "--rate", "0"], "rate must be between"),
    (["clock", "n2", "--rate", "-2"], "--rate"),
    (["clock", "n2", "--rate", "fast"], "expected a rate"),
    (["clock", "n2", "--offset", "5"], "with a unit"),
    (["clock", "n2", "--offset", "-200"], "with a unit"),
    (["clock", "n2", "--rate", "2", "--offset", "1s"], "not allowed with"),
    (["clock", "n2", "later"], "invalid choice"),
    (["clock"], "required"),
])
def test_bad_clock_arguments_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                  words: str) -> None:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("raftnet: ") and words in err, err


def test_reset_with_a_rate_exits_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    monkeypatch.setenv("RAFTNET_HOME", str(tmp_path))
    args = cli.parser().parse_args(["clock", "n2", "reset", "--rate", "2"])
    with pytest.raises(cli.CliError) as e:
        cli._clock(object(), args)  # type: ignore[arg-type]  # refused before the cluster is touched
    assert e.value.code == 2 and "reset takes no" in str(e.value)


# -- runs/latest ---------------------------------------------------------------------------------


def test_runs_latest_points_at_the_newest_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = check.default_out(1, runs)
    assert first.parent == runs and first.name.startswith("check-") and first.name.endswith("-seed1")
    link = check.link_latest(first)
    assert link == runs / "latest" and link.is_symlink() and link.resolve() == first.resolve()
    second = runs / "check-later-seed2"
    check.link_latest(second)
    assert os.readlink(link) == "check-later-seed2"  # relative: the runs folder can move
    assert (runs / "latest").resolve() == second.resolve() and first.is_dir()
    assert sorted(p.name for p in runs.iterdir()) == sorted([first.name, "check-later-seed2", "latest"])


def test_check_refuses_a_clock_nemesis_for_etcd_in_one_line(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no ./raftnet.toml
    code = cli.main(["check", "--loopback", "--system", "etcd", "--nemesis", "clock"])  # refused before it runs
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nemesis clock: libfaketime cannot reach etcd" in err, err
