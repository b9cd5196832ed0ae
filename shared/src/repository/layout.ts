/** Object keys of the repository layout (format §2). */
export const CONFIG_KEY = "config";
export const SNAPSHOTS_PREFIX = "snapshots/";
export const INDEXES_PREFIX = "indexes/";
export const CHUNKS_PREFIX = "chunks/";
export const LOCKS_PREFIX = "locks/";
/** Version 2 (format §6a). */
export const PACKS_PREFIX = "packs/";
export const PACK_INDEXES_PREFIX = "packindex/";
/** Per-VM snapshot markers (format §7.2). */
export const VM_SNAPSHOTS_PREFIX = "vms/";

export function chunkKey(id: string): string {
  return `${CHUNKS_PREFIX}${id.slice(0, 2)}/${id}`;
}
export function packKey(id: string): string {
  return `${PACKS_PREFIX}${id.slice(0, 2)}/${id}`;
}
export function packIndexKey(id: string): string {
  return `${PACK_INDEXES_PREFIX}${id}`;
}
export function indexKey(id: string): string {
  return `${INDEXES_PREFIX}${id}`;
}
export function snapshotKey(id: string): string {
  return `${SNAPSHOTS_PREFIX}${id}`;
}
/** `vms/<vmKey>/<snapshotId>`: says snapshot `snapshotId` is of the VM `vmKey` names (format §7.2). */
export function vmSnapshotKey(vmKey: string, snapshotId: string): string {
  return `${VM_SNAPSHOTS_PREFIX}${vmKey}/${snapshotId}`;
}
/** The id part of a chunk or index key, or undefined for keys that are not one. */
export function idFromKey(key: string): string | undefined {
  const last = key.slice(key.lastIndexOf("/") + 1);
  return /^[0-9a-f]{64}$/.test(last) ? last : undefined;
}
