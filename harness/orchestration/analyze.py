"""``raftnet analyze FILE``: check a stored history again, offline, and write its report.

FILE is a run's ``history.jsonl`` (``raftnet check`` writes one), a Jepsen
log (``INFO jepsen.util - 3 :invoke :read nil``, the porcupine/etcd corpus
format) or a Jepsen/Knossos EDN history; `harness.model.history.load_history`
tells them apart. When FILE sits in a ``raftnet check`` run folder, the
folder's events, status samples, summary and node logs go into the report
too, so it is the run's report again. The verdict is the checker's alone
(the white-box checks of a run need its live cluster).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.model.checker import CheckResult, Result, check
from harness.model.history import load_history
from harness.model.invariants import StatusSample
from harness.orchestration.report import EventRecord, RunReport, render_html

DEFAULT_TIMEOUT = 120.0  # seconds for the checker, as in check


class AnalyzeError(HarnessError):
    """The file is missing, unreadable or not a history (one line)."""


@dataclass(frozen=True)
class Analysis:
    verdict: str
    result: CheckResult
    report: Path
    operations: int

    @property
    def ok(self) -> bool:
        return self.result.ok


@dataclass
class _Run:
    """What a run folder next to the history adds."""

    t0: float | None = None
    events: list[EventRecord] | None = None
    status: list[StatusSample] | None = None
    summary: dict[str, Any] | None = None
    logs: dict[str, str] | None = None


def _run_folder(folder: Path) -> _Run:
    """The run folder's files, each when present and well-formed (else left out)."""
    run = _Run()
    try:
        summary = json.loads((folder / "summary.json").read_text())
        if isinstance(summary, dict):
            run.summary = summary
            if isinstance(summary.get("t0"), int | float):
                run.t0 = float(summary["t0"])
    except (OSError, ValueError):
        return run  # not a run folder: nothing else belongs to this history
    for name, parse, attr in (("events.jsonl", EventRecord.from_json, "events"),
                              ("status.jsonl", StatusSample.from_json, "status")):
        try:
            lines = (folder / name).read_text().splitlines()
            setattr(run, attr, [parse(json.loads(line)) for line in lines if line.strip()])
        except (OSError, ValueError, TypeError, AttributeError):
            pass
    logs = folder / "logs"
    if logs.is_dir():
        run.logs = {p.stem: p.read_text(errors="replace") for p in sorted(logs.glob("*.log"))}
    return run


def verdict_line(res: CheckResult, operations: int, keys: int) -> str:
    """The last line printed, as ``raftnet check`` words it."""
    if res.result is Result.OK:
        return f"VERDICT: linearizable, {operations} ops on {keys} key{'' if keys == 1 else 's'}"
    if res.result is Result.ILLEGAL:
        culprit = res.culprit
        why = (f" (a stale read? {culprit} fits no order)" if culprit is not None and culprit.f == "read"
               else f" ({culprit} fits no order)" if culprit is not None else "")
        return f"VERDICT: FAILED: NOT linearizable on key {res.key!r}{why}, {operations} ops"
    return f"VERDICT: FAILED: linearizability unknown (checker budget exhausted: {res.message}), {operations} ops"


def analyze(path: Path, out: Path | None = None, timeout: float = DEFAULT_TIMEOUT) -> Analysis:
    """Check the history in ``path`` and write its report to ``out`` (default
    ``./<stem>.report.html``). Raises `AnalyzeError` when it cannot be read as a history."""
    try:
        loaded = load_history(path)
        ops = loaded.history.operations()
    except OSError as e:
        raise AnalyzeError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise AnalyzeError(f"{path}: not a history (not text)") from None
    except ValueError as e:
        raise AnalyzeError(str(e).splitlines()[0] if str(e) else f"{path}: not a history") from None
    res = check(ops, timeout=timeout)
    verdict = verdict_line(res, len(ops), len({o.key for o in ops}))
    run = _run_folder(path.resolve().parent) if loaded.format == "jsonl" else _Run()
    t0 = run.t0 if run.t0 is not None else min((o.call for o in ops), default=0.0)
    counts = {k: sum(1 for o in ops if o.status == k) for k in ("ok", "fail", "info")}
    summary: dict[str, Any] = {"file": str(path), "format": loaded.format, "operations": len(ops), **counts,
                               "keys": len({o.key for o in ops}), "checker": res.message,
                               "checker time": f"{res.elapsed:.2f} s"}
    if run.summary is not None:
        summary["the run's verdict"] = run.summary.get("verdict", "?")
        summary.update({k: v for k, v in run.summary.items()
                        if k in ("system", "nodes", "clients", "seconds", "seed", "nemesis", "faults")})
    out = out if out is not None else Path(f"{path.stem}.report.html")
    rep = RunReport(
        title=f"raftnet analyze {path.name}", verdict=verdict, ok=res.ok, history=loaded.history,
        events=run.events or [], t0=t0, summary=summary, node_logs=run.logs or {}, status=run.status or [],
        check=res, timed=loaded.timed,
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(rep, ops))
    except OSError as e:
        raise AnalyzeError(f"cannot write {out}: {e.strerror or e}") from None
    return Analysis(verdict, res, out, len(ops))
