#!/usr/bin/env bash
# Brings a fresh clone to a runnable state: npm dependencies, the QEMU tools, and what the
# live-migration tests boot (qemu-system-x86_64, a kernel, busybox) and drive (libvirt).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi
bash scripts/ensure-qemu.sh
bash scripts/ensure-guest.sh
bash scripts/ensure-libvirt.sh
