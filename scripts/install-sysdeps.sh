#!/bin/sh
# Installs the Debian/Ubuntu packages raftnet's harness needs when they are
# missing and we are root: nftables and iptables (partitions, packet loss),
# iproute2 (for humans), wrk (the benchmark's load generator; RAFTNET_WITH_WRK=1),
# ruby (only to check the Vagrantfile's syntax: RAFTNET_WITH_RUBY=1, from `make setup-dev`),
# libfuse3-3 and fuse3 (powerfs, the power-cut disks: mfusepy loads libfuse3.so.3),
# libfaketime and faketime (skewed clocks: libfaketime is preloaded into the nodes),
# etcd-server (the second system under test; its packaged service is stopped and
# disabled again when we installed it: the lab starts its own etcd processes),
# and with RAFTNET_WITH_CHROMIUM=1 (a developer's or CI's test run) chromium, for the test
# that renders report.html headless (it skips without one).
# Quick when everything is there; a no-op (with a hint) when not root.
set -eu
missing=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have nft || missing="$missing nftables"
have iptables || missing="$missing iptables"
have ip || missing="$missing iproute2"
if [ "${RAFTNET_WITH_RUBY:-0}" = 1 ]; then
  have ruby || missing="$missing ruby"  # the Vagrantfile syntax check (make check, a development target)
fi
ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3' || /sbin/ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3' \
  || missing="$missing libfuse3-3"
have fusermount3 || missing="$missing fuse3"
have etcd || missing="$missing etcd-server"
faketime_lib=""
for f in /usr/lib/*/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1; do
  [ -e "$f" ] && faketime_lib="$f"
done
[ -n "$faketime_lib" ] || missing="$missing libfaketime"
have faketime || missing="$missing faketime"
if [ "${RAFTNET_WITH_WRK:-0}" = 1 ]; then
  have wrk || missing="$missing wrk"
fi
if [ "${RAFTNET_WITH_CHROMIUM:-0}" = 1 ]; then
  have chromium || have chromium-browser || missing="$missing chromium"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "note: missing system packages:$missing (run 'sudo make setup' to install them; namespace tests need them)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: missing system packages:$missing and no apt-get here; install them by hand" >&2
  exit 0
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
case "$missing" in
  *etcd-server*)
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl disable --now etcd >/dev/null 2>&1 || true
    fi ;;
esac
