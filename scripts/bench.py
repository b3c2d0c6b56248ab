"""``make bench``: raftnet measured beside etcd, in one run, on this machine.

As root (the namespace comparison): each system runs as a fresh 3-node cluster
of the harness (``harness.orchestration.cluster.Cluster``: every node in its own
network namespace, fsync on, each system's default timeouts), systems
interleaved round by round (raftnet, etcd, raftnet, etcd, ...). Per cluster:
a warm-up, writes at 1, 16 and 64 clients (wrk, in the root namespace, against
the leader's namespace address; writes/s counts 200 answers only), the CPU of
the three nodes during the 1-client point, idle CPU and RSS, linearizable reads
at 64 clients, SIGKILL of the leader to the first committed write (and the killed
node restarted until caught up), and the longest write gap after healing an
isolated leader. Medians over rounds and trials; a table with one column per
system, the ratio raftnet/etcd and the issue's targets; every raw value in
bench-results/bench-<timestamp>.json.

``--baseline GITREF`` adds "raftnet@GITREF": the node code of that commit
(a temporary ``git worktree``, removed afterwards, also on Ctrl-C), run by the
same python: a before/after table from one run.

Not root: the older loopback run (raftnet alone on 127.0.0.1, no namespaces,
no etcd, no network faults), labelled as such.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.errors import HarnessError  # noqa: E402
from harness.orchestration.local import LocalCluster, Node, request, wait_for  # noqa: E402
from harness.systems.base import Endpoint, System  # noqa: E402

VALUE = "x" * 100  # every write's value, both systems (bytes as sent: raftnet raw, etcd base64)
WRITE_KEYS = 1000
READ_KEYS = 100
CONNS = (1, 16, 64)
READ_CONNS = 64

# ============================================================================ pure part
# Parsing wrk, the after-heal gap, medians, ratios, targets and the table: no I/O.

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(text: str) -> dict[str, Any]:
    """wrk's output (with our Lua ``done`` line ``NON200 n``) as numbers: ok answers per second
    (200 only: wrk itself counts 3xx as successes), p50 / p99 latency in ms, errors."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    if m is None:
        raise ValueError(f"wrk printed no request count:\n{text[-2000:]}")
    requests, secs = int(m.group(1)), float(m.group(2)) * _UNIT_MS[m.group(3)] / 1e3

    def pct(label: str) -> float:
        p = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return float(p.group(1)) * _UNIT_MS[p.group(2)] if p else math.nan

    bad = re.search(r"^NON200 (\d+)$", text, re.M)
    non200 = int(bad.group(1)) if bad else 0
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = sum(int(x) for x in se.groups()) if se else 0
    ok = requests - non200
    return {"ops_per_s": ok / secs if secs > 0 else 0.0, "requests": requests, "non_200": non200,
            "socket_errors": socket_errors, "seconds": round(secs, 3), "p50_ms": pct("50"), "p99_ms": pct("99")}


def longest_gap(ok_times: Sequence[float], start: float, end: float) -> float:
    """The longest interval in [start, end] with no successful write: ``ok_times`` are completion
    times; the last success at or before ``start`` (if any) opens the first interval."""
    before = [t for t in ok_times if t <= start]
    edges = [max(before) if before else start]
    edges += sorted(t for t in ok_times if start < t <= end)
    edges.append(end)
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


