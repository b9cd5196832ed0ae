import { readFile } from "node:fs/promises";
import { APT_PACKAGES_FILE } from "./labPaths.js";
import { LabError, run } from "./run.js";

/** The package list shared with scripts/setup.sh (one source of truth). */
export async function labPackageList(): Promise<string[]> {
  const text = await readFile(APT_PACKAGES_FILE, "utf8");
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
}

export async function missingDebianPackages(names: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const n of names) {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query format, not JS
    const r = await run("dpkg-query", ["-W", "-f=${Status}", n], { allowFailure: true, timeoutMs: 15_000 });
    if (!r.stdout.includes("install ok installed")) missing.push(n);
  }
  return missing;
}

/** Installs whatever of `names` is missing; idempotent and quick when all are present. */
export async function ensureDebianPackages(names: readonly string[]): Promise<void> {
  const missing = await missingDebianPackages(names);
  if (missing.length === 0) return;
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    run("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...missing], {
      env,
      timeoutMs: 600_000,
      allowFailure: true,
    });
  let r = await install();
  if (r.exitCode !== 0) {
    await run("apt-get", ["update", "-q"], { env, timeoutMs: 300_000 });
    r = await install();
  }
  if (r.exitCode !== 0) {
    const why = (r.stderr || r.stdout).trim().split("\n").slice(-5).join("\n");
    throw new LabError(`could not install Debian packages ${missing.join(", ")}: ${why}`);
  }
}
