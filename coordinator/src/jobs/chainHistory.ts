import type { JobRecord } from "../store/records.js";
import { wasFull } from "./newJob.js";

export interface ChainHistory {
  fullCount: number;
  runsSinceFull: number;
}

/** Per VM: how many fulls a policy made and how many runs since the newest one (from succeeded jobs). */
export function chainHistory(succeeded: readonly JobRecord[], policy: string): Map<string, ChainHistory> {
  const byVm = new Map<string, JobRecord[]>();
  for (const j of succeeded) {
    if (j.policy !== policy || (j.kind ?? "backup") !== "backup") continue;
    const l = byVm.get(j.vmUuid);
    if (l) l.push(j);
    else byVm.set(j.vmUuid, [j]);
  }
  const out = new Map<string, ChainHistory>();
  for (const [vm, jobs] of byVm) {
    jobs.sort((a, b) => (a.finishedMs ?? a.createdMs) - (b.finishedMs ?? b.createdMs));
    let fullCount = 0;
    let runsSinceFull = 0;
    for (const j of jobs) {
      if (wasFull(j)) {
        fullCount++;
        runsSinceFull = 0;
      } else runsSinceFull++;
    }
    out.set(vm, { fullCount, runsSinceFull });
  }
  return out;
}
