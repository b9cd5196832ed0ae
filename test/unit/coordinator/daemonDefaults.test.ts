import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../../..");

describe("coordinator daemon defaults", () => {
  it("HTTP/2 servers advertise a 16 KiB stream window; object streams read 2 ahead", async () => {
    // In a child process: the settings are process-wide.
    const code = `
      const { applyDaemonDefaults } = await import(${JSON.stringify(join(root, "coordinator/src/daemonDefaults.ts"))});
      const http2 = (await import("node:http2")).default;
      const { getDefaultHighWaterMark } = await import("node:stream");
      applyDaemonDefaults();
      const server = http2.createServer({ settings: { maxConcurrentStreams: 7 } });
      server.listen(0, "127.0.0.1", () => {
        const c = http2.connect("http://127.0.0.1:" + server.address().port);
        c.on("remoteSettings", (s) => {
          console.log(JSON.stringify({ window: s.initialWindowSize, streams: s.maxConcurrentStreams, hwm: getDefaultHighWaterMark(true) }));
          c.close();
          server.close();
        });
      });`;
    const r = await execa("node", ["--import", "tsx", "--input-type=module", "-e", code], { cwd: root });
    expect(JSON.parse(r.stdout.trim())).toEqual({ window: 16 * 1024, streams: 7, hwm: 2 });
  });

  it("the daemon applies them before anything else starts", async () => {
    const src = await readFile(join(root, "coordinator/src/main.ts"), "utf8");
    const call = src.indexOf("applyDaemonDefaults();");
    expect(call).toBeGreaterThan(0);
    expect(call).toBeLessThan(src.indexOf("async function main"));
  });
});
