"""Prometheus text exposition of the node's counters (no client library needed)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Counter:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help, self.value = name, help, 0

    def inc(self, n: int = 1) -> None:
        self.value += n

    def render(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} counter\n{self.name} {self.value}\n"


class Histogram:
    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self.counts = [0] * len(self.BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.total += 1
        self.sum += v
        for i, b in enumerate(self.BUCKETS):
            if v <= b:
                self.counts[i] += 1

    @contextmanager
    def time(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - t)

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for b, c in zip(self.BUCKETS, self.counts, strict=True):
            lines.append(f'{self.name}_bucket{{le="{b}"}} {c}')
        lines += [f'{self.name}_bucket{{le="+Inf"}} {self.total}', f"{self.name}_sum {self.sum:.6f}",
                  f"{self.name}_count {self.total}"]
        return "\n".join(lines) + "\n"


PROPOSALS = Counter("raftnet_proposals_total", "Client writes proposed on this node.")
APPLIED = Counter("raftnet_applied_entries_total", "Log entries applied to the state machine.")
LEADER_CHANGES = Counter("raftnet_leader_elected_total", "Times this node became leader.")
ELECTIONS = Counter("raftnet_elections_started_total", "Elections this node started as candidate.")
SNAPSHOTS = Counter("raftnet_snapshots_total", "Snapshots taken for log compaction.")
SNAPSHOTS_SENT = Counter("raftnet_snapshots_sent_total", "InstallSnapshot messages delivered to followers.")
FSYNC_SECONDS = Histogram("raftnet_storage_save_seconds", "Time to persist one Ready (one transaction).")
HTTP_RESPONSES: dict[int, int] = {}


def render(gauges: dict[str, float], extra: Callable[[], str] | None = None) -> str:
    out = [c.render() for c in (PROPOSALS, APPLIED, LEADER_CHANGES, ELECTIONS, SNAPSHOTS, SNAPSHOTS_SENT)]
    out.append(FSYNC_SECONDS.render())
    out.append("# HELP raftnet_http_responses_total Responses by status.\n"
               "# TYPE raftnet_http_responses_total counter\n")
    for status, n in sorted(HTTP_RESPONSES.items()):
        out.append(f'raftnet_http_responses_total{{status="{status}"}} {n}\n')
    for name, v in gauges.items():
        out.append(f"# TYPE {name} gauge\n{name} {v}\n")
    out.append(_gc())
    return "".join(out)


def _gc() -> str:
    """The Python collector: collections per generation, and the objects frozen at start-up
    (node/__main__.py), which no collection walks."""
    lines = ["# HELP raftnet_gc_collections_total Garbage collections by generation.",
             "# TYPE raftnet_gc_collections_total counter"]
    for generation, stats in enumerate(gc.get_stats()):
        lines.append(f'raftnet_gc_collections_total{{generation="{generation}"}} {stats["collections"]}')
    lines += ["# HELP raftnet_gc_frozen_objects Objects frozen at start-up, outside every collection.",
              "# TYPE raftnet_gc_frozen_objects gauge", f"raftnet_gc_frozen_objects {gc.get_freeze_count()}"]
    return "\n".join(lines) + "\n"
