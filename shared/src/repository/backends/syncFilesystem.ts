import { execa } from "execa";
import { CairnError } from "../../errors/CairnError.js";

/**
 * syncfs(2) on the filesystem holding `path` (coreutils `sync -f`; Node has no binding): flushes
 * every dirty page and metadata update of that filesystem in one call.
 */
export async function syncFilesystem(path: string, signal?: AbortSignal): Promise<void> {
  const r = await execa("sync", ["-f", path], {
    reject: false,
    timeout: 600_000,
    ...(signal ? { cancelSignal: signal } : {}),
  });
  if (r.failed) {
    throw new CairnError(
      r.isCanceled ? "aborted" : "unavailable",
      `syncing the filesystem of ${path} failed: ${String(r.stderr || r.message).trim()}`,
    );
  }
}
