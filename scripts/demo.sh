#!/usr/bin/env bash
# `npm run demo`: a running guest live-migrated by `nbd-tunnel migrate` (disk and RAM through one
# TLS WebSocket) and checked on the destination; `-- --storage-only`: a 1 GiB disk mirrored
# through the tunnel and verified; `--direct` adds the baseline without the tunnel. setup.sh
# first installs what is missing (npm packages, QEMU, the guest's kernel and busybox).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent build
exec node --import tsx scripts/demo.ts "$@"
