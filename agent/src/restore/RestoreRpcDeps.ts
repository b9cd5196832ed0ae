import type { Repository } from "../../../shared/src/repository/Repository.js";
import type { JobRegistry } from "../jobs/JobRegistry.js";

/** What the restore RPCs need from the agent (RestoreDisk: only these; RestoreVm adds libvirt). */
export interface RestoreRpcDeps {
  jobs: JobRegistry;
  openRepository(location: string, signal: AbortSignal): Promise<Repository>;
}
