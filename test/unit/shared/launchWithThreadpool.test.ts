import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../../..");
const launcher = join(root, "shared/bin/launchWithThreadpool.cjs");
const fixture = join(root, "test/fixtures/countThreadpool.mjs");

/** Runs the fixture through the launcher, as the bins do; returns its thread count and pool size. */
async function launch(poolSize: string | undefined): Promise<{ threads: number; size: string }> {
  const env = { ...process.env };
  delete env.UV_THREADPOOL_SIZE;
  delete env.NODE_OPTIONS; // vitest's loader hooks would start the pool before the launcher runs
  if (poolSize) env.UV_THREADPOOL_SIZE = poolSize;
  const code = `require(${JSON.stringify(launcher)})(${JSON.stringify(fixture)})`;
  const r = await execa("node", ["-e", code], { env, extendEnv: false });
  return JSON.parse(r.stdout);
}

describe("launchWithThreadpool (the bins' CommonJS entry)", () => {
  it("starts the ES module entry with an 8-thread libuv pool, and keeps an operator's size", async () => {
    const ours = await launch(undefined);
    const four = await launch("4");
    const twelve = await launch("12");
    expect(ours.size).toBe("8");
    expect(four.size).toBe("4");
    // The threads really exist: the size was set before the pool started.
    expect(ours.threads - four.threads).toBe(4);
    expect(twelve.threads - ours.threads).toBe(4);
  });

  it("is what the agent unit and the cairn bin start, and each shim names a built entry", async () => {
    const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8"));
    expect(pkg.bin.cairn).toBe("cli/bin/cairn.cjs");
    const unit = await readFile(join(root, "systemd/cairn-agent.service"), "utf8");
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node \/opt\/cairn\/agent\/bin\/cairn-agent\.cjs /m);
    for (const shim of ["agent/bin/cairn-agent.cjs", "cli/bin/cairn.cjs"]) {
      const src = await readFile(join(root, shim), "utf8");
      expect(src, shim).toContain("launchWithThreadpool.cjs");
      const entry = /"\.\.\/\.\.\/dist\/([^"]+)\.js"/.exec(src)?.[1];
      expect(entry, shim).toBeDefined();
      await expect(readFile(join(root, `${entry}.ts`), "utf8")).resolves.toContain("import");
    }
  });
});
