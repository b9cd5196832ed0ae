/** What a lifecycle event means to the ledger (docs/checkpoint-ledger.md §3). */
export type LedgerEventMeaning = "crash" | "runs" | "other";

/**
 * Pure. `crash`: QEMU stopped without saving its bitmaps (libvirt's `crashed`, or `stopped` with
 * detail `crashed`/`failed`: QEMU killed, host lost). `runs`: the VM now runs on the reporting host
 * (started, or resumed after an incoming migration; a polled inventory says so with state running).
 * libvirt 9.0 sends `started/migrated` on the destination when the incoming migration *begins*
 * (paused, the bitmaps not yet handed over): only the `resumed/migrated` at its end counts.
 */
export function classifyVmEvent(e: { kind: string; detail: string; state: string }): LedgerEventMeaning {
  if (e.kind === "crashed") return "crash";
  if (e.kind === "stopped" && (e.detail === "crashed" || e.detail === "failed")) return "crash";
  if (e.kind === "started") return e.detail === "migrated" ? "other" : "runs";
  if (e.kind === "resumed" && e.detail === "migrated") return "runs";
  if (e.state === "running" && (e.kind === "defined" || e.kind === "changed")) return "runs";
  return "other";
}
