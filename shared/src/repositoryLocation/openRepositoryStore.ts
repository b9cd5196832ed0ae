import { isAbsolute, resolve } from "node:path";
import { CairnError } from "../errors/CairnError.js";
import { LocalObjectStore, type LocalObjectStoreOptions } from "../repository/backends/LocalObjectStore.js";
import { S3ObjectStore } from "../repository/backends/S3ObjectStore.js";
import { RetryingObjectStore } from "../repository/decorators/RetryingObjectStore.js";
import type { ObjectStore } from "../repository/ports/ObjectStore.js";

export interface RepositoryLocationEnv {
  AWS_ACCESS_KEY_ID?: string | undefined;
  AWS_SECRET_ACCESS_KEY?: string | undefined;
  AWS_REGION?: string | undefined;
  CAIRN_S3_ENDPOINT?: string | undefined;
}

/**
 * A repository location as operators write it: a local path (the LAN-free case: a SAN volume
 * mounted on the host), or `s3://bucket/prefix` with the endpoint and credentials from the
 * environment (`CAIRN_S3_ENDPOINT` or `?endpoint=` in the URL, `AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`). Remote stores get the retry decorator. `local` configures
 * a local store (e.g. the free space its backups leave for lock records and manifests).
 */
export function openRepositoryStore(
  location: string,
  env: RepositoryLocationEnv = process.env,
  local: LocalObjectStoreOptions = {},
): ObjectStore {
  if (!location.trim()) throw new CairnError("invalid-argument", "repository location is empty");
  if (!location.startsWith("s3://")) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
      throw new CairnError("invalid-argument", `unsupported repository location ${location}`, {
        hint: "use a local path or s3://bucket/prefix",
      });
    }
    return new LocalObjectStore(isAbsolute(location) ? location : resolve(location), local);
  }
  const url = new URL(location);
  const bucket = url.hostname;
  if (!bucket) throw new CairnError("invalid-argument", `repository location ${location} names no bucket`);
  const endpoint = url.searchParams.get("endpoint") ?? env.CAIRN_S3_ENDPOINT;
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!endpoint || !accessKeyId || !secretAccessKey) {
    throw new CairnError("invalid-argument", `S3 repository ${location} needs an endpoint and credentials`, {
      hint: "set CAIRN_S3_ENDPOINT (or ?endpoint=), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    });
  }
  const prefix = url.pathname.replace(/^\/+/, "");
  return new RetryingObjectStore(
    new S3ObjectStore({
      endpoint,
      region: url.searchParams.get("region") ?? env.AWS_REGION ?? "us-east-1",
      bucket,
      prefix: prefix && !prefix.endsWith("/") ? `${prefix}/` : prefix,
      accessKeyId,
      secretAccessKey,
    }),
  );
}
