import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { ensureDebianPackages } from "./support/ensureDebianPackages.js";
import { Lab } from "./support/lab.js";
import { run } from "./support/run.js";
import { startSecondHost } from "./support/SecondHost.js";

describe("lab failures are bounded and say what is wrong", () => {
  const lab = new Lab();
  afterAll(() => lab.dispose());

  it("a guest whose agent never answers fails within the timeout, with state and console", async () => {
    const vm = await lab.createVm({ label: "noagent", disks: [{ kind: "ext4-data" }], guestAgent: false });
    await vm.start();
    const t = Date.now();
    const err = await vm.waitForAgent(8_000).then(
      () => undefined,
      (e: Error) => e,
    );
    const elapsed = Date.now() - t;
    expect(err?.message).toMatch(/timed out after 8000 ms waiting for the guest agent of cairn-lab-noagent-/);
    expect(err?.message).toMatch(/domain state: running/);
    expect(err?.message).toMatch(/console \(last lines\)/);
    expect(elapsed).toBeLessThan(8_000 + 20_000);
  });

  it("a libvirtd that fails to start is reported, and its helpers are stopped", async () => {
    const dir = join(inject("cairnLab").runRoot, `host2-broken-${process.pid}`);
    const before = await daemonPids();
    const t = Date.now();
    const err = await startSecondHost(dir, {
      timeoutMs: 30_000,
      extraLibvirtdConf: "this is not valid libvirt config",
    }).then(
      (h) => h.stop().then(() => undefined),
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/second libvirtd failed to start/);
    expect(Date.now() - t).toBeLessThan(45_000);
    expect(await daemonPids()).toEqual(before); // its virtlogd and virtlockd were stopped too
    expect(existsSync(dir)).toBe(false);
  });

  it("a missing Debian package fails with the package named", async () => {
    await expect(ensureDebianPackages(["cairn-no-such-package"])).rejects.toThrow(
      /could not install Debian packages cairn-no-such-package/,
    );
  });
});

async function daemonPids(): Promise<string[]> {
  const r = await run("pgrep", ["-x", "libvirtd|virtlogd|virtlockd"], { allowFailure: true });
  return r.stdout.split("\n").filter(Boolean).sort();
}
