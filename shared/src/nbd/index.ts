// Public surface of the NBD module: what the backup and restore paths import.
export type { BlockDevice } from "./BlockDevice.js";
export {
  BASE_ALLOCATION,
  NBD_STATE_DIRTY,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  QEMU_DIRTY_BITMAP_PREFIX,
} from "./constants.js";
export type { Extent, ExtentKind, PlannedExtent } from "./extents/Extent.js";
export { intersectDirtyWithAllocation, planFromAllocation } from "./extents/intersectDirtyWithAllocation.js";
export { mergeExtents } from "./extents/mergeExtents.js";
export { iterateSplit, type SplitOptions, splitExtents } from "./extents/splitExtents.js";
export { FileBlockDevice } from "./FileBlockDevice.js";
export { MemoryBlockDevice } from "./MemoryBlockDevice.js";
export { NbdClient, type NbdClientOptions, type OpOptions, type WriteOptions } from "./NbdClient.js";
export type { NbdConnectOptions, NbdTlsOptions } from "./NbdConnection.js";
export { NbdServer, type NbdServerOptions, type NbdServerTls } from "./NbdServer.js";
export { describeTarget, type NbdTarget } from "./openSocket.js";
export {
  DEFAULT_DEPTH,
  DEFAULT_REQUEST_SIZE,
  type ExtentPiece,
  type ReadExtentsOptions,
  readExtents,
  readExtentsTo,
} from "./readExtents.js";
