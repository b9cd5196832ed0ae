import { mkdir } from "node:fs/promises";
import type { TestProject } from "vitest/node";
import { cleanupLabDomains } from "./support/cleanupLabDomains.js";
import { ensureDebianPackages, labPackageList } from "./support/ensureDebianPackages.js";
import { buildGuest, installGuest } from "./support/guest/buildGuest.js";
import "./support/labConfig.js";
import { MAIN_HOST } from "./support/LabHost.js";
import { LAB_CACHE_DIR, LAB_RUN_ROOT } from "./support/labPaths.js";
import { startLibvirt, stopDaemons } from "./support/libvirtDaemons.js";

/**
 * Lab tier setup: Debian packages, libvirt's daemons (started by hand: no systemd here), and the
 * tiny guest (built once, cached). Teardown removes lab domains and stops exactly the daemons it started.
 */
export default async function setup(project: TestProject) {
  const t0 = Date.now();
  await ensureDebianPackages(await labPackageList());
  const daemons = await startLibvirt({ timeoutMs: 90_000 });
  const stale = await cleanupLabDomains(MAIN_HOST);
  await mkdir(LAB_RUN_ROOT, { recursive: true });
  const guest = await installGuest(await buildGuest(LAB_CACHE_DIR), LAB_RUN_ROOT);
  project.provide("cairnLab", { guest, runRoot: LAB_RUN_ROOT });
  console.log(
    `[lab] ready in ${Date.now() - t0} ms: libvirt ${daemons.pids.length ? `started (${daemons.pids.map((p) => `${p.name}=${p.pid}`).join(" ")})` : "already running"}, guest ${guest.key}${stale.length ? `, removed stale domains ${stale.join(" ")}` : ""}`,
  );
  return async () => {
    await cleanupLabDomains(MAIN_HOST);
    await stopDaemons(daemons);
  };
}
