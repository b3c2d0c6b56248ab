#!/usr/bin/env bash
# The seed's integration test, rebuilt on the raftnet CLI:
#   scripts/test-cluster.sh [N]      (N = 3 or 5; needs root for namespaces)
# Brings up N nodes, writes, kills the leader, waits for the new one, checks
# the data, restarts the old leader, checks it rejoined and caught up, tears
# down. Each step prints PASS/FAIL and its time; the exit code tells.
set -uo pipefail
N=${1:-3}
case "$N" in 3|5) ;; *) echo "usage: $0 [3|5]" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "run 'make setup' first (no .venv)" >&2; exit 2; }
NAME="tc$$"
export RAFTNET_HOME="${RAFTNET_HOME:-/tmp/raftnet-$(id -u)}"
rn() { "$PY" -m harness --name "$NAME" "$@"; }
failed=0
t_start=$(date +%s.%N)

step() {  # step "description" command...
  local what=$1; shift
  local t0 t1 out rc
  t0=$(date +%s.%N)
  out=$("$@" 2>&1); rc=$?
  t1=$(date +%s.%N)
  if [ $rc = 0 ]; then
    printf 'PASS  %-52s %6.2fs\n' "$what" "$(awk "BEGIN{print $t1 - $t0}")"
  else
    printf 'FAIL  %-52s %6.2fs\n' "$what" "$(awk "BEGIN{print $t1 - $t0}")"
    printf '%s\n' "$out" | sed 's/^/      /' | tail -5
    failed=1
  fi
  return $rc
}

json() { rn status --json; }
leader() { json | "$PY" -c 'import json,sys; d=json.load(sys.stdin); l=[n for n in d["nodes"] if n["role"]=="leader"]; print(l[0]["id"] if l else "")'; }
addr_of() { json | "$PY" -c "import json,sys; d=json.load(sys.stdin); print([n['address'] for n in d['nodes'] if n['id']=='$1'][0])"; }
http() { "$PY" - "$@" <<'PYEOF'
import json, sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.read().decode()); sys.exit(1)
PYEOF
}
wait_until() {  # wait_until SECONDS command...
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$deadline" ] && return 1; sleep 0.2; done
}
has_leader() { [ -n "$(leader)" ]; }
new_leader() { local l; l=$(leader); [ -n "$l" ] && [ "$l" != "$OLD" ]; }
caught_up() {
  json | "$PY" -c "import json,sys; d=json.load(sys.stdin); n={x['id']:x for x in d['nodes']}; \
ld=[x for x in n.values() if x['role']=='leader'][0]; sys.exit(0 if n['$OLD']['last_applied']==ld['commit_index'] else 1)"
}
write_keys() { local a; a=$(addr_of "$(leader)"); for i in $(seq 1 10); do http PUT "http://$a/v1/kv/key$i" "{\"value\":\"v$i\"}" || return 1; done; }
check_keys() { local a; a=$(addr_of "$1"); for i in $(seq 1 10); do http GET "http://$a/v1/kv/key$i?stale=${2:-false}" | grep -q "\"v$i\"" || return 1; done; }
cleanup() { rn down >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "raftnet integration test: $N nodes (cluster $NAME)"
step "bring up $N nodes" rn up --nodes "$N" || exit 1
step "a leader is elected" wait_until 20 has_leader
OLD=$(leader)
step "write 10 keys through the leader ($OLD)" write_keys
step "kill the leader ($OLD)" rn kill "$OLD"
step "a new leader is elected" wait_until 20 new_leader
NEW=$(leader)
step "every key readable on the new leader ($NEW)" check_keys "$NEW"
step "a write on the new leader commits" http PUT "http://$(addr_of "$NEW")/v1/kv/after" '{"value":"failover"}'
step "restart the old leader ($OLD)" rn restart "$OLD"
step "the old leader rejoined and caught up" wait_until 30 caught_up
step "the old leader has every key" check_keys "$OLD" true
step "tear down" rn down
trap - EXIT
printf '%s in %.1fs\n' "$([ $failed = 0 ] && echo PASSED || echo FAILED)" "$(awk "BEGIN{print $(date +%s.%N) - $t_start}")"
exit $failed
