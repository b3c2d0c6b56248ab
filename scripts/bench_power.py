"""``make bench`` (as root, with /dev/fuse): what powerfs costs.

Writes/s and latency of a 3-node namespace cluster with every data dir on
a powerfs disk (harness/lab/powerfs.py), against the same cluster on the plain
filesystem; the runs alternate, ``--rounds`` times. A benchmark, not a
test: it prints a table and writes JSON to bench-results/power-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import ensure_wrk, load  # noqa: E402

from harness.lab import powerfs  # noqa: E402
from harness.orchestration.cluster import Cluster  # noqa: E402

CONNS = (1, 16, 64)


def run(power: bool, wrk: str | None, seconds: int) -> dict[str, dict[str, float]]:
    out = {}
    with tempfile.TemporaryDirectory(prefix="raftnet-bench-power-") as tmp, \
            Cluster(3, workdir=Path(tmp), name=f"bench-power-{os.getpid()}", power=power) as c:
        leader = c.leader(timeout=30)
        for conns in CONNS:
            out[str(conns)] = load(wrk, c.address(leader), "PUT", conns, seconds)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=int, default=5, help="duration of each load run")
    p.add_argument("--rounds", type=int, default=2, help="plain/powerfs pairs")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("powerfs overhead: skipped (needs root for namespaces and /dev/fuse)")
        return 0
    reason = powerfs.unavailable_reason()
    if reason:
        print(f"powerfs overhead: skipped ({reason})")
        return 0
    wrk = ensure_wrk()
    print(f"powerfs overhead: 3 nodes in namespaces, {a.rounds} rounds, {a.seconds} s per load, "
          f"generator {'wrk' if wrk else 'python asyncio'}", flush=True)
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"plain": [], "powerfs": []}
    for i in range(a.rounds):
        for kind in ("plain", "powerfs"):
            r = run(kind == "powerfs", wrk, a.seconds)
            runs[kind].append(r)
            print(f"  round {i + 1} {kind:8}" + "".join(
                f"  {c:>2} clients {r[c]['ops_per_s']:6.0f}/s (p50 {r[c]['p50_ms']:.1f} ms)" for c in r), flush=True)
    summary = {}
    print("\n| writes/s (median of rounds), p50 ms | plain | powerfs | powerfs / plain |\n|---|---|---|---|")
    for c in map(str, CONNS):
        pl = statistics.median(r[c]["ops_per_s"] for r in runs["plain"])
        pw = statistics.median(r[c]["ops_per_s"] for r in runs["powerfs"])
        p50p = statistics.median(r[c]["p50_ms"] for r in runs["plain"])
        p50w = statistics.median(r[c]["p50_ms"] for r in runs["powerfs"])
        summary[c] = {"plain_ops_per_s": round(pl, 1), "powerfs_ops_per_s": round(pw, 1), "ratio": round(pw / pl, 3),
                      "plain_p50_ms": p50p, "powerfs_p50_ms": p50w}
        print(f"| {c} clients | {pl:.0f} ({p50p:.1f}) | {pw:.0f} ({p50w:.1f}) | {pw / pl:.2f} |")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"power-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpus": os.cpu_count(),
                                "seconds": a.seconds, "runs": runs, "summary": summary}, indent=2))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
