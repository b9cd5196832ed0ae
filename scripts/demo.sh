#!/usr/bin/env bash
# The README's demo: installs what it needs (idempotent), builds, then runs scripts/demo/runDemo.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --import tsx scripts/demo/runDemo.ts "$@"
