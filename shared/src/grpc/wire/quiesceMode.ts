import { QuiesceMode as WireQuiesceMode } from "../../gen/cairn/v1/common.js";
import { enumMapping } from "./enumMapping.js";

/** Whether a backup freezes the guest's filesystems (see QuiesceMode in common.proto). */
export type QuiesceMode = "required" | "preferred" | "off";

export const quiesceMode = enumMapping<QuiesceMode, WireQuiesceMode>("a quiesce mode", {
  required: WireQuiesceMode.QUIESCE_MODE_REQUIRED,
  preferred: WireQuiesceMode.QUIESCE_MODE_PREFERRED,
  off: WireQuiesceMode.QUIESCE_MODE_OFF,
});
