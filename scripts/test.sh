#!/usr/bin/env bash
# The whole test suite: setup (idempotent), lint, then unit, integration and lab tiers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[test] lint (biome + buf lint)"
npm run --silent lint
echo "[test] vitest: unit, integration, lab"
exec npx vitest run "$@"
