#!/usr/bin/env bash
# A scripted tour of the CLI: a 5-node cluster, a partition, a stranded
# leader, a bridge, a one-way cut, packet loss, and the heal after each.
# Needs root (namespaces). Press Enter between steps, or set TOUR_FAST=1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RN="$ROOT/.venv/bin/python -m harness --name tour"
pause() { echo; echo "\$ $*"; [ "${TOUR_FAST:-0}" = 1 ] || read -r -p "(enter) " _; }
run() { pause "$@"; eval "$*"; }
trap '$RN down >/dev/null 2>&1 || true' EXIT
run "$RN up --nodes 5"
LEADER=$($RN status --json | "$ROOT/.venv/bin/python" -c 'import json,sys; print([n["id"] for n in json.load(sys.stdin)["nodes"] if n["role"]=="leader"][0])')
echo "the leader is $LEADER"
run "$RN isolate $LEADER            # the leader alone: it steps down within an election timeout"
run "sleep 2; $RN status            # the other four elected a new leader in a higher term"
run "$RN heal && sleep 1 && $RN status"
run "$RN partition n1,n2 n3,n4,n5   # a 2|3 split: only the majority side can commit"
run "sleep 2; $RN status"
run "$RN heal && $RN bridge n3      # n3 sees both halves, the halves do not see each other"
run "sleep 2; $RN status"
run "$RN heal && $RN cut n1 n2      # one-way: n1's messages never reach n2"
run "$RN loss n4 30 && $RN status   # and 30% packet loss on n4"
run "$RN heal && $RN down"
trap - EXIT