def median(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return statistics.median(xs) if xs else None


@dataclass(frozen=True)
class Target:
    """``kind``: "ratio>=" / "ratio<=" (raftnet / etcd), or "<=" (raftnet's own value)."""

    kind: str
    bound: float

    def text(self, unit: str) -> str:
        if self.kind == "<=":
            return f"<= {self.bound:g} {unit}".rstrip()
        return f"{self.kind[5:]} {self.bound:g}x etcd"

    def passed(self, value: float | None, ratio: float | None) -> bool | None:
        x = value if self.kind == "<=" else ratio
        if x is None:
            return None
        return x >= self.bound if self.kind.endswith(">=") else x <= self.bound


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    fmt: str
    target: Target | None = None


METRICS: tuple[Metric, ...] = (
    *(m for c in CONNS for m in (
        Metric(f"writes_{c}_per_s", f"writes/s, {c} client{'s' if c > 1 else ''}", "/s", "{:.0f}",
               Target("ratio>=", 0.7 if c == 1 else 1.0)),
        Metric(f"writes_{c}_p50_ms", f"  write p50, {c} client{'s' if c > 1 else ''}", "ms", "{:.2f}"),
        Metric(f"writes_{c}_p99_ms", f"  write p99, {c} client{'s' if c > 1 else ''}", "ms", "{:.2f}",
               Target("ratio<=", 1.0) if c == 16 else None),
    )),
    Metric("cpu_1_client_pct", "CPU of the 3 nodes at 1 client (% of a core, sum)", "%", "{:.0f}"),
    Metric("idle_cpu_pct", "idle CPU per node (% of a core, max over nodes)", "%", "{:.2f}", Target("<=", 2.0)),
    Metric("rss_mb", "RSS per node (MiB, max over nodes)", "MiB", "{:.1f}", Target("<=", 60.0)),
    Metric("failover_s", "SIGKILL leader -> first committed write (s, median)", "s", "{:.3f}", Target("<=", 0.6)),
    Metric("catch_up_s", "killed node restarted -> caught up (s, median)", "s", "{:.3f}", Target("<=", 0.3)),
    Metric("startup_s", "  of which: spawn -> API answering (s, median)", "s", "{:.3f}", Target("<=", 0.3)),
    Metric("heal_gap_s", "healed isolated leader: longest write gap (s, median)", "s", "{:.3f}",
           Target("<=", 0.06)),
    Metric(f"reads_{READ_CONNS}_per_s", f"linearizable reads/s, {READ_CONNS} clients", "/s", "{:.0f}",
           Target("ratio>=", 1.0)),
    Metric(f"reads_{READ_CONNS}_p50_ms", f"  read p50, {READ_CONNS} clients", "ms", "{:.2f}"),
    Metric(f"reads_{READ_CONNS}_p99_ms", f"  read p99, {READ_CONNS} clients", "ms", "{:.2f}"),
)


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """One system's figures from its rounds (``run_cluster`` records): throughput, latency, CPU and
    memory are medians over rounds; the trial metrics are medians over every trial of every round."""
    def per_round(f: Callable[[dict[str, Any]], Any]) -> float | None:
        vals = []
        for r in runs:
            with contextlib.suppress(KeyError, TypeError):
                vals.append(f(r))
        return median(vals)

    def trials(key: str) -> float | None:
        return median([v for r in runs for v in r.get(key, [])])

    def point(kind: str, conns: int, k: str) -> Callable[[dict[str, Any]], Any]:
        return lambda r: r[kind][str(conns)][k]

    out: dict[str, float | None] = {}
    for c in CONNS:
        for k in ("ops_per_s", "p50_ms", "p99_ms"):
            name = "per_s" if k == "ops_per_s" else k
            out[f"writes_{c}_{name}"] = per_round(point("writes", c, k))
    out["cpu_1_client_pct"] = per_round(lambda r: r["cpu_1_client_pct"])
    out["idle_cpu_pct"] = per_round(lambda r: max(r["idle_cpu_pct"].values()))
    out["rss_mb"] = per_round(lambda r: max(r["rss_mb"].values()))
    out["failover_s"] = trials("failover_s")
    out["catch_up_s"] = median([t["caught_up_s"] for r in runs for t in r.get("restarts", [])])
    out["startup_s"] = median([t["startup_s"] for r in runs for t in r.get("restarts", [])])
    out["heal_gap_s"] = trials("heal_gap_s")
    for k in ("ops_per_s", "p50_ms", "p99_ms"):
        name = "per_s" if k == "ops_per_s" else k
        out[f"reads_{READ_CONNS}_{name}"] = per_round(point("reads", READ_CONNS, k))
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def render_table(summary: dict[str, dict[str, float | None]], current: str, reference: str | None,
                 baseline: str | None) -> str:
    """The markdown table: a row per metric, a column per system, raftnet/etcd (and, with a baseline,
    raftnet/raftnet@REF), the target and pass / FAIL (judged on ``current``)."""
    systems = list(summary)
    head = ["metric", *systems]
    if reference:
        head.append(f"{current}/{reference}")
    if baseline:
        head.append(f"{current}/{baseline}")
    head.append("target")
    rows = [head, ["---"] * len(head)]
    for m in METRICS:
        row = [m.label]
        for s in systems:
            v = summary[s].get(m.key)
            row.append(m.fmt.format(v) if v is not None else "n/a")
        r = ratio(summary[current].get(m.key), summary[reference].get(m.key)) if reference else None
        if reference:
            row.append(f"{r:.2f}" if r is not None else "n/a")
        if baseline:
            rb = ratio(summary[current].get(m.key), summary[baseline].get(m.key))
            row.append(f"{rb:.2f}" if rb is not None else "n/a")
        if m.target is None:
            row.append("")
        else:
            ok = m.target.passed(summary[current].get(m.key), r)
            row.append(f"{m.target.text(m.unit)} {'n/a' if ok is None else 'pass' if ok else 'FAIL'}")
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def verdicts(summary: dict[str, dict[str, float | None]], current: str,
             reference: str | None) -> dict[str, dict[str, Any]]:
    out = {}
    for m in METRICS:
        if m.target is None:
            continue
        v = summary[current].get(m.key)
        r = ratio(v, summary[reference].get(m.key)) if reference else None
        out[m.key] = {"target": m.target.text(m.unit), "value": v, "ratio": r, "pass": m.target.passed(v, r)}
    return out


# ============================================================================ the systems' APIs
# What a write, a read and a status look like for each system: request specs for wrk (and the python
# generator), a synchronous put, an asynchronous probe put, and the commit / applied indexes.


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


class Api:
    kind = "raftnet"

    def spec(self, op: str, i: int) -> tuple[str, str, str | None]:
        """(method, path, body) of the i-th request of ``op`` ("put", "get" or "probe")."""
        if op == "get":
            return "GET", f"/v1/kv/r-{i % READ_KEYS}", None
        key = f"b-{i % WRITE_KEYS}" if op == "put" else f"p-{i % 100}"
        return "PUT", f"/v1/kv/{key}", json.dumps({"value": VALUE})

    def specs(self, op: str) -> list[tuple[str, str, str | None]]:
        return [self.spec(op, i) for i in range(READ_KEYS if op == "get" else WRITE_KEYS)]

    def put_spec(self, key: str) -> tuple[str, str, str]:
        return "PUT", f"/v1/kv/{key}", json.dumps({"value": VALUE})

    def put(self, ep: Endpoint, key: str, timeout: float = 2.0) -> bool:
        """One write through ``ep``, following one redirect to the leader; True when committed."""
        method, path, body = self.put_spec(key)
        try:
            r = request(ep.address, method, path, json.loads(body), timeout=timeout)
            if r.status == 307 and isinstance(r.body, dict) and isinstance(r.body.get("leader"), dict):
                r = request(str(r.body["leader"]["address"]), method, path, json.loads(body), timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError):
            return False
        return r.status == 200

    def redirect(self, status: int, headers: Any, body: bytes) -> str | None:
        """Where a refused write says the leader is (HOST:PORT), or None."""
        if status != 307:
            return None
        loc = headers.get("Location", "")
        m = re.match(r"https?://([^/]+)", loc)
        if m:
            return m.group(1)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(json.loads(body)["leader"]["address"])
        return None

    def indexes(self, ep: Endpoint, timeout: float = 1.0) -> tuple[int, int] | None:
        """(commit index, applied index) of the node at ``ep``; None when it does not answer."""
        try:
            r = request(ep.address, "GET", "/v1/status", timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        if r.status != 200 or not isinstance(r.body, dict):
            return None
        return int(r.body["commit_index"]), int(r.body["last_applied"])


class EtcdApi(Api):
    kind = "etcd"

    def spec(self, op: str, i: int) -> tuple[str, str, str | None]:
        if op == "get":  # no "serializable": a linearizable range (ReadIndex)
            return "POST", "/v3/kv/range", json.dumps({"key": _b64(f"r-{i % READ_KEYS}")})
        key = f"b-{i % WRITE_KEYS}" if op == "put" else f"p-{i % 100}"
        return "POST", "/v3/kv/put", json.dumps({"key": _b64(key), "value": _b64(VALUE)})

    def put_spec(self, key: str) -> tuple[str, str, str]:
        return "POST", "/v3/kv/put", json.dumps({"key": _b64(key), "value": _b64(VALUE)})

    def put(self, ep: Endpoint, key: str, timeout: float = 2.0) -> bool:
        method, path, body = self.put_spec(key)  # any member takes a write (it forwards proposals)
        try:
            r = request(ep.address, method, path, json.loads(body), timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError):
            return False
        return r.status == 200 and isinstance(r.body, dict) and "error" not in r.body

    def redirect(self, status: int, headers: Any, body: bytes) -> str | None:
        return None

    def indexes(self, ep: Endpoint, timeout: float = 1.0) -> tuple[int, int] | None:
        try:
            r = request(ep.address, "POST", "/v3/maintenance/status", {}, timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        if r.status != 200 or not isinstance(r.body, dict) or "raftIndex" not in r.body:
            return None
        commit = int(r.body["raftIndex"])
        return commit, int(r.body.get("raftAppliedIndex") or commit)


def lua_script(specs: Sequence[tuple[str, str, str | None]]) -> str:
    """A wrk script cycling through ``specs``; its ``done`` prints ``NON200 n`` (answers other than 200,
    which wrk alone would count as successes when they are 3xx)."""
    rows = []
    for method, path, body in specs:
        b = f"[==[{body}]==]" if body is not None else "nil"
        rows.append(f'  {{"{method}", [==[{path}]==], {b}}},')
    return "\n".join([
        "-- generated by scripts/bench.py",
        "local specs = {", *rows, "}",
        "local reqs = {}",
        "local n = 0",
        "local threads = {}",
        "function setup(thread) table.insert(threads, thread) end",
        "function init(args)",
        "  bad = 0",
        "  for i, s in ipairs(specs) do",
        '    reqs[i] = wrk.format(s[1], s[2], {["Content-Type"] = "application/json"}, s[3])',
        "  end",
        "end",
        "function request()",
        "  n = n + 1",
        "  return reqs[(n % #reqs) + 1]",
        "end",
        "function response(status, headers, body)",
        "  if status ~= 200 then bad = bad + 1 end",
        "end",
        "function done(summary, latency, requests)",
        "  local b = 0",
        '  for _, t in ipairs(threads) do b = b + t:get("bad") end',
        '  io.write(string.format("NON200 %d\\n", b))',
        "end",
        "",
    ])


# ============================================================================ load generators


def ensure_wrk() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package) ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True,
                          env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True, env=env)
        wrk = shutil.which("wrk")
    return wrk


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    words = (out.stdout + out.stderr).split()
    return f"wrk {words[1]}" if len(words) > 1 else "wrk"


def wrk_load(wrk: str, address: str, specs: Sequence[tuple[str, str, str | None]], conns: int,
             seconds: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="raftnet-bench-", delete=False) as f:
        f.write(lua_script(specs))
        script = f.name
    try:
        out = subprocess.run([wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "--latency",
                              "-s", script, f"http://{address}"], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script)
    return parse_wrk(out)


async def _py_specs_load(address: str, specs: Sequence[tuple[str, str, str | None]], conns: int,
                         seconds: float) -> dict[str, Any]:
    """The fallback generator (no wrk): ``conns`` closed-loop keep-alive clients, same requests."""
    import aiohttp

    lat: list[float] = []
    bad = 0
    stop = time.monotonic() + seconds

    async def worker(w: int) -> None:
        nonlocal bad
        n = w * 7919
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < stop:
                method, path, body = specs[n % len(specs)]
                n += 1
                t = time.perf_counter()
                async with s.request(method, f"http://{address}{path}", data=body, allow_redirects=False,
                                     headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                lat.append(time.perf_counter() - t)
                if r.status != 200:
                    bad += 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(conns)))
    el = time.monotonic() - t0
    lat.sort()
    return {"ops_per_s": (len(lat) - bad) / el, "requests": len(lat), "non_200": bad, "socket_errors": 0,
            "seconds": round(el, 3), "p50_ms": lat[len(lat) // 2] * 1000 if lat else math.nan,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else math.nan}


def specs_load(wrk: str | None, address: str, specs: Sequence[tuple[str, str, str | None]], conns: int,
               seconds: int) -> dict[str, Any]:
    if wrk:
        return wrk_load(wrk, address, specs, conns, seconds)
    return asyncio.run(_py_specs_load(address, specs, conns, seconds))


# ============================================================================ probes


@dataclass
class Probe:
    """Open-loop write probes: one write every ``interval`` s, round robin over ``targets``, each with
    its own timeout and following one redirect; ``oks`` holds the completion times of the committed ones."""

    api: Api
    targets: list[str]  # HOST:PORT
    interval: float = 0.01
    timeout: float = 1.0
    oks: list[float] = field(default_factory=list)
    sent: int = 0

    async def _one(self, session: Any, i: int) -> None:
        import aiohttp

        method, path, body = self.api.spec("probe", i)
        address = self.targets[i % len(self.targets)]
        try:
            for _ in range(2):
                async with session.request(method, f"http://{address}{path}", data=body, allow_redirects=False,
                                           headers={"Content-Type": "application/json"},
                                           timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                    raw = await r.read()
                    if r.status == 200:
                        self.oks.append(time.monotonic())
                        return
                    nxt = self.api.redirect(r.status, r.headers, raw)
                if nxt is None:
                    return
                address = nxt
        except (aiohttp.ClientError, TimeoutError, OSError):
            return

    async def run(self, until: Callable[[], bool], deadline: float) -> None:
        """Probe until ``until()`` is true or ``deadline`` (monotonic) passes; then wait for the stragglers."""
        import aiohttp

        tasks: list[asyncio.Task[None]] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
            nxt = time.monotonic()
            while not until() and time.monotonic() < deadline:
                tasks.append(asyncio.create_task(self._one(session, self.sent)))
                self.sent += 1
                nxt += self.interval
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout + 1)
            for t in tasks:
                t.cancel()


# ============================================================================ one cluster


@dataclass
class Contender:
    label: str  # "raftnet", "etcd", "raftnet@HEAD~5"
    system: System
    api: Api


@dataclass
class Settings:
    duration: int = 5
    warmup: int = 2
    idle_seconds: float = 10.0  # CPU time is counted in 10 ms ticks: 5 s would mean steps of 0.2 %
    failovers: int = 5
    heals: int = 3
    heal_window: float = 3.0
    settle_pause: float = 1.0  # after the read point, before the idle window


def _cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def _rss_mib(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def settle(c: Any, api: Api, timeout: float = 60.0) -> str:
    """A leader, one committed write, and every node applied up to the leader's commit index."""
    deadline = time.monotonic() + timeout
    leader = c.leader(timeout=timeout)
    wait_for(lambda: api.put(c.endpoint(leader), "settle"), max(1.0, deadline - time.monotonic()),
             interval=0.05, what="a committed write")
    leader = c.leader(timeout=max(1.0, deadline - time.monotonic()))
    idx = wait_for(lambda: api.indexes(c.endpoint(leader)), 10, what="the leader's status")
    wait_for(lambda: all((x := api.indexes(c.endpoint(n))) is not None and x[1] >= idx[0] for n in c.nodes),
             max(1.0, deadline - time.monotonic()), interval=0.02, what="every node caught up")
    return str(leader)


def failover_trial(c: Any, api: Api) -> tuple[float, dict[str, float]]:
    """SIGKILL the leader; the first write that commits through a survivor (probes every 10 ms). Then
    restart the killed node: spawn -> its API answers (start-up), and spawn -> its applied index reaches
    the leader's commit index as it was when the restart began (caught up)."""
    leader = settle(c, api)
    survivors = [n for n in c.nodes if n != leader]
    probe = Probe(api, [c.endpoint(n).address for n in survivors], timeout=0.5)
    t_kill = time.monotonic()
    c.kill(leader)
    asyncio.run(probe.run(lambda: bool(probe.oks), t_kill + 30))
    if not probe.oks:
        raise RuntimeError(f"no write committed within 30 s of SIGKILL of the leader {leader}")
    failover = min(probe.oks) - t_kill
    new_leader = c.leader(timeout=30, among=survivors)
    target = wait_for(lambda: api.indexes(c.endpoint(new_leader)), 10, what="the new leader's status")[0]
    ep = c.endpoint(leader)
    t_spawn = time.monotonic()
    c.restart(leader, wait=False)
    started = caught = None
    deadline = t_spawn + 60
    while time.monotonic() < deadline and caught is None:
        if started is None:
            if c.system.ready(ep, 0.5):
                started = time.monotonic()
            elif not c.procs[leader].is_alive():
                raise RuntimeError(f"{leader} exited after its restart: {c.tail(leader, 3)}")
        if started is not None:
            x = api.indexes(ep, 0.5)
            if x is not None and x[1] >= target:
                caught = time.monotonic()
        if caught is None:
            time.sleep(0.005)
    if started is None or caught is None:
        raise RuntimeError(f"{leader} did not catch up within 60 s of its restart")
    return failover, {"startup_s": started - t_spawn, "caught_up_s": caught - t_spawn, "missed_to_index": target}


def heal_trial(c: Any, api: Api, window: float) -> float:
    """Isolate the leader (firewall), wait until the majority has elected another, probe writes through
    every node (every 10 ms, following a redirect), heal, and return the longest interval with no
    committed write during ``window`` s after the heal."""
    leader = settle(c, api)
    majority = [n for n in c.nodes if n != leader]
    c.isolate(leader)
    try:
        c.leader(timeout=30, among=majority)
    except BaseException:
        c.heal()
        raise
    probe = Probe(api, [c.endpoint(n).address for n in c.nodes], timeout=1.0)
    healed: list[float] = []

    async def run() -> None:
        task = asyncio.create_task(probe.run(lambda: False, time.monotonic() + 0.3 + window + 0.05))
        await asyncio.sleep(0.3)  # probes running before the heal: the first gap starts at the last success
        await asyncio.to_thread(c.heal)
        healed.append(time.monotonic())
        await task

    asyncio.run(run())
    t_heal = healed[0]
    return longest_gap(probe.oks, t_heal, t_heal + window)


def run_cluster(who: Contender, rnd: int, s: Settings, wrk: str | None, log: Callable[[str], None]) -> dict[str, Any]:
    """One fresh 3-node namespace cluster of ``who``: every measurement, raw."""
    from harness.orchestration.cluster import Cluster

    api = who.api
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"bench-{os.getpid()}-{who.label}-{rnd}")[:60]
    out: dict[str, Any] = {"system": who.label, "round": rnd, "writes": {}, "reads": {}}
    with tempfile.TemporaryDirectory(prefix="raftnet-bench-") as tmp, \
            Cluster(3, workdir=Path(tmp), name=name, system=who.system) as c:
        leader = settle(c, api)
        pids = {n: c.procs[n].pid for n in c.nodes}
        if s.warmup > 0:  # not recorded
            specs_load(wrk, c.endpoint(leader).address, api.specs("put"), 16, s.warmup)
        for conns in CONNS:
            leader = settle(c, api)
            cpu0, t0 = sum(_cpu_seconds(p) for p in pids.values()), time.monotonic()
            r = specs_load(wrk, c.endpoint(leader).address, api.specs("put"), conns, s.duration)
            cpu1, t1 = sum(_cpu_seconds(p) for p in pids.values()), time.monotonic()
            r["leader"] = leader
            out["writes"][str(conns)] = r
            if conns == 1:
                out["cpu_1_client_pct"] = (cpu1 - cpu0) / (t1 - t0) * 100
            log(f"  {who.label} r{rnd}: writes, {conns:>2} clients: {r['ops_per_s']:7.0f}/s  p50 {r['p50_ms']:.2f} ms"
                f"  p99 {r['p99_ms']:.2f} ms  non-200 {r['non_200']}  socket errors {r['socket_errors']}")
        leader = settle(c, api)
        ep = c.endpoint(leader)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:  # the keys the reads ask for exist
            done = list(pool.map(lambda i: api.put(ep, f"r-{i}", 5.0), range(READ_KEYS)))
        if not all(done):
            raise RuntimeError(f"{READ_KEYS - sum(done)} of the {READ_KEYS} read keys were not written")
        r = specs_load(wrk, ep.address, api.specs("get"), READ_CONNS, s.duration)
        r["leader"] = leader
        out["reads"][str(READ_CONNS)] = r
        log(f"  {who.label} r{rnd}: linearizable reads, {READ_CONNS} clients: {r['ops_per_s']:7.0f}/s"
            f"  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  non-200 {r['non_200']}")
        time.sleep(s.settle_pause)  # the load's tail settles
        idle0 = {n: _cpu_seconds(p) for n, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(s.idle_seconds)
        el = time.monotonic() - t0
        idle = {n: (_cpu_seconds(p) - idle0[n]) / el * 100 for n, p in pids.items()}
        rss = {n: _rss_mib(p) for n, p in pids.items()}
        out["idle_cpu_pct"], out["rss_mb"] = idle, rss
        log(f"  {who.label} r{rnd}: idle CPU {', '.join(f'{n} {v:.2f}%' for n, v in idle.items())};"
            f" RSS {', '.join(f'{n} {v:.1f} MiB' for n, v in rss.items())}")
        out["failover_s"], out["restarts"] = [], []
        for i in range(s.failovers):
            f, rs = failover_trial(c, api)
            out["failover_s"].append(f)
            out["restarts"].append(rs)
            log(f"  {who.label} r{rnd}: failover {i + 1}/{s.failovers}: {f * 1000:.0f} ms; restarted node: "
                f"API after {rs['startup_s'] * 1000:.0f} ms, caught up after {rs['caught_up_s'] * 1000:.0f} ms")
        out["heal_gap_s"] = []
        for i in range(s.heals):
            g = heal_trial(c, api, s.heal_window)
            out["heal_gap_s"].append(g)
            log(f"  {who.label} r{rnd}: heal {i + 1}/{s.heals}: longest write gap {g * 1000:.0f} ms")
    return out


# ============================================================================ setup: etcd, baseline, machine


def ensure_etcd(install: bool) -> str | None:
    """None when etcd runs here (installing Debian's etcd-server when missing, root and ``install``),
    else why not."""
    from harness.systems.etcd import unavailable_reason

    reason = unavailable_reason()
    if reason is None or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return reason
    print("installing etcd-server (Debian package) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "etcd-server"], check=False,
                   capture_output=True, env=env)
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():  # the lab starts its own etcd
        subprocess.run(["systemctl", "disable", "--now", "etcd"], check=False, capture_output=True)
    unavailable_reason.cache_clear()
    return unavailable_reason()


@contextlib.contextmanager
def baseline_checkout(ref: str) -> Iterator[tuple[Path, str]]:
    """``ref`` checked out (detached) in a temporary git worktree; removed afterwards, whatever happens."""
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "--verify", f"{ref}^{{commit}}"],
                         capture_output=True, text=True)
    if rev.returncode != 0:
        raise SystemExit(f"bench: --baseline {ref}: not a commit here ({rev.stderr.strip()})")
    tmp = Path(tempfile.mkdtemp(prefix="raftnet-baseline-"))
    path = tmp / "src"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), ref], check=True,
                       capture_output=True)
        yield path, rev.stdout.strip()
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False,
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False, capture_output=True)


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    fs = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "-T", tempfile.gettempdir()], capture_output=True,
                        text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "data_dir_fs": f"{tempfile.gettempdir()}: {fs or 'unknown'}",
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def etcd_version() -> str:
    with contextlib.suppress(OSError):
        out = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.splitlines()
        return out[0] if out else "etcd"
    return "etcd"


