#!/usr/bin/env bash
# Builds the release tarball dist-release/cairn-<version>-<platform>-<arch>.tar.gz: the compiled
# code, the bins, the systemd units, example configs, scripts/install.sh and the production
# node_modules (copied from this checkout's installed tree, native addons included, so the target
# host needs no compiler and no registry). Same inputs, same tarball (sorted, fixed owner and time).
# Usage: scripts/package.sh [--no-build]   (--no-build: package the dist/ that is already there)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "package.sh: unknown argument $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

die() {
  echo "package.sh: $*" >&2
  exit 1
}

[[ -d node_modules ]] || die "no node_modules here: run scripts/setup.sh (or npm ci) first"
if ((build)); then npm run -s build; fi
[[ -f dist/coordinator/src/main.js && -f dist/agent/src/main.js && -f dist/cli/src/main.js ]] ||
  die "dist/ is incomplete: run npm run build (or drop --no-build)"

version=$(node -p 'require("./package.json").version')
# The daemons report dist's version; a release named after another one would mislead operators.
built=$(node --input-type=module -e 'import("./dist/shared/src/version.js").then((m) => console.log(m.CAIRN_VERSION))')
[[ "$built" == "$version" ]] || die "package.json says $version but shared/src/version.ts says $built"
platform=$(node -p 'process.platform + "-" + process.arch')
name="cairn-$version-$platform"
out="$REPO/dist-release"
stage="$out/.stage"
top="$stage/cairn-$version"

rm -rf "$stage"
mkdir -p "$top"

# Compiled JavaScript only: declarations and source maps point at TypeScript the release lacks.
rsync -a --exclude='*.d.ts' --exclude='*.map' --exclude='*.tsbuildinfo' dist/ "$top/dist/"
for d in cli/bin agent/bin shared/bin systemd examples; do
  mkdir -p "$top/$d"
  rsync -a "$d/" "$top/$d/"
done
mkdir -p "$top/scripts"
cp scripts/install.sh "$top/scripts/install.sh"
cp package.json package-lock.json README.md "$top/"

node scripts/release/stageModules.mjs "$REPO" "$(readlink -f node_modules)" "$top" >/dev/null

# What install.sh checks on the target: native addons only load into the same Node ABI.
node -e '
  const v = process.versions;
  console.log(`version=${process.argv[1]}\nplatform=${process.argv[2]}\nnode=${v.node}\nnodeModules=${v.modules}`);
' "$version" "$platform" >"$top/RELEASE"

# The release must start on its own: load every entry and both native addons from the staged tree.
(
  cd "$top"
  node -e 'new (require("better-sqlite3"))(":memory:").close(); require("zstd-napi");'
  node cli/bin/cairn.cjs --version >/dev/null
  node dist/coordinator/src/main.js --version >/dev/null
  node agent/bin/cairn-agent.cjs --version >/dev/null
) || die "the staged release does not start (see above)"

chmod -R u+rwX,go+rX,go-w "$top"
# Reproducible: the commit's time, when there is one, for every file.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
tarball="$out/$name.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - "cairn-$version" |
  gzip -n >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
rm -rf "$stage"
echo "$tarball"
