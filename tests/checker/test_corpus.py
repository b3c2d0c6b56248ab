"""The checker against a foreign corpus: Jepsen/etcd histories shipped with Porcupine.

The corpus is found at ``$RAFTNET_CORPUS`` or at ``shared/corpus/porcupine-etcd``
next to the repository. ``labels.json`` maps each file name to true
(linearizable) or false. The tests skip when the corpus is absent.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness.model.checker import Result, check
from harness.model.history import parse_jepsen_log

PER_FILE_TIMEOUT = 10.0  # seconds of wall clock, per file
CORPUS_BUDGET = 10.0  # seconds of CPU for the whole corpus


def corpus_dir() -> Path:
    env = os.environ.get("RAFTNET_CORPUS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared/corpus/porcupine-etcd"


CORPUS = corpus_dir()
LABELS_FILE = CORPUS / "labels.json"
LABELS: dict[str, bool] = json.loads(LABELS_FILE.read_text()) if LABELS_FILE.is_file() else {}
SKIP_REASON = f"porcupine-etcd corpus not found at {CORPUS} (no labels.json); set RAFTNET_CORPUS"
needs_corpus = pytest.mark.skipif(not LABELS, reason=SKIP_REASON)


@needs_corpus
@pytest.mark.parametrize("name", sorted(LABELS) or ["<none>"])
def test_corpus_file_matches_label(name: str) -> None:
    history = parse_jepsen_log(CORPUS / name)
    res = check(history, timeout=PER_FILE_TIMEOUT)
    expected = Result.OK if LABELS[name] else Result.ILLEGAL
    assert res.result is expected, f"{name}: {res.explain()}"
    if expected is Result.ILLEGAL:
        assert res.key == "x" and res.culprit in res.window and len(res.window) <= 20


@needs_corpus
def test_corpus_labels_cover_every_nonempty_log() -> None:
    logs = {p.name for p in CORPUS.glob("*.log") if p.stat().st_size > 0}
    assert logs <= set(LABELS), f"unlabelled logs: {sorted(logs - set(LABELS))}"
    assert any(LABELS.values()) and not all(LABELS.values())


@needs_corpus
def test_whole_corpus_checks_within_budget() -> None:
    histories = {name: parse_jepsen_log(CORPUS / name) for name in sorted(LABELS)}
    t0 = time.process_time()
    verdicts = {name: check(h, timeout=PER_FILE_TIMEOUT).result for name, h in histories.items()}
    elapsed = time.process_time() - t0
    wrong = [n for n, r in verdicts.items() if r is not (Result.OK if LABELS[n] else Result.ILLEGAL)]
    assert not wrong, f"verdicts disagree with labels: {wrong}"
    assert elapsed < CORPUS_BUDGET, f"corpus took {elapsed:.2f}s of CPU"
