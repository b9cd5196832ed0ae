import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { CairnError } from "../../errors/CairnError.js";
import { assertKey, assertPrefix } from "../ports/assertKey.js";
import type { CallOptions, GetOptions, ObjectInfo, ObjectStore, PutOptions } from "../ports/ObjectStore.js";
import { throwIfAborted } from "../ports/throwIfAborted.js";

export interface S3ObjectStoreOptions {
  endpoint: string;
  region: string;
  bucket: string;
  /** Key prefix inside the bucket ("" or "path/"). */
  prefix?: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Per-request deadline (default 60 s). */
  requestTimeoutMs?: number;
}

/**
 * ObjectStore on S3-compatible storage (AWS SDK v3). Path-style addressing, and SDK checksums only
 * when required: with the defaults a streaming upload was silently corrupted on one server and
 * refused by another ("aws-chunked"). The SDK's own retries are off: RetryingObjectStore decides.
 */
export class S3ObjectStore implements ObjectStore {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly timeoutMs: number;

  constructor(options: S3ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? "";
    this.location = `s3://${options.bucket}/${this.prefix}`;
    this.timeoutMs = options.requestTimeoutMs ?? 60_000;
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      forcePathStyle: true,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 1,
    });
  }

  /** Creates the bucket if it does not exist (for init). */
  async ensureBucket(signal?: AbortSignal): Promise<void> {
    const { CreateBucketCommand, HeadBucketCommand } = await import("@aws-sdk/client-s3");
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), {
        abortSignal: this.signal(signal),
      });
    } catch {
      await this.call("creating bucket", "", () =>
        this.client.send(new CreateBucketCommand({ Bucket: this.bucket }), {
          abortSignal: this.signal(signal),
        }),
      );
    }
  }

  private signal(signal: AbortSignal | undefined): AbortSignal {
    const t = AbortSignal.timeout(this.timeoutMs);
    return signal ? AbortSignal.any([signal, t]) : t;
  }

  private async call<T>(what: string, key: string, f: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    throwIfAborted(signal, `${what} ${key}`);
    try {
      return await f();
    } catch (e) {
      throw this.mapError(e, what, key, signal);
    }
  }

  private mapError(e: unknown, what: string, key: string, signal: AbortSignal | undefined): CairnError {
    const where = `${what} ${key} in repository ${this.location}`;
    if (signal?.aborted) return new CairnError("aborted", `${where} was aborted`, { cause: e });
    if (e instanceof S3ServiceException) {
      const status = e.$metadata.httpStatusCode ?? 0;
      if (status === 404 || e.name === "NoSuchKey" || e.name === "NotFound") {
        return new CairnError("not-found", `${where}: not found`, { cause: e });
      }
      if (status === 403 || e.name === "SignatureDoesNotMatch" || e.name === "InvalidAccessKeyId") {
        return new CairnError("permission-denied", `${where}: access denied (${e.name})`, {
          cause: e,
          hint: "check the S3 credentials and the bucket policy",
        });
      }
      if (status === 507 || e.name === "QuotaExceeded" || e.name === "EntityTooLarge") {
        return new CairnError("resource-exhausted", `${where}: storage full or quota exceeded (${e.name})`, {
          cause: e,
        });
      }
      if (status >= 500 || status === 429 || e.name === "SlowDown" || e.name === "RequestTimeout") {
        return new CairnError("unavailable", `${where}: server error ${status} (${e.name})`, { cause: e });
      }
      return new CairnError("internal", `${where}: ${e.name} (HTTP ${status})`, { cause: e });
    }
    const err = e as Error & { code?: string };
    if (err?.name === "TimeoutError" || err?.name === "AbortError") {
      return new CairnError("timeout", `${where}: no answer within ${this.timeoutMs} ms`, { cause: e });
    }
    // Connection refused/reset, DNS, socket hang up: the server is (maybe temporarily) unreachable.
    return new CairnError("unavailable", `${where}: ${err?.code ?? err?.message ?? String(e)}`, {
      cause: e,
      hint: "check that the S3 endpoint is reachable",
    });
  }

  /** Puts here are durable on return: nothing is ever staged. */
  async commitStaged(options?: CallOptions): Promise<void> {
    throwIfAborted(options?.signal, "commit staged objects");
  }

  /** Nothing is ever staged here: a given-up backup's objects are unreferenced, GC removes them. */
  async discardStaged(_owner: object, options?: CallOptions): Promise<void> {
    throwIfAborted(options?.signal, "discard staged objects");
  }

  async put(key: string, input: Uint8Array, options?: PutOptions): Promise<void> {
    assertKey(key, this.location);
    // A chunk framed in place lives in shared memory the backup reuses once put resolves; the SDK
    // may still hold the body of an aborted attempt, so it gets its own copy.
    const data = input.buffer instanceof SharedArrayBuffer ? Buffer.from(input) : input;
    await this.call(
      "writing",
      key,
      () =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.prefix + key,
            Body: data,
            ContentLength: data.length,
          }),
          { abortSignal: this.signal(options?.signal) },
        ),
      options?.signal,
    );
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    assertKey(key, this.location);
    const r = options?.range;
    if (r && r.length === 0) return Buffer.alloc(0);
    return this.call(
      "reading",
      key,
      async () => {
        try {
          const out = await this.client.send(
            new GetObjectCommand({
              Bucket: this.bucket,
              Key: this.prefix + key,
              ...(r ? { Range: `bytes=${r.offset}-${r.offset + r.length - 1}` } : {}),
            }),
            { abortSignal: this.signal(options?.signal) },
          );
          return Buffer.from(await out.Body!.transformToByteArray());
        } catch (e) {
          // A range starting past the end is "416 InvalidRange": the contract says clip → empty.
          if (r && e instanceof S3ServiceException && e.$metadata.httpStatusCode === 416) {
            if (await this.head(key, options)) return Buffer.alloc(0);
          }
          throw e;
        }
      },
      options?.signal,
    );
  }

  async head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    assertKey(key, this.location);
    try {
      const out = await this.call(
        "stat",
        key,
        () =>
          this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), {
            abortSignal: this.signal(options?.signal),
          }),
        options?.signal,
      );
      return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) };
    } catch (e) {
      if (e instanceof CairnError && e.code === "not-found") return undefined;
      throw e;
    }
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    assertKey(key, this.location);
    await this.call(
      "deleting",
      key,
      () =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), {
          abortSignal: this.signal(options?.signal),
        }),
      options?.signal,
    ).catch((e: unknown) => {
      if (!(e instanceof CairnError && e.code === "not-found")) throw e;
    });
  }

  async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    assertPrefix(prefix, this.location);
    let token: string | undefined;
    do {
      const page = await this.call(
        "listing",
        prefix,
        () =>
          this.client.send(
            new ListObjectsV2Command({
              Bucket: this.bucket,
              Prefix: this.prefix + prefix,
              ContinuationToken: token,
            }),
            { abortSignal: this.signal(options?.signal) },
          ),
        options?.signal,
      );
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue;
        yield {
          key: o.Key.slice(this.prefix.length),
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  destroy(): void {
    this.client.destroy();
  }
}

export const _s3Conforms = S3ObjectStore satisfies new (o: S3ObjectStoreOptions) => ObjectStore;
