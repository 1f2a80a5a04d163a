#!/usr/bin/env bash
# `npm test`: installs what is missing (npm packages, QEMU tools), builds, runs every suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent typecheck
npm run --silent build
mapfile -t files < <(find test -name '*.test.ts' | sort)
# e2e suites start QEMU daemons and proxies: one file at a time keeps 2-core machines honest.
exec node --import tsx --test --test-concurrency=1 "$@" "${files[@]}"
