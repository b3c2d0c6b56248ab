"""A short tour without namespaces: 3 nodes on 127.0.0.1, writes, the leader
SIGKILLed, the failover, the old leader restarted and caught up.

Used by ``make demo`` when network namespaces are not available (not root);
as root ``make demo`` runs the full randomized nemesis check instead.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.orchestration.local import LocalCluster, request, wait_for  # noqa: E402


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="raftnet-demo-") as tmp, LocalCluster(Path(tmp), 3) as c:
        step("starting 3 nodes on 127.0.0.1")
        c.start()
        leader = c.leader(15)
        for n in c.nodes.values():
            st = n.status()
            print(f"  {n.id} {n.address:<22} role={st['role']:<9} term={st['term']}")
        step(f"writing 20 keys through the leader {leader.id}")
        for i in range(20):
            r = request(leader.address, "PUT", f"/v1/kv/key{i}", {"value": f"v{i}"})
            assert r.status == 200, r.body
        print(f"  committed up to index {leader.status()['commit_index']}")
        step(f"SIGKILL the leader {leader.id}")
        t0 = time.monotonic()
        c.kill(leader.id)
        new = c.leader(15)
        took = time.monotonic() - t0
        print(f"  new leader {new.id} (term {new.status()['term']}) after {took * 1000:.0f} ms")
        r = request(new.address, "PUT", "/v1/kv/after-failover", {"value": "yes"})
        print(f"  write on the new leader: HTTP {r.status} {r.body}")
        missing = [i for i in range(20) if request(new.address, "GET", f"/v1/kv/key{i}").status != 200]
        print(f"  acknowledged writes lost: {len(missing)}")
        step(f"restarting {leader.id} with its data dir")
        c.start(leader.id)
        target = new.status()["commit_index"]
        wait_for(lambda: leader.status()["last_applied"] >= target, 15, what="catch-up")
        got = request(leader.address, "GET", "/v1/kv/after-failover?stale=true").body
        print(f"  {leader.id} caught up to index {leader.status()['last_applied']};"
              f" it reads after-failover = {got['value']!r}")
        ok = not missing and r.status == 200
        print("\nVERDICT: " + ("ok, no acknowledged write lost" if ok else "FAILED"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
