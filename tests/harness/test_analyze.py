"""``raftnet analyze FILE``: a stored history checked again offline, with its report; exit 0 when
linearizable, 1 when not (or undecided), 2 with one line when FILE is not a history. It agrees with
the labels of the whole porcupine/etcd corpus, and a run folder's report comes back the same."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness.__main__ import main
from harness.model.history import History, OpType
from harness.orchestration.analyze import analyze
from harness.orchestration.report import write_run
from tests.checker.test_corpus import CORPUS, LABELS, needs_corpus
from tests.harness.test_report import chart, run_report

HISTORIES = Path(__file__).resolve().parents[1] / "checker" / "histories"
JEPSEN_LOG = (
    "INFO  jepsen.util - 0\t:invoke\t:write\t3\n"
    "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
    "INFO  jepsen.util - 0\t:ok\t:write\t3\n"
    "INFO  jepsen.util - 1\t:ok\t:read\t3\n"
)
EDN_STALE = (
    "{:type :invoke, :f :write, :value 1, :process 0, :time 0}\n"
    "{:type :ok, :f :write, :value 1, :process 0, :time 1000000}\n"
    "{:type :invoke, :f :write, :value 2, :process 0, :time 2000000}\n"
    "{:type :ok, :f :write, :value 2, :process 0, :time 3000000}\n"
    "{:type :invoke, :f :read, :value nil, :process 1, :time 4000000}\n"
    "{:type :ok, :f :read, :value 1, :process 1, :time 5000000}\n"
)


def two_outstanding() -> str:
    return ('{"process":0,"type":"invoke","f":"read","key":"k","value":null,"time":0}\n'
            '{"process":0,"type":"invoke","f":"read","key":"k","value":null,"time":1}\n')


@pytest.mark.parametrize(
    ("content", "code", "verdict"),
    [
        pytest.param((HISTORIES / "info_write_appears.ok.jsonl").read_text(), 0, "VERDICT: linearizable,",
                     id="jsonl-linearizable"),
        pytest.param((HISTORIES / "stale_read.illegal.jsonl").read_text(), 1,
                     "VERDICT: FAILED: NOT linearizable on key 'x' (a stale read? ", id="jsonl-stale-read"),
        pytest.param(JEPSEN_LOG, 0, "VERDICT: linearizable, 2 ops on 1 key", id="jepsen-log"),
        pytest.param(EDN_STALE, 1, "VERDICT: FAILED: NOT linearizable on key 'x'", id="edn-stale-read"),
    ],
)
def test_exit_code_and_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, code: int,
                               verdict: str) -> None:
    path = tmp_path / "h"
    path.write_text(content)
    out = tmp_path / "r" / "report.html"
    assert main(["analyze", str(path), "--out", str(out)]) == code
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith(verdict) and lines[-2] == f"report: {out}"
    text = out.read_text()
    assert verdict.split(" (")[0] in text.replace("&#x27;", "'")
    assert ("<section class='violation'>" in text) is (code == 1)
    if code == 1:
        assert "> " in "\n".join(lines)  # the window, culprit marked, as check prints it


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        pytest.param(None, [], "cannot read {path}: No such file or directory", id="missing"),
        pytest.param("", [], "{path}: empty, not a history", id="empty"),
        pytest.param("hello\n", [], "{path}: not a history", id="prose"),
        pytest.param(b"\xff\xfe\x00\x01", [], "{path}: not a history (not text)", id="binary"),
        pytest.param('{"process": 0}\n', [], "{path}:1: event lacks field", id="jsonl-missing-field"),
        pytest.param(two_outstanding(), [], "process 0 invokes at t=1.0 while an operation is outstanding",
                     id="two-outstanding"),
        pytest.param("INFO  jepsen.util - 0\t:invoke\t:write\t3\nnonsense\n", [], "{path}:2: not a Jepsen op line",
                     id="jepsen-garbage"),
        pytest.param(JEPSEN_LOG, ["--timeout", "0"], "--timeout must be positive", id="bad-timeout"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         content: str | bytes | None, args: list[str], message: str) -> None:
    path = tmp_path / "h.log"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["analyze", str(path), "--out", str(tmp_path / "r.html"), *args]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    err = cap.err.splitlines()
    assert len(err) == 1 and err[0].startswith("raftnet: " + message.format(path=path)), err
    assert not (tmp_path / "r.html").exists()


def test_a_budget_too_small_to_decide_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.log"
    path.write_text(JEPSEN_LOG)
    assert main(["analyze", str(path), "--out", str(tmp_path / "r.html"), "--timeout", "1e-12"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("VERDICT: FAILED: linearizability unknown")


def test_default_report_goes_to_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in" / "etcd_007.log"
    src.parent.mkdir()
    src.write_text(JEPSEN_LOG)
    monkeypatch.chdir(tmp_path)
    assert main(["analyze", str(src)]) == 0
    assert (tmp_path / "etcd_007.report.html").is_file()
    assert capsys.readouterr().out.splitlines()[-2] == "report: etcd_007.report.html"
    assert sorted(p.name for p in src.parent.iterdir()) == ["etcd_007.log"]  # nothing written next to FILE


def test_a_run_folder_comes_back_as_the_same_report(tmp_path: Path) -> None:
    """write_run's folder, analyzed again: the same faults, node lanes and client lanes, on the same clock."""
    run = tmp_path / "run"
    first = write_run(run, run_report()).read_text()
    result = analyze(run / "history.jsonl", tmp_path / "again.html")
    again = result.report.read_text()
    assert result.ok and result.verdict == "VERDICT: linearizable, 5 ops on 2 keys"
    for name in ("faults", "nodes", "timeline", "latency", "throughput"):
        assert chart(again, name) == chart(first, name), name
    assert "the run&#x27;s verdict" in again and "VERDICT: linearizable, 0 acknowledged writes lost" in again
    assert "Log of n1" in again


