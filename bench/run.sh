#!/usr/bin/env bash
# `npm run bench`: installs what is missing, builds the tunnel, runs every scenario through every path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/setup.sh
npm run --silent build
exec node --import tsx bench/main.ts "$@"
