#!/usr/bin/env bash
# Provision a Debian/Ubuntu machine for raftnet: the same set-up the Makefile
# uses. Used by the Vagrantfile, and usable on a bare host:
#   sudo vagrant/provision.sh [REPO_DIR]
# Idempotent: a second run changes nothing and is quick.
set -euo pipefail
REPO=${1:-$(cd "$(dirname "$0")/.." && pwd)}
if [ "$(id -u)" != 0 ]; then
  echo "provision.sh: run as root (sudo)" >&2
  exit 2
fi
need=""
for pkg in python3 python3-venv make nftables iptables iproute2 git fuse3 libfuse3-3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
  echo "installing:$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need
fi
# namespaces and nftables need these modules on some minimal images
for mod in nf_tables veth bridge fuse; do modprobe "$mod" 2>/dev/null || true; done
make -C "$REPO" setup
echo "raftnet provisioned in $REPO: run 'sudo make test-partitions' or 'sudo make demo' there"
