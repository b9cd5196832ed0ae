#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (root, Node >= 20):
# Debian packages, node_modules (native addons built from source once), code generation and build.
# Safe to run again: each step is skipped when its result is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: Cairn installs Debian packages and drives libvirt"
command -v node >/dev/null || die "Node.js >= 20 is required (node not found on PATH)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js >= 20 is required, found $(node --version)"

# 1. Debian packages: install only what is missing.
mapfile -t wanted < <(grep -Ev '^\s*(#|$)' scripts/apt-packages.txt)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || die "apt-get update failed (is Debian's package mirror reachable?)"
  apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install failed for: ${missing[*]}"
else
  log "Debian packages: all present"
fi
# The lab downloads the guest kernel with apt-get download: it needs package lists.
[ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -E '^(lock|partial|auxfiles)$')" ] || apt-get update -q

# 2. node_modules: npm ci only when the lockfile or Node changed since the last install.
stamp_want="$(sha256sum package-lock.json | cut -c1-16)-node$(node -p process.versions.modules)"
stamp_file=node_modules/.cairn-install-stamp
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_want" ]; then
  log "npm install from the lockfile (better-sqlite3 and zstd-napi compile from source: ~2 min the first time)"
  # Not `npm ci`: the registry reachable here lacks some other platforms' optional binaries
  # (@biomejs/cli-android-*, @bufbuild/buf-win32-*), which npm ci insists on finding in the lockfile.
  # npm install keeps the locked versions. The prebuilt-addon download is unreachable: build from source.
  npm_config_build_from_source=true npm install --no-audit --no-fund --loglevel=error
  # npm may rewrite the lockfile (entries for other platforms' optional binaries): stamp what it left.
  echo "$(sha256sum package-lock.json | cut -c1-16)-node$(node -p process.versions.modules)" > "$stamp_file"
else
  log "node_modules: up to date"
fi

# 3. Generate gRPC code and compile.
log "build (buf generate + tsc)"
npm run --silent build
log "done"
