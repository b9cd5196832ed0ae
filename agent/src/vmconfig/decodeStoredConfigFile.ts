import { createHash } from "node:crypto";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { decodeInlineBlob } from "../../../shared/src/repository/manifest/inlineBlob.js";
import type { StoredConfigFile } from "../../../shared/src/repository/manifest/VmConfigFiles.js";

/**
 * The bytes of a configuration file a manifest stores, checked against its recorded size and
 * SHA-256 (a mismatch is `corrupt`: nothing of it may be written). `what` names it in messages.
 */
export function decodeStoredConfigFile(f: StoredConfigFile, what: string): Buffer {
  const data = decodeInlineBlob(f.data, what);
  const sha256 = createHash("sha256").update(data).digest("hex");
  if (data.length !== f.size || sha256 !== f.sha256)
    throw new CairnError(
      "corrupt",
      `${what} is corrupt: ${data.length} bytes with sha256 ${sha256}, recorded ${f.size} bytes with sha256 ${f.sha256}`,
      { hint: "restore it from another snapshot or another copy of the repository" },
    );
  return data;
}
