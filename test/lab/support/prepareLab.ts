import { mkdir } from "node:fs/promises";
import { cleanupLabDomains } from "./cleanupLabDomains.js";
import { ensureDebianPackages, labPackageList } from "./ensureDebianPackages.js";
import { buildGuest, installGuest } from "./guest/buildGuest.js";
import { MAIN_HOST } from "./LabHost.js";
import type { LabConfig } from "./labConfig.js";
import { LAB_CACHE_DIR, LAB_RUN_ROOT } from "./labPaths.js";
import { startLibvirt, stopDaemons } from "./libvirtDaemons.js";

export interface PreparedLab {
  config: LabConfig;
  summary: string;
  /** Removes lab domains and stops exactly the daemons this call started. */
  teardown(): Promise<void>;
}

/**
 * Debian packages, libvirt's daemons (started by hand: no systemd here), and the tiny guest (built
 * once, cached). Used by the lab tier's global setup, the benchmarks and the demo.
 */
export async function prepareLab(): Promise<PreparedLab> {
  const t0 = Date.now();
  await ensureDebianPackages(await labPackageList());
  const daemons = await startLibvirt({ timeoutMs: 90_000 });
  const stale = await cleanupLabDomains(MAIN_HOST);
  await mkdir(LAB_RUN_ROOT, { recursive: true });
  const guest = await installGuest(await buildGuest(LAB_CACHE_DIR), LAB_RUN_ROOT);
  const started = daemons.pids.length
    ? `started (${daemons.pids.map((p) => `${p.name}=${p.pid}`).join(" ")})`
    : "already running";
  return {
    config: { guest, runRoot: LAB_RUN_ROOT },
    summary: `ready in ${Date.now() - t0} ms: libvirt ${started}, guest ${guest.key}${stale.length ? `, removed stale domains ${stale.join(" ")}` : ""}`,
    async teardown() {
      await cleanupLabDomains(MAIN_HOST);
      await stopDaemons(daemons);
    },
  };
}
