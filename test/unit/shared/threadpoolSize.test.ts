import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../../..");

describe("libuv threadpool size for backup writers", () => {
  it("defaults to 8 and keeps an operator's UV_THREADPOOL_SIZE", async () => {
    const code = `await import(${JSON.stringify(join(root, "shared/src/runtime/threadpoolSize.ts"))}); console.log(process.env.UV_THREADPOOL_SIZE)`;
    const env = { ...process.env };
    delete env.UV_THREADPOOL_SIZE;
    const unset = await execa("node", ["--import", "tsx", "--input-type=module", "-e", code], {
      env,
      extendEnv: false,
      cwd: root,
    });
    expect(unset.stdout.trim()).toBe("8");
    const set = await execa("node", ["--import", "tsx", "--input-type=module", "-e", code], {
      env: { ...env, UV_THREADPOOL_SIZE: "3" },
      extendEnv: false,
      cwd: root,
    });
    expect(set.stdout.trim()).toBe("3");
  });

  it("is the first import of every entry point that writes backups (libuv reads it once)", async () => {
    for (const entry of ["agent/src/main.ts", "coordinator/src/cli/main.ts", "bench/backup/benchBackup.ts"]) {
      const src = await readFile(join(root, entry), "utf8");
      const first = /^import\s.*$/m.exec(src)?.[0];
      expect(first, entry).toMatch(/runtime\/threadpoolSize\.js/);
    }
  });
});
