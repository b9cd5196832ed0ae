// Copies the packages a production install needs from an installed node_modules to <dest>/node_modules:
// the packages package-lock.json does not mark dev, what `npm ci --omit=dev` would install. The
// lockfile decides, not `npm ls`, which misreads a node_modules that is a symlink. Fails when the
// installed tree differs from the lockfile, so a release never ships other versions than the ones
// locked. One process copies everything: a copy per package costs seconds on a busy host.
// Usage: node stageModules.mjs <project dir> <installed node_modules> <dest>
import { cpSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, relative } from "node:path";

const [projectDir, modulesDir, destDir] = process.argv.slice(2);
if (!projectDir || !modulesDir || !destDir) {
  process.stderr.write("usage: stageModules.mjs <project dir> <installed node_modules> <dest>\n");
  process.exit(2);
}
const lock = JSON.parse(readFileSync(join(projectDir, "package-lock.json"), "utf8"));
if (lock.lockfileVersion < 2) {
  process.stderr.write(`package-lock.json has lockfileVersion ${lock.lockfileVersion}; need 2 or later\n`);
  process.exit(1);
}
const problems = [];
const packages = [];
for (const [path, meta] of Object.entries(lock.packages)) {
  if (path === "" || meta.dev || meta.link) continue;
  const dir = join(modulesDir, path.replace(/^node_modules\//, ""));
  const manifest = join(dir, "package.json");
  if (!existsSync(manifest)) {
    // Optional packages for other platforms (e.g. another CPU's prebuilt binary) are not installed.
    if (meta.optional || meta.devOptional) continue;
    problems.push(`${path}: not installed`);
    continue;
  }
  const version = JSON.parse(readFileSync(manifest, "utf8")).version;
  if (meta.version && version !== meta.version)
    problems.push(`${path}: installed ${version}, locked ${meta.version}`);
  packages.push(path);
}
if (problems.length) {
  process.stderr.write(
    `node_modules does not match package-lock.json (run npm ci):\n  ${problems.join("\n  ")}\n`,
  );
  process.exit(1);
}

for (const path of packages.sort()) {
  const src = join(modulesDir, path.replace(/^node_modules\//, ""));
  // A native addon ships its compiled .node files, not its C sources or the compiler's objects.
  const native = existsSync(join(src, "binding.gyp"));
  const nodeFiles = native ? readdirSync(join(src, "build/Release")).filter((f) => f.endsWith(".node")) : [];
  cpSync(src, join(destDir, path), {
    recursive: true,
    verbatimSymlinks: true,
    preserveTimestamps: true,
    filter: (from) => {
      const rel = relative(src, from);
      // Nested packages production needs are in the list themselves; the rest are dev-only.
      if (rel === "node_modules") return false;
      if (!native) return true;
      const top = rel.split("/")[0];
      if (top === "deps" || top === "src") return false;
      if (top !== "build") return true;
      return (
        rel === "build" ||
        rel === "build/Release" ||
        (rel.startsWith("build/Release/") && nodeFiles.includes(basename(rel)))
      );
    },
  });
}
process.stdout.write(`${packages.length} production packages\n`);
