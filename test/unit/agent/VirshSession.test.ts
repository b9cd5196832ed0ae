import { getEventListeners } from "node:events";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VirshSession } from "../../../agent/src/hypervisor/VirshSession.js";

/**
 * A stand-in for `virsh -q` reading commands from stdin, for the session's own logic: `sleep MS`
 * answers "slept" after MS ms, `echo W` prints W, `domstate NAME` fails on stderr as virsh does for
 * an unknown domain. The real virsh is exercised by the lab tests.
 */
const FAKE_VIRSH = `#!/usr/bin/env node
const words = (line) => [...line.matchAll(/'([^']*)'|(\\S+)/g)].map((m) => m[1] ?? m[2]);
let queue = Promise.resolve();
let buf = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (s) => {
  buf += s;
  let i;
  while ((i = buf.indexOf("\\n")) >= 0) {
    const w = words(buf.slice(0, i));
    buf = buf.slice(i + 1);
    queue = queue.then(async () => {
      if (w[0] === "sleep") {
        await new Promise((r) => setTimeout(r, Number(w[1])));
        process.stdout.write("slept\\n");
      } else if (w[0] === "echo") process.stdout.write(w.slice(1).join(" ") + "\\n");
      else if (w[0] === "domstate") process.stderr.write("error: failed to get domain '" + w[1] + "'\\n");
      else process.stderr.write("error: unknown command: '" + w[0] + "'\\n");
    });
  }
});
`;

describe("VirshSession", () => {
  let dir: string;
  let binary: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-virsh-"));
    binary = join(dir, "virsh");
    await writeFile(binary, FAKE_VIRSH);
    await chmod(binary, 0o755);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("leaves no abort listener on the caller's signal, however long a command waits", async () => {
    const session = new VirshSession("test:///fake", binary);
    const signal = new AbortController().signal;
    try {
      // Each command outlasts several of the session's 100 ms wake-up ticks.
      for (let i = 0; i < 4; i++) {
        expect(await session.run(["sleep", "250"], { signal, timeoutMs: 5_000 })).toBe("slept");
        expect(getEventListeners(signal, "abort")).toHaveLength(0);
      }
    } finally {
      session.kill();
    }
  });

  it("reports a failing command with virsh's error and stays usable", async () => {
    const session = new VirshSession("test:///fake", binary);
    const signal = new AbortController().signal;
    try {
      await expect(session.run(["no-such-command"], { signal, timeoutMs: 5_000 })).rejects.toThrow(
        /unknown command/,
      );
      expect(await session.run(["sleep", "1"], { signal, timeoutMs: 5_000 })).toBe("slept");
    } finally {
      session.kill();
    }
  });

  it("an abort ends the wait at once, kills the process, and leaves no listener", async () => {
    const session = new VirshSession("test:///fake", binary);
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(new Error("operator cancelled")), 150);
    await expect(
      session.run(["sleep", "5000"], { signal: ac.signal, timeoutMs: 10_000 }),
    ).rejects.toMatchObject({
      code: "aborted",
    });
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
    // The next command starts a new process.
    const signal = new AbortController().signal;
    expect(await session.run(["sleep", "1"], { signal, timeoutMs: 5_000 })).toBe("slept");
    session.kill();
  });
});
