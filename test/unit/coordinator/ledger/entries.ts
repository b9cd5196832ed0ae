import type { LedgerEntry } from "../../../../coordinator/src/store/records.js";

/** A ledger entry for unit tests: committed full of vda on host A, made at `createdMs`. */
export const entry = (over: Partial<LedgerEntry> = {}): LedgerEntry => ({
  vmUuid: "u1",
  checkpoint: "cairn-1",
  target: "vda",
  parent: null,
  bitmap: over.checkpoint ?? "cairn-1",
  xml: `<domaincheckpoint>\n  <name>${over.checkpoint ?? "cairn-1"}</name>\n</domaincheckpoint>`,
  hostId: "A",
  snapshotId: "s1",
  jobId: "j1",
  repository: "main",
  kind: "full",
  state: "committed",
  reason: "",
  createdMs: 100,
  changedMs: 100,
  ...over,
});
