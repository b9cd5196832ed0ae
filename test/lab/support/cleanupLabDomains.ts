import type { LabHost } from "./LabHost.js";
import { LAB_DOMAIN_PREFIX } from "./labPaths.js";
import { run } from "./run.js";

/** Destroys and undefines every lab domain (name prefix) on a host; returns the names removed. */
export async function cleanupLabDomains(host: LabHost): Promise<string[]> {
  const r = await run("virsh", ["-q", "-c", host.uri, "list", "--all", "--name"], { allowFailure: true });
  if (r.exitCode !== 0) return [];
  const names = r.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((n) => n.startsWith(LAB_DOMAIN_PREFIX));
  for (const n of names) {
    await run("virsh", ["-c", host.uri, "destroy", n], { allowFailure: true });
    await run(
      "virsh",
      ["-c", host.uri, "undefine", n, "--checkpoints-metadata", "--snapshots-metadata", "--nvram"],
      {
        allowFailure: true,
      },
    );
  }
  return names;
}
