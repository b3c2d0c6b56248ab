"""``make bench``: throughput, latency and failover of a 3-node cluster on 127.0.0.1.

A benchmark, not a test: it prints a table and writes JSON to
bench-results/. Load comes from wrk (Debian's package, installed when
missing and root) so that the generator is not the bottleneck; without wrk
it falls back to an asyncio generator and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.orchestration.local import LocalCluster, Node, request, wait_for  # noqa: E402

PUT_LUA = """
local n = 0
local body = '{"value":"' .. string.rep("x", 86) .. '"}'
request = function()
  n = n + 1
  return wrk.format("PUT", "/v1/kv/k" .. (n % 1000), {["Content-Type"]="application/json"}, body)
end
"""
GET_LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/kv/k" .. (n % 1000))
end
"""


def ensure_wrk() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        wrk = shutil.which("wrk")
    return wrk


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def run_wrk(wrk: str, address: str, lua: str, conns: int, seconds: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
        script = f.name
    try:
        out = subprocess.run(
            [wrk, "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{seconds}s", "--latency", "-s", script,
             f"http://{address}"],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(script)
    rps_line = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps_line is None:
        raise RuntimeError(f"wrk printed no Requests/sec line:\n{out}")
    rps = float(rps_line.group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return {"ops_per_s": rps, "p50_ms": _ms(lat.get("50", "")), "p99_ms": _ms(lat.get("99", "")),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(0) if socket_errors else ""}


async def _py_load(address: str, method: str, conns: int, seconds: int) -> dict[str, Any]:
    import aiohttp

    lat: list[float] = []
    bad = 0
    stop = time.monotonic() + seconds
    body = json.dumps({"value": "x" * 86})

    async def worker(w: int) -> None:
        nonlocal bad
        n = 0
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < stop:
                n += 1
                url = f"http://{address}/v1/kv/k{(w * 7919 + n) % 1000}"
                t = time.perf_counter()
                if method == "PUT":
                    r = await s.put(url, data=body, headers={"Content-Type": "application/json"})
                else:
                    r = await s.get(url)
                await r.read()
                lat.append(time.perf_counter() - t)
                if r.status >= 300:
                    bad += 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(conns)))
    el = time.monotonic() - t0
    lat.sort()
    return {"ops_per_s": len(lat) / el, "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000, "non_2xx": bad, "socket_errors": ""}


def load(wrk: str | None, address: str, method: str, conns: int, seconds: int) -> dict[str, Any]:
    if wrk:
        return run_wrk(wrk, address, PUT_LUA if method == "PUT" else GET_LUA, conns, seconds)
    return asyncio.run(_py_load(address, method, conns, seconds))


def caught_up(node: Node, ref: Node) -> bool:
    return bool(node.status()["last_applied"] >= ref.status()["commit_index"])


def failover(cluster: LocalCluster, reps: int) -> list[float]:
    times = []
    for rep in range(reps):
        leader = cluster.leader(15)
        survivors = [n for n in cluster.live() if n.id != leader.id]
        cluster.kill(leader.id)
        t0 = time.monotonic()
        done = None
        while done is None and time.monotonic() - t0 < 30:
            for n in survivors:
                try:
                    r = request(n.address, "PUT", f"/v1/kv/failover{rep}", {"value": str(rep)}, timeout=0.5)
                except OSError:
                    continue
                if r.status == 200:
                    done = time.monotonic() - t0
                    break
            else:
                time.sleep(0.005)
        if done is None:
            raise RuntimeError("no write committed within 30 s of the leader's death")
        times.append(done)
        cluster.start(leader.id)
        wait_for(functools.partial(caught_up, leader, survivors[0]), 30, what="restarted node caught up")
        print(f"  failover {rep + 1}/{reps}: {done * 1000:.0f} ms", flush=True)
    return times


def isolated_leader(cluster: LocalCluster, reps: int) -> tuple[list[float], list[float]]:
    """Freeze both followers (SIGSTOP: the leader is cut off from its majority); time the last
    linearizable read it still answers with 200, and its first refusal (503/307: it stepped down)."""
    times, refusals = [], []
    for _ in range(reps):
        leader = cluster.leader(15)
        request(leader.address, "PUT", "/v1/kv/isolation", {"value": "x"})
        followers = [n for n in cluster.live() if n.id != leader.id]
        for f in followers:
            cluster.pause(f.id)
        t0 = time.monotonic()
        last_ok = t0
        refused = float("nan")
        while time.monotonic() - t0 < 5:
            try:
                r = request(leader.address, "GET", "/v1/kv/isolation", timeout=2)
            except OSError:
                break
            if r.status != 200:
                refused = time.monotonic() - t0
                break
            last_ok = time.monotonic()
        times.append(last_ok - t0)
        refusals.append(refused)
        for f in followers:
            cluster.resume(f.id)
        wait_for(lambda: cluster.leader(15) is not None, 15, what="a leader again")
    return times, refusals


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=int, default=5, help="duration of each load run")
    p.add_argument("--failovers", type=int, default=10)
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    a = p.parse_args()
    wrk = ensure_wrk()
    generator = "wrk " + subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split()[1] \
        if wrk else "python asyncio+aiohttp (wrk not found; figures are bounded by the generator)"
    print(f"load generator: {generator}")
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cluster": "3 nodes on 127.0.0.1, SQLite WAL synchronous=FULL, default timeouts (50 ms / 300:600 ms)",
        "load_generator": generator, "value_bytes": 86, "writes": {}, "reads": {},
    }
    with tempfile.TemporaryDirectory(prefix="raftnet-bench-") as tmp, LocalCluster(Path(tmp), 3) as cluster:
        cluster.start()
        leader = cluster.leader(15)
        for conns in (1, 16, 64):
            r = load(wrk, leader.address, "PUT", conns, a.seconds)
            results["writes"][str(conns)] = r
            print(f"  writes, {conns:>2} clients: {r['ops_per_s']:8.0f}/s  p50 {r['p50_ms']:.2f} ms"
                  f"  p99 {r['p99_ms']:.2f} ms  non-2xx {r['non_2xx']}", flush=True)
        r = load(wrk, leader.address, "GET", 64, a.seconds)
        results["reads"]["64"] = r
        print(f"  linearizable reads, 64 clients: {r['ops_per_s']:8.0f}/s  p50 {r['p50_ms']:.2f} ms"
              f"  p99 {r['p99_ms']:.2f} ms  non-2xx {r['non_2xx']}", flush=True)
        iso, refused = isolated_leader(cluster, 5)
        print(f"  isolated leader: last linearizable read served {max(iso) * 1000:.0f} ms after isolation; "
              f"first refusal (stepped down) after {', '.join(f'{t * 1000:.0f}' for t in refused)} ms "
              f"(election timeout 300:600 ms)", flush=True)
        times = failover(cluster, a.failovers)
    results["failover_ms"] = {"runs": [round(t * 1000, 1) for t in times], "min": round(min(times) * 1000, 1),
                              "median": round(statistics.median(times) * 1000, 1), "max": round(max(times) * 1000, 1)}
    results["isolated_leader_last_read_ms"] = {"runs": [round(t * 1000, 1) for t in iso],
                                               "max": round(max(iso) * 1000, 1)}
    results["isolated_leader_step_down_ms"] = {"runs": [round(t * 1000, 1) for t in refused],
                                               "max": round(max(refused) * 1000, 1)}
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    (a.out / "latest.json").write_text(json.dumps(results, indent=2))
    w = results["writes"]
    print("\n| metric | value |\n|---|---|")
    for c in ("1", "16", "64"):
        print(f"| writes/s, {c} clients (p50 / p99 ms) | {w[c]['ops_per_s']:.0f}"
              f" ({w[c]['p50_ms']:.2f} / {w[c]['p99_ms']:.2f}) |")
    rd = results["reads"]["64"]
    print(f"| linearizable reads/s, 64 clients (p50 / p99 ms) | {rd['ops_per_s']:.0f}"
          f" ({rd['p50_ms']:.2f} / {rd['p99_ms']:.2f}) |")
    f = results["failover_ms"]
    print(f"| failover kill -> first committed write, ms (min / median / max of {len(times)}) | "
          f"{f['min']} / {f['median']} / {f['max']} |")
    iso_ms, down_ms = results["isolated_leader_last_read_ms"], results["isolated_leader_step_down_ms"]
    print(f"| isolated leader: last linearizable read served / first refusal after isolation, ms (max of "
          f"{len(iso)}) | {iso_ms['max']} / {down_ms['max']} |")
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
