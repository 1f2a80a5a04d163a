#!/usr/bin/env bash
# `npm run demo`: a 1 GiB disk mirrored by real QEMU through the tunnel, verified, with its throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent build
exec node --import tsx scripts/demo.ts "$@"