def test_a_history_alone_is_drawn_from_its_first_operation(tmp_path: Path) -> None:
    h = History()
    h.invoke(0, "write", "k", "a", 1000.0)
    h.complete(0, OpType.OK, None, 1000.5)
    h.invoke(1, "read", "k", None, 1001.0)
    h.complete(1, OpType.INFO, None, 1003.0)
    h.write_jsonl(tmp_path / "history.jsonl")  # no summary.json: not a run folder
    text = analyze(tmp_path / "history.jsonl", tmp_path / "r.html").report.read_text()
    assert "data-t0='0.0000' data-t1='3.0000'" in text
    assert "No status samples" in text and "id='latency'" in text
    assert re.search(r"p1 read k -&gt; \? · info: gave up after 2.00 s", text)


@needs_corpus
def test_analyze_agrees_with_every_corpus_label(tmp_path: Path) -> None:
    started = time.monotonic()
    wrong = {}
    for name, linearizable in sorted(LABELS.items()):
        result = analyze(CORPUS / name, tmp_path / f"{name}.html", timeout=10)
        if result.ok is not linearizable:
            wrong[name] = result.verdict
        text = result.report.read_text()
        assert ("class='culprit'" in text) is (not linearizable), name
    assert wrong == {}
    assert len(LABELS) == 102
    assert time.monotonic() - started < 60, "the corpus through analyze took over a minute"


@needs_corpus
def test_analyze_of_a_corpus_file_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = next(n for n, ok in sorted(LABELS.items()) if not ok)
    assert main(["analyze", str(CORPUS / name), "--out", str(tmp_path / "r.html")]) == 1
    assert "NOT linearizable on key 'x'" in capsys.readouterr().out.splitlines()[-1]
    summary = json.dumps(LABELS)  # the corpus stays as it was
    assert json.loads(summary) == LABELS
