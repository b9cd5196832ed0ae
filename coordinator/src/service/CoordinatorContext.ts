import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { RunningOnAgents } from "../agents/RunningOnAgents.js";
import type { FailedAuthAudit } from "../auth/FailedAuthAudit.js";
import type { CoordinatorConfig } from "../config/CoordinatorConfig.js";
import type { EventSink } from "../fleet/EventSink.js";
import type { JobHub } from "../jobs/JobHub.js";
import type { JobRunner } from "../jobs/JobRunner.js";
import type { Ledger } from "../ledger/Ledger.js";
import type { Maintenance } from "../maintenance/Maintenance.js";
import type { CoordinatorMetrics } from "../metrics/CoordinatorMetrics.js";
import type { CertificateAuthority } from "../pki/CertificateAuthority.js";
import type { Restores } from "../restore/Restores.js";
import type { PolicyCache } from "../scheduler/PolicyCache.js";
import type { Store } from "../store/Store.js";
import type { Reach } from "../transfer/Reach.js";

/** Everything the RPC handlers need; built once by startCoordinator. */
export interface CoordinatorContext {
  store: Store;
  hub: JobHub;
  runner: JobRunner;
  policies: PolicyCache;
  /** Absent when the coordinator runs without a CA (tests of plaintext mode only). */
  ca: CertificateAuthority | undefined;
  log: Logger;
  config: CoordinatorConfig;
  metrics: CoordinatorMetrics;
  /** Group commit of domain events from every agent. */
  events: EventSink;
  now(): number;
  /** Asks for a scheduling pass soon (after BackupNow, Register, ...). */
  kick(): void;
  audit(principal: string, action: string, target: string, detail?: string): Promise<void>;
  maintenance: Maintenance;
  /** Restores as jobs (docs/restore.md §1). */
  restores: Restores;
  ledger: Ledger;
  /** Repository reach: probes agents (docs/transfer-paths.md §2). */
  reach: Reach;
  /** What each agent's last heartbeat said it runs: decides re-attach or re-run of interrupted jobs. */
  runningOnAgents: RunningOnAgents;
  /** Refused authentications into the audit log, rate-limited. */
  failedAuth: FailedAuthAudit;
}