# ============================================================================ the namespace comparison


def namespace_main(a: argparse.Namespace) -> int:
    from harness.systems import by_name
    from harness.systems.raftnet import RaftnetSystem

    s = Settings(duration=a.duration, warmup=a.warmup, idle_seconds=a.idle_seconds, failovers=a.failovers,
                 heals=a.heals, heal_window=a.heal_window, settle_pause=0.2 if a.quick else 1.0)
    wanted = [w.strip() for w in a.systems.split(",") if w.strip()]
    unknown = sorted(set(wanted) - {"raftnet", "etcd"})
    if unknown or "raftnet" not in wanted:
        print(f"bench: --systems takes raftnet and optionally etcd, not {a.systems!r}", file=sys.stderr)
        return 2
    notes: list[str] = []
    wrk = ensure_wrk()
    generator = (f"{wrk_version(wrk)}, 1 thread, C keep-alive connections, in the root namespace -> the leader's "
                 "namespace address" if wrk else
                 "python asyncio+aiohttp (wrk not found; figures are bounded by the generator)")
    if "etcd" in wanted and (reason := ensure_etcd(not a.no_install)):
        print(f"etcd unavailable ({reason.split(':')[0]}): raftnet alone, no ratios")
        notes.append(f"etcd unavailable: {reason}")
        wanted.remove("etcd")
    contenders = [Contender("raftnet", RaftnetSystem(), Api())]
    if "etcd" in wanted:
        contenders.append(Contender("etcd", by_name("etcd"), EtcdApi()))
    log_lines: list[str] = []

    def log(line: str) -> None:
        log_lines.append(line)
        print(line, flush=True)

    started = time.monotonic()
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with contextlib.ExitStack() as stack:
        baseline = None
        if a.baseline:
            path, rev = stack.enter_context(baseline_checkout(a.baseline))
            baseline = f"raftnet@{a.baseline}"
            contenders.insert(1, Contender(baseline, RaftnetSystem(source=path), Api()))
            notes.append(f"{baseline} is commit {rev}, its node/ run from a temporary git worktree by the same python")
        m = machine()
        print(f"machine: {m['cpus']} CPUs, {m['cpu_model']}, kernel {m['kernel']}, python {m['python']}; "
              f"load average at start {m['loadavg_at_start']}; data dirs on {m['data_dir_fs']}")
        print(f"date: {when}")
        print(f"load generator: {generator}")
        print(f"systems: {', '.join(c.label for c in contenders)}; {a.rounds} round(s), {s.duration} s per point, "
              f"{s.failovers} failovers, {s.heals} heals per cluster")
        runs: list[dict[str, Any]] = []
        for rnd in range(1, a.rounds + 1):
            order = contenders if rnd % 2 else contenders[::-1]  # interleaved; who goes first alternates
            for who in order:
                log(f"round {rnd}: {who.label} ({who.system.describe()})")
                try:
                    runs.append(run_cluster(who, rnd, s, wrk, log))
                except (HarnessError, RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as e:
                    log(f"  {who.label} r{rnd}: ERROR {type(e).__name__}: {str(e)[:300]}")
                    runs.append({"system": who.label, "round": rnd, "error": f"{type(e).__name__}: {e}"})
    elapsed = time.monotonic() - started
    summary = {c.label: summarise([r for r in runs if r["system"] == c.label and "error" not in r])
               for c in contenders}
    reference = "etcd" if "etcd" in summary else None
    table = render_table(summary, "raftnet", reference, baseline)
    results: dict[str, Any] = {
        "when": when, "machine": m, "load_generator": generator,
        "cluster": "3 nodes, each in its own network namespace (harness Cluster), fsync on, default timeouts",
        "systems": {c.label: c.system.describe() for c in contenders},
        "etcd_version": etcd_version() if reference else None,
        "settings": {"rounds": a.rounds, **s.__dict__, "value_bytes": len(VALUE), "write_keys": WRITE_KEYS,
                     "read_keys": READ_KEYS},
        "method": {
            "writes": "wrk against the leader; ops/s counts 200 answers only; p50/p99 from wrk --latency",
            "cpu_1_client_pct": "psutil user+system time of the 3 node processes over the 1-client point",
            "idle_cpu_pct": f"per node, over {s.idle_seconds:g} s with no client, 1 s after the read point",
            "rss_mb": "psutil RSS of each node after the load points (MiB)",
            "failover_s": "SIGKILL of the leader -> completion of the first committed write, probes every "
                          "10 ms through the survivors",
            "catch_up_s": "the killed node respawned -> its applied index reaches the leader's commit index "
                          "as it was at the respawn",
            "startup_s": "respawn -> the node's API answers (raftnet /v1/health, etcd /version)",
            "heal_gap_s": "leader isolated by the firewall, new leader elected, heal; probes every 10 ms "
                          f"through every node; longest interval without a committed write over {s.heal_window:g}"
                          " s after the heal",
            "reads": "wrk GETs (raftnet) / POST /v3/kv/range without serializable (etcd) against the leader",
        },
        "summary": summary, "ratios": {m_.key: ratio(summary["raftnet"].get(m_.key), summary[reference].get(m_.key))
                                       for m_ in METRICS} if reference else {},
        "targets": verdicts(summary, "raftnet", reference), "runs": runs, "notes": notes,
        "elapsed_s": round(elapsed, 1), "table": table,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path.write_text(json.dumps(_finite(results), indent=2, default=str))
    print()
    print(f"machine: {m['cpus']} CPUs ({m['cpu_model']}), kernel {m['kernel']}; {when}; load generator: {generator}")
    print(f"3 nodes per cluster, each in its own network namespace, fsync on, default timeouts; medians of "
          f"{a.rounds} round(s) and of the trials ({s.failovers} failovers and restarts, {s.heals} heals per round)")
    print()
    print(table)
    for n in notes:
        print(f"note: {n}")
    errors = [r for r in runs if "error" in r]
    for r in errors:
        print(f"error: {r['system']} round {r['round']}: {r['error'][:300]}")
    print(f"\ntook {elapsed:.0f} s; JSON: {path}")
    return 1 if errors else 0


def _finite(o: Any) -> Any:
    """``o`` with NaN and infinities as None (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


# ============================================================================ not root: loopback only
# The older run, kept for machines where namespaces are out of reach: raftnet alone on 127.0.0.1.

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
    """The loopback run's generator (scripts/bench_power.py uses it too)."""
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


def loopback_main(a: argparse.Namespace) -> int:
    print("NOT ROOT: the loopback run -- raftnet alone on 127.0.0.1 (no namespaces, no etcd, no network "
          "faults, no ratios); run `sudo make bench` for the comparison with etcd")
    wrk = ensure_wrk()
    generator = "wrk " + subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split()[1] \
        if wrk else "python asyncio+aiohttp (wrk not found; figures are bounded by the generator)"
    print(f"load generator: {generator}")
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "mode": "loopback (not root)",
        "machine": machine(),
        "cluster": "3 nodes on 127.0.0.1, SQLite WAL synchronous=FULL, default timeouts (50 ms / 300:600 ms)",
        "load_generator": generator, "value_bytes": 86, "writes": {}, "reads": {},
    }
    with tempfile.TemporaryDirectory(prefix="raftnet-bench-") as tmp, LocalCluster(Path(tmp), 3) as cluster:
        cluster.start()
        leader = cluster.leader(15)
        for conns in CONNS:
            r = load(wrk, leader.address, "PUT", conns, a.duration)
            results["writes"][str(conns)] = r
            print(f"  writes, {conns:>2} clients: {r['ops_per_s']:8.0f}/s  p50 {r['p50_ms']:.2f} ms"
                  f"  p99 {r['p99_ms']:.2f} ms  non-2xx {r['non_2xx']}", flush=True)
        r = load(wrk, leader.address, "GET", 64, a.duration)
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
    path = a.out / f"bench-loopback-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    w = results["writes"]
    print("\nloopback run (not root; raftnet alone on 127.0.0.1):\n| metric | raftnet |\n|---|---|")
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


# ============================================================================ command line


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--systems", default="raftnet,etcd", help="raftnet[,etcd] (default: both)")
    p.add_argument("--baseline", metavar="GITREF", help="also run raftnet@GITREF (that commit's node code)")
    p.add_argument("--rounds", type=int, default=2, help="fresh clusters per system, interleaved (default 2)")
    p.add_argument("--duration", "--seconds", type=int, default=5, help="seconds per load point (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up writes per cluster (default 2)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU window (default 10)")
    p.add_argument("--failovers", type=int, default=5, help="leader kills (and restarts) per cluster (default 5)")
    p.add_argument("--heals", type=int, default=3, help="isolate/heal trials per cluster (default 3)")
    p.add_argument("--heal-window", type=float, default=3.0, help="seconds probed after each heal (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round, 1 s points, no warm-up, 1 s idle, 1 trial each, 1 s after the heal")
    p.add_argument("--no-install", action="store_true", help="never apt-get etcd-server (tests)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.duration, a.warmup, a.idle_seconds = 1, 1, 0, 1.0
        a.failovers, a.heals, a.heal_window = 1, 1, 1.0
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    if os.geteuid() != 0:
        return loopback_main(a)
    try:
        return namespace_main(a)
    except KeyboardInterrupt:
        print("\ninterrupted: clusters and the baseline worktree were removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
