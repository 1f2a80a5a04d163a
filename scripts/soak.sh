#!/usr/bin/env bash
# `npm run soak -- --minutes N`: the soak test's connections and resets for N minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent build
exec node --import tsx scripts/soak.ts "$@"
