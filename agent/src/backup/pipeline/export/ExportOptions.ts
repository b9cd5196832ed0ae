import type { BackupJobStateMachine } from "../../BackupJobState.js";
import type { HistoryEntry } from "../history/HistoryEntry.js";
import type { DiskImages } from "./DiskImages.js";
import type { ExportServer } from "./ExportServer.js";

/** What the export stage is given beside the job's request. */
export interface ExportOptions {
  /** Where the export is served: unix sockets locally, TCP+TLS on the network path. */
  server: ExportServer;
  images: DiskImages;
  /**
   * The VM's sealed snapshots, oldest first: read from the repository locally, from the request
   * (TransferSpec.history) on the network path, where the VM host never opens the repository.
   */
  history: Promise<readonly HistoryEntry[]>;
  /**
   * Awaited beside planning, before anything is changed: locally the repository's shared lock, so
   * that a repository held by a prune fails the job before any checkpoint, freeze or export.
   */
  ready?: Promise<unknown>;
  /** The job's state: the export stage moves it planning → quiescing. */
  states: BackupJobStateMachine;
}
